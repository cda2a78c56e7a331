// sync --packed: brings a split's tar shards home (packs/<split>/, written by the pack function)
// instead of its images one by one. Each shard is read in ranges over many connections at once (one
// connection of a long lossy link carries little), written at their offsets into a part file, a
// range cut midway resumed where it broke off; then checked against its SHA-256 and unpacked into
// the same files plain sync writes. Shards done are remembered under <dir>/.cloudfetch-packs/, and
// ranges done are logged beside the part file, so a sync stopped at any moment fetches neither again.

import { createReadStream } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { extract as tarExtract } from 'tar-stream';
import { FsStore } from '../../engine/fs-store.ts';
import { fileSha256 } from '../../engine/file-sha256.ts';
import { printable } from '../../engine/printable.ts';
import type { TokenBucket } from '../../engine/token-bucket.ts';
import { ObjectReadError, ObjectReader, retryPauseMs } from './object-reader.ts';
import { objectText } from './cloud-state.ts';
import { isImageKey, packManifestKey, packShardKey, packShardName, type PackManifest, type PackShard } from '../bucket.ts';

/** Beside the split's folders: which shards are home, and the one being read. */
export const PACK_STATE_DIR = '.cloudfetch-packs';
/**
 * Short ranges, as short transfers: on the lossy link (bench/link.ts, 1% loss) 64 connections each
 * holding a long transfer overflowed the bottleneck's queue and carried a third of the link; ranges
 * of 64-128 KiB, each its own short request, carried half, as many small objects do (1 MiB: 30-35%,
 * 256 KiB: 39-47%).
 */
const DEFAULT_RANGE_BYTES = 128 * 1024;
/** Shards read ahead of the one being unpacked (each a part file on disk). */
const AHEAD = 2;
const RANGE_ATTEMPTS = 8;
// A range silent this long (before its answer or midway) is cut and asked for again from where it stopped.
const STALL_MS = 60_000;
/** No image in a shard is larger than this (the stack's maxBytes is at most 1 GiB). */
const MAX_ENTRY_BYTES = 1024 * 1024 * 1024;

export class PackedSyncError extends Error {
  override name = 'PackedSyncError';
}

export interface PackedOptions {
  s3: S3Client;
  bucket: string;
  split: string;
  /** Images go to <dir>/<split>/…, as plain sync puts them. */
  dir: string;
  /** Image key (relative to images/) → local path (relative to dir): sync's placement. */
  place: (key: string) => string;
  /** Ranges read at once (default 64). */
  concurrency?: number;
  /** Bytes per range (default 128 KiB). */
  rangeBytes?: number;
  /** A range that brings no byte for this long is asked for again from where it stopped (default 60 s). */
  stallMs?: number;
  bandwidth?: TokenBucket;
  signal?: AbortSignal;
  /** Count the shards a sync would read, read and write nothing. */
  dryRun?: boolean;
  onShard?: (shard: { name: string; bytes: number; images: number; fetched: boolean }) => void;
  /** Bytes of shards received, as they come. */
  onBytes?: (bytes: number) => void;
  /** The plain sync's reader, its connections open already (the caller closes it); else one of its own. */
  reader?: ObjectReader;
}

export interface PackedResult {
  /** Shards in the manifest, and whether the pack covers every image listed when it began. */
  shards: number;
  complete: boolean;
  /** Shards read now (or, dry, to read) and their bytes; shards home from an earlier sync. */
  fetched: number;
  bytes: number;
  alreadyHere: number;
  /** Images unpacked now. */
  images: number;
}

