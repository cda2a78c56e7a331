// From a probed sample to a plan: per origin what each side saw, and for the whole manifest the
// images to expect, the time in the cloud, and the bytes home. Pure arithmetic, no I/O; the
// figures are estimates from the sample and say what they assume.

import type { FailureReason } from './outcome.ts';
import type { ProbeResult } from './probe.ts';

export interface SideStats {
  probed: number;
  ok: number;
  /** ok ÷ probed, 0–1. */
  okShare: number;
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  failures: Partial<Record<FailureReason, number>>;
  /** Mean size of the images fetched (0 when none was). */
  meanBytes: number;
  /** Mean size after resizing, when the sample was resized. */
  meanShrunkBytes?: number;
}

export interface OriginPlan {
  origin: string;
  entries: number;
  sampled: number;
  here: SideStats | null;
  cloud: SideStats | null;
}

export interface ForecastInput {
  origins: Array<{ origin: string; entries: number; here: ReadonlyArray<ProbeResult | null>; cloud?: ReadonlyArray<ProbeResult | null> }>;
  /** Entries without a usable URL: failures, never requested. */
  unusable: number;
  /** Images one fetch function works on at once × functions at once. */
  fleetConcurrency: number;
  /** Images of one origin in flight across the fleet at once. */
  hostConcurrency: number;
  /** Images a fetch invocation runs at once (from a FIFO queue, its batch's group width), and the function's memory: its GB-s per image, each round billing its slowest. */
  batchSize: number;
  memoryMb: number;
  /** The user's home link in Mbit/s. */
  linkMbps: number;
  /** Resized size ÷ original size, when given as a figure instead of resizing the sample. */
  shrinkRatio?: number;
}

export interface Volume {
  /** Distinct entries: jobs plus entries without a usable URL. */
  entries: number;
  /** Entries requested (each a job, a HEAD and a PUT or failure record). */
  jobs: number;
  images: number;
  bytes: number;
  hoursHome: number;
}

export interface Forecast {
  origins: OriginPlan[];
  /** The side the predictions come from: the cloud's sample when there is one. */
  basis: 'cloud' | 'here';
  /** Origins (and their entries) without a sample, predicted at the sampled ones' pooled figures. */
  unsampled: { origins: number; entries: number };
  /** Expected stored images ÷ distinct entries, 0–1. */
  predictedSuccessRate: number;
  /** Seconds to drain in the cloud: the slowest origin at hostConcurrency, or the whole at the fleet's concurrency. */
  cloudSeconds: number;
  /** The origin that bounds cloudSeconds, when one does. */
  slowestOrigin: string | null;
  /** Lambda GB-s per image: the function's memory over an invocation that waits for its slowest image. */
  gbSecondsPerImage: number;
  original: Volume;
  /** With resizing: measured on the sample (`measured`) or the user's ratio (`ratio`); null without either. */
  resized: (Volume & { source: 'measured' | 'ratio' }) | null;
}

export function sideStats(results: ReadonlyArray<ProbeResult | null>): SideStats | null {
  const done = results.filter((r): r is ProbeResult => r !== null);
  if (done.length === 0) return null;
  const times = done.map((r) => r.ms).sort((a, b) => a - b);
  const fetched = done.filter((r) => r.ok);
  const failures: Partial<Record<FailureReason, number>> = {};
  for (const r of done) if (!r.ok && r.reason) failures[r.reason] = (failures[r.reason] ?? 0) + 1;
  const shrunk = fetched.filter((r) => r.shrunkBytes !== undefined);
  return {
    probed: done.length,
    ok: fetched.length,
    okShare: fetched.length / done.length,
    medianMs: quantile(times, 0.5),
    p90Ms: quantile(times, 0.9),
    meanMs: Math.round(mean(times)),
    failures,
    meanBytes: Math.round(mean(fetched.map((r) => r.bytes))),
    ...(shrunk.length > 0 ? { meanShrunkBytes: Math.round(mean(shrunk.map((r) => r.shrunkBytes!))) } : {}),
  };
}

export function forecast(input: ForecastInput): Forecast {
  const hasCloud = input.origins.some((o) => o.cloud?.some((r) => r !== null));
  const basis = hasCloud ? 'cloud' : 'here';
  const origins: OriginPlan[] = input.origins.map((o) => ({
    origin: o.origin,
    entries: o.entries,
    sampled: o.here.length,
    here: sideStats(o.here),
    cloud: o.cloud ? sideStats(o.cloud) : null,
  }));
  const chosen = (o: OriginPlan): SideStats | null => (basis === 'cloud' ? o.cloud : o.here);
  // The pooled figures of every probed image stand in for origins without a sample.
  const all = input.origins.flatMap((o) => (basis === 'cloud' ? (o.cloud ?? []) : o.here));
  const pooled = sideStats(all);
  let images = 0;
  let bytes = 0;
  let shrunk = 0;
  let busySeconds = 0;
  let slowest = { origin: null as string | null, seconds: 0 };
  const unsampled = { origins: 0, entries: 0 };
  for (const o of origins) {
    const s = chosen(o) ?? pooled;
    if (!chosen(o)) {
      unsampled.origins++;
      unsampled.entries += o.entries;
    }
    if (!s) continue;
    const expected = o.entries * s.okShare;
    images += expected;
    bytes += expected * s.meanBytes;
    shrunk += expected * (s.meanShrunkBytes ?? s.meanBytes);
    const seconds = (o.entries * s.meanMs) / 1000;
    busySeconds += seconds;
    const alone = seconds / input.hostConcurrency;
    if (alone > slowest.seconds) slowest = { origin: o.origin, seconds: alone };
  }
  const fleetSeconds = busySeconds / input.fleetConcurrency;
  const jobs = origins.reduce((n, o) => n + o.entries, 0);
  const entries = jobs + input.unusable;
  const volume = (b: number): Volume => ({ entries, jobs, images: Math.round(images), bytes: Math.round(b), hoursHome: (b * 8) / (input.linkMbps * 1e6) / 3600 });
  const measured = all.some((r) => r?.shrunkBytes !== undefined);
  const resized = measured
    ? { ...volume(shrunk), source: 'measured' as const }
    : input.shrinkRatio !== undefined ? { ...volume(bytes * input.shrinkRatio), source: 'ratio' as const } : null;
  const batchWall = pooled ? expectedMax(all.filter((r): r is ProbeResult => r !== null).map((r) => r.ms), input.batchSize) / 1000 : 0;
  return {
    origins,
    basis,
    unsampled,
    predictedSuccessRate: entries === 0 ? 0 : images / entries,
    cloudSeconds: Math.max(fleetSeconds, slowest.seconds),
    slowestOrigin: slowest.seconds > fleetSeconds ? slowest.origin : null,
    gbSecondsPerImage: ((input.memoryMb / 1024) * batchWall) / input.batchSize,
    original: volume(bytes),
    resized,
  };
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The q-quantile of sorted values (nearest rank). */
function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The expected largest of `k` draws from the values (with replacement): a batch's wall time. */
export function expectedMax(values: readonly number[], k: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  let sum = 0;
  for (let i = 1; i <= n; i++) sum += sorted[i - 1]! * ((i / n) ** k - ((i - 1) / n) ** k);
  return sum;
}
