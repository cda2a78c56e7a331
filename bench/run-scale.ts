// Scale benchmark: `cloudfetch run` and `aria2c -i` on URL lists of 10k to 1M small images
// from a 0 ms loopback origin (in its own process), then cloudfetch again over its finished output
// (everything skipped). Prints images/s, CPU seconds per 1,000 images and peak RSS of each: memory
// that grows with the manifest shows here. Each run is checked: the summary and the index count
// every entry, and the folder holds one file per URL.
//
//   npm run bench:scale -- [--sizes 10000,100000,200000,1000000] [--connections 64] [--aria2c-max 200000]
//                          [--node-options FLAGS] [--out-dir DIR] [--timeout 1200]
//
// --node-options: NODE_OPTIONS for cloudfetch, e.g. --max-semi-space-size=64 for V8's default young
// generation (the launcher starts `run` with 16 unless a size is given).

import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { createWriteStream, rmSync } from 'node:fs';
import { once } from 'node:events';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ARIA2C_FLAGS, hasGnuTime, killRunning, measure, startServer, table, versionOf, workFolder, type Measured, type ServerProcess } from './measure.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'cli', 'cloudfetch.js');

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000,200000,1000000' },
    connections: { type: 'string', default: '64' },
    // aria2c keeps every download of its list in memory (2.3 GB at 200k): beyond this it is not run.
    'aria2c-max': { type: 'string', default: '200000' },
    'node-options': { type: 'string' },
    'out-dir': { type: 'string' },
    timeout: { type: 'string', default: '1200' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const connections = Number(values.connections);
const aria2cMax = Number(values['aria2c-max']);
const timeoutMs = Number(values.timeout) * 1000;
if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1) || !(connections >= 1) || !(aria2cMax >= 0) || !(timeoutMs > 0)) {
  process.stderr.write('bench:scale: --sizes takes whole numbers separated by commas; --connections, --aria2c-max and --timeout numbers\n');
  process.exit(2);
}
if (!hasGnuTime()) {
  process.stderr.write('bench:scale: needs GNU time (/usr/bin/time -v) for peak RSS and CPU: sudo apt-get install time\n');
  process.exit(2);
}
const aria2c = versionOf('aria2c');
const nodeOptions = values['node-options'];
const cloudfetchEnv = nodeOptions ? { ...process.env, NODE_OPTIONS: nodeOptions } : process.env;