/** Reads the split's shards home and unpacks them; the caller's plain sync then copies what no shard holds. */
export async function syncPacked(o: PackedOptions): Promise<PackedResult> {
  const manifest = await readPackManifest(o.s3, o.bucket, o.split);
  const state = join(resolve(o.dir), PACK_STATE_DIR, o.split);
  const result: PackedResult = { shards: manifest.shards.length, complete: manifest.finishedAt !== undefined, fetched: 0, bytes: 0, alreadyHere: 0, images: 0 };
  const present = new Set(await readdir(state).catch(() => [] as string[]));
  const todo = manifest.shards.filter((shard) => {
    if (!present.has(`${stateName(shard)}.done`)) return true;
    result.alreadyHere++;
    o.onShard?.({ name: shard.name, bytes: shard.bytes, images: shard.images, fetched: false });
    return false;
  });
  if (o.dryRun) {
    result.fetched = todo.length;
    result.bytes = todo.reduce((sum, s) => sum + s.bytes, 0);
    return result;
  }
  await mkdir(state, { recursive: true });
  // State of shards no longer in the manifest (packed anew since) goes.
  const wanted = new Set(manifest.shards.map(stateName));
  for (const name of present) if (!wanted.has(name.replace(/\.(done|part|ranges)$/, ''))) await rm(join(state, name), { force: true });
  const store = await FsStore.open(o.dir);
  // The downloads' reader (object-reader.ts), its ranges cut when silent for stallMs.
  const reader = o.reader ?? (await ObjectReader.open(o.s3, o.bucket, Math.max(1, o.concurrency ?? 64), o.stallMs ?? STALL_MS));
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const readings = new Map<number, Promise<Reading>>();
  const reading = (i: number): Promise<Reading> => {
    let r = readings.get(i);
    if (!r) readings.set(i, (r = openReading(o, todo[i]!, state, false)));
    return r;
  };
  // Every connection takes the next range, across shards: the next shard's ranges start while
  // the last of this one are still coming, up to AHEAD shards before the one being unpacked.
  let shardAt = 0;
  let rangeAt = 0;
  let unpacked = 0;
  let moved = Promise.withResolvers<void>();
  const next = async (): Promise<{ r: Reading; n: number } | null> => {
    for (;;) {
      const i = shardAt;
      if (i >= todo.length || signal.aborted) return null;
      if (i >= unpacked + AHEAD) {
        await moved.promise;
        continue;
      }
      const r = await reading(i);
      if (shardAt !== i) continue;
      while (rangeAt < r.ranges && r.done.has(rangeAt)) rangeAt++;
      if (rangeAt < r.ranges) return { r, n: rangeAt++ };
      shardAt = i + 1;
      rangeAt = 0;
    }
  };
  const failed = Promise.withResolvers<never>();
  failed.promise.catch(() => {}); // raced below
  const worker = async (): Promise<void> => {
    try {
      for (let job = await next(); job; job = await next()) await readRangeOf(o, reader, job.r, job.n, signal);
    } catch (error) {
      stop.abort();
      moved.resolve();
      failed.reject(error);
    }
  };
  const workers = Array.from({ length: Math.max(1, o.concurrency ?? 64) }, worker);
  const extra: Reading[] = [];
  try {
    for (let i = 0; i < todo.length; i++) {
      const shard = todo[i]!;
      let r = await Promise.race([reading(i), failed.promise]);
      await Promise.race([r.whole.promise, failed.promise]);
      if (!(await r.finish())) {
        // Read once more, on its own, from the start; the same answer twice is what the bucket holds.
        r = await openReading(o, shard, state, true);
        const again = r;
        extra.push(again);
        let n = 0;
        await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 64, r.ranges) }, async () => {
          for (let k = n++; k < again.ranges; k = n++) await readRangeOf(o, reader, again, k, signal);
        }));
        if (!(await r.finish())) throw new PackedSyncError(`shard ${shard.name} of ${printable(o.split)} differs from its manifest's SHA-256 (read twice): pack the split anew (cloudfetch pack ${printable(o.split)} --repack)`);
      }
      result.images += await unpack(o, shard, r.part, store);
      await writeFile(join(state, `${stateName(shard)}.done`), `${shard.sha256}\n`);
      await rm(r.part, { force: true });
      await rm(r.log, { force: true });
      result.fetched++;
      result.bytes += shard.bytes;
      o.onShard?.({ name: shard.name, bytes: shard.bytes, images: shard.images, fetched: true });
      unpacked++;
      moved.resolve();
      moved = Promise.withResolvers<void>();
    }
  } finally {
    stop.abort();
    moved.resolve();
    await Promise.allSettled(workers);
    await Promise.allSettled([...[...readings.values()].map(async (r) => (await r).close()), ...extra.map((r) => r.close())]);
    await Promise.all([store.close(), o.reader ? undefined : reader.close()]);
  }
  return result;
}

/** The split's pack manifest, its fields checked: it is bucket content, not trusted. */
export async function readPackManifest(s3: S3Client, bucket: string, split: string): Promise<PackManifest> {
  let text: string;
  try {
    text = await objectText(s3, bucket, packManifestKey(split));
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') throw new PackedSyncError(`split ${printable(split)} is not packed: pack it first (cloudfetch pack ${printable(split)})`);
    throw error;
  }
  const bad = (what: string): PackedSyncError => new PackedSyncError(`${packManifestKey(printable(split))} is not a pack manifest: ${what}`);
  let manifest: PackManifest;
  try {
    manifest = JSON.parse(text) as PackManifest;
  } catch {
    throw bad('not JSON');
  }
  if (!manifest || typeof manifest !== 'object' || !Array.isArray(manifest.shards)) throw bad('no list of shards');
  manifest.shards.forEach((s, n) => {
    if (!s || s.name !== packShardName(n)) throw bad(`shard ${n + 1} is not named ${packShardName(n)}`);
    if (!Number.isSafeInteger(s.bytes) || s.bytes < 0 || !/^[0-9a-f]{64}$/.test(String(s.sha256))) throw bad(`shard ${s.name} has no size or SHA-256`);
    if (!Number.isSafeInteger(s.images) || s.images < 0) throw bad(`shard ${s.name} does not say how many images it holds`);
  });
  return manifest;
}

/** Local state files of a shard: its number and hash, so a shard packed anew is read anew. */
const stateName = (shard: PackShard): string => `${shard.name.slice(0, -'.tar'.length)}-${shard.sha256.slice(0, 16)}`;

