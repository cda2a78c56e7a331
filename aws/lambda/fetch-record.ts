// One SQS record of the fetch function: decode the job, run it, and decide its fate. Fetched and
// skipped images and permanent failures are acknowledged (permanent failures recorded under
// failures/); transient failures are thrown, so SQS redelivers them and parks them in the DLQ
// after maxReceiveCount receives. What each fetch learnt goes to records/ (FetchLog), for sync.
// A job whose host is paused for the fleet (host-pauses.ts) is not tried, and one whose host asks
// to wait (Retry-After) pauses it for the fleet: either way it waits in the queue, not failed.
// A skipped image is recorded only when its record may be missing or wrong (a redelivery, a put
// refused), and then as what is stored, from the object's HEAD (its metadata's SHA-256).

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { hash } from 'node:crypto';
import type { SQSRecord } from 'aws-lambda';
import { decodeJob } from '../job-message.ts';
import type { Job } from '../../engine/job.ts';
import { isTransient, type Failed, type Outcome, type Skipped } from '../../engine/outcome.ts';
import type { Store } from '../../engine/store.ts';
import { fetchJob, type ImageFetcher, type ImageStep } from '../../engine/worker.ts';
import { failureKey, recordsKey, type FailureRecord, type FetchRecord } from '../bucket.ts';
import { Unfinished } from './straggler.ts';
import { HostPaused, type FleetPauses } from './host-pauses.ts';
import { jobOrigin } from '../fifo.ts';
import type { SignedObjects } from '../signed-request.ts';
import { storedSourceUrl, type StoredImage } from './s3-store.ts';


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
  /** Resizing before the store, when the stack asks for it. */
  image?: ImageStep;
  /** Aborts when the record has had its share of the invocation, or the invocation must wrap up. */
  signal: AbortSignal;
  onOutcome?: (job: Job, outcome: Outcome) => void;
  /** Collects what each fetch learnt; written once per invocation. */
  log?: FetchLog;
  /** Host pauses shared by the fleet. */
  pauses?: FleetPauses;
  /** The function's signed client of the bucket: failure records go through it, not an SDK command, when given. */
  objects?: SignedObjects;
  /**
   * What `store` holds under a key, with its metadata (S3Store.described; its head() returns the
   * same, which a redelivery keeps). Without it, skipped images are never recorded.
   */
  described?: (key: string) => Promise<StoredImage | null>;
}

/** A small object of the function's own (a record): PUT through the signed client when there is one, else the SDK. */
async function putRecord(s3: S3Client, bucket: string, objects: SignedObjects | undefined, key: string, text: string, contentType: string): Promise<void> {
  if (!objects) {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: text, ContentType: contentType }));
    return;
  }
  const body = Buffer.from(text, 'utf8');
  await (await objects.get()).send({ method: 'PUT', key, headers: { 'content-type': contentType }, body, sha256: hash('sha256', body, 'hex'), expect: [] });
}

/**
 * The invocation's fetch records, one JSON line per image fetched or failed, written as one
 * records/<split>/<invocation>.jsonl per split at the end: a PUT per batch, not per image.
 */
export class FetchLog {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #name: string;
  readonly #objects: SignedObjects | undefined;
  readonly #lines = new Map<string, string[]>();

