// The bucket's contract: every prefix, every key, and the records kept there. The stack's IAM
// grants and trigger filter, the functions, the local cloud and the user's commands all use these.

import { safeSegment } from '../engine/keys.ts';
import type { FailureReason } from '../engine/outcome.ts';

export const PREFIX = {
  /** Uploads here trigger the manifest function. */
  manifests: 'manifests/',
  /** images/<split>/<id>.<ext>: the same keys as the local layout. */
  images: 'images/',
  /** index/<split>.csv: one row per distinct entry, written at split time. */
  index: 'index/',
  /** failures/<split>/<reason>/<id>.json: why an image could not be fetched. */
  failures: 'failures/',
  /** status/<split>.json: what the manifest function made of an upload. */
  status: 'status/',
  /** records/<split>/<invocation>.jsonl: what each fetch learnt, one line per image, read by sync. */
  records: 'records/',
  /** originals/<split>/<id>.<ext>: the fetched bytes of an image stored resized (keepOriginals), under the original's extension. */
  originals: 'originals/',
  /** hosts/<origin hash>.json: a host paused for the whole fleet (Retry-After, a ban), written by the fetch function. */
  hosts: 'hosts/',
  /** packs/<split>/<nnnnn>.tar and packs/<split>/manifest.json: a split's images in tar shards (sync --packed). */
  packs: 'packs/',
} as const;

/** Manifest uploads that trigger a split: these endings, optionally gzipped. */
export const MANIFEST_SUFFIXES = ['.json', '.jsonl', '.ndjson', '.csv', '.tsv', '.txt'].flatMap((s) => [s, `${s}.gz`]);

/** The stack's notification filter: under manifests/ and ending in one of MANIFEST_SUFFIXES. */
export function isManifestKey(key: string): boolean {
  return key.startsWith(PREFIX.manifests) && MANIFEST_SUFFIXES.some((suffix) => key.endsWith(suffix));
}

/** images/<split>/: a split's stored images; keys below images/ are the local paths. */
export const imagesPrefix = (split: string): string => `${PREFIX.images}${split}/`;
export const statusKey = (split: string): string => `${PREFIX.status}${split}.json`;
export const indexKey = (split: string): string => `${PREFIX.index}${split}.csv`;
/**
 * failures/<split>/<reason>/<id>.json: the reason is in the key, so counting failures by reason or
 * picking those to retry is a listing, not a read of every record.
 */
export const failurePrefix = (split: string): string => `${PREFIX.failures}${split}/`;
export const failureKey = (split: string, reason: FailureReason, id: string): string => `${failurePrefix(split)}${reason}/${safeSegment(id)}.json`;

/**
 * records/<split>/<name>.jsonl: one object per fetch invocation and split (a PUT per batch of
 * jobs, not per image), so sync reads what every fetch learnt with a listing and a few GETs.
 */
export const recordsPrefix = (split: string): string => `${PREFIX.records}${split}/`;
export const recordsKey = (split: string, name: string): string => `${recordsPrefix(split)}${safeSegment(name)}.jsonl`;

/** hosts/<hash>.json: the origin's name is hashed (aws/fifo.ts originHash), never put in a key. */
export const hostKey = (originHash: string): string => `${PREFIX.hosts}${originHash}.json`;

/** hosts/<hash>.json: until when every fetch function leaves the origin alone, and why. */
export interface HostNote {
  origin: string;
  /** ms since the epoch. */
  pausedUntil: number;
  reason: 'retry-after' | 'ban' | 'throttled';
  at: string;
  /**
   * Requests a second the whole fleet may send the origin, learnt by one function from a 429 (its
   * own pace then); each function keeps its share of it (aws/fifo.ts groupShare). Absent: none learnt.
   */
  pace?: number;
  /** When the pace was learnt (ms since the epoch): a lesson older than 15 minutes is tested again. */
  paceAt?: number;
}

/** The split named by a status/<split>.json key, or null for any other key. */
export function splitOfStatusKey(key: string): string | null {
  if (!key.startsWith(PREFIX.status) || !key.endsWith('.json')) return null;
  const split = key.slice(PREFIX.status.length, -'.json'.length);
  return split !== '' && safeSegment(split) === split ? split : null;
}

