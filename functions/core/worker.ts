// One job, start to end: already stored? fetch, store, and say what became of it.
// The same function serves the local run and the Lambda fetch handler.

import type { FetchResult } from './fetcher.ts';
import type { Job } from './job.ts';
import type { Outcome } from './outcome.ts';
import type { Store } from './store.ts';

export interface ImageFetcher {
  fetchImage(urls: readonly string[], signal?: AbortSignal): Promise<FetchResult>;
}

export async function fetchJob(job: Job, store: Store, fetcher: ImageFetcher, signal?: AbortSignal): Promise<Outcome> {
  const stored = await store.head(job.key);
  if (stored) return { status: 'skipped', url: job.urls[0] ?? '', bytes: stored.bytes, attempts: 0 };
  const result = await fetcher.fetchImage(job.urls, signal);
  if (!result.ok) {
    const { url, reason, detail, attempts, httpStatus } = result;
    return { status: 'failed', url, bytes: 0, reason, detail, attempts, ...(httpStatus ? { httpStatus } : {}) };
  }
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
  };
}
