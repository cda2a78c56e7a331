// Copies a bucket prefix to a local folder: many downloads at once over keep-alive connections,
// local files of the same size skipped, each file written under a temporary name and renamed,
// so a sync killed at any moment resumes without partial files.

import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { GetObjectCommand, ListObjectsV2Command, type S3Client, type _Object } from '@aws-sdk/client-s3';
import { INDEX_HEADER, csvField } from '../core/index-table.ts';
import { count, emptyCounts, splitRows, type SplitCounts } from './cloud-state.ts';
import { PREFIX } from './prefixes.ts';

export interface SyncOptions {
  s3: S3Client;
  bucket: string;
  /** Bucket prefix to copy, e.g. `images/train/`; keys below it keep their relative path. */
  prefix: string;
  /** Local folder the relative paths go under. */
  dir: string;
  concurrency?: number;
  signal?: AbortSignal;
  onFile?: (file: { key: string; bytes: number; downloaded: boolean }) => void;
}

export interface SyncResult {
  listed: number;
  downloaded: number;
  skipped: number;
  bytes: number;
}

export async function syncPrefix(o: SyncOptions): Promise<SyncResult> {
  const result: SyncResult = { listed: 0, downloaded: 0, skipped: 0, bytes: 0 };
  const root = resolve(o.dir);
  const dirs = new Set<string>();
  const queue: _Object[] = [];
  let listingDone = false;
  const waiting: Array<() => void> = [];
  const signalWork = (): void => {
    for (const wake of waiting.splice(0)) wake();
  };

  const list = async (): Promise<void> => {
    let token: string | undefined;
    try {
      do {
        const page = await o.s3.send(
          new ListObjectsV2Command({ Bucket: o.bucket, Prefix: o.prefix, ...(token ? { ContinuationToken: token } : {}) }),
          { abortSignal: o.signal },
        );
        for (const object of page.Contents ?? []) {
          if (!object.Key || object.Key.endsWith('/')) continue;
          result.listed++;
          queue.push(object);
        }
        signalWork();
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
        // Keep the listing at most a few pages ahead of the downloads.
        while (queue.length > 5_000 && !o.signal?.aborted) await new Promise<void>((r) => setImmediate(r));
      } while (token && !o.signal?.aborted);
    } finally {
      listingDone = true;
      signalWork();
    }
  };

  const copy = async (object: _Object): Promise<void> => {
    const key = object.Key!;
    const target = resolve(root, key.slice(o.prefix.length));
    if (!target.startsWith(root + sep)) throw new Error(`object key escapes the folder: ${key}`);
    const size = object.Size ?? -1;
    const local = await stat(target).catch(() => null);
    if (local?.isFile() && local.size === size) {
      result.skipped++;
      o.onFile?.({ key, bytes: size, downloaded: false });
      return;
    }
    const answer = await o.s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: key }), { abortSignal: o.signal });
    const body = await answer.Body!.transformToByteArray();
    const dir = dirname(target);
    if (!dirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      dirs.add(dir);
    }
    const temp = join(dir, `.${randomBytes(6).toString('hex')}.cloudfetch-part`);
    try {
      await writeFile(temp, body);
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    result.downloaded++;
    result.bytes += body.length;
    o.onFile?.({ key, bytes: body.length, downloaded: true });
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (o.signal?.aborted) return;
      const next = queue.shift();
      if (next) {
        await copy(next);
        continue;
      }
      if (listingDone) return;
      await new Promise<void>((r) => waiting.push(r));
    }
  };

  const listing = list();
  await Promise.all([listing, ...Array.from({ length: o.concurrency ?? 32 }, worker)]);
  return result;
}

export interface SplitHome {
  images: SyncResult;
  counts: SplitCounts;
  indexFile: string;
}

/**
 * Brings a split home: its images into <dir>/<split>/ and its table into <dir>/<split>.csv (the
 * columns of a local run's index; status `pending` for images still queued or in the DLQ).
 */
export async function bringSplitHome(o: Omit<SyncOptions, 'prefix' | 'dir'> & { split: string; dir: string }): Promise<SplitHome> {
  const images = await syncPrefix({ ...o, prefix: `${PREFIX.images}${o.split}/`, dir: join(o.dir, o.split) });
  const indexFile = join(resolve(o.dir), `${o.split}.csv`);
  const partial = `${indexFile}.${randomBytes(4).toString('hex')}.part`;
  const counts = emptyCounts();
  const out = createWriteStream(partial);
  try {
    out.write(INDEX_HEADER);
    for await (const row of splitRows(o.s3, o.bucket, o.split)) {
      count(counts, row);
      const line = [row.image_id, row.label, row.url, row.path, row.status, row.bytes || '', '', row.reason, '', '', ''].map(csvField).join(',') + '\n';
      if (!out.write(line)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'close');
    await rename(partial, indexFile);
  } catch (error) {
    out.destroy();
    await rm(partial, { force: true });
    throw error;
  }
  return { images, counts, indexFile };
}
