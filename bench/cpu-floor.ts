// CPU floor: how much CPU per image a Node client needs at all, against aria2c and `cloudfetch run`
// in the same run. The bare client (bench/bare-client.ts) is undici's request() on an Agent,
// bodies read and dropped: no files, no guard, no hashing, no index; "+ files" also writes each
// body to a file of its own, as aria2c does. If even it spends more CPU per image than aria2c (which
// writes every file), no Node client will match aria2c. "lean + files" is the leanest such client
// found (bare-client.ts --lean: dispatch() with its own handler, synchronous writes), the floor
// for cloudfetch's own way of fetching and writing. Each tool is its own process under GNU
// time; the runs alternate; every run is checked (every image answered, every file written).
//
//   node bench/cpu-floor.ts [--scenarios 64@1,256@50] [--urls 8000] [--runs 3] [--out-dir DIR] [--before TREE]
//
// --before TREE also runs `cloudfetch run` from another checkout (a git worktree of an older
// commit), alternating with the others: a change's before and after in the same run.
// A scenario is connections@origin latency in ms; images are 20–40 KiB, as in bench/fetch.ts.

import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ARIA2C_FLAGS, hasGnuTime, killRunning, measure, startServer, table, versionOf, workFolder, type Measured, type ServerProcess } from './measure.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'cli', 'cloudfetch.js');
const BARE = join(ROOT, 'bench', 'bare-client.ts');

const { values } = parseArgs({
  options: {
    scenarios: { type: 'string', default: '64@1,256@50' },
    urls: { type: 'string', default: '8000' },
    runs: { type: 'string', default: '3' },
    'out-dir': { type: 'string' },
    before: { type: 'string' },
  },
});
const scenarios = values.scenarios.split(',').map((s) => s.split('@').map(Number) as [number, number]);
const count = Number(values.urls);
const runs = Number(values.runs);
if (scenarios.some(([c, l]) => !Number.isSafeInteger(c) || c < 1 || !(l >= 0)) || !Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(runs) || runs < 1) {
  process.stderr.write('bench:cpu-floor: --scenarios takes connections@latency-ms pairs separated by commas (64@1,256@50); --urls and --runs whole numbers\n');
  process.exit(2);
}
const aria2c = versionOf('aria2c');
if (!hasGnuTime() || !aria2c) {
  process.stderr.write('bench:cpu-floor: needs GNU time (/usr/bin/time -v) and aria2c\n');
  process.exit(2);
}

