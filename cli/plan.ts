// `cloudfetch plan`: a repeatable sample of the manifest per origin, fetched from this machine (and
// from the deployed stack, through the fetch function's dry mode), storing nothing; then what a
// whole run would give, take and cost.

import { Fetcher, type FetcherOptions } from '../engine/fetch/fetcher.ts';
import { forecast, type Forecast, type SideStats } from '../engine/forecast.ts';
import { planJobs, type PlanStats } from '../engine/plan.ts';
import { printable } from '../engine/printable.ts';
import { probeJobs, type ProbeJob, type ProbeOptions, type ProbeResult } from '../engine/probe.ts';
import { shapeImage, type ImageOptions } from '../engine/resize.ts';
import { interleave, OriginSampler, type SampleOptions } from '../engine/sample.ts';
import { formatBytes, formatDuration, plural } from '../engine/summary.ts';
import { widestGroup } from '../aws/fifo.ts';
import { costOf, type Cost } from '../aws/prices.ts';
import type { Settings } from '../aws/settings.ts';
import { openManifestFile, type ManifestFileOptions } from './manifest-file.ts';

/** Probes jobs from the cloud; results in the jobs' order, null for one it did not get to. */
export type CloudProbe = (jobs: readonly ProbeJob[]) => Promise<Array<ProbeResult | null>>;

export interface PlanCommandOptions extends ManifestFileOptions {
  sample: SampleOptions;
  fetcher: Partial<FetcherOptions>;
  /** Images in flight at once from this machine, and per origin. */
  concurrency: number;
  perOrigin: number;
  /** The stack's settings the cloud figures assume (cdk.json's, with the flags' changes). */
  settings: Settings;
  hostConcurrency: number;
  linkMbps: number;
  resizeRatio?: number;
  /** Resize the sample here as `run --resize` would, for the resized bytes (measured, not assumed). */
  image?: ImageOptions;
  /** The deployed stack's fetch function, when there is one; `where` names it in messages. */
  cloud?: { probe: CloudProbe; where: string; check: () => Promise<void> };
  log: NodeJS.WritableStream;
  quiet: boolean;
}

export interface PlanReport {
  manifest: string;
  split: string;
  format: string;
  /** Distinct entries (duplicates of an id counted once), and the rest. */
  entries: number;
  duplicates: number;
  unusable: number;
  origins: number;
  sample: { seed: number; share: number; minPerOrigin: number; maxPerOrigin: number; total: number; sampled: number };
  cloud: string | null;
  perOrigin: Forecast['origins'];
  prediction: Omit<Forecast, 'origins' | 'original' | 'resized'> & {
    assumptions: { functions: number; imagesPerFunction: number; hostConcurrency: number; memoryMb: number; linkMbps: number; resizeRatio?: number; image?: ImageOptions };
    original: Forecast['original'] & { cost: Cost };
    resized: (NonNullable<Forecast['resized']> & { cost: Cost }) | null;
  };
}

