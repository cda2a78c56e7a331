// Sends jobs to the (FIFO) queue in batches of ten (SendMessageBatch), several batches in flight at once,
// retrying entries SQS reports as failed for a reason of its own. An entry SQS will never take (too
// large, or refused as the sender's fault) is a refusal, reported and not sent; anything else that
// still fails is thrown, and oldestUnsent() says where a re-run may resume.

import { setTimeout as sleep } from 'node:timers/promises';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { FifoIds } from './fifo.ts';
import { encodeJob } from './job-message.ts';
import type { Job } from '../engine/job.ts';

const BATCH_ENTRIES = 10;
/** SQS's limit per message and per batch (the sum of its bodies) since 2025: 1 MiB. */
export const MESSAGE_BYTES = 1024 * 1024;
const BATCH_BYTES = MESSAGE_BYTES;
const ENTRY_RETRIES = 5;

/** A job SQS will not take however often it is sent, and why. */
export interface Refusal {
  job: Job;
  detail: string;
}

/** The refusal of a job whose message would be over SQS's limit, or null. */
export function oversized(job: Job, body = encodeJob(job)): Refusal | null {
  // Bodies are ASCII (encodeJob): characters are bytes.
  return body.length > MESSAGE_BYTES ? { job, detail: `its job message is ${body.length} bytes, over SQS's limit of ${MESSAGE_BYTES}` } : null;
}

interface Entry {
  job: Job;
  body: string;
  /** Fixed at send(): a retried entry keeps its deduplication id, so SQS drops it if it did arrive. */
  ids: FifoIds;
  /** The caller's position of the job, when it tracks them (see oldestUnsent). */
  tag: number | undefined;
}

export class JobSender {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #ids: (job: Job) => FifoIds;
  readonly #maxInFlight: number;
  #batch: Entry[] = [];
  #batchBytes = 0;
  #inFlight = new Set<Promise<void>>();
  #failure: unknown = null;
  /** Tags of jobs buffered or in flight: not yet taken by SQS nor refused. */
  readonly #unsent = new Set<number>();
  sent = 0;
  /** Jobs SQS refused per entry, as the sender's fault (a too-large job is send()'s answer instead). */
  readonly refused: Refusal[] = [];

  /** `ids` gives each job its message group and deduplication id (fifo.ts). */
  constructor(sqs: SQSClient, queueUrl: string, ids: (job: Job) => FifoIds, maxInFlight = 16) {
    this.#sqs = sqs;
    this.#queueUrl = queueUrl;
    this.#ids = ids;
    this.#maxInFlight = maxInFlight;
  }

  /** Queues `job` for sending; a job over the message limit is not sent: its refusal is the answer. */
  async send(job: Job, tag?: number): Promise<Refusal | null> {
    const body = encodeJob(job);
    const refusal = oversized(job, body);
    if (refusal) return refusal;
    const bytes = body.length;
    if (this.#batch.length === BATCH_ENTRIES || this.#batchBytes + bytes > BATCH_BYTES) await this.#dispatch();
    this.#batch.push({ job, body, ids: this.#ids(job), tag });
    if (tag !== undefined) this.#unsent.add(tag);
    this.#batchBytes += bytes;
    return null;
  }

  /** Sends what is buffered and waits for every batch; throws if any entry could not be sent. */
  async flush(): Promise<void> {
    if (this.#batch.length > 0) await this.#dispatch();
    await Promise.all(this.#inFlight);
    if (this.#failure) throw this.#failure;
  }

  /** Waits for the batches in flight to end either way (after a failure, before oldestUnsent()). */
  async settle(): Promise<void> {
    await Promise.all(this.#inFlight);
  }

  /** The smallest tag not yet taken by SQS (nor refused); undefined when every job sent so far was. */
  oldestUnsent(): number | undefined {
    let oldest: number | undefined;
    for (const tag of this.#unsent) if (oldest === undefined || tag < oldest) oldest = tag;
    return oldest;
  }

  #forget(entry: Entry): void {
    if (entry.tag !== undefined) this.#unsent.delete(entry.tag);
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

  async #sendBatch(entries: Entry[]): Promise<void> {
    let pending = entries;
    for (let attempt = 0; pending.length > 0; attempt++) {
      const answer = await this.#sqs.send(new SendMessageBatchCommand({
        QueueUrl: this.#queueUrl, Entries: pending.map((e, i) => ({ Id: String(i), MessageBody: e.body, ...e.ids })),
      }));
      for (const ok of answer.Successful ?? []) {
        this.#forget(pending[Number(ok.Id)]!);
        this.sent++;
      }
      const retry: Entry[] = [];
      for (const failed of answer.Failed ?? []) {
        const entry = pending[Number(failed.Id)]!;
        if (failed.SenderFault) {
          // Sent again it would be refused again: the job is reported, not retried.
          this.refused.push({ job: entry.job, detail: `SQS refused its job: ${failed.Code}: ${failed.Message ?? ''}` });
          this.#forget(entry);
        } else retry.push(entry);
      }
      pending = retry;
      if (pending.length > 0 && attempt >= ENTRY_RETRIES) throw new Error(`SQS failed to take ${pending.length} jobs after ${ENTRY_RETRIES} retries`);
      if (pending.length > 0) await sleep(100 * 2 ** attempt);
    }
  }
}