let workDir: string | null = null;
const origins: ServerProcess[] = [];
process.on('exit', () => {
  killRunning();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void Promise.all(origins.map((o) => o.stop())).finally(() => process.exit(130)));

const sizeOf = (i: number): number => 20 * 1024 + ((i * 7919) % (20 * 1024));

type Tool = 'bare undici' | 'bare undici + files' | 'bare undici lean + files' | 'aria2c -i' | 'cloudfetch run' | 'cloudfetch run (before)';
const BEFORE_CLI = values.before ? join(resolve(values.before), 'cli', 'cloudfetch.js') : null;
const TOOLS: Tool[] = ['bare undici', 'bare undici + files', 'bare undici lean + files', 'aria2c -i', ...(BEFORE_CLI ? ['cloudfetch run (before)' as const] : []), 'cloudfetch run'];

async function runTool(tool: Tool, list: string, connections: number, count: number, totalBytes: number): Promise<{ result: Measured; problem: string | null }> {
  const timeFile = join(workDir!, 'time.txt');
  const options = { timeFile, timeoutMs: 600_000, cwd: ROOT };
  const out = join(workDir!, 'out');
  await rm(out, { recursive: true, force: true });
  await mkdir(out);
  const failed = (result: Measured): string | null => (result.exitCode !== 0 ? `exited with ${result.exitCode ?? result.signal}: ${result.stderr.trim().split('\n').slice(-2).join(' / ')}` : null);
  if (tool.startsWith('bare undici')) {
    const files = tool !== 'bare undici';
    const result = await measure(process.execPath, [BARE, list, String(connections), ...(files ? [out] : []), ...(tool === 'bare undici lean + files' ? ['--lean'] : [])], options);
    const got = failed(result) ? null : (JSON.parse(result.stdout) as { ok: number; bytes: number });
    const written = files ? (await readdir(out)).length : count;
    return { result, problem: failed(result) ?? (got!.ok !== count || got!.bytes !== totalBytes || written !== count ? `${got!.ok} answered, ${got!.bytes} bytes, ${written} files` : null) };
  }
  if (tool === 'aria2c -i') {
    const result = await measure('aria2c', ['--input-file', list, '--dir', out, ...ARIA2C_FLAGS(connections)], options);
    const files = (await readdir(out)).length;
    return { result, problem: failed(result) ?? (files !== count ? `${files} files` : null) };
  }
  const args = [tool === 'cloudfetch run (before)' ? BEFORE_CLI! : CLI, 'run', list, '--out', out, '--concurrency', String(connections), '--per-host', String(connections), '--allow-private-network', '--quiet', '--json'];
  const result = await measure(process.execPath, args, options);
  const fetched = failed(result) ? null : (JSON.parse(result.stdout) as { fetched: number; bytes: number });
  return { result, problem: failed(result) ?? (fetched!.fetched !== count || fetched!.bytes !== totalBytes ? `${fetched!.fetched} fetched, ${fetched!.bytes} bytes` : null) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  workDir = await workFolder(values['out-dir'], 'cloudfetch-floor-');
  process.stdout.write(`CPU floor: ${count} images of 20–40 KiB per run, ${runs} runs of each tool, alternating\n`);
  process.stdout.write(`node ${process.version} · ${aria2c} · ${availableParallelism()} CPUs (${cpus()[0]?.model.trim()})\n\n`);
  const rows: string[][] = [['connections @ latency', 'tool', 'CPU s / 1,000 (median)', 'range', 'start-up CPU s', 'less start-up', 'images/s (median)', 'peak RSS MB', '']];
  let problems = 0;
  for (const [connections, latency] of scenarios) {
    const origin = await startServer(join(ROOT, 'bench', 'origin-server.ts'), ['--latency', String(latency)]);
    origins.push(origin);
    const list = join(workDir, 'urls.txt');
    let totalBytes = 0;
    const lines: string[] = [];
    for (let i = 1; i <= count; i++) {
      lines.push(`${origin.url}/img/floor-${i}.jpg?size=${sizeOf(i)}`);
      totalBytes += sizeOf(i);
    }
    await writeFile(list, lines.join('\n') + '\n');
    // Start-up and shutdown, from a list of one image: what a short list pays on top.
    const one = join(workDir, 'one.txt');
    await writeFile(one, `${lines[0]}\n`);
    const startup = new Map<Tool, number>();
    for (const tool of TOOLS) {
      const { result, problem } = await runTool(tool, one, connections, 1, sizeOf(1));
      if (problem) throw new Error(`${tool} on one image: ${problem}`);
      startup.set(tool, result.cpuSeconds ?? NaN);
    }
    const seen = new Map<Tool, { cpu: number[]; rate: number[]; rss: number[]; problem: string | null }>(TOOLS.map((t) => [t, { cpu: [], rate: [], rss: [], problem: null }]));
    for (let run = 0; run < runs; run++) {
      for (const tool of TOOLS) {
        const { result, problem } = await runTool(tool, list, connections, count, totalBytes);
        const s = seen.get(tool)!;
        if (problem) s.problem = problem;
        s.cpu.push(((result.cpuSeconds ?? NaN) / count) * 1000);
        s.rate.push(count / result.wallSeconds);
        s.rss.push((result.peakRssBytes ?? NaN) / 1e6);
        process.stderr.write(`  ${connections}@${latency} ms ${tool}: CPU ${result.cpuSeconds?.toFixed(2)} s, ${result.wallSeconds.toFixed(1)} s${problem ? ` FAILED: ${problem}` : ''}\n`);
      }
    }
    await origin.stop();
    for (const [tool, s] of seen) {
      if (s.problem) problems++;
      const cpu = median(s.cpu);
      const start = startup.get(tool)!;
      rows.push([`${connections} @ ${latency} ms`, tool, cpu.toFixed(2), `${Math.min(...s.cpu).toFixed(2)}–${Math.max(...s.cpu).toFixed(2)}`, start.toFixed(2), (cpu - (start / count) * 1000).toFixed(2), median(s.rate).toFixed(0), median(s.rss).toFixed(0), s.problem ? `FAILED: ${s.problem}` : '']);
    }
  }
  process.stdout.write(table(rows) + '\n');
  if (problems > 0) process.exitCode = 1;
}

try {
  await main();
} finally {
  killRunning();
  await Promise.all(origins.map((o) => o.stop()));
  if (workDir) await rm(workDir, { recursive: true, force: true });
  workDir = null;
}
