// `cloudfetch run` and `inspect` as a user meets them at the edges: an output folder that cannot
// be written, Ctrl-C in the middle, -q, a binary file given as manifest, the header and the help.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { gzipSync } from 'node:zlib';
import { runCommand } from '../cli/run.ts';
import { formatSummary } from '../engine/summary.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { cli, startCli } from './support/cli.ts';
import { FakeTerminal } from './support/terminal.ts';

let origin: Origin;
let dir: string;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-finish-'));
});
after(async () => {
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

const FAST = ['--allow-private-network', '--retries', '1', '--retry-delay', '0.01', '--timeout', '10'];

/** A URL list of `count` images; `path(i)` is each one's path on the origin. */
async function urlList(name: string, count: number, path: (i: number) => string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, Array.from({ length: count }, (_, i) => `${origin.url}${path(i + 1)}\n`).join(''));
  return file;
}

const filesIn = async (folder: string): Promise<string[]> => readdir(folder).catch(() => []);

/** Polls (no fixed sleep) until `folder` holds at least `count` files. */
async function untilFiles(folder: string, count: number): Promise<void> {
  while ((await filesIn(folder)).length < count) await new Promise((resolve) => setTimeout(resolve, 5));
}

const errorLines = (stderr: string): string[] => stderr.split('\n').filter((line) => line !== '');

describe('the output folder is checked before anything is fetched', () => {
  const refused = async (out: string, message: string): Promise<void> => {
    const manifest = await urlList('out.txt', 3, (i) => `/img/o${i}.jpg`);
    const before = origin.totalRequests();
    const result = await cli(['run', manifest, '--out', out, ...FAST]);
    assert.equal(result.code, 2, result.stderr);
    assert.deepEqual(errorLines(result.stderr).filter((line) => !line.startsWith('Reading ')), [`cloudfetch: ${message}`]);
    assert.equal(origin.totalRequests(), before, 'nothing fetched');
  };

  test('--out naming a file', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'notes');
    await refused(file, `cannot write to the output folder ${file}: it is a file, not a folder`);
  });

  test('--out under a file', async () => {
    const file = join(dir, 'parent-file');
    await writeFile(file, 'notes');
    await refused(join(file, 'data', 'x'), `cannot write to the output folder ${join(file, 'data', 'x')}: ${file} is a file, not a folder`);
  });

  // Permissions do not bind root (the tests' user in CI), and no read-only mount is at hand:
  // this case runs only for other users.
  test('a folder without write permission', { skip: process.getuid?.() === 0 && 'root writes anywhere' }, async () => {
    const locked = join(dir, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o555);
    try {
      await refused(locked, `cannot write to the output folder ${locked}: permission denied`);
    } finally {
      await chmod(locked, 0o755);
    }
  });

  test('a missing folder is created', async () => {
    const manifest = await urlList('new.txt', 1, () => '/img/n.jpg');
    const out = join(dir, 'new', 'deeper');
    const result = await cli(['run', manifest, '--out', out, '--quiet', ...FAST]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await readdir(join(out, 'new')), ['1.jpg']);
  });
});

