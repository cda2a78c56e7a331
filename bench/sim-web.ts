// `cloudfetch run` against the simulated web (issue #12): a manifest of N entries over ~40 hosts
// where 3 hosts hold 60%, each host enforcing a limit, run by the CLI in a child (under GNU time
// for its peak RSS). Prints per host what the web saw, and against the polite ideal: images stored
// as a share of those the web gives a polite client, bans, requests above a host's limit, time to
// drain. Stored images are checked byte for byte (the index's sha256 against the host's bytes).
// --outage: host 0 (a big host) goes down mid-run, at its 1,000th request: a 30 s ban (403 to
// everything) or a 60 s Retry-After, not the client's doing; the other hosts should keep going.
// --trace <dir>: <dir>/web.txt has every request's arrival as the web judged it (ms epoch, host,
// origin, verdict) and <dir>/gate.txt the run's gate (CLOUDFETCH_GATE_TRACE): grants, answers,
// lessons; bench/sim-web-trace.ts sets them side by side.
//
//   node bench/sim-web.ts [--entries 20000] [--hosts 40] [--seed 1] [--outage ban|retry-after] [--trace <dir>] [-- <more run flags>]

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse } from 'csv-parse/sync';
import { manifestCsv, simManifest, startSimWeb, type HostProfile } from '../local-cloud/sim-web.ts';
import { checkStored, simWebReport } from './sim-web-report.ts';

const { values, positionals: runFlags } = parseArgs({
  allowPositionals: true,
  options: {
    entries: { type: 'string', default: '20000' },
    hosts: { type: 'string', default: '40' },
    seed: { type: 'string', default: '1' },
    outage: { type: 'string' },
    trace: { type: 'string' },
  },
});
const entryCount = Number(values.entries);
const hostCount = Number(values.hosts);
if (!Number.isSafeInteger(entryCount) || entryCount < 1 || !Number.isSafeInteger(hostCount) || hostCount < 4) {
  process.stderr.write('bench:sim-web: --entries ≥ 1 and --hosts ≥ 4, integers\n');
  process.exit(2);
}
const outageKind = values.outage;
if (outageKind !== undefined && outageKind !== 'ban' && outageKind !== 'retry-after') {
  process.stderr.write('bench:sim-web: --outage ban or --outage retry-after\n');
  process.exit(2);
}
const OUTAGE: HostProfile['outage'] = outageKind === 'ban' || outageKind === 'retry-after' ? { afterRequests: 1000, kind: outageKind, seconds: outageKind === 'ban' ? 30 : 60 } : undefined;

const ROOT = new URL('..', import.meta.url).pathname;
const NODE = process.execPath;
const TIME = '/usr/bin/time';
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

const traceDir = values.trace;
if (traceDir) mkdirSync(traceDir, { recursive: true });
const webTrace = traceDir ? openSync(join(traceDir, 'web.txt'), 'w') : null;
let hostUrls: string[] = [];
const web = await startSimWeb({
  seed: Number(values.seed),
  hosts: hostCount,
  ...(OUTAGE ? { adjust: (p, i) => (i === 0 ? { ...p, outage: OUTAGE } : p) } : {}),
  ...(webTrace !== null ? { onArrival: (host: number, at: number, verdict: string) => void writeSync(webTrace, `${at} ${host} ${hostUrls[host]} ${verdict}\n`) } : {}),
});
hostUrls = web.hosts.map((h) => h.url);
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
  const env = traceDir ? { ...process.env, CLOUDFETCH_GATE_TRACE: join(traceDir, 'gate.txt') } : process.env;
  const child = spawn(useTime ? TIME : NODE, useTime ? ['-v', '-o', timeFile, NODE, ...cli] : cli, { stdio: ['ignore', 'pipe', 'inherit'], env });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0 && code !== 1) throw new Error(`cloudfetch run exited with ${code}`);
  const summary = JSON.parse(stdout) as { fetched: number; failed: number; failuresByReason: Record<string, number> };
  const peakRss = useTime ? Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(await readFile(timeFile, 'utf8'))?.[1]) * 1024 : null;

  // Every stored image checked against the bytes its host serves for its path.
  const rows = parse(await readFile(join(out, 'sim.csv')), { columns: true }) as Array<Record<string, string>>;
  if (rows.length !== entryCount) throw new Error(`the index has ${rows.length} rows for ${entryCount} entries`);
  const stored = checkStored(web, entries, rows.filter((row) => row.status === 'fetched').map((row) => ({ id: row.image_id!, sha256: row.sha256 })));
  say(`cloudfetch run ${runFlags.join(' ') || '(defaults)'} — ${entryCount} entries over ${hostCount} hosts (seed ${values.seed}), 3 hosts hold 60%${OUTAGE ? `; host 0: a ${OUTAGE.seconds} s ${OUTAGE.kind} from its ${OUTAGE.afterRequests}th request` : ''}`);
  say();
  for (const line of simWebReport(web, entries, { ...stored, seconds }).lines) say(line);
  say(`failures by reason:       ${JSON.stringify(summary.failuresByReason)}`);
  say(`peak RSS of run:          ${peakRss === null ? 'unknown (GNU time missing)' : `${(peakRss / 2 ** 20).toFixed(0)} MiB`}`);
} finally {
  await web.close();
  if (webTrace !== null) closeSync(webTrace);
  await rm(work, { recursive: true, force: true });
}