let workDir: string | null = null;
// Set in main(); a box, so the cleanup below sees what main() put there.
const origin: { server: ServerProcess | null } = { server: null };
process.on('exit', () => {
  killRunning();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void origin.server?.stop().finally(() => process.exit(130)));

/** Small images (1–2 KiB), so the figures measure per-image work, not bytes. */
const sizeOf = (i: number): number => 1024 + ((i * 7919) % 1024);

async function writeList(file: string, base: string, count: number): Promise<void> {
  const out = createWriteStream(file);
  let chunk = '';
  for (let i = 1; i <= count; i++) {
    chunk += `${base}/img/img-${i}.jpg?size=${sizeOf(i)}\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}

interface Row {
  tool: string;
  entries: number;
  result: Measured;
  problem: string | null;
}

async function countFiles(dir: string): Promise<number> {
  return (await readdir(dir).catch(() => [] as string[])).length;
}

async function checkCloudfetch(result: Measured, out: string, count: number, status: 'fetched' | 'skipped'): Promise<string | null> {
  if (result.exitCode !== 0) return `exited with ${result.exitCode ?? result.signal}: ${result.stderr.trim().split('\n').slice(-3).join(' / ')}`;
  const summary = JSON.parse(result.stdout) as Record<string, number>;
  if (summary[status] !== count) return `the summary says ${summary[status]} ${status} of ${count}`;
  const index = await readFile(join(out, 'urls.csv'), 'utf8');
  const rows = index.split('\n').length - 2;
  if (rows !== count) return `the index has ${rows} rows`;
  // Rows in manifest order: the ids are the line numbers 1..count.
  let expected = 1;
  for (const line of index.split('\n').slice(1, -1)) if (!line.startsWith(`${expected++},`)) return `index row ${expected - 1} is out of order`;
  const files = await countFiles(join(out, 'urls'));
  return files === count ? null : `${files} files in the folder`;
}

async function main(): Promise<void> {
  workDir = await workFolder(values['out-dir'], 'cloudfetch-scale-');
  const base = dirname(workDir);
  const server = await startServer(join(ROOT, 'bench', 'origin-server.ts'), ['--latency', '0']);
  origin.server = server;
  const rows: Row[] = [];
  process.stdout.write(`Scale benchmark: small images (1–2 KiB) from a 0 ms loopback origin, ${connections} connections, downloads in ${base}${nodeOptions ? `, cloudfetch with NODE_OPTIONS=${nodeOptions}` : ''}\n`);
  process.stdout.write(`node ${process.version} · ${aria2c ?? 'aria2c not installed'} · ${availableParallelism()} CPUs (${cpus()[0]?.model.trim()}) · ${(totalmem() / 2 ** 30).toFixed(0)} GiB\n\n`);
  for (const count of sizes) {
    const list = join(workDir, 'urls.txt');
    await writeList(list, server.url, count);
    const out = join(workDir, 'cloudfetch');
    const args = [CLI, 'run', list, '--out', out, '--concurrency', String(connections), '--per-host', String(connections), '--allow-private-network', '--quiet', '--json'];
    const timeFile = join(workDir, 'time.txt');
    const first = await measure(process.execPath, args, { timeFile, timeoutMs, cwd: ROOT, env: cloudfetchEnv });
    rows.push({ tool: 'cloudfetch run', entries: count, result: first, problem: await checkCloudfetch(first, out, count, 'fetched') });
    report(rows.at(-1)!);
    const again = await measure(process.execPath, args, { timeFile, timeoutMs, cwd: ROOT, env: cloudfetchEnv });
    rows.push({ tool: 'cloudfetch re-run (all skipped)', entries: count, result: again, problem: await checkCloudfetch(again, out, count, 'skipped') });
    report(rows.at(-1)!);
    await rm(out, { recursive: true, force: true });
    if (aria2c && count <= aria2cMax) {
      const dir = join(workDir, 'aria2c');
      await mkdir(dir);
      const result = await measure('aria2c', ['--input-file', list, '--dir', dir, ...ARIA2C_FLAGS(connections)], { timeFile, timeoutMs, cwd: ROOT });
      const files = await countFiles(dir);
      const problem = result.exitCode !== 0 ? `exited with ${result.exitCode ?? result.signal}` : files !== count ? `${files} files in the folder` : null;
      rows.push({ tool: 'aria2c -i', entries: count, result, problem });
      report(rows.at(-1)!);
      await rm(dir, { recursive: true, force: true });
    }
  }
  process.stdout.write('\n' + table([
    ['tool', 'entries', 'images/s', 'wall s', 'CPU s / 1,000', 'peak RSS MB', ''],
    ...rows.map(({ tool, entries, result, problem }) => [
      tool,
      entries.toLocaleString('en-US'),
      problem ? '—' : Math.round(entries / result.wallSeconds).toLocaleString('en-US'),
      result.wallSeconds.toFixed(1),
      result.cpuSeconds === null ? 'n/a' : ((result.cpuSeconds / entries) * 1000).toFixed(3),
      result.peakRssBytes === null ? 'n/a' : (result.peakRssBytes / 1e6).toFixed(0),
      problem ? `FAILED: ${problem}` : '',
    ]),
  ]) + '\n');
  if (rows.some((row) => row.problem)) process.exitCode = 1;
}

function report({ tool, entries, result, problem }: Row): void {
  process.stderr.write(`  ${tool} ${entries}: ${result.wallSeconds.toFixed(1)} s, ${((result.peakRssBytes ?? 0) / 1e6).toFixed(0)} MB, CPU ${result.cpuSeconds?.toFixed(1)} s${problem ? ` FAILED: ${problem}` : ''}\n`);
}

try {
  await main();
} finally {
  killRunning();
  await origin.server?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  workDir = null;
}