describe('Ctrl-C', () => {
  test('the summary is on a line of its own and counts every file on disk; a re-run skips exactly those', async () => {
    // Delays that differ by image, so the ones still in flight at the Ctrl-C sit between finished ones.
    const manifest = await urlList('slow.txt', 300, (i) => `/delay/${20 + ((i * 37) % 200)}/s${i}.jpg`);
    const out = join(dir, 'out-slow');
    const run = startCli(['run', manifest, '--out', out, '--concurrency', '16', '--json', ...FAST]);
    await untilFiles(join(out, 'slow'), 40);
    run.child.kill('SIGINT');
    const result = await run.done;
    assert.equal(result.code, 130, result.stderr);

    const lines = result.stderr.split('\n');
    const stopping = lines.findIndex((line) => line.startsWith('Stopping: '));
    const summary = lines.findIndex((line) => line.startsWith('Interrupted: split slow, '));
    assert.ok(stopping > 0 && summary > stopping, result.stderr);
    const files = await filesIn(join(out, 'slow'));
    const onDisk = files.length;
    const bytes = (await Promise.all(files.map(async (file) => (await stat(join(out, 'slow', file))).size))).reduce((a, b) => a + b, 0);
    const counted = JSON.parse(result.stdout) as { fetched: number; bytes: number };
    assert.equal(counted.fetched, onDisk, 'every file written is counted, those finished during the drain too');
    assert.equal(counted.bytes, bytes);
    assert.equal(lines[summary + 1], `  fetched  ${onDisk}  (${(bytes / 1024).toFixed(1)} KiB)`);

    const rerun = await cli(['run', manifest, '--out', out, '--concurrency', '64', '--json', '--quiet', ...FAST]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const again = JSON.parse(rerun.stdout) as { fetched: number; skipped: number };
    assert.equal(again.skipped, onDisk);
    assert.equal(again.fetched, 300 - onDisk);
  });

  test('on a terminal the bar ends before "Stopping", and the summary starts on a clean line', async () => {
    const manifest = await urlList('tty.txt', 200, (i) => `/delay/${20 + ((i * 53) % 150)}/t${i}.jpg`);
    const out = join(dir, 'out-tty');
    const terminal = new FakeTerminal(100);
    const controller = new AbortController();
    const running = runCommand({
      manifest, out, layout: 'flat', concurrency: 16, fetcher: { guard: { allowPrivateNetwork: true } },
      signal: controller.signal, log: terminal as unknown as NodeJS.WriteStream, quiet: false,
    });
    await untilFiles(join(out, 'tty'), 20);
    controller.abort();
    const summary = await running;

    const screen = terminal.screen();
    const stopping = screen.findIndex((line) => line.startsWith('Stopping: '));
    assert.ok(stopping > 0, screen.join('\n'));
    assert.match(screen[stopping - 1]!, /^ (\S+ )?\d+% \d+\/200 \| .* \| \d+\/s \| ETA \S+$/, 'the bar, whole, just above');
    assert.equal(screen[stopping + 1], formatSummary(summary).split('\n')[0]);
    assert.match(screen[stopping + 1]!, /^Interrupted: split tty, /);
    assert.ok(screen.slice(stopping + 1).every((line) => !/ETA/.test(line)), 'no bar after Stopping');
    assert.equal(summary.fetched, (await filesIn(join(out, 'tty'))).length);
  });
});

describe('-q', () => {
  test('prints nothing on stderr; --json still prints the summary on stdout; errors still show', async () => {
    const manifest = await urlList('quiet.txt', 2, (i) => `/img/q${i}.jpg`);
    const quiet = await cli(['run', manifest, '--out', join(dir, 'out-q'), '-q', ...FAST]);
    assert.equal(quiet.code, 0);
    assert.equal(quiet.stderr, '');
    assert.equal(quiet.stdout, '');

    const json = await cli(['run', manifest, '--out', join(dir, 'out-q'), '--quiet', '--json', ...FAST]);
    assert.equal(json.code, 0);
    assert.equal(json.stderr, '');
    assert.equal((JSON.parse(json.stdout) as { skipped: number }).skipped, 2);

    const broken = join(dir, 'broken.jsonl');
    await writeFile(broken, '{"id": 1, "url": "x"}\n{oops\n');
    const failed = await cli(['run', broken, '--out', join(dir, 'out-q'), '-q', ...FAST]);
    assert.equal(failed.code, 2);
    assert.equal(errorLines(failed.stderr).length, 1, failed.stderr);
    assert.match(failed.stderr, /^cloudfetch: .*broken\.jsonl: line 2/);
  });
});

describe('a binary file given as manifest', () => {
  test('run and inspect say it is not a text manifest, at which byte; exit 2', async () => {
    const png = join(dir, 'photo.png');
    await writeFile(png, sampleImage('photo', 'png'));
    const gzipped = join(dir, 'archive.csv.gz');
    await writeFile(gzipped, gzipSync(Buffer.concat([Buffer.from('id,url\n'), sampleImage('photo', 'png')])));
    for (const [file, offset] of [[png, 0], [gzipped, 7]] as const) {
      for (const args of [['run', file, '--out', join(dir, 'out-bin'), ...FAST], ['inspect', file]]) {
        const result = await cli(args);
        assert.equal(result.code, 2, result.stderr);
        assert.equal(result.stderr, `cloudfetch: ${file} is not a text manifest (binary data at byte ${offset})\n`);
      }
    }
  });
});

describe('what run says', () => {
  test('the header: entries and images at once, the per-host cap when it binds; singular for one', async () => {
    const manifest = await urlList('one.txt', 1, () => '/img/one.jpg');
    const out = join(dir, 'out-one');
    const wide = await cli(['run', manifest, '--out', out, ...FAST]);
    assert.equal(wide.code, 0, wide.stderr);
    assert.ok(wide.stderr.includes(`\n1 entry; fetching split "one" into ${out}: 64 images at once, at most 6 per host\n`), wide.stderr);
    assert.match(wide.stderr, /^Done: split one, 1 entry in /m);
    const narrow = await cli(['run', manifest, '--out', out, '-c', '1', ...FAST]);
    assert.ok(narrow.stderr.includes(`into ${out}: 1 image at once\n`), narrow.stderr);
    // --per-host is the old name of --host-concurrency.
    for (const flag of ['--host-concurrency', '--per-host']) {
      const capped = await cli(['run', manifest, '--out', out, flag, '2', ...FAST]);
      assert.ok(capped.stderr.includes(`into ${out}: 64 images at once, at most 2 per host\n`), capped.stderr);
    }
  });

  test('sizes are in 1024s and say so: --max-bytes takes KiB as well as KB, the summary prints KiB', async () => {
    const manifest = await urlList('sizes.txt', 2, (i) => `/img/z${i}.jpg?size=${i * 3000}`);
    for (const limit of ['4KiB', '4KB', '4k']) {
      const result = await cli(['run', manifest, '--out', join(dir, `out-${limit}`), '--max-bytes', limit, '--json', ...FAST]);
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout) as { fetched: number; failuresByReason: Record<string, number> };
      assert.equal(summary.fetched, 1, limit);
      assert.deepEqual(summary.failuresByReason, { 'too-large': 1 });
      assert.match(result.stderr, /^ {2}fetched {2}1 {2}\(2\.9 KiB\)$/m);
    }
  });
});

describe('help', () => {
  const help = async (...command: string[]): Promise<string> => {
    const result = await cli([...command, '--help']);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.replace(/\s+/g, ' ');
  };

  test('no "(default: false)" on any flag of any command', async () => {
    for (const command of ['run', 'inspect', 'dev', 'submit', 'status', 'sync', 'report', 'retry']) {
      assert.doesNotMatch(await help(command), /default: false/, command);
    }
  });

  test('run: --allow-private-network does not claim link-local addresses; --max-bytes says what MB means', async () => {
    const text = await help('run');
    assert.ok(text.includes('--allow-private-network allow private and loopback addresses (local testing only; link-local and metadata addresses stay refused)'), text);
    assert.ok(text.includes('--max-bytes <size> largest image accepted; K, M, G count in 1024s: 50MB = 50MiB (default: 50MiB)'), text);
    assert.ok(text.includes('-q, --quiet nothing on stderr but errors'), text);
    assert.ok((await help('dev')).includes('reach private and loopback addresses'));
  });
});