  constructor(s3: S3Client, bucket: string, name: string, objects?: SignedObjects) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#name = name;
    this.#objects = objects;
  }

  add(job: Job, outcome: Outcome): void {
    // Skipped: found stored, or fetched and then refused at the put (another delivery stored it
    // first, maybe other bytes). Either way this fetch did not store what is there: see addStored.
    if (outcome.status === 'skipped') return;
    this.#push(job.split, {
      id: job.id, key: job.key, status: outcome.status === 'failed' ? 'failed' : 'fetched', url: outcome.url, bytes: outcome.bytes,
      ...(outcome.format ? { format: outcome.format } : {}),
      ...(outcome.status === 'failed' ? { reason: outcome.reason, detail: outcome.detail } : {}),
      ...(outcome.httpStatus ? { httpStatus: outcome.httpStatus } : {}),
      attempts: outcome.attempts,
      ...(outcome.sha256 ? { sha256: outcome.sha256 } : {}),
      ...(outcome.width !== undefined ? { width: outcome.width, height: outcome.height } : {}),
      ...(outcome.originalBytes !== undefined ? { originalBytes: outcome.originalBytes } : {}),
      at: new Date().toISOString(),
    });
  }

  /**
   * A skipped image as it is stored (its HEAD): a `fetched` line, for a delivery whose own record
   * may be lost (an invocation killed before its end) or of a put refused. When this delivery
   * fetched the very bytes stored, its own line, which says more (size in pixels, fetched size).
   * An object without its SHA-256 in its metadata (stored before puts carried it) gets no line: a
   * line without it would replace a complete record, if the first delivery's was written.
   * `attempts` stays this delivery's (0 when it found the image stored): the storing one's are not known.
   */
  addStored(job: Job, stored: StoredImage, outcome: Skipped): void {
    if (stored.sha256 === undefined) return;
    if (outcome.sha256 === stored.sha256 && outcome.format !== undefined && outcome.bytes === stored.bytes) {
      this.add(job, { ...outcome, status: 'fetched', format: outcome.format, sha256: outcome.sha256 });
      return;
    }
    this.#push(job.split, {
      id: job.id, key: job.key, status: 'fetched',
      // The URL that answered for the bytes stored; the stored text when it is none of this job's (another manifest's entry).
      url: storedSourceUrl(job.urls, stored) ?? stored.url ?? outcome.url, bytes: stored.bytes,
      ...(stored.format ? { format: stored.format } : {}),
      attempts: outcome.attempts,
      sha256: stored.sha256,
      at: new Date().toISOString(),
    });
  }

  #push(split: string, line: FetchRecord): void {
    let lines = this.#lines.get(split);
    if (!lines) this.#lines.set(split, (lines = []));
    lines.push(JSON.stringify(line));
  }

  async flush(): Promise<void> {
    const splits = [...this.#lines].map(([split, lines]) => putRecord(this.#s3, this.#bucket, this.#objects, recordsKey(split, this.#name), lines.join('\n') + '\n', 'application/x-ndjson'));
    this.#lines.clear();
    await Promise.all(splits);
  }
}

/** `store` with what its head() found kept in `found` (S3Store's answer carries the object's metadata). */
function keepingHead(store: Store, found: { stored: StoredImage | null }): Store {
  return {
    head: async (key) => (found.stored = await store.head(key)),
    put: (key, body, meta) => store.put(key, body, meta),
    replace: (key, body) => store.replace(key, body),
    names: (folder) => store.names(folder),
  };
}

export async function handleRecord(record: SQSRecord, deps: RecordDeps): Promise<Outcome> {
  const job = decodeJob(record.body);
  const origin = jobOrigin(job);
  // Unknown (S3 would not say): the fetch goes ahead, and the host's own answer decides.
  const paused = (await deps.pauses?.get(origin).catch(() => 0)) ?? 0;
  if (paused > 0) throw new HostPaused(`${job.split}/${job.id}`, paused);
  const receives = Number(record.attributes.ApproximateReceiveCount ?? 1);
  // A redelivery may find its image stored by a delivery whose records were lost: the HEAD that
  // finds it (with its metadata) is kept to describe it, so that costs no request more.
  const found: { stored: StoredImage | null } = { stored: null };
  const store = deps.log && deps.described && receives > 1 ? keepingHead(deps.store, found) : deps.store;
  const outcome = await fetchJob(job, store, deps.fetcher, deps.signal, deps.image);
  if (deps.signal.aborted && outcome.status === 'failed') {
    // Cut short by its share of the invocation or the function's deadline, not by the origin: not
    // a failure of the image, only not done yet (straggler.ts).
    throw new Unfinished(job, outcome);
  }
  // The host asked us to wait (Retry-After), or the fetcher found it paused (a ban, a throttle):
  // the fetcher's gate has told the fleet (hosts/); a Retry-After is written here too, at no cost
  // when the gate did (the note is not written again for a pause known as long).
  if (outcome.status === 'failed' && (outcome.hostPausedUntil !== undefined || (outcome.reason === 'rate-limited' && outcome.retryAfterMs !== undefined))) {
    const until = outcome.hostPausedUntil ?? Date.now() + outcome.retryAfterMs!;
    if (outcome.reason === 'rate-limited') await deps.pauses?.set(origin, until, 'retry-after').catch(() => {});
    throw new HostPaused(`${job.split}/${job.id}`, until);
  }
  deps.onOutcome?.(job, outcome);
  if (outcome.status !== 'skipped') deps.log?.add(job, outcome);
  else if (deps.log && deps.described && (receives > 1 || outcome.attempts > 0)) {
    // Fetched and then refused at the put: the HEAD before the fetch found nothing, so one HEAD
    // more (only then) says what the other delivery stored. Not answered: no line (the storing
    // delivery's stands, if it was written).
    const stored = outcome.attempts > 0 ? await deps.described(job.key).catch(() => null) : found.stored;
    if (stored) deps.log.addStored(job, stored, outcome);
  }
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
  await putRecord(deps.s3, deps.bucket, deps.objects, failureKey(job.split, failure.reason, job.id), JSON.stringify(failure), 'application/json');
  if (transient) throw new TransientFailure(job, outcome);
  return outcome;
}
