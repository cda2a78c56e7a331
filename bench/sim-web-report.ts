// What the simulated-web benches (bench/sim-web.ts for `run`, bench/sim-web-cloud.ts for the local
// cloud) check and print: every stored image against the bytes its host serves, per host what the
// web saw, and the run against the polite ideal (issue #12).

import { createHash } from 'node:crypto';
import { politeIdeal, type CrossingCause, type HostReport, type SimEntry, type SimWeb } from '../local-cloud/sim-web.ts';

/** Stored images checked against their host's bytes; placeholders stored as images counted apart. */
export function checkStored(web: SimWeb, entries: readonly SimEntry[], stored: Iterable<{ id: string; sha256: string | undefined }>): { stored: number; placeholdersKept: number } {
  const byId = new Map(entries.map((e) => [e.id, e]));
  let images = 0;
  let placeholdersKept = 0;
  for (const { id, sha256 } of stored) {
    const entry = byId.get(id);
    if (!entry) throw new Error(`${id}: stored, but not an entry of the manifest`);
    const expected = createHash('sha256').update(web.hosts[entry.host]!.body(new URL(entry.url).pathname)).digest('hex');
    if (sha256 !== expected) throw new Error(`${entry.id}: stored bytes differ from the host's`);
    if (entry.fate === 'placeholder') placeholdersKept++;
    else images++;
  }
  return { stored: images, placeholdersKept };
}

export interface SimWebFigures {
  stored: number;
  politeImages: number;
  bans: number;
  crossings: number;
  refusedWhileBanned: number;
  seconds: number;
  idealSumSeconds: number;
  idealMaxHostSeconds: number;
}

/** Crossings by cause (local-cloud/sim-web.ts's CrossingCause), over all hosts, and the hosts of the avoidable ones. */
function causes(reports: readonly HostReport[]): string {
  const total: Record<CrossingCause, number> = { first: 0, burst: 0, 'after-pause': 0, 'after-a-minute': 0 };
  for (const r of reports) for (const cause of Object.keys(total) as CrossingCause[]) total[cause] += r.crossingsByCause[cause];
  const where = (cause: CrossingCause): string => reports.map((r, h) => (r.crossingsByCause[cause] > 0 ? `${h}` : '')).filter(Boolean).join(' ');
  return `the host's first ${total.first} · same burst ${total.burst} (hosts ${where('burst') || '-'}) · back too soon after the pause ${total['after-pause']} (hosts ${where('after-pause') || '-'}) · after a quiet minute ${total['after-a-minute']} (hosts ${where('after-a-minute') || '-'})`;
}

