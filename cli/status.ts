// `cloudfetch status`: per split what the manifest function made of it, and the queues: waiting,
// in flight, parked in the DLQ. Cheap enough to repeat: a few small objects and two queue
// attribute calls; exact per-split counts (a listing of every key) only with --counts.

import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { count, emptyCounts, listSplits, splitRows, type SplitCounts } from '../aws/home/cloud-state.ts';
import { describePending, describeQueue, nextDelivery, queueBusy, queueState, type QueueState } from '../aws/home/queue-state.ts';
import type { SplitStatus } from '../aws/bucket.ts';
import { printable } from '../engine/printable.ts';
import { formatDuration } from '../engine/summary.ts';
import { command, type Target } from './target.ts';

export interface StatusReport {
  splits: Array<SplitStatus & { counts?: SplitCounts }>;
  queue: QueueState | null;
  /** Nothing waiting or in flight, and no split still being split. */
  done: boolean;
}

export async function statusReport(t: Target, o: { split?: string; counts: boolean }): Promise<StatusReport> {
  const [all, queue] = await Promise.all([listSplits(t.s3, t.bucket), queueState(t)]);
  const splits: StatusReport['splits'] = all.filter((s) => !o.split || s.split === o.split);
  if (o.counts) {
    for (const s of splits) {
      if (s.state !== 'queued') continue;
      const counts = emptyCounts();
      for await (const row of splitRows(t.s3, t.bucket, s.split, { queueBusy: queueBusy(queue) })) count(counts, row);
      s.counts = counts;
    }
  }
  return { splits, queue, done: !queueBusy(queue) && !splits.some((s) => s.state === 'splitting') };
}

export function formatStatus(r: StatusReport, t: Pick<Target, 'args'>): string {
  const lines: string[] = [];
  if (r.splits.length === 0) lines.push(`No manifest submitted yet: ${command(t, 'submit <manifest>')}.`);
  for (const s of r.splits) {
    if (s.state === 'failed') {
      lines.push(`${s.split}: REFUSED — ${s.error ?? 'unknown error'}`);
      continue;
    }
    if (s.state === 'splitting') {
      lines.push(`${s.split}: splitting ${s.manifest} (since ${s.startedAt})`);
      continue;
    }
    lines.push(`${s.split}: ${s.entries} entries, ${s.queued} queued at ${s.finishedAt ?? s.startedAt}, ${s.alreadyStored ?? 0} already stored, ${s.invalid ?? 0} without a usable URL`);
    if (s.counts) {
      const c = s.counts;
      const reasons = Object.entries(c.byReason).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
      lines.push(`  now: ${c.fetched} stored, ${c.failed} failed${reasons ? ` (${reasons})` : ''}, ${describePending(c, r.queue)}`);
    }
  }
  if (r.queue) {
    const q = r.queue;
    lines.push(`Queue: ${describeQueue(q)}; dead-letter queue: ${q.deadLetter}${q.deadLetter ? ` (${command(t, 'retry')} sends them back)` : ''}`);
  }
  lines.push(r.done ? `Nothing left to fetch: ${command(t, 'sync <dir>')} brings the images home.` : 'Still working.');
  // Errors, names and times come from status records in the bucket: shown, never obeyed by the terminal.
  return lines.map((line) => printable(line, 2000)).join('\n');
}

/** Time left at this rate, always with a unit; a dash while there is no rate to go by. */
export function etaText(left: number, perSecond: number): string {
  if (left === 0) return formatDuration(0);
  return perSecond > 0 && Number.isFinite(perSecond) ? formatDuration(left / perSecond) : '—';
}

/** Watches the queue drain: a bar with rate and ETA on a terminal, plain lines otherwise. */
export async function watchStatus(t: Target, o: { split?: string; intervalMs: number; log: NodeJS.WriteStream; signal?: AbortSignal }): Promise<StatusReport> {
  const started = Date.now();
  let most = 0;
  let report = await statusReport(t, { ...(o.split ? { split: o.split } : {}), counts: false });
  // Not cli-progress's own {eta}: that one is a bare number of seconds, or INF.
  const bar = o.log.isTTY
    ? new cliProgress.SingleBar({ stream: o.log, format: ' {bar} {value}/{total} done | {queue} | {dlq} parked | {rate}/s | ETA {remaining}', hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  let barStarted = false;
  for (;;) {
    const q = report.queue ?? { waiting: 0, inFlight: 0, delayed: 0, deadLetter: 0 };
    const left = q.waiting + q.inFlight + q.delayed;
    most = Math.max(most, left);
    const done = most - left;
    const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
    const remaining = etaText(left, rate);
    if (bar) {
      const due = q.inFlight > 0 ? `, due again ${nextDelivery(q)}` : '';
      const payload = { queue: `${q.waiting} waiting, ${q.inFlight} in flight${due}`, dlq: q.deadLetter, rate: rate.toFixed(0), remaining };
      if (!barStarted) bar.start(Math.max(1, most), done, payload);
      barStarted = true;
      bar.setTotal(Math.max(1, most));
      bar.update(done, payload);
    } else {
      o.log.write(`status: ${left} left (${describeQueue(q)}), ${q.deadLetter} in the dead-letter queue, ${rate.toFixed(0)}/s, ETA ${remaining}\n`);
    }
    if (report.done || o.signal?.aborted) break;
    await sleep(o.intervalMs);
    report = await statusReport(t, { ...(o.split ? { split: o.split } : {}), counts: false });
  }
  bar?.stop();
  return report;
}
