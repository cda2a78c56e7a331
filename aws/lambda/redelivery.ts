// When a job failed for a transient reason, when SQS should hand it out again. Left alone, SQS
// waits the whole visibility timeout (6 × the function's time limit: 12 minutes by default) before
// each of the maxReceiveCount deliveries; a flaky image would take an hour to reach the DLQ and a
// manifest with a few flaky hosts would drain in hours. ChangeMessageVisibility sets the wait per
// message: exponential in the deliveries so far, with jitter so a host's failures do not return
// together. A job whose host is paused (Retry-After, a ban) waits out the pause the same way, and
// on the FIFO queue the later jobs of its message group are held as long (fifo-batch.ts). Every
// such return counts a receive, tried or not: a job on its last allowed one that goes back untried
// is sent anew instead (requeue), so waiting alone never parks it in the dead-letter queue.

import { ChangeMessageVisibilityBatchCommand, ChangeMessageVisibilityCommand, GetQueueUrlCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { resendDeduplicationId } from '../fifo.ts';
import { RETURN_VISIBILITY_SECONDS } from './straggler.ts';

const FACTOR = 3;
/** SQS's longest visibility change is 12 hours; a transient failure never needs that long. */
const MAX_DELAY_SECONDS = 900;
/**
 * SQS hides a message at most 12 hours from its receipt: a host's pause is waited out up to that,
 * less the function's longest run; a longer pause is met again at the next delivery.
 */
export const MAX_PAUSE_SECONDS = 12 * 3600 - 900;

/** The message attribute counting a job's requeues; past MAX_REQUEUES it is left to the dead-letter queue. */
export const REQUEUES_ATTRIBUTE = 'cloudfetchRequeues';
/** A host paused through this many rounds of maxReceiveCount deliveries is given up on. */
export const MAX_REQUEUES = 3;

const requeues = (record: SQSRecord): number => Number(record.messageAttributes?.[REQUEUES_ATTRIBUTE]?.stringValue ?? 0) || 0;

/** Seconds until a paused host's pause ends (at least 1), as a visibility timeout. */
export function pauseDelaySeconds(untilMs: number, now = Date.now()): number {
  return Math.min(MAX_PAUSE_SECONDS, Math.max(1, Math.ceil((untilMs - now) / 1000)));
}

/**
 * Seconds until delivery number `receiveCount + 1`: first, ×3, ×9, … (× 0.5–1 at random), or the
 * host's Retry-After when it asked for longer; at most 15 min.
 */
export function redeliveryDelaySeconds(receiveCount: number, first: number, retryAfterMs?: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_SECONDS, first * FACTOR ** Math.max(0, receiveCount - 1));
  const backoff = Math.max(1, Math.round(ceiling * (0.5 + random() / 2)));
  return retryAfterMs === undefined ? backoff : Math.min(MAX_DELAY_SECONDS, Math.max(backoff, Math.ceil(retryAfterMs / 1000)));
}

export class Redelivery {
  readonly #sqs: SQSClient;
  readonly #firstDelaySeconds: number;
  readonly #queueUrls = new Map<string, Promise<string>>();

  constructor(sqs: SQSClient, firstDelaySeconds: number) {
    this.#sqs = sqs;
    this.#firstDelaySeconds = firstDelaySeconds;
  }

  /** Sets when the record comes back: in how many seconds, or undefined (and SQS's own visibility timeout applies) when SQS refused. */
  schedule(record: SQSRecord, retryAfterMs?: number): Promise<number | undefined> {
    return this.#comeBackIn(record, redeliveryDelaySeconds(Number(record.attributes.ApproximateReceiveCount ?? 1), this.#firstDelaySeconds, retryAfterMs));
  }

