// Planned jobs → a bounded pool of workers → one record per distinct entry, handed on as it
// completes with its sequence number in the plan (OrderedTable puts the rows back in manifest
// order): nothing is held here per entry. The local run's engine.

import type { IndexRecord } from './index-table.ts';
import type { Planned } from './plan.ts';
import type { Store } from './store.ts';
import { fetchStage, type ImageFetcher, type ImageStep } from './worker.ts';

export interface PoolOptions {
  /**
   * Jobs under way at once: checking the store, fetching, waiting for their host's turn, being
   * written. The fetcher bounds the requests on the network (and per host), so this may be more.
   */
  concurrency: number;
  signal?: AbortSignal;
  /** Resizing or re-encoding before the store. */
  image?: ImageStep;
}

/**
 * Runs every planned job with at most `concurrency` under way and calls `onRecord` once per
 * entry as it completes, with the entry's sequence number in the plan (0, 1, …). Stops taking new jobs when the signal aborts; failures of jobs cut short
 * by the abort are not reported (they were not really tried), but everything that did complete
 * is, images written during the drain included.
 */
export async function runPool(
  planned: AsyncIterable<Planned>,
  store: Store,
  fetcher: ImageFetcher,
  options: PoolOptions,
  onRecord: (record: IndexRecord, sequence: number) => void,
): Promise<void> {
  const iterator = planned[Symbol.asyncIterator]();
  let nextSequence = 0;
  // A worker that throws (disk full, a manifest error mid-stream) stops all the others.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let firstError: { error: unknown } | null = null;

  // Each worker writes one image while it fetches the next: the store's round trips stay off the
  // connections' critical path.
  const worker = async (): Promise<void> => {
    let writing: Promise<void> = Promise.resolve();
    try {
      while (!signal.aborted) {
        const next = await iterator.next();
        if (next.done) return;
        const sequence = nextSequence++;
        if ('record' in next.value) {
          onRecord(next.value.record, sequence);
          continue;
        }
        const { job } = next.value;
        const staged = await fetchStage(job, store, fetcher, signal, options.image);
        if (signal.aborted && 'outcome' in staged && staged.outcome.status === 'failed') return;
        await writing;
        const { position, id, labels, urls, key } = job;
        if ('outcome' in staged) {
          onRecord({ position, id, labels, urls, key, outcome: staged.outcome }, sequence);
          continue;
        }
        // Bytes in hand are written even after an abort: they cost nothing more to keep.
        writing = staged.write().then((outcome) => onRecord({ position, id, labels, urls, key, outcome }, sequence));
        writing.catch(() => {}); // awaited above or below; this only marks it handled meanwhile
      }
    } finally {
      await writing;
    }
  };

  const guarded = async (): Promise<void> => {
    try {
      await worker();
    } catch (error) {
      firstError ??= { error };
      stop.abort(error);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, guarded));
  if (firstError) throw (firstError as { error: unknown }).error;
}
