// Brings a split home from the bucket: many downloads at once over keep-alive connections (their
// number grown while the rate grows: download-ramp.ts; opened before the first key is known), downloads from the
// listing's first short page on, the rest of the listing sharded by the keys' first character so
// it runs in parallel, the fetch records read meanwhile (no image is looked at before they are),
// local files of the same size skipped (with verify, also the same SHA-256 as the
// fetch recorded, which downloaded bodies must match too), a body cut midway resumed where it
// broke off, an optional shared byte rate (--bwlimit), and every file written through the
// filesystem store (temporary, then rename), so a sync killed at any moment resumes without
// partial files.

import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { TableFile, type IndexRow } from '../../engine/index-table.ts';
import { UNLABELED, safeSegment, type Layout } from '../../engine/keys.ts';
import { FsStore } from '../../engine/fs-store.ts';
import type { Store } from '../../engine/store.ts';
import type { TokenBucket } from '../../engine/token-bucket.ts';
import { count, emptyCounts, failureReasons, fetchRecords, placeholderKeys, resumableBody, sameBytesOf, splitRows, tableRows, type CloudRow, type FetchRecords, type SplitCounts } from './cloud-state.ts';
import type { FailureReason } from '../../engine/outcome.ts';
import { DEFAULT_PLACEHOLDER_THRESHOLD } from '../../engine/same-bytes.ts';
import type { ListedObject, ListedPage } from '../listing.ts';
import { BucketLister } from './bucket-list.ts';
import { ObjectReadError, ObjectReader, retryPauseMs, type PartialBody } from './object-reader.ts';
import { DownloadRamp } from './download-ramp.ts';
import { imagesPrefix, indexKey, PREFIX } from '../bucket.ts';

export interface SyncResult {
  listed: number;
  downloaded: number;
  skipped: number;
  /** Of the downloaded: local files replaced because their size (or, with verify, SHA-256) was wrong. */
  repaired: number;
  bytes: number;
  /** Listed images left in the bucket as a host's placeholder (a local copy from an earlier sync removed). */
  placeholders: number;
}

export interface SplitHome {
  images: SyncResult;
  counts: SplitCounts;
  indexFile: string;
}

export interface HomeOptions {
  s3: S3Client;
  bucket: string;
  split: string;
  /** Local folder: images go to <dir>/<split>/…, the table to <dir>/<split>.csv. */
  dir: string;
  /** `by-label` re-lays the flat bucket keys out as <split>/<label>/<file> (ImageFolder style). */
  layout?: Layout;
  /**
   * Downloads at once, pinned: never more (fewer only while transient errors rise). Without it,
   * DEFAULT_SYNC_CONCURRENCY at first, grown while the rate grows up to RAMP_MOST (download-ramp.ts).
   */
  concurrency?: number;
  /** A byte rate all downloads share (--bwlimit). */
  bandwidth?: TokenBucket;
  /** The tail's second requests for stalled downloads (default on; a test counting requests turns them off). */
  hedge?: boolean;
  /** The downloads' reader, its connections opened already (openReader); the caller closes it. */
  reader?: ObjectReader;
  /** The listing's client (the caller's, which it closes; else one of the sync's own). */
  lister?: BucketLister;
  signal?: AbortSignal;
  /** The jobs queue still holds jobs: a transient failure is pending, not final (see splitRows). */
  queueBusy?: boolean;
  /** Count what would be copied (downloaded: files, bytes: their size) and write nothing. */
  dryRun?: boolean;
  /**
   * Images the split's status says it may hold (queued and already stored): more than a first
   * page's worth are listed in shards at once, without a first page to wait for. Only a hint.
   */
  expectedImages?: number;
  /**
   * The first page of the split's images (at most FIRST_PAGE keys), asked for already: a caller
   * that knows the split before its status is read sends it meanwhile, a round trip sooner.
   */
  firstPage?: Promise<ListedPage>;
  /** The split's fetch records and failure listing, asked for already (as firstPage; bringSplitHome). */
  early?: { records: Promise<FetchRecords>; failures: Promise<Map<string, FailureReason>> };
  /** Distinct URLs of one host with the same bytes that make them a placeholder (the split's, default 3); 0: no check. */
  placeholderThreshold?: number;
  /**
   * Re-hash local files of the right size against the SHA-256 their fetch recorded and copy those
   * that differ again, and check every downloaded body against it before it is written (a body
   * that differs is read again; one that keeps differing stops the sync). Without it a file of
   * the right size is taken as is.
   */
  verify?: boolean;
  onFile?: (file: { key: string; bytes: number; downloaded: boolean }) => void;
  onListed?: (objects: number, bytes: number) => void;
}

