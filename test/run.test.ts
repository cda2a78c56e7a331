// `cloudfetch run` end to end, as a user runs it: a manifest in the competition shape against the
// fault-injecting origin; bytes on disk, the index, the summary, exit codes, resume after a kill.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { parse } from 'csv-parse/sync';
import { sampleImage, startOrigin, type Origin, type SampleFormat } from '../local-cloud/origin.ts';
import { cli, startCli } from './support/cli.ts';

let origin: Origin;
let dir: string;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-run-'));
});
after(async () => {
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

const FAST = ['--allow-private-network', '--retries', '1', '--retry-delay', '0.01', '--timeout', '10', '--quiet'];

interface Case {
  id: string;
  paths: string[];
  label: string;
  status: 'fetched' | 'failed';
  reason?: string;
  image?: { name: string; format: SampleFormat; file: string };
}

const CASES: Case[] = [
  { id: '1', paths: ['/img/one.jpg'], label: '3', status: 'fetched', image: { name: 'one', format: 'jpeg', file: '1.jpg' } },
  { id: '2', paths: ['/img/two.png'], label: '3', status: 'fetched', image: { name: 'two', format: 'png', file: '2.png' } },
  { id: '3', paths: ['/flaky/three.jpg?fail=1'], label: '5', status: 'fetched', image: { name: 'three', format: 'jpeg', file: '3.jpg' } },
  { id: '4', paths: ['/status/404'], label: '5', status: 'failed', reason: 'http-404' },
  { id: '5', paths: ['/status/403'], label: '5', status: 'failed', reason: 'http-403' },
  { id: '6', paths: ['/html/six'], label: '7', status: 'failed', reason: 'not-image' },
  { id: '7', paths: ['/status/404', '/img/seven.jpg'], label: '7', status: 'fetched', image: { name: 'seven', format: 'jpeg', file: '7.jpg' } },
  { id: '8', paths: [], label: '7', status: 'failed', reason: 'no-url' },
  { id: '9', paths: ['ftp://example.com/nine.jpg'], label: '7', status: 'failed', reason: 'bad-url' },
  { id: '10', paths: ['/redirect/2/ten.gif'], label: '7', status: 'fetched', image: { name: 'ten', format: 'gif', file: '10.gif' } },
  { id: '11', paths: ['/empty/eleven'], label: '9', status: 'failed', reason: 'empty' },
  { id: '12', paths: ['/img/twelve.jpg?type=none'], label: '9', status: 'fetched', image: { name: 'twelve', format: 'jpeg', file: '12.jpg' } },
  { id: '13', paths: ['/status/500'], label: '9', status: 'failed', reason: 'http-5xx' },
  { id: '14', paths: [`/redirect-to?location=${encodeURIComponent('http://169.254.169.254/latest/meta-data/')}`], label: '9', status: 'failed', reason: 'blocked-address' },
  { id: '../15', paths: ['/img/fifteen.webp'], label: '9', status: 'fetched', image: { name: 'fifteen', format: 'webp', file: '%2E.%2F15.webp' } },
];

const url = (path: string): string => (path.startsWith('/') ? `${origin.url}${path}` : path);

/** The Furniture 2018 shape: url lists, numeric ids where possible, annotations after images. */
async function furnitureManifest(name: string, cases: Case[], duplicate?: Case): Promise<string> {
  const id = (c: Case): string | number => (/^\d+$/.test(c.id) ? Number(c.id) : c.id);
  const images = cases.map((c) => ({ url: c.paths.map(url), image_id: id(c) }));
  if (duplicate) images.push({ url: ['http://duplicate.invalid/x.jpg'], image_id: id(duplicate) });
  const annotations = cases.map((c) => ({ image_id: id(c), label_id: Number(c.label) }));
  const file = join(dir, name);
  await writeFile(file, JSON.stringify({ images, annotations }));
  return file;
}

type Row = Record<string, string>;
const readIndex = async (file: string): Promise<Row[]> => parse(await readFile(file, 'utf8'), { columns: true }) as Row[];

describe('cloudfetch run', () => {
  test('fetches a manifest: every entry accounted for once, bytes equal to the origin, then resumes with nothing to fetch', async () => {
    const manifest = await furnitureManifest('train.json', CASES, CASES[0]);
    const out = join(dir, 'out1');
    const first = await cli(['run', manifest, '--out', out, '--concurrency', '4', '--json', ...FAST]);
    assert.equal(first.code, 0, first.stderr);

    const summary = JSON.parse(first.stdout) as Record<string, unknown>;
    const fetched = CASES.filter((c) => c.status === 'fetched');
    assert.equal(summary.split, 'train');
    assert.equal(summary.entries, CASES.length);
    assert.equal(summary.fetched, fetched.length);
    assert.equal(summary.skipped, 0);
    assert.equal(summary.failed, CASES.length - fetched.length);
    assert.equal(summary.duplicates, 1);
    assert.deepEqual(summary.failuresByReason, Object.fromEntries(CASES.filter((c) => c.reason).map((c) => [c.reason, 1])));
    // The entry without a URL is grouped as such, the ftp one under its host; plan order breaks ties.
    const failedHere = CASES.filter((c) => c.status === 'failed' && c.paths[0]?.startsWith('/')).length;
    assert.deepEqual(summary.failuresByHost, [
      { host: new URL(origin.url).host, failed: failedHere }, { host: '(no URL)', failed: 1 }, { host: 'example.com', failed: 1 },
    ]);

    // Bytes on disk equal what the origin sent, and nothing else is there.
    const files = (await readdir(join(out, 'train'))).sort();
    assert.deepEqual(files, fetched.map((c) => c.image!.file).sort());
    for (const c of fetched) {
      const stored = await readFile(join(out, 'train', c.image!.file));
      assert.ok(stored.equals(sampleImage(c.image!.name, c.image!.format)), `bytes of ${c.image!.file}`);
    }
    assert.deepEqual((await readdir(out)).sort(), ['train', 'train.csv'], 'no temporaries left behind');

    // The index: one row per distinct entry, in manifest order.
    const rows = await readIndex(join(out, 'train.csv'));
    assert.deepEqual(rows.map((r) => r.image_id), CASES.map((c) => c.id));
    for (const [i, c] of CASES.entries()) {
      const row = rows[i]!;
      assert.equal(row.status, c.status, `status of ${c.id}: ${row.detail}`);
      assert.equal(row.reason, c.reason ?? '', `reason of ${c.id}`);
      assert.equal(row.label, c.label);
      assert.equal(row.path, c.image ? `train/${c.image.file}` : '');
      if (c.image) assert.equal(Number(row.bytes), sampleImage(c.image.name, c.image.format).length);
    }
    assert.equal(rows[6]!.url, `${origin.url}/img/seven.jpg`, 'the mirror that answered');

    // Run again: stored images are skipped without a request; failures are tried again.
    const hitsBefore = fetched.map((c) => origin.hits(c.paths.at(-1)!.split('?')[0]!));
    const second = await cli(['run', manifest, '--out', out, '--concurrency', '4', '--json', ...FAST]);
    assert.equal(second.code, 0, second.stderr);
    const again = JSON.parse(second.stdout) as Record<string, number>;
    assert.equal(again.skipped, fetched.length);
    assert.equal(again.fetched, 0);
    assert.equal(again.failed, CASES.length - fetched.length);
    assert.deepEqual(fetched.map((c) => origin.hits(c.paths.at(-1)!.split('?')[0]!)), hitsBefore);
    const rerun = await readIndex(join(out, 'train.csv'));
    assert.equal(rerun.length, CASES.length);
    for (const [i, c] of CASES.entries()) {
      assert.equal(rerun[i]!.status, c.status === 'fetched' ? 'skipped' : 'failed');
      if (c.image) assert.equal(rerun[i]!.path, `train/${c.image.file}`);
    }
  });

  test('a run killed at any moment leaves no partial file, and the next run completes the set', async () => {
    const cases: Case[] = Array.from({ length: 200 }, (_, i) => ({
      id: String(i + 1), paths: [`/delay/15/k${i + 1}.jpg?size=20000`], label: '1', status: 'fetched',
      image: { name: `k${i + 1}`, format: 'jpeg', file: `${i + 1}.jpg` },
    }));
    const manifest = await furnitureManifest('kill.json', cases);
    const out = join(dir, 'out-kill');
    const before = origin.totalRequests();
    const run = startCli(['run', manifest, '--out', out, '--concurrency', '8', ...FAST]);
    // Kill once a fair part of the work is under way (polls the origin's counter, not a fixed sleep).
    while (origin.totalRequests() - before < 60) await new Promise((resolve) => setTimeout(resolve, 10));
    run.child.kill('SIGKILL');
    const killed = await run.done;
    assert.equal(killed.signal, 'SIGKILL');

    const survivors = existsSync(join(out, 'kill')) ? await readdir(join(out, 'kill')) : [];
    assert.ok(survivors.length > 0 && survivors.length < cases.length, `${survivors.length} files after the kill`);
    for (const file of survivors) {
      const n = file.replace('.jpg', '');
      assert.ok((await readFile(join(out, 'kill', file))).equals(sampleImage(`k${n}`, 'jpeg', 20000)), `${file} is complete`);
    }
    assert.equal(existsSync(join(out, 'kill.csv')), false, 'no index claims completeness after a kill');

    const resumed = await cli(['run', manifest, '--out', out, '--concurrency', '8', '--json', ...FAST]);
    assert.equal(resumed.code, 0, resumed.stderr);
    const summary = JSON.parse(resumed.stdout) as Record<string, number>;
    assert.equal(summary.skipped, survivors.length);
    assert.equal(summary.fetched, cases.length - survivors.length);
    assert.equal(summary.failed, 0);
    for (const file of survivors) assert.equal(origin.hits(`/delay/15/k${file.replace('.jpg', '')}.jpg`), 1, `${file} fetched once`);
    const files = await readdir(join(out, 'kill'));
    assert.equal(files.length, cases.length);
    for (const c of cases) assert.ok((await readFile(join(out, 'kill', c.image!.file))).equals(sampleImage(c.image!.name, 'jpeg', 20000)));
    const rows = await readIndex(join(out, 'kill.csv'));
    assert.deepEqual(rows.map((r) => r.image_id), cases.map((c) => c.id));
    assert.equal(existsSync(join(out, '.cloudfetch-tmp')), false, 'no temporaries left behind');
  });

  test('Ctrl-C stops cleanly: exit 130, a summary that says how to continue, no half-written index', async () => {
    const cases: Case[] = Array.from({ length: 100 }, (_, i) => ({
      id: String(i + 1), paths: [`/delay/30/int${i + 1}.jpg`], label: '1', status: 'fetched',
    }));
    const manifest = await furnitureManifest('interrupt.json', cases);
    const out = join(dir, 'out-int');
    const before = origin.totalRequests();
    // Not --quiet: the summary is what this test reads.
    const run = startCli(['run', manifest, '--out', out, '--concurrency', '4', ...FAST.filter((flag) => flag !== '--quiet')]);
    while (origin.totalRequests() - before < 10) await new Promise((resolve) => setTimeout(resolve, 10));
    run.child.kill('SIGINT');
    const result = await run.done;
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /Interrupted/);
    assert.match(result.stderr, /Re-run the same command to continue/);
    assert.equal(existsSync(join(out, 'interrupt.csv')), false);
    assert.deepEqual((await readdir(out)).filter((f) => f.endsWith('.part')), []);
    assert.equal(existsSync(join(out, '.cloudfetch-tmp')), false, 'no spill files (ids seen, held rows) left behind');
  });

  test('--layout by-label puts images in one folder per label; --split names the split', async () => {
    const csv = join(dir, 'landmarks.csv');
    await writeFile(csv, `id,url,landmark_id\naa,${origin.url}/img/aa.jpg,6347\nbb,${origin.url}/img/bb.png,12519\ncc,${origin.url}/img/cc.jpg,6347\n`);
    const out = join(dir, 'out-label');
    const result = await cli(['run', csv, '--out', out, '--layout', 'by-label', '--split', 'train', ...FAST]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((await readdir(join(out, 'train', '6347'))).sort(), ['aa.jpg', 'cc.jpg']);
    assert.deepEqual(await readdir(join(out, 'train', '12519')), ['bb.png']);
    assert.ok((await readFile(join(out, 'train', '12519', 'bb.png'))).equals(sampleImage('bb', 'png')));
    const rows = await readIndex(join(out, 'train.csv'));
    assert.deepEqual(rows.map((r) => [r.image_id, r.label, r.path]), [
      ['aa', '6347', 'train/6347/aa.jpg'], ['bb', '12519', 'train/12519/bb.png'], ['cc', '6347', 'train/6347/cc.jpg'],
    ]);
  });
});

describe('bad input stops before fetching, with one clear line and exit code 2', () => {
  test('malformed JSON names the position; nothing is fetched or created', async () => {
    const bad = join(dir, 'broken.json');
    await writeFile(bad, `{"images": [{"url": ["${origin.url}/img/x.jpg"], "image_id": 1}, {"url": ["${origin.url}/img/y.jpg"], "image_id": 2`);
    const out = join(dir, 'out-bad');
    const before = origin.totalRequests();
    const result = await cli(['run', bad, '--out', out, ...FAST]);
    assert.equal(result.code, 2);
    const lines = result.stderr.trim().split('\n').filter((l) => l.startsWith('cloudfetch:'));
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /broken\.json/);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(origin.totalRequests(), before);
    assert.equal(existsSync(out), false);
  });

  test('an unknown shape lists the supported ones', async () => {
    const odd = join(dir, 'odd.json');
    await writeFile(odd, '{"photos": [{"href": "x"}]}');
    const result = await cli(['run', odd, '--out', join(dir, 'out-odd'), ...FAST]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /iMaterialist/);
    assert.match(result.stderr, /CSV/);
  });

  test('--layout by-label refuses a multi-label manifest and leaves no half-written index', async () => {
    const fashion = join(dir, 'fashion.json');
    await writeFile(fashion, JSON.stringify({
      images: [{ url: `${origin.url}/img/f1`, imageId: '1' }],
      annotations: [{ labelId: ['95', '66'], imageId: '1' }],
    }));
    const out = join(dir, 'out-fashion');
    const result = await cli(['run', fashion, '--out', out, '--layout', 'by-label', ...FAST]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--layout by-label needs one label per image, but entry 1 has 2/);
    assert.deepEqual((await readdir(out)).filter((f) => f.endsWith('.csv') || f.endsWith('.part')), []);
  });

  test('bad flags and missing files', async () => {
    const manifest = await furnitureManifest('flags.json', CASES.slice(0, 1));
    for (const [args, message] of [
      [['run', manifest, '--concurrency', '0'], /--concurrency takes a whole number/],
      [['run', manifest, '--layout', 'tree'], /--layout takes one of flat, by-label/],
      [['run', manifest, '--max-bytes', 'lots'], /--max-bytes takes a size/],
      [['run', manifest, '--timeout', '-1'], /--timeout/],
      [['run', manifest, '--frobnicate'], /unknown option '--frobnicate'/],
      [['run', join(dir, 'missing.json')], /no such manifest: .*missing\.json/],
      [['run'], /missing required argument 'manifest'/],
    ] as const) {
      const result = await cli(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });
});

describe('cloudfetch inspect', () => {
  test('reports entries, ids, labels, hosts and invalid entries of a manifest', async () => {
    const manifest = await furnitureManifest('inspect.json', CASES, CASES[1]);
    const before = origin.totalRequests();
    const json = await cli(['inspect', manifest, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(report.entries, CASES.length + 1);
    assert.equal(report.distinctIds, CASES.length);
    assert.equal(report.duplicateIds, 1);
    assert.equal(report.noUrl, 1);
    assert.equal(report.badUrl, 1);
    assert.equal(report.distinctLabels, 4);
    const text = await cli(['inspect', manifest]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /127\.0\.0\.1/);
    assert.equal(origin.totalRequests(), before, 'inspect fetches nothing');
  });
});
