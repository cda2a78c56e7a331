// Packs a split's stored images into tar shards of about `shardBytes` (packs/<split>/00000.tar, …),
// in the index's order, each streamed from the images' GETs through a SHA-256 into a multipart
// upload: memory holds a few images and an upload part or two, never a shard. The manifest is
// rewritten after every shard, so an invocation that runs short of time stops between shards and
// the next one carries on from there.

import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { parse } from 'csv-parse';
import { pack as tarPack } from 'tar-stream';
import { listObjects } from '../listing.ts';
import type { PackAnswer, PackEvent } from '../pack-event.ts';
import { imagesPrefix, indexKey, isImageKey, packManifestKey, packShardKey, packShardName, PREFIX, type PackManifest, type PackShard } from '../bucket.ts';

/** Images read ahead of the tar writer: enough to hide S3's first-byte latency, few enough to bound memory. */
const READ_AHEAD = 16;
const PART_BYTES = 8 * 1024 * 1024;

export interface PackDeps {
  s3: S3Client;
  bucket: string;
  /** Milliseconds this invocation has left (context.getRemainingTimeInMillis). */
  remainingMs: () => number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

interface Stored {
  key: string;
  size: number;
}

/** Packs shards until the split is packed or the invocation's time runs short; the manifest says where it stopped. */
export async function packSplit(request: Required<PackEvent>, deps: PackDeps): Promise<PackAnswer> {
  const { split } = request;
  const earlier = request.repack ? null : await readManifest(deps.s3, deps.bucket, split);
  // A manifest of another shard size is packed anew: its shards would not match what was asked.
  const manifest: PackManifest = earlier && earlier.shardBytes === request.shardBytes ? earlier : {
    split, shardBytes: request.shardBytes, startedAt: new Date().toISOString(), listed: 0, listedBytes: 0, shards: [],
  };
  const order = await packingOrder(deps.s3, deps.bucket, split);
  if (manifest.shards.length === 0) {
    manifest.listed = order.length;
    manifest.listedBytes = order.reduce((sum, x) => sum + x.size, 0);
  }
  // Carry on after the last packed image, found by key: images stored since may have moved it.
  const lastKey = manifest.shards.at(-1)?.last.key;
  let position = lastKey === undefined ? 0 : order.findIndex((x) => x.key === lastKey) + 1;
  if (lastKey !== undefined && position === 0) throw new Error(`the last packed image ${lastKey} is no longer in images/${split}/: pack anew (repack)`);
  let written = 0;
  let slowest = 0;
  while (!manifest.finishedAt) {
    if (position >= order.length) {
      manifest.finishedAt = new Date().toISOString();
      await writeManifest(deps, manifest);
      break;
    }
    // Room for one more shard: twice the slowest so far, and 30 s for the manifest and a margin.
    if (written > 0 && deps.remainingMs() < 2 * slowest + 30_000) break;
    const started = Date.now();
    let end = position;
    for (let bytes = 0; end < order.length && (end === position || bytes + order[end]!.size <= request.shardBytes); end++) bytes += order[end]!.size;
    const shard = await writeShard(deps, split, packShardName(manifest.shards.length), order, position, end);
    manifest.shards.push(shard);
    await writeManifest(deps, manifest);
    deps.log?.('shard packed', { split, shard: shard.name, images: shard.images, bytes: shard.bytes });
    written++;
    slowest = Math.max(slowest, Date.now() - started);
    position = end;
  }
  return {
    split, complete: manifest.finishedAt !== undefined, shards: manifest.shards.length, written,
    images: manifest.shards.reduce((sum, s) => sum + s.images, 0), bytes: manifest.shards.reduce((sum, s) => sum + s.bytes, 0),
  };
}

/**
 * The split's stored images in the index's order (then any the index does not name, by key): the
 * order a user reads the table in, and one every invocation computes alike.
 */
async function packingOrder(s3: S3Client, bucket: string, split: string): Promise<Stored[]> {
  const sizes = new Map<string, number>();
  for await (const page of listObjects(s3, bucket, imagesPrefix(split))) {
    for (const object of page) {
      const key = object.key.slice(PREFIX.images.length);
      if (isImageKey(split, key)) sizes.set(key, object.size);
    }
  }
  const order: Stored[] = [];
  try {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: indexKey(split) }));
    for await (const row of (answer.Body as Readable).pipe(parse({ columns: true })) as AsyncIterable<Record<string, string>>) {
      const size = row.path ? sizes.get(row.path) : undefined;
      if (size === undefined) continue;
      order.push({ key: row.path!, size });
      sizes.delete(row.path!);
    }
  } catch (error) {
    if ((error as { name?: string }).name !== 'NoSuchKey') throw error;
  }
  for (const key of [...sizes.keys()].sort()) order.push({ key, size: sizes.get(key)! });
  return order;
}

async function writeShard(deps: PackDeps, split: string, name: string, order: Stored[], from: number, to: number): Promise<PackShard> {
  const tar = tarPack();
  const hash = createHash('sha256');
  let bytes = 0;
  const body = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  tar.pipe(body);
  const upload = new Upload({
    client: deps.s3,
    params: { Bucket: deps.bucket, Key: packShardKey(split, name), Body: body, ContentType: 'application/x-tar' },
    partSize: PART_BYTES,
    queueSize: 2,
  });
  const uploading = upload.done();
  uploading.catch(() => tar.destroy());
  // Images read ahead in order, each held only until the tar has taken it.
  const reads: Array<Promise<Buffer>> = [];
  const read = (i: number): void => {
    const p = readImage(deps, order[i]!.key);
    p.catch(() => {}); // awaited in order below
    reads.push(p);
  };
  for (let i = from; i < Math.min(to, from + READ_AHEAD); i++) read(i);
  try {
    for (let i = from; i < to; i++) {
      const image = await reads[i - from]!;
      if (i + READ_AHEAD < to) read(i + READ_AHEAD);
      reads[i - from] = Promise.resolve(Buffer.alloc(0)); // let it go
      await new Promise<void>((resolve, reject) => tar.entry({ name: order[i]!.key, size: image.length, mode: 0o644, mtime: new Date(0) }, image, (error) => (error ? reject(error) : resolve())));
    }
    tar.finalize();
    await uploading;
  } catch (error) {
    tar.destroy();
    await upload.abort().catch(() => {});
    throw error;
  }
  return {
    name, bytes, sha256: hash.digest('hex'), images: to - from,
    first: { position: from, key: order[from]!.key }, last: { position: to - 1, key: order[to - 1]!.key },
  };
}

async function readImage(deps: PackDeps, key: string): Promise<Buffer> {
  const answer = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: `${PREFIX.images}${key}` }));
  return Buffer.from(await answer.Body!.transformToByteArray());
}

async function readManifest(s3: S3Client, bucket: string, split: string): Promise<PackManifest | null> {
  try {
    const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: packManifestKey(split) }));
    return JSON.parse(await answer.Body!.transformToString()) as PackManifest;
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

async function writeManifest(deps: PackDeps, manifest: PackManifest): Promise<void> {
  await deps.s3.send(new PutObjectCommand({ Bucket: deps.bucket, Key: packManifestKey(manifest.split), Body: JSON.stringify(manifest), ContentType: 'application/json' }));
}