// safeSegment() output starts with one of these: listing each as its own prefix runs in parallel.
const SHARDS = [...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-%'];
/** Keys in the listing's first page: a small split in one round trip (see listAll). */
export const FIRST_PAGE = 100;
const FILE_ATTEMPTS = 8;
export const DEFAULT_SYNC_CONCURRENCY = 64;
// Downloads at most when the user pinned none: 4x the start covers a fast link whose round trip,
// not its rate, limits 64 small GETs; the ramp's byte budget keeps large objects below it.
export const RAMP_MOST = 256;
// How often the ramp looks at the rate: several round trips of a long link.
const RAMP_WINDOW_MS = 1000;
// The tail: a download silent for this many times the median time to a first chunk (at least
// HEDGE_MIN_MS) is asked for again.
const HEDGE_STALL = 3;
const HEDGE_MIN_MS = 200;

/** A download under way, for the tail's second requests. */
interface Flight {
  /** When its last chunk (or its request) was. */
  heard: number;
  /** Its downloads waiting out a back-off. */
  resting: number;
  hedged: boolean;
  /** Asks for the object a second time. */
  hedge: () => void;
}

/** Image key (relative to images/) → local path (relative to dir), per the layout. */
export async function placement(o: HomeOptions): Promise<(key: string) => string> {
  if (o.layout !== 'by-label') return (key) => key;
  const labels = new Map<string, string>();
  const answer = await o.s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: indexKey(o.split) }));
  for await (const row of tableRows(resumableBody(o.s3, o.bucket, indexKey(o.split), answer), indexKey(o.split))) {
    const labelList = (row.label ?? '').split(' ').filter(Boolean);
    if (labelList.length > 1) throw new Error(`--layout by-label needs one label per image, but image ${row.image_id} has ${labelList.length}: use the flat layout`);
    if (row.path) labels.set(row.path, labelList.length === 0 ? UNLABELED : safeSegment(labelList[0]!));
  }
  return (key) => {
    const [split, file, ...more] = key.split('/');
    // A stack deployed with layout=by-label keys images <split>/<label>/<file> already.
    if (more.length > 0) return key;
    return `${split}/${labels.get(key) ?? UNLABELED}/${file}`;
  };
}

/** What the fetch records decide about the images, keyed relative to images/. */
export interface Decisions {
  /** SHA-256 per image: what o.verify checks local files and bodies against. */
  hashes?: Map<string, string>;
  /** A host's placeholders: never downloaded, an earlier sync's copy removed. */
  placeholders?: Set<string>;
}

/**
 * Copies the split's images; `stored`, when given, receives every listed key (relative to images/)
 * and size. The listing and the connections start while `decisions` are still being read; no image
 * is looked at, let alone downloaded, before they are known. `lastDownloads` is called once the
 * listing is done and about two rounds of downloads are left.
 */