/** A shard being read into <state>/<name>.part, its ranges done logged in <name>.ranges. */
interface Reading {
  shard: PackShard;
  part: string;
  log: string;
  file: FileHandle;
  rangeBytes: number;
  ranges: number;
  done: Set<number>;
  /** Resolves once every range is in the part file. */
  whole: PromiseWithResolvers<void>;
  /** Closes the part file; whether it is the shard (its SHA-256). */
  finish(): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens a shard's part file, with the ranges an earlier sync finished (none when `restart`). */
async function openReading(o: PackedOptions, shard: PackShard, state: string, restart: boolean): Promise<Reading> {
  const part = join(state, `${stateName(shard)}.part`);
  const log = join(state, `${stateName(shard)}.ranges`);
  if (restart) await rm(log, { force: true });
  const rangeBytes = o.rangeBytes ?? DEFAULT_RANGE_BYTES;
  const ranges = Math.max(1, Math.ceil(shard.bytes / rangeBytes));
  const done = new Set((await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n >= 0 && n < ranges));
  let file: FileHandle;
  try {
    file = await open(part, done.size > 0 ? 'r+' : 'w');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    done.clear(); // the ranges' log outlived its part file
    file = await open(part, 'w');
  }
  const whole = Promise.withResolvers<void>();
  if (done.size === ranges) whole.resolve();
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await file.close();
  };
  return {
    shard, part, log, file, rangeBytes, ranges, done, whole, close,
    async finish() {
      await file.truncate(shard.bytes);
      await close();
      return (await fileSha256(part)) === shard.sha256;
    },
  };
}

/** Range `n` of the shard into its part file, then logged as done. */
async function readRangeOf(o: PackedOptions, reader: ObjectReader, r: Reading, n: number, signal: AbortSignal): Promise<void> {
  const start = n * r.rangeBytes;
  await readRange({ ...o, signal }, reader, packShardKey(o.split, r.shard.name), start, Math.min(r.shard.bytes, start + r.rangeBytes), r.file);
  await appendFile(r.log, `${n}\n`);
  r.done.add(n);
  if (r.done.size === r.ranges) r.whole.resolve();
}

/**
 * Bytes [start, end) of the shard, read through the downloads' reader and written at their offset;
 * a transfer cut midway (or silent for stallMs) keeps what it brought and asks only for the rest.
 */
async function readRange(o: PackedOptions, reader: ObjectReader, key: string, start: number, end: number, file: FileHandle): Promise<void> {
  let at = start;
  const write = async (bytes: Buffer): Promise<void> => {
    const take = bytes.subarray(0, end - at);
    await file.write(take, 0, take.length, at);
    at += take.length;
  };
  const told = (bytes: number, signal?: AbortSignal): Promise<void> | undefined => {
    o.onBytes?.(bytes);
    return o.bandwidth?.take(bytes, signal);
  };
  for (let attempt = 1; at < end; attempt++) {
    const before = at;
    try {
      await write(await reader.get(key, { range: { start: at, end }, ...(o.signal ? { signal: o.signal } : {}), throttle: told }));
      if (at < end) throw new ObjectReadError(`${key}: the answer ended at byte ${at} of ${end}`);
    } catch (error) {
      // What came before the break is kept: the next attempt asks for the rest.
      const partial = error instanceof ObjectReadError ? error.partial : undefined;
      if (partial) await write(Buffer.concat(partial.chunks, partial.bytes));
      if (o.signal?.aborted) throw error;
      if (!(error instanceof ObjectReadError) || !error.transient) {
        // A refusal, or no download error at all (the part file could not be written).
        if (error instanceof ObjectReadError && error.status === 404) throw new PackedSyncError(`shard ${printable(key)} is missing from the bucket: pack the split anew`);
        throw error;
      }
      if (at > before) continue; // it brought bytes: ask for the rest at once
      if (attempt >= RANGE_ATTEMPTS) throw error;
      await sleep(retryPauseMs(attempt), undefined, o.signal ? { signal: o.signal } : {});
    }
  }
}

/** Writes the shard's images through the store (temporary, then rename); any other entry stops the sync. */
async function unpack(o: PackedOptions, shard: PackShard, part: string, store: FsStore): Promise<number> {
  const extract = tarExtract();
  const input = createReadStream(part);
  input.pipe(extract);
  let images = 0;
  try {
    for await (const entry of extract) {
      const { name, type, size } = entry.header;
      if (type !== 'file' || !isImageKey(o.split, name) || size === undefined || size > MAX_ENTRY_BYTES) {
        throw new PackedSyncError(`refused ${printable(name)} (${type}) in shard ${shard.name} of ${printable(o.split)}: not an image of the split; nothing of it written`);
      }
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      await store.replace(o.place(name), Buffer.concat(chunks));
      images++;
    }
  } finally {
    input.destroy();
  }
  return images;
}
