// Planned jobs → a bounded pool of workers → one record per distinct entry, handed on as it
// completes with its sequence number in the plan (OrderedTable puts the rows back in manifest
// order): nothing is held here per entry. The local run's engine.

import type { IndexRecord } from './index-table.ts';
import type { Planned } from './plan.ts';
import type { Store } from './store.ts';
import { Slots } from './slots.ts';
import { fetchStage, type ImageFetcher, type ImageStep } from './worker.ts';

export interface PoolOptions {
  concurrency: number;
  signal?: AbortSignal;
  /** Resizing or re-encoding before the store. */
  image?: ImageStep;
}

/**
 * Runs every planned job with at most `concurrency` in flight and calls `onRecord` once per
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

  // `concurrency` images on the network at once. A few more workers than that do the local part
  // (the existence check, taking the next entry) meanwhile, and each worker writes one image
  // while it fetches the next: the store's round trips stay off the connections' critical path.
  const network = new Slots(options.concurrency);
  const limited: ImageFetcher = {
    async fetchImage(urls, abort) {
      await network.acquire();
      try {
        return await fetcher.fetchImage(urls, abort);
      } finally {
        network.release();
      }
    },
  };
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
        const staged = await fetchStage(job, store, limited, signal, options.image);
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
  const workers = options.concurrency + Math.max(2, Math.ceil(options.concurrency / 8));
  await Promise.all(Array.from({ length: workers }, guarded));
  if (firstError) throw (firstError as { error: unknown }).error;
}