export async function syncImages(o: HomeOptions, place: (key: string) => string, stored?: Map<string, number>, decisions: Decisions | Promise<Decisions> = {}, lastDownloads?: () => void): Promise<SyncResult> {
  // Read while the listing runs and connections open; no object is looked at before it is known.
  const decided = Promise.resolve(decisions);
  decided.catch(() => {}); // awaited by every copy, and after the listing
  const result: SyncResult = { listed: 0, downloaded: 0, skipped: 0, repaired: 0, bytes: 0, placeholders: 0 };
  // A dry run opens the folder read-only: opening it to write would create it and sweep temporaries.
  const folder = await FsStore.open(o.dir, { readOnly: o.dryRun ?? false });
  const store: Store = folder;
  const ramp = new DownloadRamp(rampBounds(o));
  const reader = o.dryRun ? null : o.reader ?? (await ObjectReader.open(o.s3, o.bucket, ramp.most));
  const lister = o.lister ?? new BucketLister(o.s3, o.bucket);
  const throttle = (bytes: number, signal?: AbortSignal): Promise<void> | undefined => {
    ramp.received(bytes);
    return o.bandwidth?.take(bytes, signal);
  };
  // The first file that cannot be copied stops the others (and the listing) before the sync fails.
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const prefix = imagesPrefix(o.split);
  const queue: ListedObject[] = [];
  let listers = 1;
  const waiting: Array<() => void> = [];
  const wake = (): void => {
    for (const resolveWait of waiting.splice(0)) resolveWait();
  };

  // Names in each local folder when the sync began: one readdir instead of a stat per object
  // that is not there (all of them, on a first sync).
  const folders = new Map<string, Promise<Set<string>>>();
  const presentAtStart = async (local: string): Promise<boolean> => {
    const slash = local.lastIndexOf('/');
    const dir = local.slice(0, slash);
    let names = folders.get(dir);
    if (!names) folders.set(dir, (names = store.names(dir)));
    return (await names).has(local.slice(slash + 1));
  };

  const take = async (page: ListedObject[]): Promise<void> => {
    result.listed += page.length;
    if (stored) for (const object of page) stored.set(object.key.slice(PREFIX.images.length), object.size);
    o.onListed?.(page.length, page.reduce((sum, x) => sum + x.size, 0));
    queue.push(...page);
    wake();
    // Keep the listing a few pages ahead of the downloads, not a million keys ahead.
    while (queue.length > 20_000 && !signal.aborted) await new Promise<void>((r) => waiting.push(r));
  };
  const list = async (shard: string, seen: Promise<Set<string>>): Promise<void> => {
    try {
      for await (const page of lister.pages(prefix + shard, { signal })) {
        const skip = await seen;
        await take(page.filter((x) => !skip.has(x.key)));
      }
    } finally {
      listers--;
      wake();
    }
  };
  // A short page of the whole prefix first: a split of up to FIRST_PAGE images is listed in one
  // round trip, and the downloads start with it (a page of 1,000 keys is ~300 KB: several round
  // trips of a long link). A larger split is listed again in shards, without the keys of that page
  // (not from where it stopped: an emulator may not list in S3's binary order). A split whose
  // status says it is larger is listed in shards at once: the first page's round trips would
  // only delay them (measured ~0.7 s on the lossy link). A first page the caller asked for already
  // (o.firstPage: sent while the split's status was read) is taken too, its keys left out of the
  // shards' pages, which wait for it.
  const listAll = async (): Promise<void> => {
    let shards: Promise<void>[] = [];
    const keysOf = (page: { objects: ListedObject[] }): Set<string> => new Set(page.objects.map((x) => x.key));
    try {
      const sharded = (seen: Promise<Set<string>>): void => {
        listers += SHARDS.length;
        shards = SHARDS.map((shard) => list(shard, seen));
        // Awaited below; a first page that failed fails them too, and listAll with it.
        for (const shard of shards) shard.catch(() => {});
      };
      const large = (o.expectedImages ?? 0) > FIRST_PAGE;
      const firstPage = o.firstPage ?? (large ? undefined : lister.page(prefix, { signal, maxKeys: FIRST_PAGE }));
      if (large) sharded(firstPage ? firstPage.then(keysOf) : Promise.resolve(new Set()));
      if (firstPage) {
        const first = await firstPage;
        if (!large && first.next) sharded(Promise.resolve(keysOf(first)));
        // Only the keys a shard would list: one outside them is none of the split's images.
        await take(first.objects.filter((x) => SHARDS.includes(x.key.charAt(prefix.length))));
      }
    } finally {
      listers--;
      wake();
    }
    await Promise.all(shards);
  };

  const copy = async (object: ListedObject): Promise<void> => {
    const key = object.key.slice(PREFIX.images.length);
    const local = place(key);
    const { hashes, placeholders } = await decided;
    if (placeholders?.has(key)) {
      result.placeholders++;
      if (!o.dryRun && (await presentAtStart(local))) await folder.remove(local);
      return;
    }
    const existing = (await presentAtStart(local)) ? (await store.head(local))?.bytes : undefined;
    const expected = o.verify ? hashes?.get(key) : undefined;
    if (existing === object.size && (expected === undefined || (await folder.sha256(local)) === expected)) {
      result.skipped++;
      o.onFile?.({ key, bytes: object.size, downloaded: false });
      return;
    }
    if (existing !== undefined) result.repaired++;
    if (!reader) {
      result.downloaded++;
      result.bytes += object.size;
      o.onFile?.({ key, bytes: object.size, downloaded: true });
      return;
    }
    const body = await hedgeable(reader, object, expected);
    await store.replace(local, body);
    result.downloaded++;
    result.bytes += body.length;
    o.onFile?.({ key, bytes: body.length, downloaded: true });
  };

  /** The object's checked bytes: retried, a body cut midway resumed; `flight` hears of every chunk and each back-off. */
  const download = async (reader: ObjectReader, object: ListedObject, expected: string | undefined, signal: AbortSignal, heard: () => void, flight: Flight): Promise<Buffer> => {
    let partial: PartialBody | undefined;
    const told = (bytes: number, s?: AbortSignal): Promise<void> | undefined => {
      heard();
      return throttle(bytes, s);
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const body = await reader.get(object.key, { signal, ...(partial ? { partial } : {}), throttle: told });
        partial = undefined;
        if (body.length !== object.size) throw new ObjectReadError(`${object.key}: got ${body.length} of ${object.size} bytes`);
        if (expected !== undefined && createHash('sha256').update(body).digest('hex') !== expected) {
          // Read once more (damaged on the way?); the same answer twice is what the bucket holds.
          const message = `${object.key}: its bytes differ from the SHA-256 its fetch recorded`;
          throw attempt === 1 ? new ObjectReadError(`${message}; reading it again`) : new Error(`${message} (read twice): not written`);
        }
        ramp.body(body.length);
        return body;
      } catch (error) {
        const retry = error instanceof ObjectReadError && error.transient && attempt < FILE_ATTEMPTS;
        if (signal.aborted || !retry) throw error;
        ramp.error();
        // Only the rest of a body cut midway is asked for again; an attempt that brought more
        // bytes is not counted, and the rest is asked for at once.
        const progressed = (error.partial?.bytes ?? 0) > (partial?.bytes ?? 0);
        partial = error.partial;
        if (progressed) {
          attempt--;
          continue;
        }
        // Not asked for a second time meanwhile: the back-off spares a server that is struggling.
        flight.resting++;
        try {
          await sleep(retryPauseMs(attempt), undefined, { signal });
        } finally {
          flight.resting--;
          flight.heard = performance.now();
        }
      }
    }
  };

  // The tail: once every key is taken, a download that has heard nothing for a while (a lost
  // packet waiting out TCP's retransmission timer, ~1 s or more on a long lossy link) is asked for
  // a second time on an idle connection, and the first whole, checked body wins; the other is
  // aborted. Only one body is written, by copy(), so resume and verify hold as for one download.
  const flights = new Set<Flight>();
  // Wakes the tail's watcher: a download ended, a copy ended, or the sync stopped.
  let changed = Promise.withResolvers<void>();
  const nudge = (): void => {
    changed.resolve();
    changed = Promise.withResolvers<void>();
  };
  signal.addEventListener('abort', nudge, { once: true });
  // One listener for every download's own controller (an AbortSignal.any per object costs CPU).
  const running = new Set<AbortController>();
  signal.addEventListener('abort', () => {
    for (const controller of running) controller.abort(signal.reason);
  }, { once: true });
  // Times to the first chunk of recent downloads: "heard nothing for a while" is HEDGE_STALL of them.
  const firstChunks: number[] = [];
  const hedgeable = (reader: ObjectReader, object: ListedObject, expected: string | undefined): Promise<Buffer> => new Promise((resolveBody, reject) => {
    // The downloads of this object still under way (two once hedged).
    const own = new Set<AbortController>();
    let error: unknown;
    const flight: Flight = { heard: performance.now(), resting: 0, hedged: false, hedge: () => {} };
    const settle = (): void => {
      flights.delete(flight);
      // Only a download still under way is aborted: an abort builds an error, which costs CPU.
      for (const controller of own) {
        controller.abort();
        running.delete(controller);
      }
      nudge();
    };
    const run = (): void => {
      const controller = new AbortController();
      if (signal.aborted) controller.abort(signal.reason);
      own.add(controller);
      running.add(controller);
      const ended = (): void => {
        own.delete(controller);
        running.delete(controller);
      };
      const began = performance.now();
      let first = true;
      const heard = (): void => {
        flight.heard = performance.now();
        if (!first) return;
        first = false;
        firstChunks.push(flight.heard - began);
        if (firstChunks.length > 256) firstChunks.shift();
      };
      download(reader, object, expected, controller.signal, heard, flight).then((body) => {
        ended();
        if (!flights.has(flight)) return;
        settle();
        resolveBody(body);
      }, (failure: unknown) => {
        ended();
        if (!flights.has(flight)) return;
        error ??= failure;
        // The other download may still bring the body.
        if (own.size > 0 && !signal.aborted) return;
        settle();
        reject(error);
      });
    };
    flight.hedge = () => {
      flight.hedged = true;
      flight.heard = performance.now();
      run();
    };
    flights.add(flight);
    run();
  });
  // One watcher for the tail (started by the first worker to find nothing left to take) asks
  // again for stalled downloads while connections are idle, until the last copy ends.
  let copying = 0;
  let watching: Promise<void> | undefined;
  const watchTail = async (): Promise<void> => {
    while (!signal.aborted && (flights.size > 0 || copying > 0)) {
      let wait = 1000; // a download back from a back-off, or a copy not yet downloading
      if (firstChunks.length > 0) {
        const limit = Math.max(HEDGE_MIN_MS, HEDGE_STALL * [...firstChunks].sort((a, b) => a - b)[firstChunks.length >> 1]!);
        const now = performance.now();
        let idle = ramp.level - flights.size;
        for (const f of flights) if (f.hedged) idle--;
        for (const f of flights) {
          if (f.hedged || f.resting > 0) continue;
          const silent = now - f.heard;
          if (silent >= limit && idle > 0) {
            f.hedge();
            idle--;
          } else wait = Math.min(wait, Math.max(1, limit - silent));
        }
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([changed.promise, new Promise<void>((r) => (timer = setTimeout(r, wait)))]);
      clearTimeout(timer);
    }
  };

  let nearEnd = false;
  // The first failure, before the abort it causes.
  let cause: { error: unknown } | undefined;
  let active = 0;
  const worker = async (): Promise<void> => {
    active++;
    try {
      await work();
    } finally {
      active--;
    }
  };
  const work = async (): Promise<void> => {
    while (!signal.aborted) {
      // Fewer downloads wanted (errors rose, or a step up did not pay): this one stops.
      if (active > ramp.level) return;
      const next = queue.shift();
      // About two rounds of downloads left (under a second on the lossy link).
      if (listers === 0 && queue.length <= 2 * ramp.level && !nearEnd) {
        nearEnd = true;
        lastDownloads?.();
      }
      if (next) {
        if (queue.length < 10_000) wake();
        copying++;
        try {
          await copy(next);
        } catch (error) {
          if (!signal.aborted) cause ??= { error };
          stop.abort();
          wake();
          throw error;
        } finally {
          copying--;
          if (watching) nudge();
        }
      } else if (listers === 0) {
        // Not under --bwlimit: a second request would spend the rate the user set aside.
        if (reader && !o.bandwidth && o.hedge !== false) watching ??= watchTail();
        return;
      } else await new Promise<void>((r) => waiting.push(r));
    }
  };

  const workers: Promise<void>[] = [];
  // Up to the ramp's level, while keys are left (a worker added later would find none, unawaited).
  const add = (): void => {
    while (active < ramp.level && !signal.aborted && (listers > 0 || queue.length > 0)) workers.push(worker());
  };
  add();
  const warming = o.reader ? undefined : reader?.warm(workers.length, signal);
  const done = new AbortController();
  const ramping = (async (): Promise<void> => {
    if (!reader) return;
    ramp.tick(performance.now());
    for (;;) {
      await sleep(RAMP_WINDOW_MS, undefined, { signal: done.signal });
      ramp.tick(performance.now());
      add();
    }
  })().catch(() => {});
  try {
    const listing = listAll();
    listing.catch((error: unknown) => {
      if (!signal.aborted) cause ??= { error };
      stop.abort();
    }); // awaited below, once the workers have stopped
    // Workers the ramp adds while the first ones run are awaited too.
    for (let awaited = 0; awaited < workers.length;) {
      const batch = workers.slice(awaited);
      awaited = workers.length;
      await Promise.all(batch);
    }
    await listing;
    await decided;
  } catch (error) {
    stop.abort();
    wake();
    // What stopped the sync, not the downloads it aborted on the way (one line: a listing timed out).
    throw cause ? cause.error : error;
  } finally {
    done.abort();
    await Promise.all([ramping, warming, watching]);
    // Nothing still writing when the temporary folder goes.
    await Promise.allSettled(workers);
    await Promise.all([folder.close(), o.reader ? undefined : reader?.close(), o.lister ? undefined : lister.close()]);
  }
  return result;
}

