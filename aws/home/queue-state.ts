// The queues as the user's side sees them: how many jobs wait, are in flight, or are parked in
// the dead-letter queue, and when hidden ones come back. Two attribute calls; against the local
// cloud's emulator, one look at its inspection endpoint too.

import { GetQueueAttributesCommand, type QueueAttributeName, type SQSClient } from '@aws-sdk/client-sqs';
import { formatDuration } from '../../engine/summary.ts';
import type { SplitCounts } from './cloud-state.ts';

export interface QueueState {
  /** Visible jobs, waiting for a fetch function. */
  waiting: number;
  /** Received and not deleted: being fetched, or failed and hidden until their visibility timeout ends. */
  inFlight: number;
  /** Sent with a delay that has not passed. */
  delayed: number;
  deadLetter: number;
  /** The jobs queue's VisibilityTimeout, in seconds: a failed job is delivered again within it. */
  visibilityTimeout?: number;
  /** Seconds until the next hidden job is visible again, where the queue can tell (the local cloud). */
  nextDeliveryIn?: number;
}

/** The queues of a deployment, and its endpoint when it is not AWS's (an emulator). */
export interface Queues {
  sqs: SQSClient;
  queueUrl?: string;
  dlqUrl?: string;
  where: { endpoint?: string };
}

async function queueAttributes(sqs: SQSClient, url: string, names: QueueAttributeName[]): Promise<Record<string, string>> {
  return (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: names }))).Attributes ?? {};
}

/** The jobs queue and the dead-letter queue: two attribute calls. */
export async function readQueueState(sqs: SQSClient, queueUrl: string, dlqUrl?: string): Promise<QueueState> {
  const [jobs, dlq] = await Promise.all([
    queueAttributes(sqs, queueUrl, ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed', 'VisibilityTimeout']),
    dlqUrl ? queueAttributes(sqs, dlqUrl, ['ApproximateNumberOfMessages']) : Promise.resolve({} as Record<string, string>),
  ]);
  return {
    waiting: Number(jobs.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(jobs.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(jobs.ApproximateNumberOfMessagesDelayed ?? 0),
    deadLetter: Number(dlq.ApproximateNumberOfMessages ?? 0),
    ...(jobs.VisibilityTimeout ? { visibilityTimeout: Number(jobs.VisibilityTimeout) } : {}),
  };
}

/** The local cloud's emulator lists every message to tell when hidden ones come back: small queues only. */
const INSPECTABLE = 10_000;

/**
 * The queues' state (null without a queue URL); with an endpoint, also when the next hidden job
 * is due again, where the emulator can tell.
 */
export async function queueState(q: Queues): Promise<QueueState | null> {
  if (!q.queueUrl) return null;
  const state = await readQueueState(q.sqs, q.queueUrl, q.dlqUrl);
  if (q.where.endpoint && state.inFlight + state.delayed > 0 && state.waiting + state.inFlight + state.delayed <= INSPECTABLE) {
    const next = await nextVisibleIn(q.queueUrl);
    if (next !== undefined) state.nextDeliveryIn = next;
  }
  return state;
}

/**
 * Seconds until the next hidden message of a queue (in flight or delayed) is visible again, from
 * fauxqs's inspection endpoint, which moves nothing. Undefined where there is no such endpoint
 * (LocalStack, AWS) or nothing is hidden. It lists every message: for small queues only.
 */
async function nextVisibleIn(queueUrl: string, now = Date.now()): Promise<number | undefined> {
  const url = new URL(queueUrl);
  const name = url.pathname.split('/').filter(Boolean).at(-1);
  if (!name) return undefined;
  try {
    const answer = await fetch(new URL(`/_fauxqs/queues/${encodeURIComponent(name)}`, url.origin), { signal: AbortSignal.timeout(5000) });
    if (!answer.ok) return undefined;
    const { messages } = (await answer.json()) as { messages?: { inflight?: Array<{ visibilityDeadline?: number }>; delayed?: Array<{ delayUntil?: number }> } };
    let first = Infinity;
    for (const m of messages?.inflight ?? []) if (typeof m.visibilityDeadline === 'number') first = Math.min(first, m.visibilityDeadline);
    for (const m of messages?.delayed ?? []) if (typeof m.delayUntil === 'number') first = Math.min(first, m.delayUntil);
    return Number.isFinite(first) ? Math.max(0, (first - now) / 1000) : undefined;
  } catch {
    return undefined;
  }
}

/** Jobs still to be delivered or settled: a failed attempt in a split may yet be retried. */
export function queueBusy(q: QueueState | null): boolean {
  return q !== null && q.waiting + q.inFlight + q.delayed > 0;
}

/** When hidden jobs come back: known to the second in the local cloud, else bounded by the visibility timeout. */
export function nextDelivery(q: QueueState): string {
  if (q.nextDeliveryIn !== undefined) return `in ${formatDuration(q.nextDeliveryIn)}`;
  return q.visibilityTimeout !== undefined ? `within the visibility timeout of ${q.visibilityTimeout} s` : 'within the visibility timeout';
}

/** The queue in one phrase: `0 waiting, 25 in flight (being fetched, or failed and due again in 4.2s)`. */
export function describeQueue(q: QueueState): string {
  const inFlight = q.inFlight > 0 ? ` (being fetched, or failed and due again ${nextDelivery(q)})` : '';
  return `${q.waiting} waiting, ${q.inFlight} in flight${inFlight}${q.delayed ? `, ${q.delayed} delayed` : ''}`;
}

/** The pending images named for what they are, given the queue (null: not known). */
export function describePending(c: SplitCounts, queue: QueueState | null): string {
  if (c.pending === 0 || queue === null) return `${c.pending} pending`;
  const retrying = c.retrying > 0 ? ` (${c.retrying} retrying after a failed attempt)` : '';
  if (queueBusy(queue)) return `${c.pending} still queued or in flight${retrying}`;
  return `${c.pending} pending with no job left in the queue${queue.deadLetter > 0 ? ' (see the dead-letter queue)' : ''}`;
}
