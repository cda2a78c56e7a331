// Sync over a long, lossy link: the emulated bucket (fauxqs) in one network namespace, the tools in
// another, and between them a namespace where bench/link-relay.py forwards every frame with a
// one-way delay, random loss and a rate limit (the kernel here has no sch_netem). Each tool copies
// the bucket into a fresh folder on tmpfs in the same run; every copy is checked byte for byte.
// Needs root and `ip` (iproute2) and python3: without them it says so in one line and skips.
//
//   npm run bench:link -- [--objects 2000] [--kb 30] [--mbit 50] [--rtt-ms 150] [--loss 0.01]
//                         [--runs 1] [--tools "cloudfetch,cloudfetch:-c 128,rclone,aws"]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { EMULATOR_CREDENTIALS } from '../local-cloud/emulator.ts';
import { defaultOutBase, hasGnuTime, killRunning, measure, startServer, table, versionOf, type ServerProcess } from './measure.ts';
import { report } from './sync-trace.ts';
import { REGION, ROOT, TOOL_ENV, awsS3Sync, benchImages, cloudfetchSync, fillBucket, packBucket, rcloneCopy, verifyCopy, type Tool } from './sync-bucket.ts';

const RELAY = join(ROOT, 'bench', 'link-relay.py');
const EMULATOR_SERVER = join(ROOT, 'bench', 'emulator-server.ts');
const CLOUD_ADDRESS = '10.77.0.1';
// The tools and the emulator run ahead of other work on the machine (the relay further ahead):
// the link is what is measured, and a CPU shared with other work would hide it.
const AHEAD = ['-n', '-10'];
const HOME_ADDRESS = '10.77.0.2';

const USAGE = `usage: node bench/link.ts [options]   (as root)
  --objects N            objects in the bucket (default 2000)
  --kb K                 size of each, KiB (default 30)
  --mbit M               the link's rate each way, Mbit/s (default 50)
  --rtt-ms T             round trip, ms (default 150)
  --loss P               share of IP packets lost each way (default 0.01)
  --queue-ms Q           the bottleneck's drop-tail queue, ms of the rate (default 100)
  --runs N               copies by each tool (default 1)
  --tools LIST           of cloudfetch, rclone, rclone-defaults, aws (default cloudfetch,rclone,aws);
                         rclone:N runs rclone with N transfers and checkers (64 for rclone),
                         cloudfetch:FLAGS runs cloudfetch sync with these flags too (space-separated),
                         cloudfetch@DIR the sync of another copy of the tree (before and after a change)
  --timeout S            longest one tool run may take, s (default 900)
  --pack-mib M           also pack the bucket into shards of M MiB (cloudfetch pack), for cloudfetch:--packed
  --json                 the results as JSON on stdout (the table goes to stderr)
  --trace DIR            keep a timeline of each cloudfetch run in DIR (bench/sync-trace.ts) and print it;
                         rclone runs log each copied file there: when the first came, from launch`;

