// What became of every image of a split in the cloud, from three cheap sources: the split-time
// index (one row per distinct entry), a listing of images/<split>/ (stored) and a listing of
// failures/<split>/<reason>/ (why not). No image and no failure record is read. And the queues:
// how many jobs wait, are in flight, or are parked.

import { GetObjectCommand, NoSuchKey, type S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, type QueueAttributeName, type SQSClient } from '@aws-sdk/client-sqs';
import { parse } from 'csv-parse';
import type { Readable } from 'node:stream';
import { safeSegment } from '../../engine/keys.ts';
import { isFailureReason, isTransient, type FailureReason } from '../../engine/outcome.ts';
import { formatDuration } from '../../engine/summary.ts';
import { listObjects } from '../listing.ts';
import { failurePrefix, imagesPrefix, indexKey, PREFIX, splitOfStatusKey, statusKey, type SplitStatus } from '../bucket.ts';

export type CloudStatus = 'fetched' | 'failed' | 'pending';

export interface CloudRow {
  image_id: string;
  label: string;
  url: string;
  /** Key relative to images/ (the local path relative to the sync folder). */
  path: string;
  status: CloudStatus;
  bytes: number;
  /** Why it failed; on a pending row, why its last attempt failed (it will be tried again). */
  reason: FailureReason | '';
}

export interface SplitCounts {
  entries: number;
  fetched: number;
  failed: number;
  pending: number;
  /** Of the pending: a first attempt failed, and the job is still in the queue for another. */
  retrying: number;
  bytes: number;
  byReason: Partial<Record<FailureReason, number>>;
}

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

export class CloudStateError extends Error {
  override name = 'CloudStateError';
}

/** The split's status record; its name is the one in the key, whatever the body says (it is not trusted). */
export async function readStatus(s3: S3Client, bucket: string, split: string): Promise<SplitStatus | null> {
  try {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: statusKey(split) }));
    const status = JSON.parse(await answer.Body!.transformToString()) as SplitStatus;
    if (typeof status !== 'object' || status === null) throw new CloudStateError(`${statusKey(split)} in the bucket is not a status record`);
    return { ...status, split, startedAt: String(status.startedAt ?? '') };
  } catch (error) {
    if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

/** Every split the manifest function has seen, newest first. */
export async function listSplits(s3: S3Client, bucket: string): Promise<SplitStatus[]> {
  const splits: string[] = [];
  for await (const page of listObjects(s3, bucket, PREFIX.status)) {
    for (const o of page) {
      const split = splitOfStatusKey(o.key);
      if (split !== null) splits.push(split);
    }
  }
  const statuses = await Promise.all(splits.map((split) => readStatus(s3, bucket, split)));
  return statuses.filter((s): s is SplitStatus => s !== null).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
}

/** The splits with an index (split and queued), newest first; only `split` when one is named. */
export async function queuedSplits(s3: S3Client, bucket: string, split?: string): Promise<SplitStatus[]> {
  return (await listSplits(s3, bucket)).filter((s) => s.state === 'queued' && (!split || s.split === split));
}

/** Stored images of a split: key relative to images/ → size. */
export async function storedImages(s3: S3Client, bucket: string, split: string): Promise<Map<string, number>> {
  const stored = new Map<string, number>();
  for await (const page of listObjects(s3, bucket, imagesPrefix(split))) {
    for (const o of page) stored.set(o.key.slice(PREFIX.images.length), o.size);
  }
  return stored;
}

/** Latest failure reason per (safe) image id of a split; a key with a reason this version does not know is not ours: ignored. */
export async function failureReasons(s3: S3Client, bucket: string, split: string): Promise<Map<string, FailureReason>> {
  const latest = new Map<string, { reason: FailureReason; at: number }>();
  const prefix = failurePrefix(split);
  for await (const page of listObjects(s3, bucket, prefix)) {
    for (const o of page) {
      const [reason, file] = o.key.slice(prefix.length).split('/');
      if (!reason || !isFailureReason(reason) || !file?.endsWith('.json')) continue;
      const id = file.slice(0, -'.json'.length);
      const seen = latest.get(id);
      if (!seen || seen.at < o.lastModified) latest.set(id, { reason, at: o.lastModified });
    }
  }
  return new Map([...latest].map(([id, { reason }]) => [id, reason]));
}

/**
 * The split's rows with their final (or current) status, in manifest order. `listed`: a listing of
 * its images already made. `queueBusy`: the jobs queue still holds jobs, so an image whose last
 * attempt failed for a transient reason will be tried again: pending, not failed.
 */
export async function* splitRows(s3: S3Client, bucket: string, split: string, o: { listed?: Map<string, number>; queueBusy?: boolean } = {}): AsyncGenerator<CloudRow> {
  const [stored, failures] = await Promise.all([o.listed ?? storedImages(s3, bucket, split), failureReasons(s3, bucket, split)]);
  let body: Readable;
  try {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: indexKey(split) }));
    body = answer.Body as Readable;
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') throw new CloudStateError(`no index for split "${split}" in the bucket: was its manifest submitted and split?`);
    throw error;
  }
  for await (const record of body.pipe(parse({ columns: true })) as AsyncIterable<Record<string, string>>) {
    const path = record.path ?? '';
    const id = record.image_id ?? '';
    const size = path ? stored.get(path) : undefined;
    let status: CloudStatus = 'pending';
    let reason: FailureReason | '' = '';
    const failure = failures.get(safeSegment(id));
    if (size !== undefined) status = 'fetched';
    else if (failure) {
      reason = failure;
      status = o.queueBusy && isTransient(reason) ? 'pending' : 'failed';
    } else if (record.status === 'failed' && isFailureReason(record.reason ?? '')) {
      status = 'failed';
      reason = record.reason as FailureReason;
    }
    yield { image_id: id, label: record.label ?? '', url: record.url ?? '', path: size !== undefined ? path : '', status, bytes: size ?? 0, reason };
  }
}

export function emptyCounts(): SplitCounts {
  return { entries: 0, fetched: 0, failed: 0, pending: 0, retrying: 0, bytes: 0, byReason: {} };
}

export function count(counts: SplitCounts, row: CloudRow): void {
  counts.entries++;
  counts[row.status]++;
  counts.bytes += row.bytes;
  if (row.status === 'failed' && row.reason) counts.byReason[row.reason] = (counts.byReason[row.reason] ?? 0) + 1;
  if (row.status === 'pending' && row.reason) counts.retrying++;
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