export async function planCommand(o: PlanCommandOptions): Promise<PlanReport> {
  const say = (text: string): void => {
    if (!o.quiet) o.log.write(`${text}\n`);
  };
  const { manifest, split } = await openManifestFile(o);
  await o.cloud?.check();
  say(`Reading ${printable(o.manifest)} (${manifest.format})…`);
  await manifest.scan();
  const sampler = new OriginSampler(o.sample);
  const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
  let unusable = 0;
  for await (const planned of planJobs(manifest.entries(), split, 'flat', stats)) {
    if ('job' in planned) sampler.add(planned.job);
    else unusable++;
  }
  const sample = sampler.result();
  const jobs = interleave(sample.origins);
  const sampledOrigins = sample.origins.filter((s) => s.sample.length > 0).length;
  say(`${sample.jobs + unusable} ${plural(sample.jobs + unusable, 'entry', 'entries')} over ${sample.origins.length} ${plural(sample.origins.length, 'origin')}; probing ${jobs.length} ${plural(jobs.length, 'image')} of ${sampledOrigins} ${plural(sampledOrigins, 'origin')} from this machine (${o.perOrigin} per origin at most), storing nothing…`);

  // On a terminal, a count that overwrites itself: a sample from a slow link takes minutes.
  const progress = !o.quiet && (o.log as { isTTY?: boolean }).isTTY ? (done: number): void => void o.log.write(`\r  ${done}/${jobs.length} fetched here`) : null;
  const fetcher = new Fetcher({ ...o.fetcher, hostConcurrency: o.perOrigin });
  let here: Array<ProbeResult | null>;
  try {
    here = await probeJobs(jobs, fetcher, { concurrency: o.concurrency, perOrigin: o.perOrigin, ...(progress ? { onResult: progress } : {}), ...(o.image ? { shape: shapeWith(o.image) } : {}) });
    if (progress) o.log.write('\n');
  } finally {
    await fetcher.close();
  }
  let cloud: Array<ProbeResult | null> | undefined;
  if (o.cloud) {
    say(`…and the same ${plural(jobs.length, 'image')} from ${o.cloud.where} (dry mode: nothing stored)…`);
    cloud = await o.cloud.probe(jobs);
  }

  const s = o.settings;
  // A FIFO batch is mostly one message group, run at most its width at once (aws/fifo.ts): what a
  // function fetches at once, and the share of its billed time each image takes.
  const perFunction = Math.min(s.fetchBatchSize, widestGroup(o.hostConcurrency));
  const byOrigin = new Map(sample.origins.map((origin) => [origin.origin, { here: [] as Array<ProbeResult | null>, cloud: [] as Array<ProbeResult | null> }]));
  jobs.forEach((job, i) => {
    const side = byOrigin.get(job.origin)!;
    side.here.push(here[i] ?? null);
    side.cloud.push(cloud?.[i] ?? null);
  });
  const f = forecast({
    origins: sample.origins.map((origin) => ({ origin: origin.origin, entries: origin.entries, here: byOrigin.get(origin.origin)!.here, ...(cloud ? { cloud: byOrigin.get(origin.origin)!.cloud } : {}) })),
    unusable,
    fleetConcurrency: s.fetchMaxConcurrency * perFunction,
    hostConcurrency: o.hostConcurrency,
    batchSize: perFunction,
    memoryMb: s.fetchMemoryMb,
    linkMbps: o.linkMbps,
    ...(o.resizeRatio !== undefined ? { shrinkRatio: o.resizeRatio } : {}),
  });
  const priced = <V extends Forecast['original']>(v: V): V & { cost: Cost } => ({
    ...v, cost: costOf({ jobs: v.jobs, images: v.images, bytes: v.bytes, gbSecondsPerImage: f.gbSecondsPerImage, batchSize: s.fetchBatchSize }),
  });
  const { origins: perOrigin, original, resized, ...rest } = f;
  return {
    manifest: o.manifest,
    split,
    format: manifest.format,
    entries: sample.jobs + unusable,
    duplicates: stats.duplicates,
    unusable,
    origins: sample.origins.length,
    sample: { seed: o.sample.seed, share: o.sample.share, minPerOrigin: o.sample.minPerOrigin, maxPerOrigin: o.sample.maxPerOrigin, total: o.sample.total, sampled: jobs.length },
    cloud: o.cloud?.where ?? null,
    perOrigin,
    prediction: {
      ...rest,
      assumptions: {
        functions: s.fetchMaxConcurrency, imagesPerFunction: perFunction, hostConcurrency: o.hostConcurrency, memoryMb: s.fetchMemoryMb, linkMbps: o.linkMbps,
        ...(o.resizeRatio !== undefined ? { resizeRatio: o.resizeRatio } : {}),
        ...(o.image ? { image: o.image } : {}),
      },
      original: priced(original),
      resized: resized ? priced(resized) : null,
    },
  };
}

/** What `run` would store instead of the fetched bytes; an image that does not decode fails as it would there. */
function shapeWith(image: ImageOptions): NonNullable<ProbeOptions['shape']> {
  return async (body, format) => {
    const shaped = await shapeImage(body, format, '', image);
    return shaped.ok ? { ok: true, bytes: shaped.body.length } : { ok: false, reason: shaped.reason };
  };
}

/** "resized to 384 px (crop) as webp at quality 90". */
function describeImage(image: ImageOptions): string {
  const size = image.resize === null ? 're-encoded' : `resized to ${image.resize} px${image.mode === 'keep' ? '' : ` (${image.mode})`}`;
  return `${size}${image.format === 'keep' ? '' : ` as ${image.format}`} at quality ${image.quality}`;
}

const n = (value: number): string => Math.round(value).toLocaleString('en-US');
const percent = (share: number): string => `${(100 * share).toFixed(share > 0 && share < 0.1 ? 1 : 0)}%`;
const usd = (value: number): string => `$${value < 10 ? value.toFixed(2) : n(value)}`;

