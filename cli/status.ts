// `cloudfetch status`: per split what the manifest function made of it, and the queues: waiting,
// in flight, parked in the DLQ. Cheap enough to repeat: a few small objects and two queue
// attribute calls; exact per-split counts (a listing of every key) only with --counts.

import { setTimeout as sleep } from 'node:timers/promises';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import cliProgress from 'cli-progress';
import { count, emptyCounts, listSplits, splitRows, type SplitCounts } from '../functions/aws/cloud-state.ts';
import type { SplitStatus } from '../functions/aws/split.ts';
import { formatDuration } from '../functions/core/summary.ts';
import type { Target } from './target.ts';

export interface QueueState {
  waiting: number;
  inFlight: number;
  delayed: number;
  deadLetter: number;
}

export interface StatusReport {
  splits: Array<SplitStatus & { counts?: SplitCounts }>;
  queue: QueueState | null;
  /** Nothing waiting or in flight, and no split still being split. */
  done: boolean;
}

async function queueNumbers(t: Target, url: string): Promise<Record<string, string>> {
  const answer = await t.sqs.send(new GetQueueAttributesCommand({
    QueueUrl: url,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
  }));
  return answer.Attributes ?? {};
}

export async function queueState(t: Target): Promise<QueueState | null> {
  if (!t.queueUrl) return null;
  const [jobs, dlq] = await Promise.all([queueNumbers(t, t.queueUrl), t.dlqUrl ? queueNumbers(t, t.dlqUrl) : Promise.resolve({} as Record<string, string>)]);
  return {
    waiting: Number(jobs.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(jobs.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(jobs.ApproximateNumberOfMessagesDelayed ?? 0),
    deadLetter: Number(dlq.ApproximateNumberOfMessages ?? 0),
  };
}

export async function statusReport(t: Target, o: { split?: string; counts: boolean }): Promise<StatusReport> {
  const [all, queue] = await Promise.all([listSplits(t.s3, t.bucket), queueState(t)]);
  const splits: StatusReport['splits'] = all.filter((s) => !o.split || s.split === o.split);
  if (o.counts) {
    for (const s of splits) {
      if (s.state !== 'queued') continue;
      const counts = emptyCounts();
      for await (const row of splitRows(t.s3, t.bucket, s.split)) count(counts, row);
      s.counts = counts;
    }
  }
  const busy = queue ? queue.waiting + queue.inFlight + queue.delayed : 0;
  return { splits, queue, done: busy === 0 && !splits.some((s) => s.state === 'splitting') };
}

export function formatStatus(r: StatusReport): string {
  const lines: string[] = [];
  if (r.splits.length === 0) lines.push('No manifest submitted yet: `cloudfetch submit <manifest>`.');
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
      lines.push(`  now: ${c.fetched} stored, ${c.failed} failed${reasons ? ` (${reasons})` : ''}, ${c.pending} pending`);
    }
  }
  if (r.queue) {
    const q = r.queue;
    lines.push(`Queue: ${q.waiting} waiting, ${q.inFlight} in flight${q.delayed ? `, ${q.delayed} delayed` : ''}; dead-letter queue: ${q.deadLetter}${q.deadLetter ? ' (`cloudfetch retry` sends them back)' : ''}`);
  }
  lines.push(r.done ? 'Nothing left to fetch: `cloudfetch sync <dir>` brings the images home.' : 'Still working.');
  return lines.join('\n');
}

/** Watches the queue drain: a bar with rate and ETA on a terminal, plain lines otherwise. */
export async function watchStatus(t: Target, o: { split?: string; intervalMs: number; log: NodeJS.WriteStream; signal?: AbortSignal }): Promise<StatusReport> {
  const started = Date.now();
  let most = 0;
  let report = await statusReport(t, { ...(o.split ? { split: o.split } : {}), counts: false });
  const bar = o.log.isTTY
    ? new cliProgress.SingleBar({ stream: o.log, format: ' {bar} {value}/{total} done | {waiting} waiting, {inFlight} in flight, {dlq} parked | {rate}/s | ETA {eta}', hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  let barStarted = false;
  for (;;) {
    const q = report.queue ?? { waiting: 0, inFlight: 0, delayed: 0, deadLetter: 0 };
    const left = q.waiting + q.inFlight + q.delayed;
    most = Math.max(most, left);
    const done = most - left;
    const rate = done / Math.max(0.001, (Date.now() - started) / 1000);
    const eta = rate > 0 && left > 0 ? formatDuration(left / rate) : '-';
    const payload = { waiting: q.waiting, inFlight: q.inFlight, dlq: q.deadLetter, rate: rate.toFixed(0), eta };
    if (bar) {
      if (!barStarted) bar.start(Math.max(1, most), done, payload);
      barStarted = true;
      bar.setTotal(Math.max(1, most));
      bar.update(done, payload);
    } else {
      o.log.write(`status: ${left} left (${q.waiting} waiting, ${q.inFlight} in flight), ${q.deadLetter} in the dead-letter queue, ${payload.rate}/s, ETA ${eta}\n`);
    }
    if (report.done || o.signal?.aborted) break;
    await sleep(o.intervalMs);
    report = await statusReport(t, { ...(o.split ? { split: o.split } : {}), counts: false });
  }
  bar?.stop();
  return report;
}
