// What became of every image of a split in the cloud, from three cheap sources: the split-time
// index (one row per distinct entry), a listing of images/<split>/ (stored) and a listing of
// failures/<split>/<reason>/ (why not). No image and no failure record is read.

import { GetObjectCommand, NoSuchKey, type S3Client } from '@aws-sdk/client-s3';
import { parse } from 'csv-parse';
import type { Readable } from 'node:stream';
import { safeSegment } from '../core/keys.ts';
import { listObjects } from './listing.ts';
import { PREFIX } from './prefixes.ts';
import { indexKey, statusKey, type SplitStatus } from './split.ts';

export type CloudStatus = 'fetched' | 'failed' | 'pending';

export interface CloudRow {
  image_id: string;
  label: string;
  url: string;
  /** Key relative to images/ (the local path relative to the sync folder). */
  path: string;
  status: CloudStatus;
  bytes: number;
  reason: string;
}

export interface SplitCounts {
  entries: number;
  fetched: number;
  failed: number;
  pending: number;
  bytes: number;
  byReason: Record<string, number>;
}

export class CloudStateError extends Error {
  override name = 'CloudStateError';
}

export async function readStatus(s3: S3Client, bucket: string, split: string): Promise<SplitStatus | null> {
  try {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: statusKey(split) }));
    return JSON.parse(await answer.Body!.transformToString()) as SplitStatus;
  } catch (error) {
    if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

/** Every split the manifest function has seen, newest first. */
export async function listSplits(s3: S3Client, bucket: string): Promise<SplitStatus[]> {
  const keys: string[] = [];
  for await (const page of listObjects(s3, bucket, PREFIX.status)) for (const o of page) if (o.key.endsWith('.json')) keys.push(o.key);
  const statuses = await Promise.all(keys.map((key) => readStatus(s3, bucket, key.slice(PREFIX.status.length, -'.json'.length))));
  return statuses.filter((s): s is SplitStatus => s !== null).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
}

/** Stored images of a split: key relative to images/ → size. */
export async function storedImages(s3: S3Client, bucket: string, split: string): Promise<Map<string, number>> {
  const stored = new Map<string, number>();
  for await (const page of listObjects(s3, bucket, `${PREFIX.images}${split}/`)) {
    for (const o of page) stored.set(o.key.slice(PREFIX.images.length), o.size);
  }
  return stored;
}

/** Latest failure reason per (safe) image id of a split. */
export async function failureReasons(s3: S3Client, bucket: string, split: string): Promise<Map<string, string>> {
  const latest = new Map<string, { reason: string; at: number }>();
  const prefix = `${PREFIX.failures}${split}/`;
  for await (const page of listObjects(s3, bucket, prefix)) {
    for (const o of page) {
      const [reason, file] = o.key.slice(prefix.length).split('/');
      if (!reason || !file?.endsWith('.json')) continue;
      const id = file.slice(0, -'.json'.length);
      const seen = latest.get(id);
      if (!seen || seen.at < o.lastModified) latest.set(id, { reason, at: o.lastModified });
    }
  }
  return new Map([...latest].map(([id, { reason }]) => [id, reason]));
}

/** The split's rows with their final (or current) status, in manifest order; `listed`: a listing of its images already made. */
export async function* splitRows(s3: S3Client, bucket: string, split: string, listed?: Map<string, number>): AsyncGenerator<CloudRow> {
  const [stored, failures] = await Promise.all([listed ?? storedImages(s3, bucket, split), failureReasons(s3, bucket, split)]);
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
    let reason = '';
    if (size !== undefined) status = 'fetched';
    else if (failures.has(safeSegment(id))) {
      status = 'failed';
      reason = failures.get(safeSegment(id))!;
    } else if (record.status === 'failed') {
      status = 'failed';
      reason = record.reason ?? '';
    }
    yield { image_id: id, label: record.label ?? '', url: record.url ?? '', path: size !== undefined ? path : '', status, bytes: size ?? 0, reason };
  }
}

export function emptyCounts(): SplitCounts {
  return { entries: 0, fetched: 0, failed: 0, pending: 0, bytes: 0, byReason: {} };
}

export function count(counts: SplitCounts, row: CloudRow): void {
  counts.entries++;
  counts[row.status]++;
  counts.bytes += row.bytes;
  if (row.status === 'failed') counts.byReason[row.reason] = (counts.byReason[row.reason] ?? 0) + 1;
}
