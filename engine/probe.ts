// Fetches a sample of jobs and keeps only what a plan needs from each (outcome, time, bytes):
// nothing is stored. Used by `cloudfetch plan` on this machine and by the fetch function's dry
// mode in the cloud, so both sides measure the same way.

import { performance } from 'node:perf_hooks';
import type { ImageFormat } from './fetch/image.ts';
import type { FailureReason } from './outcome.ts';
import type { ImageFetcher } from './worker.ts';

export interface ProbeJob {
  origin: string;
  urls: string[];
}

export interface ProbeResult {
  ok: boolean;
  reason?: FailureReason;
  httpStatus?: number;
  /** From the first request to the outcome, retries and their waits included. */
  ms: number;
  /** The image's bytes as fetched (0 when it failed). */
  bytes: number;
  format?: string;
  /** The bytes as they would be stored after `shape` (resized, re-encoded), when given. */
  shrunkBytes?: number;
}

export interface ProbeOptions {
  /** Images in flight at once. */
  concurrency: number;
  /** Images of one origin in flight at once: a plan is a guest, not a load test. */
  perOrigin: number;
  signal?: AbortSignal;
  /** What the stored image would weigh after resizing, or why it could not be (an image that does not decode). */
  shape?: (body: Buffer, format: ImageFormat) => Promise<{ ok: true; bytes: number } | { ok: false; reason: FailureReason }>;
  onResult?: (done: number) => void;
}

/**
 * Probes every job; results in the jobs' order. An origin never has more than `perOrigin` of its
 * jobs in flight, so none waits in the fetcher's own per-host queue and its time is the origin's.
 * Jobs not finished when `signal` aborts are left out (null): cut short, they say nothing of the origin.
 */
export async function probeJobs(jobs: readonly ProbeJob[], fetcher: ImageFetcher, o: ProbeOptions): Promise<Array<ProbeResult | null>> {
  const results: Array<ProbeResult | null> = new Array<ProbeResult | null>(jobs.length).fill(null);
  const busy = new Map<string, number>();
  const waiting = jobs.map((_, i) => i);
  let running = 0;
  let done = 0;
  await new Promise<void>((resolve) => {
    const next = (): void => {
      if (o.signal?.aborted) waiting.length = 0;
      for (let i = 0; i < waiting.length && running < o.concurrency; ) {
        const index = waiting[i]!;
        const origin = jobs[index]!.origin;
        if ((busy.get(origin) ?? 0) >= o.perOrigin) {
          i++;
          continue;
        }
        waiting.splice(i, 1);
        busy.set(origin, (busy.get(origin) ?? 0) + 1);
        running++;
        void probeOne(jobs[index]!, fetcher, o).then((result) => {
          results[index] = result;
          busy.set(origin, busy.get(origin)! - 1);
          running--;
          o.onResult?.(++done);
          next();
        });
      }
      if (running === 0) resolve();
    };
    next();
  });
  return results;
}

async function probeOne(job: ProbeJob, fetcher: ImageFetcher, o: ProbeOptions): Promise<ProbeResult | null> {
  const started = performance.now();
  const result = await fetcher.fetchImage(job.urls, o.signal);
  const ms = Math.round(performance.now() - started);
  if (o.signal?.aborted) return null;
  if (!result.ok) return { ok: false, reason: result.reason, ...(result.httpStatus ? { httpStatus: result.httpStatus } : {}), ms, bytes: 0 };
  const shaped = o.shape ? await o.shape(result.body, result.format) : undefined;
  if (shaped && !shaped.ok) return { ok: false, reason: shaped.reason, ms, bytes: 0 };
  return { ok: true, ms, bytes: result.body.length, format: result.format, ...(shaped ? { shrunkBytes: shaped.bytes } : {}) };
}
