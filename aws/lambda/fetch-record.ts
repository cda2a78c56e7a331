// One SQS record of the fetch function: decode the job, run it, and decide its fate. Fetched and
// skipped images and permanent failures are acknowledged (permanent failures recorded under
// failures/); transient failures are thrown, so SQS redelivers them and parks them in the DLQ
// after maxReceiveCount receives.

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SQSRecord } from 'aws-lambda';
import { decodeJob } from '../job-message.ts';
import type { Job } from '../../engine/job.ts';
import { isTransient, type Failed, type Outcome } from '../../engine/outcome.ts';
import type { Store } from '../../engine/store.ts';
import { fetchJob, type ImageFetcher } from '../../engine/worker.ts';
import { failureKey, type FailureRecord } from '../bucket.ts';


export class TransientFailure extends Error {
  override name = 'TransientFailure';
  readonly outcome: Failed;
  constructor(job: Job, outcome: Failed) {
    super(`${job.split}/${job.id}: ${outcome.reason} (${outcome.detail}), will be retried`);
    this.outcome = outcome;
  }
}

export interface RecordDeps {
  s3: S3Client;
  bucket: string;
  store: Store;
  fetcher: ImageFetcher;
  /** Aborts when the invocation must wrap up before its deadline. */
  signal: AbortSignal;
  onOutcome?: (job: Job, outcome: Outcome) => void;
}


export async function handleRecord(record: SQSRecord, deps: RecordDeps): Promise<Outcome> {
  const job = decodeJob(record.body);
  const outcome = await fetchJob(job, deps.store, deps.fetcher, deps.signal);
  if (deps.signal.aborted && outcome.status === 'failed') {
    // Cut short by the function's deadline, not by the origin: not a failure of the image.
    throw new TransientFailure(job, { ...outcome, reason: 'timeout', detail: 'the invocation ran out of time' });
  }
  deps.onOutcome?.(job, outcome);
  if (outcome.status !== 'failed') return outcome;
  const transient = isTransient(outcome.reason);
  const failure: FailureRecord = {
    split: job.split,
    id: job.id,
    key: job.key,
    labels: job.labels,
    urls: job.urls,
    url: outcome.url,
    reason: outcome.reason,
    detail: outcome.detail,
    ...(outcome.httpStatus ? { httpStatus: outcome.httpStatus } : {}),
    attempts: outcome.attempts,
    transient,
    receiveCount: Number(record.attributes.ApproximateReceiveCount ?? 1),
    at: new Date().toISOString(),
  };
  // Recorded for transient failures too: if they end in the DLQ, the report still knows why.
  await deps.s3.send(new PutObjectCommand({
    Bucket: deps.bucket, Key: failureKey(job.split, failure.reason, job.id), Body: JSON.stringify(failure), ContentType: 'application/json',
  }));
  if (transient) throw new TransientFailure(job, outcome);
  return outcome;
}
