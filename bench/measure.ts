// What the benchmarks share: running one command the way a benchmark should (wall time around
// the whole process, peak memory from GNU time, output kept for the report when something goes
// wrong), the bench's server processes, where downloads go, and the tables printed.

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_USER_AGENT } from '../engine/fetch/fetcher.ts';

export const GNU_TIME = '/usr/bin/time';

export interface Measured {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  wallSeconds: number;
  /** Peak resident set size in bytes; null without GNU time. */
  peakRssBytes: number | null;
  /** User + system CPU time in seconds; null without GNU time. */
  cpuSeconds: number | null;
  stdout: string;
  stderr: string;
}

/** True when /usr/bin/time is GNU time (it understands -v); BSD/macOS time does not. */
export function hasGnuTime(): boolean {
  try {
    accessSync(GNU_TIME, constants.X_OK);
  } catch {
    return false;
  }
  const probe = spawnSync(GNU_TIME, ['-v', process.execPath, '-e', '0'], { encoding: 'utf8' });
  return probe.status === 0 && /Maximum resident set size/.test(probe.stderr);
}

/** The first line `command --version` prints, or null when the command cannot be run. */
export function versionOf(command: string, args: readonly string[] = ['--version']): string | null {
  const probe = spawnSync(command, args, { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return null;
  return probe.stdout.split('\n')[0]?.trim() || null;
}

/** Peak RSS (bytes) and user + system CPU seconds from a `/usr/bin/time -v` report. */
export function parseGnuTime(report: string): { peakRssBytes: number | null; cpuSeconds: number | null } {
  const kb = /Maximum resident set size \(kbytes\):\s*(\d+)/.exec(report)?.[1];
  const user = /User time \(seconds\):\s*([\d.]+)/.exec(report)?.[1];
  const system = /System time \(seconds\):\s*([\d.]+)/.exec(report)?.[1];
  return {
    peakRssBytes: kb ? Number(kb) * 1024 : null,
    cpuSeconds: user && system ? Number(user) + Number(system) : null,
  };
}

/** Children now running, so that an interrupted benchmark can end them (their whole group). */
const running = new Set<number>();

export function killRunning(): void {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}

const MAX_OUTPUT = 1 << 20;

/**
 * Runs `command args` (under GNU time when `timeFile` is given) in a process group of its own,
 * so that a timeout or an interrupt ends the tool and not only the `time` wrapper.
 */
export async function measure(
  command: string,
  args: readonly string[],
  options: { timeFile: string | null; timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<Measured> {
  const argv = options.timeFile ? [GNU_TIME, '-v', '-o', options.timeFile, command, ...args] : [command, ...args];
  const started = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd,
    ...(options.env ? { env: options.env } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid !== undefined) running.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    if (stdout.length < MAX_OUTPUT) stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    if (stderr.length < MAX_OUTPUT) stderr += text;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }, options.timeoutMs);
  const { exitCode, signal } = await new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) => resolve({ exitCode: code, signal: sig }));
  }).finally(() => {
    clearTimeout(timer);
    if (child.pid !== undefined) running.delete(child.pid);
  });
  const wallSeconds = (performance.now() - started) / 1000;
  let peakRssBytes: number | null = null;
  let cpuSeconds: number | null = null;
  if (options.timeFile) {
    const report = await readFile(options.timeFile, 'utf8').catch(() => '');
    await rm(options.timeFile, { force: true });
    ({ peakRssBytes, cpuSeconds } = parseGnuTime(report));
    // GNU time reports the tool's own exit status as "Exit status: N" and exits with it too.
  }
  return { exitCode, signal, timedOut, wallSeconds, peakRssBytes, cpuSeconds, stdout, stderr };
}

export interface ServerProcess {
  /** The first line the server printed: its URL or endpoint. */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts one of the bench's servers (origin-server.ts, emulator-server.ts) in a process of its
 * own (behind `prefix` when given) and waits for the URL it prints. Its stdin stays open: if this process dies without
 * stopping it, stdin ends and the server closes itself.
 */
export async function startServer(script: string, args: readonly string[] = [], prefix: readonly string[] = []): Promise<ServerProcess> {
  // `prefix`: a command that runs node in turn, as `ip netns exec NAME` does (bench/link.ts).
  const argv = [...prefix, process.execPath, script, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not start within 15 s`)), 15_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before listening`)));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline >= 0) {
        clearTimeout(timer);
        resolveUrl(text.slice(0, newline).trim());
      }
    });
  });
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/**
 * For the bench's server scripts: prints the URL on stdout, then closes on SIGTERM or SIGINT, or
 * when stdin ends (the parent went away without a signal).
 */
export function serveUntilStopped(url: string, close: () => Promise<void>): void {
  process.stdout.write(`${url}\n`);
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  return rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ').trimEnd()).join('\n');
}

const TMPFS_MAGIC = 0x01021994;

export function isTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/** A fresh working folder under --out-dir (made if missing), else under defaultOutBase(). */
export async function workFolder(outDir: string | undefined, prefix: string): Promise<string> {
  const base = outDir ? resolve(outDir) : defaultOutBase();
  await mkdir(base, { recursive: true });
  return mkdtemp(join(base, prefix));
}

/** /dev/shm when it is a writable tmpfs: the figures then measure the fetchers, not the disk. */
export function defaultOutBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
  } catch {
    return tmpdir();
  }
  return isTmpfs('/dev/shm') ? '/dev/shm' : tmpdir();
}

/**
 * aria2c as fast as it fairly goes against one host with N connections: N downloads at once,
 * one connection each, keep-alive on (the default), and nothing it would do per file that
 * cloudfetch does not (preallocation, renaming probes, console output).
 */
export const ARIA2C_FLAGS = (connections: number): string[] => [
  `--max-concurrent-downloads=${connections}`, // -j: N files at once…
  '--max-connection-per-server=1', // -x 1: …one connection each (a 20–40 KB file gains nothing from ranges)
  '--split=1', // -s 1: no range requests
  '--enable-http-keep-alive=true', // the default, stated: connections are reused across files
  '--enable-http-pipelining=false', // the default; pipelining measured twice as slow here
  '--http-accept-gzip=false', // the default; images are not compressed
  '--file-allocation=none', // no fallocate per file (the default is prealloc)
  '--auto-file-renaming=false', // no probing for name.1.jpg…
  '--allow-overwrite=true', // …nor refusing an existing file
  '--console-log-level=warn', // no line per finished download
  '--show-console-readout=false', // no progress readout (cloudfetch runs --quiet)
  '--summary-interval=0',
  '--download-result=hide',
  '--no-conf=true', // a user's ~/.aria2/aria2.conf must not change the figures
  '--no-netrc=true',
  `--user-agent=${DEFAULT_USER_AGENT}`, // the same User-Agent as cloudfetch
];
