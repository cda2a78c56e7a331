// Fetch benchmark: the same URL list from a loopback origin with a fixed latency, fetched by
// `cloudfetch run` (every feature on) and by `aria2c -i` with the same number of connections, in
// the same run. Prints images/s, wall time and peak memory of both, their ratio, and the bound
// N connections / latency. Every run is checked: all files present with the origin's bytes.
//
//   npm run bench:fetch -- [--urls 4000] [--latency 50] [--connections 64] [--runs 2]
//                          [--out-dir DIR] [--json] [--check] [--keep] [--skip-aria2c]
//                          [--cloudfetch-cli PATH]   (another checkout's cli/cloudfetch.js, for A/B)

import { rmSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { Agent, get } from 'node:http';
import { availableParallelism, cpus as cpuTimes } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { sampleImage } from '../local-cloud/origin.ts';
import { ARIA2C_FLAGS, hasGnuTime, isTmpfs, killRunning, measure, startServer, table, versionOf, workFolder, type Measured, type ServerProcess } from './measure.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ORIGIN_SERVER = join(ROOT, 'bench', 'origin-server.ts');

const TARGET_RATIO = 1.7;
const TARGET_OF_BOUND = 0.85;
const SPLIT = 'urls';

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `usage: node bench/fetch.ts [options]
  --urls N          URLs in the list (default 4000)
  --latency MS      origin latency before every answer, in milliseconds (default 50)
  --connections N   connections for each tool: cloudfetch --concurrency/--per-host, aria2c -j (default 64)
  --runs N          runs of each tool, each into a fresh folder (default 2)
  --min-kb K        smallest image in KiB (default 20)
  --max-kb K        largest image in KiB (default 40)
  --out-dir DIR     where the downloads go (default /dev/shm when it is a tmpfs, else the temp dir)
  --timeout S       longest one tool run may take, in seconds (default 300)
  --skip-aria2c     measure cloudfetch only
  --cloudfetch-cli PATH  the cloudfetch entry point to run (default: this checkout's cli/cloudfetch.js)
  --json            print the results as JSON on stdout (the table goes to stderr)
  --check           exit 1 when a target is missed
  --keep            keep the work folder (URL list, downloads) and say where it is`;

function fail(message: string): never {
  process.stderr.write(`bench:fetch: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let parsed: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    options: {
      urls: { type: 'string', default: '4000' },
      latency: { type: 'string', default: '50' },
      connections: { type: 'string', default: '64' },
      runs: { type: 'string', default: '2' },
      'min-kb': { type: 'string', default: '20' },
      'max-kb': { type: 'string', default: '40' },
      'out-dir': { type: 'string' },
      timeout: { type: 'string', default: '300' },
      'skip-aria2c': { type: 'boolean', default: false },
      'cloudfetch-cli': { type: 'string' },
      json: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
}
try {
  parsed = parseOptions();
} catch (error) {
  fail((error as Error).message);
}
const { values } = parsed;
if (values.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}

function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) fail(`--${name} takes a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}

const config = {
  urls: integer('urls', values.urls, 1, 10_000_000),
  latencyMs: integer('latency', values.latency, 1, 60_000),
  connections: integer('connections', values.connections, 1, 4096),
  runs: integer('runs', values.runs, 1, 50),
  minBytes: integer('min-kb', values['min-kb'], 1, 100_000) * 1024,
  maxBytes: integer('max-kb', values['max-kb'], 1, 100_000) * 1024,
  timeoutMs: integer('timeout', values.timeout, 1, 86_400) * 1000,
};
if (config.maxBytes < config.minBytes) fail('--max-kb must be at least --min-kb');
const CLI = resolve(values['cloudfetch-cli'] ?? join(ROOT, 'cli', 'cloudfetch.js'));
const json = values.json;
// With --json, stdout carries the JSON alone; everything for people goes to stderr.
const out = json ? process.stderr : process.stdout;
const say = (text = ''): void => void out.write(text + '\n');

// ---------------------------------------------------------------------------------------------
// Cleanup, whatever happens: the origin, a running tool, the work folder.

let workDir: string | null = null;
let origin: ServerProcess | null = null;

async function cleanup(): Promise<void> {
  killRunning();
  await origin?.stop();
  origin = null;
  if (workDir && !values.keep) await rm(workDir, { recursive: true, force: true });
}

// Last resort when the process dies some other way (an exception, a closed pipe): synchronous.
process.on('exit', () => {
  killRunning();
  try {
    if (origin) process.kill(origin.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  if (workDir && !values.keep) rmSync(workDir, { recursive: true, force: true });
});
// `npm run bench | head` closes the pipe early: not a reason to leave things behind.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench:fetch: ${signal}, cleaning up…\n`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// The URL list and what each tool must leave on disk.

interface Image {
  name: string;
  size: number;
}

function images(): Image[] {
  const width = String(config.urls).length;
  const span = config.maxBytes - config.minBytes + 1;
  return Array.from({ length: config.urls }, (_, i) => ({
    name: `img-${String(i + 1).padStart(width, '0')}`,
    // Deterministic and spread evenly over [min, max] (7919 is prime, so the steps wander).
    size: config.minBytes + ((i * 7919) % span),
  }));
}

const urlOf = (base: string, image: Image): string => `${base}/img/${image.name}.jpg?size=${image.size}`;

/** Every image present with exactly the origin's bytes, and nothing else in the folder. */
async function verify(dir: string, list: Image[], fileName: (image: Image, line: number) => string): Promise<string | null> {
  const names = new Set(await readdir(dir).catch(() => [] as string[]));
  let problems = 0;
  let first = '';
  const expected = new Set<string>();
  for (let i = 0; i < list.length; i += 64) {
    const batch = list.slice(i, i + 64);
    await Promise.all(
      batch.map(async (image, j) => {
        const file = fileName(image, i + j + 1);
        expected.add(file);
        const problem = await checkFile(join(dir, file), image);
        if (problem && problems++ === 0) first = `${file}: ${problem}`;
      }),
    );
  }
  const extra = [...names].filter((name) => !expected.has(name));
  if (problems > 0) return `${problems} of ${list.length} images missing or wrong (first: ${first})`;
  if (extra.length > 0) return `${extra.length} unexpected entries in the folder (first: ${extra[0]})`;
  return null;
}

async function checkFile(path: string, image: Image): Promise<string | null> {
  const info = await stat(path).catch(() => null);
  if (!info) return 'missing';
  if (info.size !== image.size) return `${info.size} bytes, expected ${image.size}`;
  const bytes = await readFile(path);
  return bytes.equals(sampleImage(image.name, 'jpeg', image.size)) ? null : 'bytes differ from the origin';
}

// ---------------------------------------------------------------------------------------------
// The tools.

interface Tool {
  name: 'cloudfetch' | 'aria2c';
  command: string;
  args(manifest: string, dir: string): string[];
  /** Where the tool puts the downloads, for verify(). */
  imagesDir(dir: string): string;
  fileName(image: Image, line: number): string;
  /** Extra checks on the tool's own report; null when all is well. */
  check(result: Measured, dir: string): Promise<string | null>;
}

const cloudfetch: Tool = {
  name: 'cloudfetch',
  command: process.execPath,
  args: (manifest, dir) => [
    CLI, 'run', manifest, '--out', dir,
    '--concurrency', String(config.connections), '--per-host', String(config.connections),
    '--allow-private-network', '--quiet', '--json',
  ],
  imagesDir: (dir) => join(dir, SPLIT),
  fileName: (_image, line) => `${line}.jpg`,
  async check(result, dir) {
    let summary: { fetched?: number; failed?: number; entries?: number };
    try {
      summary = JSON.parse(result.stdout) as typeof summary;
    } catch {
      return 'no JSON summary on stdout';
    }
    if (typeof summary.fetched !== 'number') return 'the JSON summary has no "fetched" count';
    if (summary.fetched !== config.urls) return `the summary says ${summary.fetched} fetched, ${summary.failed} failed`;
    const index = await readFile(join(dir, `${SPLIT}.csv`), 'utf8').catch(() => null);
    if (index === null) return 'no index CSV';
    const rows = index.split('\n').filter((line) => line !== '').length - 1;
    if (rows !== config.urls) return `index CSV has ${rows} rows`;
    return null;
  },
};


const aria2c: Tool = {
  name: 'aria2c',
  command: 'aria2c',
  args: (manifest, dir) => ['--input-file', manifest, '--dir', dir, ...ARIA2C_FLAGS(config.connections)],
  imagesDir: (dir) => dir,
  fileName: (image) => `${image.name}.jpg`,
  async check() {
    return null; // aria2c exits non-zero when any download failed; verify() does the rest
  },
};

// ---------------------------------------------------------------------------------------------
// Runs.

interface RunResult {
  tool: Tool['name'];
  run: number;
  ok: boolean;
  problem?: string;
  wallSeconds: number;
  imagesPerSecond: number | null;
  peakRssBytes: number | null;
  cpuSeconds: number | null;
}

async function runTool(tool: Tool, run: number, manifest: string, useTime: boolean, tmpfs: boolean): Promise<RunResult> {
  const dir = join(workDir!, `${tool.name}-${run}`);
  await mkdir(dir);
  const result = await measure(tool.command, tool.args(manifest, dir), {
    timeFile: useTime ? join(workDir!, `${tool.name}-${run}.time`) : null,
    timeoutMs: config.timeoutMs,
    cwd: ROOT,
  });
  let problem: string | null = null;
  if (result.timedOut) problem = `timed out after ${config.timeoutMs / 1000} s`;
  else if (result.exitCode !== 0) problem = `exited with ${result.exitCode ?? result.signal}`;
  problem ??= await tool.check(result, dir);
  problem ??= await verify(tool.imagesDir(dir), imageList, tool.fileName);
  if (problem && !interrupted) {
    const tail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-8).join('\n    ');
    process.stderr.write(`bench:fetch: ${tool.name} run ${run} failed: ${problem}\n${tail ? `    ${tail}\n` : ''}`);
  }
  // On tmpfs the downloads are memory: free them now. On a disk keep them to the end, because
  // ext4 (without a journal at least) scans recently deleted inodes when it creates a file, which
  // would slow the next run's file creation for reasons that are not the tool's.
  if (tmpfs && !values.keep) await rm(dir, { recursive: true, force: true });
  return {
    tool: tool.name,
    run,
    ok: problem === null,
    ...(problem ? { problem } : {}),
    wallSeconds: result.wallSeconds,
    imagesPerSecond: problem === null ? config.urls / result.wallSeconds : null,
    peakRssBytes: result.peakRssBytes,
    cpuSeconds: result.cpuSeconds,
  };
}

/** Some requests before the measured runs, so the origin's JIT is warm for whichever tool goes first. */
async function warmUp(base: string, count: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: config.connections });
  let next = 0;
  const one = (): Promise<void> =>
    new Promise<void>((done, reject) => {
      const i = next++;
      get(`${base}/img/warm-${i}.jpg?size=${config.minBytes}`, { agent }, (res) => {
        res.resume();
        res.once('end', done);
        res.once('error', reject);
      }).once('error', reject);
    });
  await Promise.all(
    Array.from({ length: config.connections }, async () => {
      while (next < count) await one();
    }),
  );
  agent.destroy();
}

// ---------------------------------------------------------------------------------------------
// Report.

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMB = (bytes: number | null): string => (bytes === null ? 'n/a' : (bytes / 1024 / 1024).toFixed(1));

interface ToolSummary {
  runs: RunResult[];
  best: RunResult | null;
  medianImagesPerSecond: number | null;
  medianWallSeconds: number | null;
  peakRssBytes: number | null;
}

function summarise(results: RunResult[]): ToolSummary {
  const good = results.filter((r) => r.ok);
  const best = good.length === 0 ? null : good.reduce((a, b) => (b.wallSeconds < a.wallSeconds ? b : a));
  const rss = results.map((r) => r.peakRssBytes).filter((n): n is number => n !== null);
  return {
    runs: results,
    best,
    medianImagesPerSecond: good.length ? median(good.map((r) => r.imagesPerSecond!)) : null,
    medianWallSeconds: good.length ? median(good.map((r) => r.wallSeconds)) : null,
    peakRssBytes: rss.length ? Math.max(...rss) : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Main.

const imageList = images();

async function main(): Promise<number> {
  const useTime = hasGnuTime();
  const aria2Version = values['skip-aria2c'] ? null : versionOf('aria2c');
  let aria2Skipped: string | null = null;
  if (values['skip-aria2c']) aria2Skipped = 'skipped (--skip-aria2c)';
  else if (!aria2Version) {
    aria2Skipped = 'aria2c not found';
    process.stderr.write(
      'bench:fetch: aria2c is not installed, so the comparison with aria2c is SKIPPED and no ratio is reported.\n' +
        '             Install it with:  sudo apt-get install aria2   (Debian/Ubuntu; `brew install aria2` on macOS)\n',
    );
  }
  if (!useTime) {
    process.stderr.write(
      'bench:fetch: GNU time (/usr/bin/time -v) is missing, so peak memory is not reported.\n' +
        '             Install it with:  sudo apt-get install time\n',
    );
  }

  workDir = await workFolder(values['out-dir'], 'cloudfetch-bench-');
  const base = dirname(workDir);
  const tmpfs = isTmpfs(workDir);

  // Both tools, the origin and anything else running share the CPUs: a busy machine skews the
  // figures, and cloudfetch (which needs more CPU per image than aria2c) more than aria2c.
  const cpus = availableParallelism();
  const busy = await otherCpuUse(1000);
  if (busy > 0.2) {
    process.stderr.write(`bench:fetch: other processes use ${(busy * 100).toFixed(0)}% of the ${cpus} CPUs: expect slower, noisier figures.\n`);
  }

  origin = await startServer(ORIGIN_SERVER, ['--latency', String(config.latencyMs)]);
  const { url } = origin;
  const manifest = join(workDir, `${SPLIT}.txt`);
  await writeFile(manifest, imageList.map((image) => urlOf(url, image)).join('\n') + '\n');
  await warmUp(url, Math.min(2000, Math.max(config.connections * 4, config.urls / 4)));

  const bound = config.connections / (config.latencyMs / 1000);
  const tools = aria2Skipped ? [cloudfetch] : [cloudfetch, aria2c];
  const sizeText = `${config.minBytes / 1024}–${config.maxBytes / 1024} KiB`;
  say(`Fetch benchmark: ${fmtInt(config.urls)} URLs (JPEG, ${sizeText}) from a loopback origin answering in ${config.latencyMs} ms,`);
  say(`${config.connections} connections per tool, ${config.runs} run(s) each, downloads on ${base} (${tmpfs ? 'tmpfs' : 'disk'}).`);
  say(`node ${process.version}${aria2Version ? ` · ${aria2Version}` : ''} · ${cpus} CPUs (${(busy * 100).toFixed(0)}% busy before the runs) · origin in its own process at ${url}`);
  if (values['cloudfetch-cli']) say(`cloudfetch from ${CLI}`);
  say('');

  const results: RunResult[] = [];
  const rows: string[][] = [['tool', 'run', 'images/s', 'wall s', 'peak RSS MB', 'CPU s', '']];
  for (let run = 1; run <= config.runs; run++) {
    // Alternate which tool goes first, so neither always meets a fresher origin or disk.
    const order = run % 2 === 1 ? tools : [...tools].reverse();
    for (const tool of order) {
      if (interrupted) return 130;
      const result = await runTool(tool, run, manifest, useTime, tmpfs);
      results.push(result);
      rows.push([tool.name, String(run), result.imagesPerSecond === null ? '—' : fmtInt(result.imagesPerSecond), result.wallSeconds.toFixed(2), fmtMB(result.peakRssBytes), result.cpuSeconds === null ? 'n/a' : result.cpuSeconds.toFixed(2), result.ok ? '' : `FAILED: ${result.problem}`]);
      await sleep(500);
    }
  }
  say(table(rows));
  say('');

  const cf = summarise(results.filter((r) => r.tool === 'cloudfetch'));
  const ar = aria2Skipped ? null : summarise(results.filter((r) => r.tool === 'aria2c'));
  const bestRows: string[][] = [['best run', 'images/s', 'wall s', 'peak RSS MB', 'median images/s']];
  for (const [name, s] of [['cloudfetch', cf], ['aria2c', ar]] as const) {
    if (!s) {
      bestRows.push([name, aria2Skipped ?? '', '', '', '']);
      continue;
    }
    bestRows.push([name, s.best ? fmtInt(s.best.imagesPerSecond!) : 'no good run', s.best ? s.best.wallSeconds.toFixed(2) : '—', fmtMB(s.peakRssBytes), s.medianImagesPerSecond === null ? '—' : fmtInt(s.medianImagesPerSecond)]);
  }
  bestRows.push([`bound ${config.connections} / ${(config.latencyMs / 1000).toFixed(3)} s`, fmtInt(bound), (config.urls / bound).toFixed(2), '', '']);
  say(table(bestRows));
  say('');

  const cfRate = cf.best?.imagesPerSecond ?? null;
  const arRate = ar?.best?.imagesPerSecond ?? null;
  const ratio = cfRate !== null && arRate !== null ? cfRate / arRate : null;
  const medianRatio = cf.medianImagesPerSecond !== null && ar?.medianImagesPerSecond != null ? cf.medianImagesPerSecond / ar.medianImagesPerSecond : null;
  const ofBound = cfRate !== null ? cfRate / bound : null;
  const ratioMet = ratio === null ? null : ratio >= TARGET_RATIO;
  const boundMet = ofBound === null ? null : ofBound >= TARGET_OF_BOUND;
  const verdict = (met: boolean | null): string => (met === null ? 'n/a' : met ? 'met' : 'MISSED');
  say(table([
    ['cloudfetch / aria2c', ratio === null ? 'n/a' : `${ratio.toFixed(2)}×`, `(median ${medianRatio === null ? 'n/a' : `${medianRatio.toFixed(2)}×`})`, `target ≥ ${TARGET_RATIO}×`, verdict(ratioMet)],
    ['cloudfetch / bound', ofBound === null ? 'n/a' : `${(ofBound * 100).toFixed(1)}%`, `(median ${cf.medianImagesPerSecond === null ? 'n/a' : `${((cf.medianImagesPerSecond / bound) * 100).toFixed(1)}%`})`, `target ≥ ${TARGET_OF_BOUND * 100}%`, verdict(boundMet)],
    ['peak RSS cloudfetch / aria2c', cf.peakRssBytes !== null && ar?.peakRssBytes != null ? `${(cf.peakRssBytes / ar.peakRssBytes).toFixed(1)}×` : 'n/a', '', '', ''],
  ]));
  say('');
  say('Rates are URLs / wall time of the whole process (start-up included), best run of each tool;');
  say('peak RSS is the largest of the runs; CPU s is user + system time of the tool (the origin not included).');
  say(`cloudfetch: node cli/cloudfetch.js run ${SPLIT}.txt --out DIR --concurrency ${config.connections} --per-host ${config.connections} --allow-private-network --quiet --json`);
  if (!aria2Skipped) say(`aria2c: aria2c --input-file ${SPLIT}.txt --dir DIR ${ARIA2C_FLAGS(config.connections).map((f) => (f.includes(' ') ? `'${f}'` : f)).join(' ')}`);
  if (values.keep) say(`Kept: ${workDir}`);

  if (json) {
    const toolJson = (s: ToolSummary | null) =>
      s && {
        runs: s.runs.map(({ tool: _tool, ...r }) => r),
        best: s.best && { imagesPerSecond: s.best.imagesPerSecond, wallSeconds: s.best.wallSeconds, peakRssBytes: s.best.peakRssBytes },
        medianImagesPerSecond: s.medianImagesPerSecond,
        medianWallSeconds: s.medianWallSeconds,
        peakRssBytes: s.peakRssBytes,
      };
    const report = {
      benchmark: 'fetch',
      config: { ...config, outDir: base, filesystem: tmpfs ? 'tmpfs' : 'disk', node: process.version, aria2c: aria2Version, cpus, cpuBusyBefore: busy, cloudfetchCli: CLI },
      boundImagesPerSecond: bound,
      cloudfetch: toolJson(cf),
      aria2c: aria2Skipped ? { skipped: aria2Skipped } : toolJson(ar),
      aria2cFlags: ARIA2C_FLAGS(config.connections),
      ratio,
      medianRatio,
      fractionOfBound: ofBound,
      targets: {
        ratio: { target: TARGET_RATIO, met: ratioMet },
        fractionOfBound: { target: TARGET_OF_BOUND, met: boundMet },
      },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  }

  if (results.some((r) => !r.ok)) return 1;
  if (values.check && (ratioMet === false || boundMet === false)) return 1;
  return 0;
}

/** The fraction of all CPU time spent busy over `ms` milliseconds, while this benchmark is idle. */
async function otherCpuUse(ms: number): Promise<number> {
  const total = (): { idle: number; all: number } => {
    let idle = 0;
    let all = 0;
    for (const { times } of cpuTimes()) {
      idle += times.idle;
      all += times.user + times.nice + times.sys + times.idle + times.irq;
    }
    return { idle, all };
  };
  const before = total();
  await sleep(ms);
  const after = total();
  const all = after.all - before.all;
  return all > 0 ? 1 - (after.idle - before.idle) / all : 0;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`bench:fetch: ${error instanceof Error ? error.message : String(error)}\n`);
  code = 1;
} finally {
  await cleanup();
}
process.exitCode = code;
