// One job, start to end: already stored? fetch, store, and say what became of it.
// The same function serves the local run and the Lambda fetch handler.

import type { FetchResult } from './fetch/fetcher.ts';
import { contentTypeOf } from './fetch/image.ts';
import type { Job } from './job.ts';
import { originalKey } from './keys.ts';
import type { Outcome } from './outcome.ts';
import { shapeImage, type ImageOptions } from './resize.ts';
import type { Store } from './store.ts';

export interface ImageFetcher {
  fetchImage(urls: readonly string[], signal?: AbortSignal): Promise<FetchResult>;
}

/**
 * Resizing or re-encoding before the store (engine/resize.ts); `originals`, when given, keeps the
 * fetched bytes of every image that changed (under the original's extension), before the copy.
 */
export interface ImageStep {
  options: ImageOptions;
  originals?: Store;
}

/** A fetch that brought an image. */
export type Fetched = Extract<FetchResult, { ok: true }>;

/** What the fetch stage leaves: an outcome already (skipped, failed), or bytes still to store (writeStage). */
export type Staged = { outcome: Outcome } | { fetched: Fetched };

/**
 * Everything up to the store's write: the existence check and the fetch. A pool can then fetch
 * the next image while this one is written, keeping the connections busy.
 */
export function fetchStage(job: Job, store: Store, fetcher: ImageFetcher, signal?: AbortSignal): Promise<Staged> {
  // A fresh folder needs no look per image (a stat each on a local disk), and then no async
  // function of its own either: one frame and promise less per image.
  if (store.unseenFolder?.(job.key)) return fetcher.fetchImage(job.urls, signal).then(staged);
  return lookFirst(job, store, fetcher, signal);
}

async function lookFirst(job: Job, store: Store, fetcher: ImageFetcher, signal: AbortSignal | undefined): Promise<Staged> {
  const stored = await store.head(job.key);
  if (stored) return { outcome: { status: 'skipped', url: job.urls[0] ?? '', bytes: stored.bytes, attempts: 0 } };
  return staged(await fetcher.fetchImage(job.urls, signal));
}

/** A fetch's result as the stage's: a failure's outcome, or the bytes themselves (not a closure that writes them). */
function staged(result: FetchResult): Staged {
  if (result.ok) return { fetched: result };
  const { url, reason, detail, attempts, httpStatus, retryAfterMs, sha256, hostPausedUntil } = result;
  return { outcome: { status: 'failed', url, bytes: 0, reason, detail, attempts, ...(httpStatus ? { httpStatus } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}), ...(sha256 ? { sha256 } : {}), ...(hostPausedUntil !== undefined ? { hostPausedUntil } : {}) } };
}

/** The write stage of a fetched image: shaped when asked, stored, and what became of it. */
export async function writeStage(job: Job, result: Fetched, store: Store, image?: ImageStep): Promise<Outcome> {
  const meta = { url: result.url, id: job.id, labels: job.labels, contentType: result.contentType };
  // Shaped here, in the write stage: the pool fetches the next image meanwhile.
  const shaped = image ? await shapeImage(result.body, result.format, result.sha256, image.options) : null;
  if (shaped && !shaped.ok) {
    const { reason, detail } = shaped;
    return { status: 'failed', url: result.url, bytes: 0, reason, detail, attempts: result.attempts, httpStatus: result.httpStatus };
  }
  // The original first: a crash between the two puts leaves the copy missing, so the image is fetched again.
  if (shaped?.changed && image?.originals) await image.originals.put(originalKey(job.key, result.format), result.body, meta);
  const body = shaped ? shaped.body : result.body;
  const format = shaped ? shaped.format : result.format;
  const written = await store.put(job.key, body, shaped?.changed ? { ...meta, contentType: contentTypeOf(format) } : meta);
  const fields = {
    url: result.url,
    bytes: body.length,
    format,
    attempts: result.attempts,
    httpStatus: result.httpStatus,
    sha256: shaped ? shaped.sha256 : result.sha256,
    ...(shaped ? { width: shaped.width, height: shaped.height } : {}),
    originalBytes: result.body.length,
  };
  return written ? { status: 'fetched', ...fields } : { status: 'skipped', ...fields };
}

export async function fetchJob(job: Job, store: Store, fetcher: ImageFetcher, signal?: AbortSignal, image?: ImageStep): Promise<Outcome> {
  const stage = await fetchStage(job, store, fetcher, signal);
  return 'outcome' in stage ? stage.outcome : writeStage(job, stage.fetched, store, image);
}