/** The per-host table and the headline figures, as lines. */
export function simWebReport(web: SimWeb, entries: readonly SimEntry[], run: { stored: number; placeholdersKept: number; seconds: number }): { lines: string[]; figures: SimWebFigures } {
  const hostCount = web.hosts.length;
  const ideal = politeIdeal(web, entries);
  const reports = web.report();
  const perHost = web.hosts.map((_, h) => entries.filter((e) => e.host === h).length);
  // A host that states its limit in its answers is marked: * RateLimit fields, ' the older RateLimit-*, x X-RateLimit-*.
  const mark = { ietf: '*', 'ietf-fields': "'", 'x-ratelimit': 'x' } as const;
  const limitText = (h: number): string => {
    const { limit, announce } = web.hosts[h]!.profile;
    return limit.kind === 'concurrency' ? `${limit.max} at once` : `${limit.perSecond}/s${announce ? mark[announce] : ''}`;
  };
  const announcing = reports.filter((_, h) => web.hosts[h]!.profile.announce !== undefined);
  const silent = reports.filter((_, h) => web.hosts[h]!.profile.announce === undefined);
  const crossingsOf = (rs: readonly HostReport[]): string => {
    const c = { first: 0, burst: 0, 'after-pause': 0, 'after-a-minute': 0 };
    for (const r of rs) for (const cause of Object.keys(c) as CrossingCause[]) c[cause] += r.crossingsByCause[cause];
    return `${rs.reduce((a, r) => a + r.crossings, 0)} (${Object.values(c).join('/')}) at ${rs.filter((r) => r.crossings > 0).length} of ${rs.length} hosts`;
  };
  const lines = ['host  entries  limit       allowed/s  requests  peak  crossings  bans  403s  last request (s)'];
  reports.forEach((r, h) => {
    if (h >= 6 && h < hostCount - 2 && r.bansTriggered === 0) return; // the small hosts: only the unusual ones
    lines.push(
      `${String(h).padStart(4)}  ${String(perHost[h]).padStart(7)}  ${limitText(h).padEnd(10)}  ${web.hosts[h]!.allowedRate().toFixed(1).padStart(9)}  ` +
        `${String(r.requests).padStart(8)}  ${String(r.peakConcurrency).padStart(4)}  ${String(r.crossings).padStart(9)}  ${String(r.bansTriggered).padStart(4)}  ${String(r.refusedWhileBanned).padStart(4)}  ${(r.lastRequestMs / 1000).toFixed(1).padStart(16)}`,
    );
  });
  const sum = (pick: (r: (typeof reports)[number]) => number, from = 0): number => reports.slice(from).reduce((total, r) => total + pick(r), 0);
  lines.push(`3–${hostCount - 1}  ${String(entries.length - perHost[0]! - perHost[1]! - perHost[2]!).padStart(7)}  ${'(small)'.padEnd(10)}  ${''.padStart(9)}  ${String(sum((r) => r.requests, 3)).padStart(8)}  ${String(Math.max(...reports.slice(3).map((r) => r.peakConcurrency))).padStart(4)}  ${String(sum((r) => r.crossings, 3)).padStart(9)}  ${String(sum((r) => r.bansTriggered, 3)).padStart(4)}  ${String(sum((r) => r.refusedWhileBanned, 3)).padStart(4)}  ${(Math.max(...reports.slice(3).map((r) => r.lastRequestMs)) / 1000).toFixed(1).padStart(16)}`);
  lines.push(`  all  ${String(entries.length).padStart(7)}  ${''.padEnd(10)}  ${''.padStart(9)}  ${String(sum((r) => r.requests)).padStart(8)}  ${''.padStart(4)}  ${String(sum((r) => r.crossings)).padStart(9)}  ${String(sum((r) => r.bansTriggered)).padStart(4)}  ${String(sum((r) => r.refusedWhileBanned)).padStart(4)}`);
  const figures: SimWebFigures = {
    stored: run.stored,
    politeImages: ideal.images,
    bans: sum((r) => r.bansTriggered),
    crossings: sum((r) => r.crossings),
    refusedWhileBanned: sum((r) => r.refusedWhileBanned),
    seconds: run.seconds,
    idealSumSeconds: ideal.sumSeconds,
    idealMaxHostSeconds: ideal.maxHostSeconds,
  };
  lines.push(
    '',
    `images stored:            ${run.stored} of the ${ideal.images} a polite client gets (${((100 * run.stored) / ideal.images).toFixed(1)}%); placeholders kept as images: ${run.placeholdersKept}`,
    `bans triggered:           ${figures.bans} (on ${reports.filter((r) => r.bansTriggered > 0).length} hosts)`,
    `requests above a limit:   ${figures.crossings} (answered 429), and ${figures.refusedWhileBanned} refused while banned (403)`,
    `  by cause:               ${causes(reports)}`,
    `  announcing / silent:    hosts stating their limit ${crossingsOf(announcing)}; silent hosts ${crossingsOf(silent)} (first/burst/after-pause/after-a-minute)`,
    `  per host (limit: first, burst, after the pause, after a minute): ${reports.map((r, h) => (r.crossings > 0 ? `${h} (${limitText(h)}: ${Object.values(r.crossingsByCause).join(',')})` : '')).filter(Boolean).join(' ')}`,
    ...(sum((r) => r.answers.outage) > 0 ? [`outage answers:           ${reports.map((r, h) => (r.answers.outage > 0 ? `host ${h}: ${r.answers.outage}` : '')).filter(Boolean).join(', ')} (a ban or Retry-After not of the client's doing)`] : []),
    `time to drain:            ${run.seconds.toFixed(1)} s; polite ideal ${ideal.sumSeconds.toFixed(1)} s (sum over hosts of entries ÷ allowed rate), ${ideal.maxHostSeconds.toFixed(1)} s (the slowest host, hosts in parallel)`,
  );
  return { lines, figures };
}
