// What became of every image of a split in the cloud, from cheap sources: the split-time index
// (one row per distinct entry), a listing of images/<split>/ (stored), a listing of
// failures/<split>/<reason>/ (why not) and, for sync, the fetch records under records/<split>/
// (a few objects per thousand images). No image and no failure record is read. The queues are
// queue-state.ts's.

import { GetObjectCommand, NoSuchKey, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { safeSegment } from '../../engine/keys.ts';
import { isFailureReason, isTransient, type FailureReason } from '../../engine/outcome.ts';
import { FirstWithBytes, judge, SameBytes } from '../../engine/same-bytes.ts';
import { listObjects, type ListedObject } from '../listing.ts';
import { failurePrefix, imagesPrefix, indexKey, PREFIX, recordsPrefix, splitOfStatusKey, statusKey, type FetchRecord, type SplitStatus } from '../bucket.ts';
import { retryPauseMs } from './retry-pause.ts';
import { IndexCsvError, indexCsvRows } from './index-csv.ts';

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
  /** What the fetch learnt (records/), when splitRows was given the records. */
  format?: string | undefined;
  httpStatus?: number | undefined;
  attempts?: number | undefined;
  detail?: string | undefined;
  sha256?: string | undefined;
  width?: number | undefined;
  height?: number | undefined;
  originalBytes?: number | undefined;
  /** The first id in manifest order whose kept image has the same bytes (given the records). */
  duplicateOf?: string | undefined;
}

/** What the fetches of a split learnt, by image id: the latest fetch that stored it, and the latest failure. */
export interface FetchRecords {
  fetched: Map<string, FetchRecord>;
  failed: Map<string, FetchRecord>;
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

export class CloudStateError extends Error {
  override name = 'CloudStateError';
}

// A body that breaks off after its answer came (a stall the SDK's socket time-out cut, a reset) is
// read again this many times, after retryPauseMs; the SDK retries the requests themselves, not a
// body its caller reads.
const BODY_ATTEMPTS = 6;

/** One line for a body that kept breaking off. */
function brokeOff(key: string, attempts: number, error: unknown): CloudStateError {
  return new CloudStateError(`reading ${key} from the bucket broke off ${attempts} times (last: ${(error as Error).message ?? String(error)}): check the network and run the command again`, { cause: error });
}

/** A small object's whole text, read again when its body breaks off. */
export async function objectText(s3: S3Client, bucket: string, key: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    try {
      return await answer.Body!.transformToString();
    } catch (error) {
      if (attempt >= BODY_ATTEMPTS) throw brokeOff(key, attempt, error);
      await sleep(retryPauseMs(attempt));
    }
  }
}

/**
 * An object's body as a stream that survives breaks: when it breaks off, the rest is asked for
 * (Range from the last byte passed on, If-Match its ETag) and joined on, so a reader of the stream
 * sees every byte once. `answer`: the object's GET, sent already.
 */
