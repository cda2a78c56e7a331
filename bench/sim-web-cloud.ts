// The local cloud against the simulated web (issue #12): the same manifest as bench/sim-web.ts
// (N entries over ~40 hosts, 3 of them holding 60%, each host enforcing a limit) submitted to the
// local cloud with the stack's settings (cdk.json: batch size, retry delays, its 720 s visibility
// timeout) at the stack's fetch concurrency, the real handlers on fauxqs in this process. Prints
// what the web saw per host, the run against the polite ideal, and the fetch function's Lambda
// GB-seconds (every invocation timed, × its memory) per image. Stored images are checked byte for
// byte (the fetch records' sha256 against the host's bytes).
//
//   node bench/sim-web-cloud.ts [--entries 20000] [--hosts 40] [--seed 1] [--concurrency 20]

import { PutObjectCommand } from '@aws-sdk/client-s3';
import { subscribe } from 'node:diagnostics_channel';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fetchRecords, sameBytesOf, splitRows } from '../aws/home/cloud-state.ts';
import { PRICE } from '../aws/prices.ts';
import { cdkJsonSettings, visibilityTimeoutSeconds } from '../aws/settings.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';
import { manifestCsv, simManifest, startSimWeb } from '../local-cloud/sim-web.ts';
import { checkStored, simWebReport } from './sim-web-report.ts';
import { timedFetch, type Invocation } from './timed-fetch.ts';

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '20000' },
    hosts: { type: 'string', default: '40' },
    seed: { type: 'string', default: '1' },
    concurrency: { type: 'string' },
  },
});
const settings = await cdkJsonSettings();
const entryCount = Number(values.entries);
const hostCount = Number(values.hosts);
const concurrency = Number(values.concurrency ?? settings.fetchMaxConcurrency);
if (![entryCount, hostCount, concurrency].every((n) => Number.isSafeInteger(n) && n >= 1) || hostCount < 4) {
  process.stderr.write('bench:sim-web-cloud: --entries, --concurrency ≥ 1 and --hosts ≥ 4, integers\n');
  process.exit(2);
}
const say = (line = ''): void => void process.stdout.write(`${line}\n`);
const mean = (xs: readonly number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
// On a shared machine the one process (web, emulator, 20 functions) may not get the CPU it needs,
// and every invocation then lasts longer than on Lambda: shown by the event loop's delay.
const loopDelay = monitorEventLoopDelay({ resolution: 20 });
loopDelay.enable();
const cpuAtStart = process.cpuUsage();

const web = await startSimWeb({ seed: Number(values.seed), hosts: hostCount });
// The fleet's fetches in flight, from undici's own diagnostics channels (the functions fetch with
// undici; the SDK's S3 and SQS calls do not go through it): counted per request to a web host.
const webOrigins = new Set(web.hosts.map((h) => new URL(h.url).origin));
const live = new Set<object>();
subscribe('undici:request:create', (m) => {
  const { request } = m as { request: { origin?: string } };
  if (request.origin && webOrigins.has(new URL(request.origin).origin)) live.add(request);
});
for (const name of ['undici:request:trailers', 'undici:request:error']) subscribe(name, (m) => live.delete((m as { request: object }).request));
const inFlight: number[] = [];
const invocations: Invocation[] = [];
const visibility = visibilityTimeoutSeconds(settings);
const dev = await startDevCloud({
  allowPrivateNetwork: true,
  visibilityTimeoutSeconds: visibility,
  fetchConcurrency: concurrency,
  logLevel: 'SILENT',
  log: () => {},
  wrapFetch: timedFetch(invocations),
});
let failed = false;
try {
  const entries = simManifest(web, entryCount);
  const started = performance.now();
  await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/sim.csv', Body: manifestCsv(entries) }));
  await dev.cloud.notifyObjectCreated('manifests/sim.csv');
  const sampler = setInterval(() => inFlight.push(live.size), 250);
  // A line on stderr every 30 s: the drain has a long tail (retries wait, a lost batch waits out the visibility timeout).
  let shown = 0;
  const progress = setInterval(() => {
    const f = dev.cloud.stats().fetch;
    const recent = inFlight.slice(shown);
    shown = inFlight.length;
    process.stderr.write(`${((performance.now() - started) / 1000).toFixed(0)} s: ${f.invocations} invocations, ${f.deleted} jobs done, ${f.failed} records returned, ${f.errors} invocations failed, ${f.deadLettered} dead-lettered; fetches in flight ${mean(recent).toFixed(1)} (mean of the last 30 s)\n`);
  }, 30_000);
  await dev.cloud.idle().finally(() => {
    clearInterval(progress);
    clearInterval(sampler);
  });
  const seconds = (performance.now() - started) / 1000;

  const records = await fetchRecords(dev.s3, dev.cloud.bucket, 'sim');
  const byReason = new Map<string, number>();
  const storedRows: Array<{ id: string; sha256: string | undefined }> = [];
  let rows = 0;
  // The table sync writes: a host's placeholders failed, as every function's records tell them.
  const sameBytes = sameBytesOf(records, settings.placeholderThreshold);
  for await (const row of splitRows(dev.s3, dev.cloud.bucket, 'sim', { records, sameBytes })) {
    rows++;
    if (row.status === 'fetched') storedRows.push({ id: row.image_id, sha256: row.sha256 });
    else byReason.set(row.reason || row.status, (byReason.get(row.reason || row.status) ?? 0) + 1);
  }
  if (rows !== entryCount) throw new Error(`the index has ${rows} rows for ${entryCount} entries`);
  const { lines } = simWebReport(web, entries, { ...checkStored(web, entries, storedRows), seconds });

  const stats = dev.cloud.stats().fetch;
  const ms = invocations.map((i) => i.ms).sort((a, b) => a - b);
  const totalMs = ms.reduce((a, b) => a + b, 0);
  const at = (q: number): number => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0;
  const memoryGb = settings.fetchMemoryMb / 1024;
  const gbS = (totalMs / 1000) * memoryGb;
  const messages = invocations.reduce((a, i) => a + i.records, 0);

  // The per-host limit as the functions are told it (issue #12 made it fleet-wide).
  const fn = dev.cloud.env.fetch;
  const politeness = fn.HOST_CONCURRENCY ? `host concurrency ${fn.HOST_CONCURRENCY} (fleet-wide and per function)` : `${fn.PER_HOST} per host per function`;
  say(`the local cloud (${concurrency} fetch invocations at once, batches of ${settings.fetchBatchSize}, ${politeness}, visibility ${visibility} s, retry delay ${settings.retryDelaySeconds} s) — ${entryCount} entries over ${hostCount} hosts (seed ${values.seed}), 3 hosts hold 60%`);
  say();
  for (const line of lines) say(line);
  say(`not stored, by reason:    ${JSON.stringify(Object.fromEntries([...byReason].sort((a, b) => b[1] - a[1])))}`);
  // Which limits were crossed: a rate limit is learnt from its first 429 (the gate then paces), a concurrency limit should never be.
  const crossed = web.report().flatMap((r, h) => (r.crossings > 0 ? [`host ${h} (${JSON.stringify(web.hosts[h]!.profile.limit)}): ${r.crossings}`] : []));
  say(`crossings by host:        ${crossed.join('; ') || 'none'}`);
  say(`fetch invocations:        ${invocations.length}, ${(messages / invocations.length).toFixed(1)} records each (${messages} deliveries of ${entryCount} jobs); dead-lettered ${stats.deadLettered}`);
  const oneGroup = invocations.filter((i) => i.groups === 1).length;
  say(`message groups per batch: mean ${mean(invocations.map((i) => i.groups)).toFixed(2)}; ${oneGroup} of ${invocations.length} batches (${((100 * oneGroup) / invocations.length).toFixed(0)}%) from one group`);
  const sorted = [...inFlight].sort((a, b) => a - b);
  say(`fleet fetches in flight:  mean ${mean(inFlight).toFixed(1)}, median ${sorted[Math.floor(sorted.length / 2)] ?? 0}, max ${sorted.at(-1) ?? 0} (sampled every 250 ms)`);
  say(`invocation duration:      mean ${(totalMs / ms.length / 1000).toFixed(2)} s, median ${(at(0.5) / 1000).toFixed(2)}, p90 ${(at(0.9) / 1000).toFixed(2)}, p99 ${(at(0.99) / 1000).toFixed(2)}, max ${(ms.at(-1)! / 1000).toFixed(2)} s`);
  const cpu = process.cpuUsage(cpuAtStart);
  say(`this process:             ${((cpu.user + cpu.system) / 1e6).toFixed(0)} s of CPU in ${seconds.toFixed(0)} s (${((cpu.user + cpu.system) / 1e3 / entryCount).toFixed(1)} ms per entry); event loop delay median ${(loopDelay.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms, max ${(loopDelay.max / 1e6).toFixed(0)} ms`);
  say(`Lambda GB-s:              ${gbS.toFixed(1)} at ${settings.fetchMemoryMb} MB: ${(gbS / entryCount).toFixed(4)} per entry, ${(gbS / Math.max(1, storedRows.length)).toFixed(4)} per stored image`);
  const perMillion = (1e6 / entryCount) * (gbS * PRICE.lambdaGbSecondArm + invocations.length * PRICE.lambdaRequest);
  say(`fetch function, 1M entries: $${perMillion.toFixed(2)} at us-east-1 arm64 list prices (duration and requests)`);
} catch (error) {
  failed = true;
  process.stderr.write(`bench:sim-web-cloud: ${error instanceof Error ? error.message : String(error)}\n`);
} finally {
  await dev.stop();
  await web.close();
}
process.exitCode = failed ? 1 : 0;
