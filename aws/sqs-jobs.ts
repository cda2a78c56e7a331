// Sends jobs to the queue in batches of ten (SendMessageBatch), several batches in flight at once,
// retrying entries SQS reports as failed. Anything that still fails fails the invocation, whose
// retry re-sends the lot: duplicates are harmless, lost jobs are not.

import { setTimeout as sleep } from 'node:timers/promises';
import { SendMessageBatchCommand, type SendMessageBatchRequestEntry, type SQSClient } from '@aws-sdk/client-sqs';
import { encodeJob } from './job-message.ts';
import type { Job } from '../engine/job.ts';

const BATCH_ENTRIES = 10;
const BATCH_BYTES = 250 * 1024;
const ENTRY_RETRIES = 5;

export class JobSender {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #maxInFlight: number;
  #batch: SendMessageBatchRequestEntry[] = [];
  #batchBytes = 0;
  #inFlight = new Set<Promise<void>>();
  #failure: unknown = null;
  sent = 0;

  constructor(sqs: SQSClient, queueUrl: string, maxInFlight = 16) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#maxInFlight = maxInFlight;
  }

  async send(job: Job): Promise<void> {
    const body = encodeJob(job);
    const bytes = Buffer.byteLength(body);
    if (this.#batch.length === BATCH_ENTRIES || this.#batchBytes + bytes > BATCH_BYTES) await this.#dispatch();
    this.#batch.push({ Id: String(this.#batch.length), MessageBody: body });
    this.#batchBytes += bytes;
  }

  /** Sends what is buffered and waits for every batch; throws if any entry could not be sent. */
  async flush(): Promise<void> {
    if (this.#batch.length > 0) await this.#dispatch();
    await Promise.all(this.#inFlight);
    if (this.#failure) throw this.#failure;
  }

  async #dispatch(): Promise<void> {
    if (this.#failure) throw this.#failure;
    const entries = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    while (this.#inFlight.size >= this.#maxInFlight) await Promise.race(this.#inFlight);
    const sending = this.#sendBatch(entries).catch((error: unknown) => {
      this.#failure ??= error;
    });
    const tracked = sending.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  async #sendBatch(entries: SendMessageBatchRequestEntry[]): Promise<void> {
    let pending = entries;
    for (let attempt = 0; pending.length > 0; attempt++) {
      const answer = await this.#sqs.send(new SendMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries: pending }));
      this.sent += answer.Successful?.length ?? 0;
      const failed = new Set((answer.Failed ?? []).map((f) => f.Id));
      const senderFault = (answer.Failed ?? []).find((f) => f.SenderFault);
      if (senderFault) throw new Error(`SQS refused a job: ${senderFault.Code}: ${senderFault.Message}`);
      pending = pending.filter((entry) => failed.has(entry.Id));
      if (pending.length > 0 && attempt >= ENTRY_RETRIES) throw new Error(`SQS failed to take ${pending.length} jobs after ${ENTRY_RETRIES} retries`);
      if (pending.length > 0) await sleep(100 * 2 ** attempt);
    }
  }
}