function side(s: SideStats | null): string {
  return s ? `${percent(s.okShare)} ${n(s.medianMs)}/${n(s.p90Ms)} ms` : '—';
}

function failures(s: SideStats | null): string {
  if (!s) return '';
  return Object.entries(s.failures).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([reason, count]) => `${reason} ${count}`).join(', ');
}

/** The plan for a terminal; origins come from the manifest, so they are shown escaped. */
export function formatPlan(r: PlanReport, top: number): string {
  const p = r.prediction;
  const a = p.assumptions;
  const lines = [
    `${printable(r.manifest)} (${r.format}): ${n(r.entries)} distinct ${plural(r.entries, 'entry', 'entries')} over ${n(r.origins)} ${plural(r.origins, 'origin')}` +
      `${r.unusable ? `, ${n(r.unusable)} without a usable URL` : ''}${r.duplicates ? `, ${n(r.duplicates)} duplicate ${plural(r.duplicates, 'id')} not counted` : ''}`,
    `Sample: ${n(r.sample.sampled)} ${plural(r.sample.sampled, 'image')} (${percent(r.sample.share)} per origin, ${r.sample.minPerOrigin}–${r.sample.maxPerOrigin} each, ${n(r.sample.total)} at most; seed ${r.sample.seed}), fetched from this machine${r.cloud ? ` and from ${printable(r.cloud)}` : ''}, nothing stored`,
    '',
  ];
  const rows = r.perOrigin.slice(0, top).map((o) => [
    printable(o.origin, 60), n(o.entries), n(o.sampled), side(o.here), ...(r.cloud ? [side(o.cloud)] : []),
    o[p.basis]?.ok ? formatBytes(o[p.basis]!.meanBytes) : '—', failures(o[p.basis]),
  ]);
  const header = ['origin', 'entries', 'sampled', 'here: OK med/p90', ...(r.cloud ? ['cloud: OK med/p90'] : []), 'mean image', `failures (${p.basis === 'cloud' ? 'cloud' : 'here'})`];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const right = new Set([1, 2]);
  for (const row of [header, ...rows]) lines.push(row.map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd());
  if (r.perOrigin.length > top) lines.push(`… and ${n(r.perOrigin.length - top)} more ${plural(r.perOrigin.length - top, 'origin')} (--top, or --json for all)`);
  const unsampled = p.unsampled.origins > 0 ? `; ${n(p.unsampled.entries)} ${plural(p.unsampled.entries, 'entry', 'entries')} of ${n(p.unsampled.origins)} unsampled ${plural(p.unsampled.origins, 'origin')} at the pooled figures` : '';
  const home = (v: PlanReport['prediction']['original']): string =>
    `${formatBytes(v.bytes)} home, ${formatDuration(v.hoursHome * 3600)} at ${a.linkMbps} Mbit/s (your --link figure); ${usd(v.cost.total)}`;
  const bound = p.slowestOrigin ? `; ${printable(p.slowestOrigin, 60)} alone takes that long at ${a.hostConcurrency} at once` : '';
  lines.push(
    '',
    `Predicted, from ${p.basis === 'cloud' ? "the cloud's" : "this machine's"} sample${unsampled}:`,
    `  success rate    ${percent(p.predictedSuccessRate)} (${n(p.original.images)} of ${n(p.original.entries)} images)`,
    `  in the cloud    ${formatDuration(p.cloudSeconds)} at ${a.functions} functions × ${a.imagesPerFunction} images, ${a.hostConcurrency} per origin${bound}`,
    `  original        ${home(p.original)}`,
    p.resized
      ? `  resized         ${home(p.resized)} (${p.resized.source === 'measured' ? `the sample ${describeImage(a.image!)} here` : `your --resize-ratio ${a.resizeRatio}: an assumption, not measured`})`
      : '  resized         not estimated: give --resize <px> to resize the sample here, or --resize-ratio (resized ÷ original bytes) as your figure',
    `  cost            ${costLine(p.original.cost)}`,
    `                  (us-east-1 list prices, README "Cost of a million images"; Lambda at ${p.gbSecondsPerImage.toFixed(4)} GB-s per image: ${a.memoryMb} MB waiting for the slowest of ${a.imagesPerFunction})`,
  );
  return lines.join('\n');
}

function costLine(c: Cost): string {
  return `S3 requests ${usd(c.s3Requests)}, SQS ${usd(c.sqsRequests)}, Lambda ${usd(c.lambda)}, sync ${usd(c.syncRequests)}, egress ${usd(c.egress)}, storage ${usd(c.storageMonth)}/month`;
}
