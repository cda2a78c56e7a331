// When a job failed for a transient reason, when SQS should hand it out again. Left alone, SQS
// waits the whole visibility timeout (6 × the function's time limit: 12 minutes by default) before
// each of the maxReceiveCount deliveries; a flaky image would take an hour to reach the DLQ and a
// manifest with a few flaky hosts would drain in hours. ChangeMessageVisibility sets the wait per
// message: exponential in the deliveries so far, with jitter so a host's failures do not return
// together.

import { ChangeMessageVisibilityCommand, GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';

const FACTOR = 3;
/** SQS's longest visibility change is 12 hours; a transient failure never needs that long. */
const MAX_DELAY_SECONDS = 900;

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

  /** Sets when the record comes back; false (and SQS's own visibility timeout applies) when SQS refused. */
  async schedule(record: SQSRecord, retryAfterMs?: number): Promise<boolean> {
    const seconds = redeliveryDelaySeconds(Number(record.attributes.ApproximateReceiveCount ?? 1), this.#firstDelaySeconds, retryAfterMs);
    try {
      const QueueUrl = await this.#queueUrl(record.eventSourceARN);
      await this.#sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl, ReceiptHandle: record.receiptHandle, VisibilityTimeout: seconds }));
      return true;
    } catch {
      return false;
    }
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