/** status/<split>.json: what the manifest function made of an upload. */
export interface SplitStatus {
  split: string;
  manifest: string;
  state: 'splitting' | 'queued' | 'failed';
  startedAt: string;
  finishedAt?: string;
  /** Manifest entries, duplicates included. */
  entries?: number;
  /** Distinct images sent to the queue. */
  queued?: number;
  /** Distinct images already in the bucket (not sent). */
  alreadyStored?: number;
  /** Entries without a usable URL (failed at once). */
  invalid?: number;
  /** Distinct images SQS would not take (a job message too large, or refused): not sent. */
  unqueueable?: number;
  duplicates?: number;
  error?: string;
  position?: string;
  /**
   * Which upload (ETag, size) and how many of its planned entries, in manifest order, are known
   * queued: a re-run of the same upload after a crash or failure sends only the rest. `submission`
   * names this submission in the jobs' deduplication ids (a resumed split keeps it, an upload
   * split anew gets another), so SQS drops a job a resumed split sends twice within 5 minutes.
   */
  progress?: { etag: string; bytes: number; done: number; submission?: string };
  /** The jobs' message groups per origin (the stack's hostConcurrency when split): retry sends into the same groups. */
  hostConcurrency?: number;
  /** The stack's placeholderThreshold when split: sync decides placeholders with it. */
  placeholderThreshold?: number;
}

/** failures/<split>/<reason>/<id>.json: why one image could not be fetched, enough to send it again. */
export interface FailureRecord {
  split: string;
  id: string;
  key: string;
  labels: string[];
  urls: string[];
  url: string;
  reason: FailureReason;
  detail: string;
  httpStatus?: number;
  attempts: number;
  transient: boolean;
  receiveCount: number;
  at: string;
}

/** One line of records/<split>/<name>.jsonl: what one fetch of one image learnt (its index row's fetch columns). */
export interface FetchRecord {
  id: string;
  key: string;
  status: 'fetched' | 'failed';
  /** The URL that answered, or the last one tried. */
  url: string;
  bytes: number;
  format?: string;
  reason?: FailureReason;
  detail?: string;
  httpStatus?: number;
  attempts: number;
  sha256?: string;
  /** The stored image's size in pixels, when it was decoded (resizing on), and the fetched bytes' size. */
  width?: number;
  height?: number;
  originalBytes?: number;
  at: string;
}

/** packs/<split>/: a split's tar shards and their manifest, written by the pack function. */
export const packsPrefix = (split: string): string => `${PREFIX.packs}${split}/`;
export const packManifestKey = (split: string): string => `${packsPrefix(split)}manifest.json`;
/** packs/<split>/00000.tar, …: numbered in the order they were packed (the index's). */
export const packShardName = (n: number): string => `${String(n).padStart(5, '0')}.tar`;
export const packShardKey = (split: string, name: string): string => `${packsPrefix(split)}${name}`;

/**
 * An image's key relative to images/ as the split writes them: <split>/<file> or
 * <split>/<label>/<file>, every segment as safeSegment makes it. What is packed, and the only
 * names sync --packed takes out of a shard.
 */
export function isImageKey(split: string, key: string): boolean {
  const segments = key.split('/');
  return segments[0] === split && (segments.length === 2 || segments.length === 3) && segments.every((s) => s !== '' && safeSegment(s) === s);
}

/** packs/<split>/manifest.json: the shards packed so far, in order; rewritten after each shard. */
export interface PackManifest {
  split: string;
  /** The size a shard is closed at (its last image may carry it past). */
  shardBytes: number;
  startedAt: string;
  /** Set once every image listed when packing started is in a shard. */
  finishedAt?: string;
  /** Images under images/<split>/ when packing started, and their bytes. */
  listed: number;
  listedBytes: number;
  shards: PackShard[];
}

export interface PackShard {
  /** 00000.tar, … (packShardName). */
  name: string;
  /** The tar's size and SHA-256. */
  bytes: number;
  sha256: string;
  /** Images in it, and the first and last: their keys relative to images/ and positions in the packing order (the index's). */
  images: number;
  first: { position: number; key: string };
  last: { position: number; key: string };
}
