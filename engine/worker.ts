// One job, start to end: already stored? fetch, store, and say what became of it.
// The same function serves the local run and the Lambda fetch handler.

import type { FetchResult } from './fetch/fetcher.ts';
import type { Job } from './job.ts';
import type { Outcome } from './outcome.ts';
import type { Store } from './store.ts';

export interface ImageFetcher {
  fetchImage(urls: readonly string[], signal?: AbortSignal): Promise<FetchResult>;
}

/** What the fetch stage leaves: an outcome already (skipped, failed), or bytes still to store. */
export type Staged = { outcome: Outcome } | { write: () => Promise<Outcome> };

/**
 * Everything up to the store's write: the existence check and the fetch. A pool can then fetch
 * the next image while this one is written, keeping the connections busy.
 */
export async function fetchStage(job: Job, store: Store, fetcher: ImageFetcher, signal?: AbortSignal): Promise<Staged> {
  const stored = await store.head(job.key);
  if (stored) return { outcome: { status: 'skipped', url: job.urls[0] ?? '', bytes: stored.bytes, attempts: 0 } };
  const result = await fetcher.fetchImage(job.urls, signal);
  if (!result.ok) {
    const { url, reason, detail, attempts, httpStatus, retryAfterMs } = result;
    return { outcome: { status: 'failed', url, bytes: 0, reason, detail, attempts, ...(httpStatus ? { httpStatus } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) } };
  }
  return {
    write: async () => {
      const written = await store.put(job.key, result.body, {
        url: result.url,
        id: job.id,
        labels: job.labels,
        contentType: result.contentType,
      });
      return {
        status: written ? 'fetched' : 'skipped',
        url: result.url,
        bytes: result.body.length,
        format: result.format,
        attempts: result.attempts,
        httpStatus: result.httpStatus,
        sha256: result.sha256,
      };
    },
  };
}

export async function fetchJob(job: Job, store: Store, fetcher: ImageFetcher, signal?: AbortSignal): Promise<Outcome> {
  const staged = await fetchStage(job, store, fetcher, signal);
  return 'outcome' in staged ? staged.outcome : staged.write();
}