export function resumableBody(s3: S3Client, bucket: string, key: string, answer: GetObjectCommandOutput, signal?: AbortSignal): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    const total = answer.ContentLength;
    const etag = answer.ETag;
    let body = answer.Body as Readable;
    let offset = 0;
    // Errors are taken where the body is read (below), also one that comes while it waits unread.
    body.on('error', () => {});
    for (let failures = 0; ;) {
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          offset += chunk.length;
          failures = 0;
          yield chunk;
        }
        return;
      } catch (error) {
        body.destroy();
        if (signal?.aborted) throw error;
        if (++failures >= BODY_ATTEMPTS || !etag) throw brokeOff(key, failures, error);
        if (total !== undefined && offset >= total) return;
        await sleep(retryPauseMs(failures), undefined, signal ? { signal } : {});
        // 412 (changed meanwhile) is thrown as the SDK's error: a table read half from each version would be neither.
        const rest = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${offset}-`, IfMatch: etag }), signal ? { abortSignal: signal } : {});
        if (!rest.ContentRange?.startsWith(`bytes ${offset}-`)) {
          (rest.Body as Readable | undefined)?.destroy();
          throw new CloudStateError(`reading ${key} from the bucket broke off, and the bucket did not answer the rest from byte ${offset}`);
        }
        body = rest.Body as Readable;
        body.on('error', () => {});
      }
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** The split's status record; its name is the one in the key, whatever the body says (it is not trusted). */
export async function readStatus(s3: S3Client, bucket: string, split: string): Promise<SplitStatus | null> {
  try {
    const status = JSON.parse(await objectText(s3, bucket, statusKey(split))) as SplitStatus;
    if (typeof status !== 'object' || status === null) throw new CloudStateError(`${statusKey(split)} in the bucket is not a status record`);
    return { ...status, split, startedAt: String(status.startedAt ?? '') };
  } catch (error) {
    if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

/** Lists a prefix page by page: the SDK's listObjects by default, sync's BucketLister (its connections opened already) when given. */
export type Pages = (prefix: string) => AsyncIterable<ListedObject[]>;

const sdkPages = (s3: S3Client, bucket: string): Pages => (prefix) => listObjects(s3, bucket, prefix);

/** Every split the manifest function has seen, newest first. */
export async function listSplits(s3: S3Client, bucket: string, named?: (splits: readonly string[]) => void): Promise<SplitStatus[]> {
  const splits: string[] = [];
  for await (const page of listObjects(s3, bucket, PREFIX.status)) {
    for (const o of page) {
      const split = splitOfStatusKey(o.key);
      if (split !== null) splits.push(split);
    }
  }
  named?.(splits);
  const statuses = await Promise.all(splits.map((split) => readStatus(s3, bucket, split)));
  return statuses.filter((s): s is SplitStatus => s !== null).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
}

/**
 * The splits with an index (split and queued), newest first; only `split` when one is named (its
 * status read directly: one round trip, not two). `named` hears the names found before their
 * status is read (sync asks for a first page of images meanwhile).
 */
export async function queuedSplits(s3: S3Client, bucket: string, split?: string, named?: (splits: readonly string[]) => void): Promise<SplitStatus[]> {
  if (split) {
    if (safeSegment(split) !== split) return [];
    named?.([split]);
    const status = await readStatus(s3, bucket, split);
    return status?.state === 'queued' ? [status] : [];
  }
  return (await listSplits(s3, bucket, named)).filter((s) => s.state === 'queued');
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
export async function failureReasons(s3: S3Client, bucket: string, split: string, pages: Pages = sdkPages(s3, bucket)): Promise<Map<string, FailureReason>> {
  const latest = new Map<string, { reason: FailureReason; at: number }>();
  const prefix = failurePrefix(split);
  for await (const page of pages(prefix)) {
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

/** Reads records/<split>/: one listing, and a GET per fetch invocation (about one per batch of jobs). */
export async function fetchRecords(s3: S3Client, bucket: string, split: string, pages: Pages = sdkPages(s3, bucket)): Promise<FetchRecords> {
  const records: FetchRecords = { fetched: new Map(), failed: new Map() };
  const keys: string[] = [];
  for await (const page of pages(recordsPrefix(split))) for (const o of page) if (o.key.endsWith('.jsonl')) keys.push(o.key);
  const read = async (key: string): Promise<void> => {
    for (const line of (await objectText(s3, bucket, key)).split('\n')) {
      if (line === '') continue;
      const record = JSON.parse(line) as FetchRecord;
      const latest = record.status === 'fetched' ? records.fetched : records.failed;
      const seen = latest.get(record.id);
      if (!seen || seen.at < record.at) latest.set(record.id, record);
    }
  };
  // 32 at a time, each reader taking the next key as soon as it is done (no batch waits for its slowest).
  let next = 0;
  const reader = async (): Promise<void> => {
    while (next < keys.length) await read(keys[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(32, keys.length) }, reader));
  return records;
}

/**
 * The bytes every fetch of the split saw, per host (engine/same-bytes.ts): each stored image's
 * and each refused placeholder's SHA-256, from the fetch records. The functions each know only
 * what their container saw; this is the whole split's answer, the same `run` reaches.
 */
export function sameBytesOf(records: FetchRecords, threshold: number): SameBytes {
  const same = new SameBytes(threshold);
  for (const r of records.fetched.values()) if (r.sha256) same.add(r.sha256, r.url);
  for (const r of records.failed.values()) {
    if (r.sha256 && r.reason === 'placeholder' && !records.fetched.has(r.id)) same.add(r.sha256, r.url);
  }
  return same;
}

/** Keys (relative to images/) of the stored images that are a host's placeholder: not to be brought home. */
export function placeholderKeys(records: FetchRecords, same: SameBytes): Set<string> {
  const keys = new Set<string>();
  for (const r of records.fetched.values()) if (r.sha256 && same.placeholder(r.sha256, r.url) !== null) keys.add(r.key);
  return keys;
}

/**
 * The split's rows with their final (or current) status, in manifest order. `listed`, `failures`:
 * a listing of its images, and failureReasons(), already made. `queueBusy`: the jobs queue still
 * holds jobs, so an image whose last attempt failed for a transient reason will be tried again:
 * pending, not failed. `sameBytes`
 * (with `records`): placeholders fail and repeated bytes name their first id, as `run` does.
 */
export async function* splitRows(s3: S3Client, bucket: string, split: string, o: { listed?: Map<string, number>; failures?: Map<string, FailureReason>; queueBusy?: boolean; records?: FetchRecords; sameBytes?: SameBytes; index?: Promise<GetObjectCommandOutput> } = {}): AsyncGenerator<CloudRow> {
  const [stored, failures] = await Promise.all([o.listed ?? storedImages(s3, bucket, split), o.failures ?? failureReasons(s3, bucket, split)]);
  let body: Readable;
  try {
    // The index's GET, when the caller sent it already (sync: during its last downloads).
    const answer = await (o.index ?? s3.send(new GetObjectCommand({ Bucket: bucket, Key: indexKey(split) })));
    body = resumableBody(s3, bucket, indexKey(split), answer);
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') throw new CloudStateError(`no index for split "${split}" in the bucket: was its manifest submitted and split?`);
    throw error;
  }
  const first = new FirstWithBytes();
  for await (const record of tableRows(body, indexKey(split))) {
    const path = record.path ?? '';
    const id = record.image_id ?? '';
    const size = path ? stored.get(path) : undefined;
    let status: CloudStatus = 'pending';
    let reason: FailureReason | '' = '';
    let fetch: FetchRecord | undefined;
    let detail: string | undefined;
    let attempts: number | undefined;
    const failure = failures.get(safeSegment(id));
    if (size !== undefined) {
      status = 'fetched';
      fetch = o.records?.fetched.get(id);
      attempts = fetch?.attempts;
    } else if (failure) {
      reason = failure;
      status = o.queueBusy && isTransient(reason) ? 'pending' : 'failed';
      fetch = o.records?.failed.get(id);
      detail = fetch?.detail;
      attempts = fetch?.attempts;
    } else if (record.status === 'failed' && isFailureReason(record.reason ?? '')) {
      status = 'failed';
      reason = record.reason as FailureReason;
      detail = record.detail || undefined;
      // Failed by the split, never fetched.
      attempts = 0;
    }
    const row: CloudRow = {
      image_id: id, label: record.label ?? '', url: fetch?.url || record.url || '', path: size !== undefined ? path : '', status, bytes: size ?? 0, reason,
      format: fetch?.format, httpStatus: fetch?.httpStatus, attempts, detail, sha256: fetch?.sha256,
      width: fetch?.width, height: fetch?.height, originalBytes: fetch?.originalBytes,
    };
    yield o.sameBytes ? settle(row, o.sameBytes, first) : row;
  }
}

/** The bucket's index table row by row; one that is not a table stops with its one line, as a body that kept breaking off does. */
export async function* tableRows(body: AsyncIterable<Buffer | string>, key: string): AsyncGenerator<Record<string, string>> {
  try {
    yield* indexCsvRows(body, key);
  } catch (error) {
    throw error instanceof IndexCsvError ? new CloudStateError(`the bucket's ${error.message}`) : error;
  }
}

/** A row's verdict on its bytes: a placeholder fails (nothing kept), a repeat names the first id. */
function settle(row: CloudRow, same: SameBytes, first: FirstWithBytes): CloudRow {
  const verdict = judge(same, first, { id: row.image_id, url: row.url, sha256: row.sha256, kept: row.status === 'fetched', refused: row.reason === 'placeholder' });
  if (verdict === null) return row;
  if ('duplicateOf' in verdict) return { ...row, duplicateOf: verdict.duplicateOf };
  return { ...row, status: 'failed', reason: 'placeholder', path: '', bytes: 0, format: undefined, width: undefined, height: undefined, originalBytes: undefined, detail: verdict.placeholder };
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