function fail(message: string): never {
  process.stderr.write(`bench:link: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values: ReturnType<typeof parse>['values'];
function parse() {
  return parseArgs({
    options: {
      objects: { type: 'string', default: '2000' },
      kb: { type: 'string', default: '30' },
      mbit: { type: 'string', default: '50' },
      'rtt-ms': { type: 'string', default: '150' },
      loss: { type: 'string', default: '0.01' },
      'queue-ms': { type: 'string', default: '100' },
      runs: { type: 'string', default: '1' },
      tools: { type: 'string', default: 'cloudfetch,rclone,aws' },
      timeout: { type: 'string', default: '900' },
      'pack-mib': { type: 'string' },
      json: { type: 'boolean', default: false },
      trace: { type: 'string' },
      // Internal: fill the bucket at this endpoint (run inside the cloud's namespace).
      fill: { type: 'string' },
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
function num(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max) fail(`--${name} takes a number from ${min} to ${max}, not "${text}"`);
  return n;
}
const config = {
  objects: Math.round(num('objects', values.objects, 1, 1_000_000)),
  bytes: Math.round(num('kb', values.kb, 1, 1_000_000) * 1024),
  mbit: num('mbit', values.mbit, 0.1, 10_000),
  rttMs: num('rtt-ms', values['rtt-ms'], 0, 10_000),
  loss: num('loss', values.loss, 0, 0.5),
  queueMs: num('queue-ms', values['queue-ms'], 1, 10_000),
  runs: Math.round(num('runs', values.runs, 1, 20)),
  timeoutMs: num('timeout', values.timeout, 1, 86_400) * 1000,
};
const images = benchImages(config.objects, config.bytes, config.bytes);
const totalBytes = config.objects * config.bytes;

if (values.fill) {
  const s3 = new S3Client({ endpoint: values.fill, region: REGION, credentials: EMULATOR_CREDENTIALS, forcePathStyle: true });
  await fillBucket(s3, images);
  if (values['pack-mib']) await packBucket(s3, Math.round(num('pack-mib', values['pack-mib'], 1, 4096) * 1024 * 1024));
  s3.destroy();
  process.exit(0);
}

const say = (text = ''): void => void (values.json ? process.stderr : process.stdout).write(text + '\n');

const TOOLS: Record<string, Tool> = {
  cloudfetch: cloudfetchSync('cloudfetch sync'),
  rclone: rcloneCopy('rclone copy --transfers 64', ['--transfers', '64', '--checkers', '64']),
  'rclone-defaults': rcloneCopy('rclone copy (defaults)', []),
  aws: awsS3Sync,
};
// cloudfetch@DIR: the sync of another copy of the tree (DIR/cli/cloudfetch.js), to bench a change
// before and after in the same run.
function otherTree(dir: string): Tool {
  const tool = cloudfetchSync(`cloudfetch sync (${dir})`);
  const cli = join(ROOT, 'cli', 'cloudfetch.js');
  return { ...tool, args: (endpoint, out) => tool.args(endpoint, out).map((a) => (a === cli ? join(dir, 'cli', 'cloudfetch.js') : a)) };
}
const chosen = values.tools.split(',').map((t) => t.trim()).filter(Boolean);
for (const name of chosen) {
  if (name.startsWith('cloudfetch:')) TOOLS[name] = cloudfetchSync(`cloudfetch sync ${name.slice(11).trim()}`, name.slice(11).split(' ').filter(Boolean));
  else if (name.startsWith('cloudfetch@')) TOOLS[name] = otherTree(name.slice(11));
  else if (/^rclone:\d+$/.test(name)) TOOLS[name] = rcloneCopy(`rclone copy --transfers ${name.slice(7)}`, ['--transfers', name.slice(7), '--checkers', name.slice(7)]);
  else if (!TOOLS[name]) fail(`--tools: unknown tool "${name}" (${Object.keys(TOOLS).join(', ')}, cloudfetch:FLAGS, cloudfetch@DIR, rclone:N)`);
}

// ---------------------------------------------------------------------------------------------
// The link: three namespaces, two veth pairs, the relay in the middle one.

function missing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'needs `ip` (Debian: apt-get install iproute2)';
  if (spawnSync('python3', ['-c', '0']).status !== 0) return 'needs python3 (the relay)';
  return null;
}

const tag = `cfl${process.pid % 100_000}`;
const ns = { cloud: `${tag}-cloud`, mid: `${tag}-mid`, home: `${tag}-home` };
const dev = { cloud: `${tag}c0`, cloudMid: `${tag}c1`, home: `${tag}h0`, homeMid: `${tag}h1` };

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
}

let linkMade = false;
function linkUp(): void {
  linkMade = true;
  for (const name of Object.values(ns)) ip('netns', 'add', name);
  ip('link', 'add', dev.cloud, 'type', 'veth', 'peer', 'name', dev.cloudMid);
  ip('link', 'set', dev.cloud, 'netns', ns.cloud);
  ip('link', 'set', dev.cloudMid, 'netns', ns.mid);
  ip('link', 'add', dev.home, 'type', 'veth', 'peer', 'name', dev.homeMid);
  ip('link', 'set', dev.home, 'netns', ns.home);
  ip('link', 'set', dev.homeMid, 'netns', ns.mid);
  ip('-n', ns.cloud, 'addr', 'add', `${CLOUD_ADDRESS}/24`, 'dev', dev.cloud);
  ip('-n', ns.home, 'addr', 'add', `${HOME_ADDRESS}/24`, 'dev', dev.home);
  for (const [name, device] of [[ns.cloud, dev.cloud], [ns.home, dev.home], [ns.mid, dev.cloudMid], [ns.mid, dev.homeMid]] as const) {
    ip('-n', name, 'link', 'set', device, 'up');
  }
  for (const name of Object.values(ns)) ip('-n', name, 'link', 'set', 'lo', 'up');
  for (const [name, device] of [[ns.cloud, dev.cloud], [ns.home, dev.home]] as const) {
    const r = spawnSync('ip', ['netns', 'exec', name, 'python3', RELAY, 'no-offload', device], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`turning offloads off on ${device}: ${r.stderr.trim()}`);
  }
}

/** Removes every namespace (and with them the veths) and stray veth this run made. Synchronous, so it also runs on exit. */
function linkDown(): void {
  if (!linkMade) return;
  for (const name of Object.values(ns)) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  for (const device of [dev.cloud, dev.home]) spawnSync('ip', ['link', 'del', device], { stdio: 'ignore' });
}

interface Counters { frames: number; bytes: number; lost: number; queue_drops: number }
interface Snapshot { a_to_b: Counters; b_to_a: Counters }

class Relay {
  #child: ChildProcess;
  #lines: AsyncIterator<string>;
  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }
  static async start(): Promise<Relay> {
    const oneWay = String(config.rttMs / 2);
    // Ahead of other work in the CPU queue: on a busy machine a starved relay would be a slower,
    // jittery link, whichever tool runs.
    const child = spawn('nice', ['-n', '-15', 'ip', 'netns', 'exec', ns.mid, 'python3', RELAY, dev.cloudMid, dev.homeMid,
      '--mbit', String(config.mbit), '--delay-ms', oneWay, '--loss', String(config.loss), '--queue-ms', String(config.queueMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const relay = new Relay(child);
    const first = await relay.#lines.next();
    if (first.done || first.value !== 'ready') throw new Error('the link relay did not start');
    return relay;
  }
  get pid(): number | undefined {
    return this.#child.pid;
  }
  async snapshot(): Promise<Snapshot> {
    this.#child.kill('SIGUSR1');
    const line = await this.#lines.next();
    if (line.done) throw new Error('the link relay ended');
    return JSON.parse(line.value) as Snapshot;
  }
  /** Ends the relay (and waits for it, up to 3 s, so that the namespaces go after it). */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((done) => this.#child.once('exit', done));
    this.#child.kill('SIGTERM');
    await Promise.race([exited, new Promise((done) => setTimeout(done, 3000).unref())]);
  }
  /** For the exit handler, which cannot wait. */
  kill(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  tool: string;
  run: number;
  ok: boolean;
  problem?: string;
  wallSeconds: number;
  objectsPerSecond: number | null;
  megabytesPerSecond: number | null;
  /** Payload bytes per second over the link's rate. */
  linkUse: number | null;
  cpuSeconds: number | null;
  peakRssBytes: number | null;
  /** Frames cloud → home lost on purpose, and dropped by the full queue, during the run. */
  lost: number;
  queueDrops: number;
}

let relay: Relay | null = null;
let emulator: ServerProcess | null = null;
let work: string | null = null;
let cleaned = false;

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  killRunning();
  await relay?.stop();
  await emulator?.stop().catch(() => {});
  linkDown();
  if (work) await rm(work, { recursive: true, force: true });
}
process.once('exit', () => {
  // Last resort (an exception past main): no namespace, veth or child outlives the bench.
  killRunning();
  relay?.kill();
  linkDown();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench:link: ${signal}, cleaning up…\n`);
    cleanup().finally(() => process.exit(130));
  });
}

