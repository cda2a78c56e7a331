// Sync benchmark: N small images in an emulated bucket (fauxqs in a process of its own, on
// loopback), brought home by `cloudfetch sync`, `aws s3 sync` and `rclone copy --transfers 64
// --checkers 64`, each into a fresh folder, in the same run. Then each again on its own folder, where
// nothing is left to copy (the resume case). Every copy is checked: all files, the bucket's bytes.
//
//   npm run bench:sync -- [--objects 5000] [--min-kb 10] [--max-kb 50] [--runs 2] [--json] [--keep]

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { EMULATOR_CREDENTIALS } from '../local-cloud/emulator.ts';
import { defaultOutBase, hasGnuTime, isTmpfs, killRunning, measure, startServer, table, versionOf, type Measured, type ServerProcess } from './measure.ts';
import { ROOT, REGION, TOOL_ENV, awsS3Sync, benchImages, cloudfetchSync, fillBucket, rcloneCopy, verifyCopy, type Image, type Tool } from './sync-bucket.ts';

const EMULATOR_SERVER = join(ROOT, 'bench', 'emulator-server.ts');
const TARGET_VS_AWS = 5;
const TARGET_VS_RCLONE = 1;

const USAGE = `usage: node bench/sync.ts [options]
  --objects N     images in the bucket (default 5000)
  --min-kb K      smallest image in KiB (default 10)
  --max-kb K      largest image in KiB (default 50; the mean is halfway)
  --runs N        fresh copies by each tool (default 2)
  --tools LIST    which of cloudfetch,aws,rclone to run (default all three)
  --timeout S     longest one tool run may take, in seconds (default 600)
  --out DIR       download into a new folder under DIR (default /dev/shm when it is tmpfs)
  --json          print the results as JSON on stdout (the table goes to stderr)
  --keep          keep the work folder and say where it is`;