/**
 * A reader for syncImages whose connections start opening now, so that they are open by the time
 * the first keys are listed: a caller opens it before reading the splits' status.
 */
export async function openReader(s3: S3Client, bucket: string, o: { concurrency?: number }): Promise<ObjectReader> {
  const { start, most } = rampBounds(o);
  const reader = await ObjectReader.open(s3, bucket, most);
  void reader.warm(start);
  return reader;
}

/** Where the ramp starts and how far it may grow: the caller's pin, else from the default up to RAMP_MOST (not under a shared rate, which more downloads cannot raise). */
export function rampBounds(o: { concurrency?: number; bandwidth?: unknown }): { start: number; most: number } {
  if (o.concurrency !== undefined) return { start: o.concurrency, most: o.concurrency };
  return { start: DEFAULT_SYNC_CONCURRENCY, most: o.bandwidth ? DEFAULT_SYNC_CONCURRENCY : RAMP_MOST };
}

/**
 * Brings a split home: its images into <dir>/<split>/ and its table into <dir>/<split>.csv (the
 * columns of a local run's index; status `pending` for images still queued or in the DLQ).
 * A dry run counts the same and writes neither.
 */
export async function bringSplitHome(o: HomeOptions): Promise<SplitHome> {
  // The records (for the downloads' decisions) and the failure listing (for the table) are read
  // while the images are listed and downloaded, not before and after.
  // Listed over the sync's lister when it has one (its connections are open), else by the SDK.
  const pages = o.lister ? (prefix: string) => o.lister!.pages(prefix) : undefined;
  const reading = (o.early?.records ?? fetchRecords(o.s3, o.bucket, o.split, pages)).then((records) => {
    // Every function's hashes together: placeholders stored before a function knew them stay in the bucket.
    const sameBytes = sameBytesOf(records, o.placeholderThreshold ?? DEFAULT_PLACEHOLDER_THRESHOLD);
    const hashes = new Map<string, string>();
    for (const r of records.fetched.values()) if (r.sha256) hashes.set(r.key, r.sha256);
    return { records, sameBytes, hashes, placeholders: placeholderKeys(records, sameBytes) };
  });
  const failures = o.early?.failures ?? failureReasons(o.s3, o.bucket, o.split, pages);
  failures.catch(() => {}); // awaited after the images
  reading.catch(() => {}); // awaited by syncImages, and below
  const place = await placement(o);
  // The sync's listing is the table's too: what it lists is what is stored (and now here).
  const stored = new Map<string, number>();
  // The index is asked for while the last downloads run (0.4 s after them on the lossy link: a
  // connection idle since the listing starts slowly again), not earlier: its answer waits unread
  // meanwhile, and a long wait could be cut by the server.
  let index: Promise<GetObjectCommandOutput> | undefined;
  const readIndex = (): void => {
    index = o.s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: indexKey(o.split) }), o.signal ? { abortSignal: o.signal } : {});
    // Its body waits unread until the downloads end: the SDK's socket time-out may cut it meanwhile,
    // and an error no one listens to would end the process. resumableBody (splitRows) reads it again.
    index.then((answer) => void (answer.Body as Readable).on('error', () => {}), () => {}); // awaited by splitRows
  };
  let images: SyncResult;
  try {
    images = await syncImages(o, place, stored, reading, readIndex);
  } catch (error) {
    void index?.then((answer) => (answer.Body as Readable).destroy(), () => {});
    throw error;
  }
  const { records, sameBytes } = await reading;
  const indexFile = join(resolve(o.dir), `${o.split}.csv`);
  const rows = splitRows(o.s3, o.bucket, o.split, { listed: stored, failures: await failures, queueBusy: o.queueBusy ?? false, records, sameBytes, ...(index ? { index } : {}) });
  if (o.dryRun) {
    const counts = emptyCounts();
    for await (const row of rows) count(counts, row);
    return { images, counts, indexFile };
  }
  const counts = emptyCounts();
  const table = new TableFile(indexFile);
  try {
    for await (const row of rows) {
      count(counts, row);
      if (!table.write(homeRow(row, place))) await table.drained();
    }
    await table.commit();
  } catch (error) {
    await table.abandon();
    throw error;
  }
  return { images, counts, indexFile };
}

/** The table's row of an image as the bucket and its fetch records tell it: the row `run` writes. */
export function homeRow(row: CloudRow, place: (key: string) => string): IndexRow {
  return {
    image_id: row.image_id, label: row.label, url: row.url, path: row.path ? place(row.path) : '', status: row.status,
    bytes: row.bytes || (row.status === 'pending' ? undefined : 0), format: row.format,
    width: row.width, height: row.height, original_bytes: row.originalBytes, reason: row.reason, http_status: row.httpStatus,
    attempts: row.attempts, detail: row.detail, sha256: row.sha256, duplicate_of: row.duplicateOf,
  };
}