const fmt = (n: number | null, digits = 0): string => (n === null ? '—' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/** When rclone logged its files copied ("2026/12/02 08:50:01.123456 INFO  : x.jpg: Copied (new)", UTC), in s from launch. */
function copiedTimes(log: string, launched: number): string {
  const times: number[] = [];
  for (const m of log.matchAll(/^(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) INFO.*: Copied/gm)) {
    const [, y, mo, d, h, mi, sec, us] = m.map(Number) as number[];
    times.push(Date.UTC(y!, mo! - 1, d!, h!, mi!, sec!) + us! / 1000 - launched);
  }
  if (times.length === 0) return 'no copied file in its log';
  times.sort((a, b) => a - b);
  const at = (q: number): string => (times[Math.min(times.length - 1, Math.floor(q * times.length))]! / 1000).toFixed(2);
  return `${times.length} files logged copied; from launch, first ${at(0)} s, 10% ${at(0.1)}, 50% ${at(0.5)}, 90% ${at(0.9)}, 99% ${at(0.99)}, last ${at(1)} s`;
}

async function runTool(tool: Tool, run: number, endpoint: string, useTime: boolean): Promise<RunResult> {
  const out = join(work!, `${tool.name.replace(/[^a-z0-9]+/gi, '-')}-${run}`);
  await mkdir(out, { recursive: true });
  // A cloudfetch run traced: its requests' timeline (bench/sync-trace.ts) kept in --trace DIR.
  const traced = values.trace && tool.command === process.execPath ? join(values.trace, `${tool.name.replace(/[^a-z0-9]+/gi, '-')}-${run}.json`) : null;
  // An rclone run traced: its log of each copied file, with microseconds, in --trace DIR.
  const rcloneLog = values.trace && tool.command === 'rclone' ? join(values.trace, `${tool.name.replace(/[^a-z0-9]+/gi, '-')}-${run}.log`) : null;
  const args = traced ? ['--import', join(ROOT, 'bench', 'sync-trace.ts'), ...tool.args(endpoint, out)]
    : rcloneLog ? [...tool.args(endpoint, out), '--log-level', 'INFO', '--log-format', 'date,time,microseconds,UTC', '--log-file', rcloneLog]
    : tool.args(endpoint, out);
  const before = await relay!.snapshot();
  const launched = Date.now();
  const result = await measure('nice', [...AHEAD, 'ip', 'netns', 'exec', ns.home, tool.command, ...args], {
    timeFile: useTime ? join(work!, 'time.txt') : null,
    timeoutMs: config.timeoutMs,
    cwd: work!,
    env: traced ? { ...TOOL_ENV, SYNC_TRACE: traced } : TOOL_ENV,
  });
  if (traced) say(`${tool.name} run ${run}, timeline:\n${report(JSON.parse(await readFile(traced, 'utf8')), launched)}`);
  if (rcloneLog) say(`${tool.name} run ${run}: ${copiedTimes(await readFile(rcloneLog, 'utf8').catch(() => ''), launched)}`);
  const after = await relay!.snapshot();
  let problem: string | null = null;
  if (result.timedOut) problem = `timed out after ${config.timeoutMs / 1000} s`;
  else if (result.exitCode !== 0) problem = `exited with ${result.exitCode ?? result.signal}: ${(result.stderr.trim() || result.stdout.trim()).split('\n').slice(-3).join(' / ')}`;
  problem ??= await verifyCopy(tool.imagesDir(out), images);
  if (problem) process.stderr.write(`bench:link: ${tool.name} (run ${run}) failed: ${problem}\n`);
  await rm(out, { recursive: true, force: true });
  const rate = totalBytes / result.wallSeconds;
  return {
    tool: tool.name, run, ok: problem === null, ...(problem ? { problem } : {}),
    wallSeconds: result.wallSeconds,
    objectsPerSecond: problem === null ? config.objects / result.wallSeconds : null,
    megabytesPerSecond: problem === null ? rate / 1e6 : null,
    linkUse: problem === null ? (rate * 8) / (config.mbit * 1e6) : null,
    cpuSeconds: result.cpuSeconds,
    peakRssBytes: result.peakRssBytes,
    lost: after.a_to_b.lost - before.a_to_b.lost,
    queueDrops: after.a_to_b.queue_drops - before.a_to_b.queue_drops,
  };
}

async function main(): Promise<number> {
  const useTime = hasGnuTime();
  const tools = chosen.map((name) => TOOLS[name]!).filter((tool) => {
    if (tool.command === process.execPath || versionOf(tool.command, tool.command === 'rclone' ? ['version'] : ['--version'])) return true;
    process.stderr.write(`bench:link: ${tool.command} is not installed: ${tool.name} is SKIPPED\n`);
    return false;
  });
  linkUp();
  relay = await Relay.start();
  emulator = await startServer(EMULATOR_SERVER, ['--host', CLOUD_ADDRESS], ['nice', ...AHEAD, 'ip', 'netns', 'exec', ns.cloud]);
  const fill = spawnSync('ip', ['netns', 'exec', ns.cloud, process.execPath, join(ROOT, 'bench', 'link.ts'), '--fill', emulator.url, '--objects', String(config.objects), '--kb', String(config.bytes / 1024), ...(values['pack-mib'] ? ['--pack-mib', values['pack-mib']] : [])], { encoding: 'utf8' });
  if (fill.status !== 0) throw new Error(`filling the bucket: ${fill.stderr.trim()}`);
  if (values.trace) await mkdir(values.trace, { recursive: true });
  work = await mkdtemp(join(defaultOutBase(), 'cloudfetch-bench-link-'));

  say(`Sync over a simulated link: ${fmt(config.objects)} objects × ${fmt(config.bytes / 1024, 0)} KiB (${fmt(totalBytes / 1e6, 1)} MB), ` +
    `${config.mbit} Mbit/s each way, ${config.rttMs} ms round trip, ${config.loss * 100}% loss each way, ${config.queueMs} ms queue`);
  say(`emulator (fauxqs) at ${emulator.url} in namespace ${ns.cloud}; tools in ${ns.home}; relay in ${ns.mid}; downloads to ${work}`);
  say(`node ${process.version} · rclone: ${versionOf('rclone', ['version']) ?? '—'} · aws: ${versionOf('aws') ?? '—'}`);
  say('');

  const results: RunResult[] = [];
  for (let run = 1; run <= config.runs; run++) {
    const order = tools.map((_, i) => tools[(i + run - 1) % tools.length]!);
    for (const tool of order) {
      const r = await runTool(tool, run, emulator.url, useTime);
      results.push(r);
      say(`  ${r.tool} run ${run}: ${r.ok ? `${fmt(r.objectsPerSecond)} objects/s` : 'FAILED'} in ${r.wallSeconds.toFixed(1)} s`);
    }
  }
  say('');
  const rows = [['tool', 'run', 'objects/s', 'MB/s', 'link use', 'wall s', 'CPU s', 'peak RSS MB', 'lost', 'queue drops', '']];
  for (const r of results) {
    rows.push([r.tool, String(r.run), fmt(r.objectsPerSecond), fmt(r.megabytesPerSecond, 2), r.linkUse === null ? '—' : `${(r.linkUse * 100).toFixed(0)}%`,
      r.wallSeconds.toFixed(1), r.cpuSeconds === null ? 'n/a' : r.cpuSeconds.toFixed(1), r.peakRssBytes === null ? 'n/a' : fmt(r.peakRssBytes / 1e6), fmt(r.lost), fmt(r.queueDrops), r.ok ? '' : 'FAILED']);
  }
  say(table(rows));
  say('');
  say('objects/s and MB/s: the whole process (start-up and listing included). Link use: payload bytes per second over the');
  say(`link's ${config.mbit} Mbit/s (frame headers and retransmissions are on top). Lost / queue drops: frames cloud → home during the run.`);
  for (const tool of tools) say(`${tool.name}: ${tool.command === process.execPath ? 'node' : tool.command} ${tool.args(emulator.url, 'DIR').map((a) => a.replace(ROOT + '/', '')).join(' ')}`);
  if (values.json) process.stdout.write(JSON.stringify({ benchmark: 'link', config, results }, null, 2) + '\n');
  return results.every((r) => r.ok) ? 0 : 1;
}

const lacking = missing();
if (lacking) {
  process.stdout.write(`bench:link: ${lacking}: SKIPPED\n`);
  process.exit(0);
}
let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`bench:link: ${error instanceof Error ? error.message : String(error)}\n`);
} finally {
  await cleanup();
}
process.exitCode = code;