function fail(message: string): never {
  process.stderr.write(`bench:sync: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values: ReturnType<typeof parse>['values'];
function parse() {
  return parseArgs({
    options: {
      objects: { type: 'string', default: '5000' },
      'min-kb': { type: 'string', default: '10' },
      'max-kb': { type: 'string', default: '50' },
      runs: { type: 'string', default: '2' },
      tools: { type: 'string', default: 'cloudfetch,aws,rclone' },
      timeout: { type: 'string', default: '600' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
try {
  ({ values } = parse());
} catch (error) {
  fail((error as Error).message);
}
if (values.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
function integer(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) fail(`--${name} takes a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}
const config = {
  objects: integer('objects', values.objects, 1, 1_000_000),
  minBytes: integer('min-kb', values['min-kb'], 1, 100_000) * 1024,
  maxBytes: integer('max-kb', values['max-kb'], 1, 100_000) * 1024,
  runs: integer('runs', values.runs, 1, 20),
  timeoutMs: integer('timeout', values.timeout, 1, 86_400) * 1000,
};
if (config.maxBytes < config.minBytes) fail('--max-kb must be at least --min-kb');
const say = (text = ''): void => void (values.json ? process.stderr : process.stdout).write(text + '\n');

const images: Image[] = benchImages(config.objects, config.minBytes, config.maxBytes);
const totalBytes = images.reduce((sum, image) => sum + image.size, 0);

const TOOLS: Tool[] = [cloudfetchSync('cloudfetch'), awsS3Sync, rcloneCopy('rclone copy', ['--transfers', '64', '--checkers', '64'])];
type ToolName = 'cloudfetch' | 'aws s3 sync' | 'rclone copy';

interface RunResult {
  tool: ToolName;
  kind: 'fresh' | 'again';
  run: number;
  ok: boolean;
  problem?: string;
  wallSeconds: number;
  objectsPerSecond: number | null;
  peakRssBytes: number | null;
  cpuSeconds: number | null;
}

async function runTool(tool: Tool, kind: RunResult['kind'], run: number, endpoint: string, out: string, useTime: boolean): Promise<RunResult> {
  await mkdir(out, { recursive: true });
  const result: Measured = await measure(tool.command, tool.args(endpoint, out), {
    timeFile: useTime ? join(work!, 'time.txt') : null,
    timeoutMs: config.timeoutMs,
    cwd: work!,
    env: TOOL_ENV,
  });
  let problem: string | null = null;
  if (result.timedOut) problem = `timed out after ${config.timeoutMs / 1000} s`;
  else if (result.exitCode !== 0) problem = `exited with ${result.exitCode ?? result.signal}: ${(result.stderr.trim() || result.stdout.trim()).split('\n').slice(-3).join(' / ')}`;
  problem ??= await verifyCopy(tool.imagesDir(out), images);
  if (problem) process.stderr.write(`bench:sync: ${tool.name} (${kind}, run ${run}) failed: ${problem}\n`);
  return {
    tool: tool.name as ToolName, kind, run, ok: problem === null, ...(problem ? { problem } : {}),
    wallSeconds: result.wallSeconds,
    objectsPerSecond: problem === null ? images.length / result.wallSeconds : null,
    peakRssBytes: result.peakRssBytes,
    cpuSeconds: result.cpuSeconds,
  };
}

// ---------------------------------------------------------------------------------------------

let work: string | null = null;
let emulator: ServerProcess | null = null;

async function cleanup(): Promise<void> {
  killRunning();
  await emulator?.stop();
  emulator = null;
  if (work && !values.keep) await rm(work, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench:sync: ${signal}, cleaning up…\n`);
    cleanup().finally(() => process.exit(130));
  });
}

const fmt = (n: number | null, digits = 0): string => (n === null ? '—' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const mb = (bytes: number | null): string => (bytes === null ? 'n/a' : (bytes / 1048576).toFixed(1));

async function main(): Promise<number> {
  const useTime = hasGnuTime();
  const versions: Record<string, string | null> = { 'aws s3 sync': versionOf('aws'), 'rclone copy': versionOf('rclone', ['version']) };
  const chosen = values.tools.split(',').map((t) => t.trim());
  for (const name of chosen) if (!TOOLS.some((tool) => tool.name.startsWith(name))) fail(`--tools: unknown tool "${name}" (cloudfetch, aws, rclone)`);
  const tools = TOOLS.filter((tool) => chosen.some((name) => tool.name.startsWith(name)) && (tool.name === 'cloudfetch' || versions[tool.name]));
  for (const tool of TOOLS) {
    if (!tools.includes(tool) && chosen.some((name) => tool.name.startsWith(name))) process.stderr.write(`bench:sync: ${tool.command} is not installed: ${tool.name} is SKIPPED (Debian: apt-get install ${tool.command === 'aws' ? 'awscli' : 'rclone'})\n`);
  }
  // On tmpfs when there is one: the figures then compare the tools, not the disk.
  work = await mkdtemp(join(values.out ? resolve(values.out) : defaultOutBase(), 'cloudfetch-bench-sync-'));
  emulator = await startServer(EMULATOR_SERVER);
  const s3 = new S3Client({ endpoint: emulator.url, region: REGION, credentials: EMULATOR_CREDENTIALS, forcePathStyle: true });
  say(`filling the emulated bucket with ${fmt(images.length)} images (${mb(totalBytes)} MiB)…`);
  await fillBucket(s3, images);
  s3.destroy();

  say(`Sync benchmark: ${fmt(images.length)} objects, ${config.minBytes / 1024}–${config.maxBytes / 1024} KiB (mean ${fmt(totalBytes / images.length / 1024, 1)} KiB), from fauxqs in its own process at ${emulator.url}`);
  say(`node ${process.version} · ${Object.entries(versions).map(([tool, version]) => `${tool}: ${version ?? 'not installed'}`).join(' · ')} · ${availableParallelism()} CPUs · downloads to ${work} (${isTmpfs(work) ? 'tmpfs' : 'not tmpfs'})`);
  say('');

  const results: RunResult[] = [];
  for (let run = 1; run <= config.runs; run++) {
    // Rotate the order, so no tool always goes first.
    const order = tools.map((_, i) => tools[(i + run - 1) % tools.length]!);
    for (const tool of order) {
      const out = join(work, `${tool.name.split(' ')[0]}-${run}`);
      results.push(await runTool(tool, 'fresh', run, emulator.url, out, useTime));
      // The same command again on the folder it just filled: what a resumed sync costs.
      if (run === 1) results.push(await runTool(tool, 'again', run, emulator.url, out, useTime));
      if (run < config.runs) await rm(out, { recursive: true, force: true });
    }
  }

  const rows = [['tool', 'copy', 'run', 'objects/s', 'wall s', 'peak RSS MB', 'CPU s', '']];
  for (const r of results) rows.push([r.tool, r.kind === 'fresh' ? 'fresh' : 'nothing new', String(r.run), fmt(r.objectsPerSecond), r.wallSeconds.toFixed(2), mb(r.peakRssBytes), r.cpuSeconds === null ? 'n/a' : r.cpuSeconds.toFixed(2), r.ok ? '' : 'FAILED']);
  say(table(rows));
  say('');

  const best = (name: ToolName): number | null => {
    const rates = results.filter((r) => r.tool === name && r.kind === 'fresh' && r.ok).map((r) => r.objectsPerSecond!);
    return rates.length ? Math.max(...rates) : null;
  };
  const cf = best('cloudfetch');
  const aws = best('aws s3 sync');
  const rclone = best('rclone copy');
  const ratio = (other: number | null): number | null => (cf !== null && other !== null ? cf / other : null);
  const verdict = (value: number | null, target: number): string => (value === null ? 'n/a' : value >= target ? 'met' : 'MISSED');
  say(table([
    ['best fresh copy', 'objects/s', 'MB/s', ''],
    ...(['cloudfetch', 'aws s3 sync', 'rclone copy'] as const).map((name) => {
      const rate = best(name);
      return [name, fmt(rate), rate === null ? '—' : fmt((rate * totalBytes) / images.length / 1e6, 1), ''];
    }),
  ]));
  say('');
  say(table([
    ['cloudfetch / aws s3 sync', ratio(aws) === null ? 'n/a' : `${ratio(aws)!.toFixed(1)}×`, `target ≥ ${TARGET_VS_AWS}×`, verdict(ratio(aws), TARGET_VS_AWS)],
    ['cloudfetch / rclone copy', ratio(rclone) === null ? 'n/a' : `${ratio(rclone)!.toFixed(2)}×`, `target ≥ ${TARGET_VS_RCLONE}×`, verdict(ratio(rclone), TARGET_VS_RCLONE)],
  ]));
  say('');
  say('Rates are objects / wall time of the whole process (start-up and listing included), best fresh run.');
  say('cloudfetch sync also writes <dir>/train.csv, the table of every image, from the index in the bucket.');
  for (const tool of tools) say(`${tool.name}: ${tool.command === process.execPath ? 'node' : tool.command} ${tool.args(emulator.url, 'DIR').map((a) => a.replace(ROOT + '/', '')).join(' ')}`);
  if (values.keep) say(`Kept: ${work}`);

  if (values.json) {
    process.stdout.write(JSON.stringify({
      benchmark: 'sync',
      config: { ...config, meanBytes: totalBytes / images.length, node: process.version, versions },
      results,
      best: { cloudfetch: cf, awsS3Sync: aws, rcloneCopy: rclone },
      ratios: { vsAwsS3Sync: ratio(aws), vsRclone: ratio(rclone) },
      targets: { vsAwsS3Sync: TARGET_VS_AWS, vsRclone: TARGET_VS_RCLONE },
    }, null, 2) + '\n');
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`bench:sync: ${error instanceof Error ? error.message : String(error)}\n`);
} finally {
  await cleanup();
}
process.exitCode = code;
