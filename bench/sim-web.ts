// `cloudfetch run` against the simulated web (issue #12): a manifest of N entries over ~40 hosts
// where 3 hosts hold 60%, each host enforcing a limit, run by the CLI in a child (under GNU time
// for its peak RSS). Prints per host what the web saw, and against the polite ideal: images stored
// as a share of those the web gives a polite client, bans, requests above a host's limit, time to
// drain. Stored images are checked byte for byte (the index's sha256 against the host's bytes).
//
//   node bench/sim-web.ts [--entries 20000] [--hosts 40] [--seed 1] [-- <more run flags>]

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse } from 'csv-parse/sync';
import { manifestCsv, politeIdeal, simManifest, startSimWeb } from '../local-cloud/sim-web.ts';

const { values, positionals: runFlags } = parseArgs({
  allowPositionals: true,
  options: {
    entries: { type: 'string', default: '20000' },
    hosts: { type: 'string', default: '40' },
    seed: { type: 'string', default: '1' },
  },
});
const entryCount = Number(values.entries);
const hostCount = Number(values.hosts);
if (!Number.isSafeInteger(entryCount) || entryCount < 1 || !Number.isSafeInteger(hostCount) || hostCount < 4) {
  process.stderr.write('bench:sim-web: --entries ≥ 1 and --hosts ≥ 4, integers\n');
  process.exit(2);
}

const ROOT = new URL('..', import.meta.url).pathname;
const NODE = process.execPath;
const TIME = '/usr/bin/time';
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

const web = await startSimWeb({ seed: Number(values.seed), hosts: hostCount });
const work = await mkdtemp(join(tmpdir(), 'cloudfetch-sim-web-'));
try {
  const entries = simManifest(web, entryCount);
  const manifest = join(work, 'sim.csv');
  await writeFile(manifest, manifestCsv(entries));
  const out = join(work, 'out');
  const timeFile = join(work, 'time.txt');
  const cli = [join(ROOT, 'cli', 'cloudfetch.js'), 'run', manifest, '--out', out, '--allow-private-network', '--json', '--quiet', ...runFlags];
  const useTime = existsSync(TIME);
  const started = performance.now();
  const child = spawn(useTime ? TIME : NODE, useTime ? ['-v', '-o', timeFile, NODE, ...cli] : cli, { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0 && code !== 1) throw new Error(`cloudfetch run exited with ${code}`);
  const summary = JSON.parse(stdout) as { fetched: number; failed: number; failuresByReason: Record<string, number> };
  const peakRss = useTime ? Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(await readFile(timeFile, 'utf8'))?.[1]) * 1024 : null;

  // Every stored image checked against the bytes its host serves for its path.
  const rows = parse(await readFile(join(out, 'sim.csv')), { columns: true }) as Array<Record<string, string>>;
  const byId = new Map(entries.map((e) => [e.id, e]));
  let stored = 0;
  let placeholdersKept = 0;
  for (const row of rows) {
    if (row.status !== 'fetched') continue;
    const entry = byId.get(row.image_id!)!;
    const path = new URL(entry.url).pathname;
    const expected = createHash('sha256').update(web.hosts[entry.host]!.body(path)).digest('hex');
    if (row.sha256 !== expected) throw new Error(`${entry.id}: stored bytes differ from the host's`);
    if (entry.fate === 'placeholder') placeholdersKept++;
    else stored++;
  }
  if (rows.length !== entryCount) throw new Error(`the index has ${rows.length} rows for ${entryCount} entries`);

  const ideal = politeIdeal(web, entries);
  const reports = web.report();
  const perHost = web.hosts.map((_, h) => entries.filter((e) => e.host === h).length);
  const limitText = (h: number): string => {
    const limit = web.hosts[h]!.profile.limit;
    return limit.kind === 'concurrency' ? `${limit.max} at once` : `${limit.perSecond}/s`;
  };
  say(`cloudfetch run ${runFlags.join(' ') || '(defaults)'} — ${entryCount} entries over ${hostCount} hosts (seed ${values.seed}), 3 hosts hold 60%`);
  say();
  say('host  entries  limit       allowed/s  requests  peak  crossings  bans  403s');
  reports.forEach((r, h) => {
    if (h >= 6 && h < hostCount - 2 && r.bansTriggered === 0) return; // the small hosts: only the unusual ones
    say(
      `${String(h).padStart(4)}  ${String(perHost[h]).padStart(7)}  ${limitText(h).padEnd(10)}  ${web.hosts[h]!.allowedRate().toFixed(1).padStart(9)}  ` +
        `${String(r.requests).padStart(8)}  ${String(r.peakConcurrency).padStart(4)}  ${String(r.crossings).padStart(9)}  ${String(r.bansTriggered).padStart(4)}  ${String(r.refusedWhileBanned).padStart(4)}`,
    );
  });
  const sum = (pick: (r: (typeof reports)[number]) => number, from = 0): number => reports.slice(from).reduce((total, r) => total + pick(r), 0);
  say(`3–${hostCount - 1}  ${String(entryCount - perHost[0]! - perHost[1]! - perHost[2]!).padStart(7)}  ${'(small)'.padEnd(10)}  ${''.padStart(9)}  ${String(sum((r) => r.requests, 3)).padStart(8)}  ${String(Math.max(...reports.slice(3).map((r) => r.peakConcurrency))).padStart(4)}  ${String(sum((r) => r.crossings, 3)).padStart(9)}  ${String(sum((r) => r.bansTriggered, 3)).padStart(4)}  ${String(sum((r) => r.refusedWhileBanned, 3)).padStart(4)}`);
  say(`  all  ${String(entryCount).padStart(7)}  ${''.padEnd(10)}  ${''.padStart(9)}  ${String(sum((r) => r.requests)).padStart(8)}  ${''.padStart(4)}  ${String(sum((r) => r.crossings)).padStart(9)}  ${String(sum((r) => r.bansTriggered)).padStart(4)}  ${String(sum((r) => r.refusedWhileBanned)).padStart(4)}`);
  say();
  say(`images stored:            ${stored} of the ${ideal.images} a polite client gets (${((100 * stored) / ideal.images).toFixed(1)}%); placeholders kept as images: ${placeholdersKept}`);
  say(`bans triggered:           ${sum((r) => r.bansTriggered)} (on ${reports.filter((r) => r.bansTriggered > 0).length} hosts)`);
  say(`requests above a limit:   ${sum((r) => r.crossings)} (answered 429), and ${sum((r) => r.refusedWhileBanned)} refused while banned (403)`);
  say(`time to drain:            ${seconds.toFixed(1)} s; polite ideal ${ideal.sumSeconds.toFixed(1)} s (sum over hosts of entries ÷ allowed rate), ${ideal.maxHostSeconds.toFixed(1)} s (the slowest host, hosts in parallel)`);
  say(`failures by reason:       ${JSON.stringify(summary.failuresByReason)}`);
  say(`peak RSS of run:          ${peakRss === null ? 'unknown (GNU time missing)' : `${(peakRss / 2 ** 20).toFixed(0)} MiB`}`);
} finally {
  await web.close();
  await rm(work, { recursive: true, force: true });
}