  /**
   * A record returned unfinished (straggler.ts) comes back soon, with no backoff: it did not fail.
   * A Retry-After it was waiting out still holds.
   */
  returnUnfinished(record: SQSRecord, retryAfterMs?: number): Promise<number | undefined> {
    return this.#comeBackIn(record, Math.min(MAX_DELAY_SECONDS, Math.max(RETURN_VISIBILITY_SECONDS, Math.ceil((retryAfterMs ?? 0) / 1000))));
  }

  /** A job whose host is paused until `untilMs` comes back when the pause ends. */
  pause(record: SQSRecord, untilMs: number): Promise<number | undefined> {
    return this.#comeBackIn(record, pauseDelaySeconds(untilMs));
  }

  async #comeBackIn(record: SQSRecord, seconds: number): Promise<number | undefined> {
    return (await this.hold([record], seconds)) ? seconds : undefined;
  }

  /**
   * Sends anew, into the same message group, the records on their last allowed delivery
   * (`maxReceiveCount`) that go back untried, at most MAX_REQUEUES times per job: their next receive
   * would park them in the dead-letter queue. Answers the message ids sent, whose originals the
   * caller acknowledges; the others are left to hold(). A FIFO message has no delay of its own: the
   * new one waits behind its group's held messages, or meets its paused host again and is held then.
   */
  async requeue(records: readonly SQSRecord[], maxReceiveCount: number): Promise<Set<string>> {
    const sent = new Set<string>();
    const last = records.filter((r) => Number(r.attributes.ApproximateReceiveCount ?? 1) >= maxReceiveCount && requeues(r) < MAX_REQUEUES);
    for (let i = 0; i < last.length; i += 10) {
      const chunk = last.slice(i, i + 10);
      try {
        const answer = await this.#sqs.send(new SendMessageBatchCommand({
          QueueUrl: await this.#queueUrl(chunk[0]!.eventSourceARN),
          Entries: chunk.map((r, j) => ({
            Id: String(j),
            MessageBody: r.body,
            MessageAttributes: { [REQUEUES_ATTRIBUTE]: { DataType: 'Number', StringValue: String(requeues(r) + 1) } },
            ...(r.attributes.MessageGroupId ? { MessageGroupId: r.attributes.MessageGroupId, MessageDeduplicationId: resendDeduplicationId() } : {}),
          })),
        }));
        for (const ok of answer.Successful ?? []) sent.add(chunk[Number(ok.Id)]!.messageId);
      } catch {
        // Not sent: they are held as the others, and may reach the dead-letter queue.
      }
    }
    return sent;
  }

  /** Makes records (of one queue) visible again in `seconds`; false when SQS refused any (they keep the visibility timeout). */
  async hold(records: readonly SQSRecord[], seconds: number): Promise<boolean> {
    let ok = true;
    for (let i = 0; i < records.length; i += 10) {
      const chunk = records.slice(i, i + 10);
      try {
        const QueueUrl = await this.#queueUrl(chunk[0]!.eventSourceARN);
        if (chunk.length === 1) {
          await this.#sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl, ReceiptHandle: chunk[0]!.receiptHandle, VisibilityTimeout: seconds }));
          continue;
        }
        const answer = await this.#sqs.send(new ChangeMessageVisibilityBatchCommand({
          QueueUrl, Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r.receiptHandle, VisibilityTimeout: seconds })),
        }));
        if ((answer.Failed ?? []).length > 0) ok = false;
      } catch {
        ok = false;
      }
    }
    return ok;
  }

  /** arn:aws:sqs:<region>:<account>:<name> → its URL, asked once per queue and container. */
  #queueUrl(arn: string): Promise<string> {
    let url = this.#queueUrls.get(arn);
    if (!url) {
      const [, , , , account, name] = arn.split(':');
      url = this.#sqs.send(new GetQueueUrlCommand({ QueueName: name, ...(account ? { QueueOwnerAWSAccountId: account } : {}) })).then((answer) => answer.QueueUrl!);
      url.catch(() => this.#queueUrls.delete(arn));
      this.#queueUrls.set(arn, url);
    }
    return url;
  }
}
