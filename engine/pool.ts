// Planned jobs → a bounded pool of workers → one record per distinct entry, handed on as it
// completes with its sequence number in the plan (OrderedTable puts the rows back in manifest
// order): nothing is held here per entry but the parked jobs, a bounded number. The local run's engine.

import type { IndexRecord } from './index-table.ts';
import type { Job } from './job.ts';
import type { Planned } from './plan.ts';
import type { Store } from './store.ts';
import { fetchStage, writeStage, type ImageFetcher, type ImageStep } from './worker.ts';

export interface PoolOptions {
  /**
   * Jobs under way at once: checking the store, fetching, waiting for their host's turn, being
   * written. The fetcher bounds the requests on the network (and per host), so this may be more.
   */
  concurrency: number;
  /**
   * Jobs under way at once whose first URL is at one origin (default: `concurrency`). The jobs of a
   * host that is busy or paused wait at the fetcher's gate; past this many, its later jobs are
   * parked and the workers read on, so that host never holds every worker.
   */
  perOrigin?: number;
  /** Jobs parked at once, at most (default 10,000): past it the workers wait for a parked job's turn. */
  parked?: number;
  signal?: AbortSignal;
  /** Resizing or re-encoding before the store. */
  image?: ImageStep;
}

/** A job and its sequence number in the plan. */
interface Taken {
  job: Job;
  sequence: number;
  lane: Lane;
}

/** An origin's jobs under way, and those parked behind them (a queue: `head` is the next). */
interface Lane {
  origin: string;
  running: number;
  parked: Array<Taken | undefined>;
  head: number;
}

const ignore = (): void => {};

/** "https://host:port" as the URL is written, without parsing it (a lane need not be exact: it only groups). */
const ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/**
 * Runs every planned job with at most `concurrency` under way and calls `onRecord` once per
 * entry as it completes, with the entry's sequence number in the plan (0, 1, …). Stops taking new jobs when the signal aborts; failures of jobs cut short
 * by the abort are not reported (they were not really tried), nor are parked jobs, but everything
 * that did complete is, images written during the drain included.
 */
export async function runPool(
  planned: AsyncIterable<Planned>,
  store: Store,
  fetcher: ImageFetcher,
  options: PoolOptions,
  onRecord: (record: IndexRecord, sequence: number) => void,
): Promise<void> {
  const iterator = planned[Symbol.asyncIterator]();
  const perOrigin = options.perOrigin ?? options.concurrency;
  const parkedMax = options.parked ?? 10_000;
  let nextSequence = 0;
  // A worker that throws (disk full, a manifest error mid-stream) stops all the others.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let firstError: { error: unknown } | null = null;

  const lanes = new Map<string, Lane>();
  /** Lanes with parked jobs: few at once (each has `perOrigin` jobs under way or had). */
  const parkedLanes = new Set<Lane>();
  let parkedCount = 0;
  let readAll = false;
  /** Workers with nothing to take until a parked job's lane frees, or the plan ends. */
  let idle: Array<() => void> = [];
  const wakeOne = (): void => idle.shift()?.();
  const wakeAll = (): void => {
    const woken = idle;
    idle = [];
    for (const wake of woken) wake();
  };
  signal.addEventListener('abort', wakeAll, { once: true });

  const laneOf = (job: Job): Lane => {
    const url = job.urls[0] ?? '';
    const origin = ORIGIN.exec(url)?.[0].toLowerCase() ?? '';
    let lane = lanes.get(origin);
    if (!lane) {
      lane = { origin, running: 0, parked: [], head: 0 };
      lanes.set(origin, lane);
    }
    return lane;
  };

  /** The oldest parked job whose origin has room, taken off its queue. */
  const unpark = (): Taken | null => {
    let best: Lane | null = null;
    for (const lane of parkedLanes) {
      if (lane.running >= perOrigin) continue;
      if (!best || lane.parked[lane.head]!.sequence < best.parked[best.head]!.sequence) best = lane;
    }
    if (!best) return null;
    const taken = best.parked[best.head]!;
    best.parked[best.head++] = undefined; // let it go
    if (best.head === best.parked.length) {
      best.parked = [];
      best.head = 0;
      parkedLanes.delete(best);
    } else if (best.head > 1024 && best.head * 2 > best.parked.length) {
      best.parked = best.parked.slice(best.head);
      best.head = 0;
    }
    parkedCount--;
    if (readAll && parkedCount === 0) wakeAll(); // nothing left for the idle workers: they end
    else if (parkedCount === parkedMax - 1) wakeOne(); // room to read on
    best.running++;
    return taken;
  };

  const release = (lane: Lane): void => {
    lane.running--;
    if (parkedLanes.has(lane)) wakeOne();
    else if (lane.running === 0) lanes.delete(lane.origin);
  };

  /** The next job to run: a parked one whose origin has room, else the plan's next (parking it when its origin is full). */
  const take = async (): Promise<Taken | null> => {
    for (;;) {
      if (signal.aborted) return null;
      const parked = unpark();
      if (parked) return parked;
      if (!readAll && parkedCount < parkedMax) {
        const next = await iterator.next();
        if (next.done) {
          readAll = true;
          wakeAll();
          continue;
        }
        const sequence = nextSequence++;
        // Room to read further: one more idle worker reads (one at a time, not all at each freed place).
        if (parkedCount < parkedMax - 1) wakeOne();
        if ('record' in next.value) {
          onRecord(next.value.record, sequence);
          continue;
        }
        const { job } = next.value;
        const lane = laneOf(job);
        if (lane.running < perOrigin && !parkedLanes.has(lane)) {
          lane.running++;
          return { job, sequence, lane };
        }
        lane.parked.push({ job, sequence, lane });
        parkedLanes.add(lane);
        parkedCount++;
        continue;
      }
      if (readAll && parkedCount === 0) return null;
      await new Promise<void>((resolve) => idle.push(resolve));
    }
  };

  // Each worker writes one image while it fetches the next: the store's round trips stay off the
  // connections' critical path.
  const worker = async (): Promise<void> => {
    let writing: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        // A parked job whose origin has room is taken without take()'s promise (take() looks there first too).
        const taken = (!signal.aborted && unpark()) || (await take());
        if (!taken) return;
        const { job, sequence, lane } = taken;
        let staged;
        try {
          staged = await fetchStage(job, store, fetcher, signal);
        } finally {
          release(lane);
        }
        if (signal.aborted && 'outcome' in staged && staged.outcome.status === 'failed') return;
        await writing;
        const { position, id, labels, urls, key } = job;
        if ('outcome' in staged) {
          onRecord({ position, id, labels, urls, key, outcome: staged.outcome }, sequence);
          continue;
        }
        // Bytes in hand are written even after an abort: they cost nothing more to keep.
        writing = writeStage(job, staged.fetched, store, options.image).then((outcome) => onRecord({ position, id, labels, urls, key, outcome }, sequence));
        writing.catch(ignore); // awaited above or below; this only marks it handled meanwhile
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
  try {
    await Promise.all(Array.from({ length: options.concurrency }, guarded));
  } finally {
    signal.removeEventListener('abort', wakeAll);
  }
  if (firstError) throw (firstError as { error: unknown }).error;
}
