// `cloudfetch run`: a whole manifest onto disk, resumable; the index CSV and a summary at the end.

import { mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_FETCHER_OPTIONS, Fetcher, type FetcherOptions } from '../engine/fetch/fetcher.ts';
import { indexRow, OrderedTable, TableFile } from '../engine/index-table.ts';
import type { Layout } from '../engine/keys.ts';
import type { ManifestFormat } from '../engine/manifest/index.ts';
import { planJobs, type PlanStats } from '../engine/plan.ts';
import { runPool } from '../engine/pool.ts';
import { formatSummary, plural, Tally, type Summary } from '../engine/summary.ts';
import { FsStore, TEMP_DIR } from '../engine/fs-store.ts';
import { SeenIds } from '../engine/seen-ids.ts';
import { DEFAULT_PLACEHOLDER_THRESHOLD, DigestPrefixes, refusingPlaceholders, SameBytes, settleSameBytes } from '../engine/same-bytes.ts';
import { storedExtension, type ImageOptions } from '../engine/resize.ts';
import { openManifestFile } from './manifest-file.ts';
import { prepareOutFolder } from './out-folder.ts';
import { startProgress, type Progress } from './progress.ts';

export interface RunCommandOptions {
  manifest: string;
  out: string;
  split?: string;
  format?: ManifestFormat;
  idColumn?: string;
  urlColumn?: string;
  labelColumn?: string;
  layout: Layout;
  concurrency: number;
  /** Distinct URLs of one host with the same bytes that make them a placeholder (default 3); 0: no check. */
  placeholderThreshold?: number;
  fetcher: Partial<FetcherOptions>;
  /** Resize or re-encode before storing; absent: the fetched bytes are stored untouched. */
  image?: ImageOptions;
  signal?: AbortSignal;
  /** Where progress, notes and the summary go (stderr in the CLI). */
  log: NodeJS.WriteStream;
  /** Nothing on the log; errors are thrown, for the caller to print. */
  quiet: boolean;
}

export async function runCommand(o: RunCommandOptions): Promise<Summary> {
  const say = (text: string): void => {
    if (!o.quiet) o.log.write(`${text}\n`);
  };
  let progress: Progress | null = null;
  // The bar ends before anything else is written, or the terminal mixes the two.
  const onAbort = (): void => {
    progress?.stop();
    say('Stopping: nothing new is started; what is in hand is written (press Ctrl-C again to quit at once)…');
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fetchAll(o, say, (started) => (progress = started));
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

async function fetchAll(o: RunCommandOptions, say: (text: string) => void, onProgress: (progress: Progress) => void): Promise<Summary> {
  const started = Date.now();
  const { manifest, split } = await openManifestFile(o);
  say(`Reading ${o.manifest} (${manifest.format})…`);
  const { entries } = await manifest.scan();
  await prepareOutFolder(o.out);
  say(`${entries} ${plural(entries, 'entry', 'entries')}; fetching split "${split}" into ${o.out}: ${inFlight(o.concurrency, o.fetcher.hostConcurrency)}${o.image ? `; ${shaping(o.image)}` : ''}`);

  const store = await FsStore.open(o.out);
  const fetcher = new Fetcher({ ...o.fetcher, concurrency: o.concurrency });
  const hostConcurrency = fetcher.options.hostConcurrency;
  // Per entry, only the ids seen and the rows held behind a straggler are remembered, both on
  // disk here (swept by a later run if this one is killed) so memory stays flat at any size.
  const spill = await mkdtemp(join(store.root, TEMP_DIR, `${process.pid}-run-`));
  const seen = new SeenIds({ spillFile: join(spill, 'ids') });
  // The table goes to the spill folder first: rows whose bytes repeat are settled once every row
  // is known (a placeholder's first entries look like images until its later ones come).
  const written = join(spill, 'index.csv');
  const index = new OrderedTable(new TableFile(written), spill);
  const digests = new DigestPrefixes();
  const threshold = o.placeholderThreshold ?? DEFAULT_PLACEHOLDER_THRESHOLD;
  const tally = new Tally();
  const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
  const progress = o.quiet || o.signal?.aborted ? null : startProgress(entries, tally, o.log);
  if (progress) onProgress(progress);
  let completed = false;
  let repeated = 0;
  try {
    const watching = threshold > 0 ? refusingPlaceholders(fetcher, new SameBytes(threshold)) : fetcher;
    await runPool(planJobs(manifest.entries(), split, o.layout, stats, seen, o.image && storedExtension(o.image.format)), store, watching, { concurrency: JOBS_PER_REQUEST * o.concurrency, perOrigin: Math.min(JOBS_PER_REQUEST * hostConcurrency, (JOBS_PER_REQUEST - 1) * o.concurrency), ...(o.signal ? { signal: o.signal } : {}), ...(o.image ? { image: { options: o.image } } : {}) }, (record, sequence) => {
      tally.add(record);
      if (record.outcome.sha256) digests.add(record.outcome.sha256, sequence);
      index.put(sequence, indexRow(record));
    });
    completed = !o.signal?.aborted;
  } finally {
    progress?.stop();
    seen.close();
    try {
      await (completed ? fetcher.close() : fetcher.destroy());
      // The index is complete only after a full run; otherwise the last complete one stays.
      await (completed ? index.commit() : index.abandon());
      if (completed) repeated = await settle(written, join(store.root, `${split}.csv`), digests, threshold, store, tally);
    } finally {
      await rm(spill, { recursive: true, force: true });
      await store.close();
    }
  }
  const interrupted = !completed;
  const summary = tally.summary(split, stats.duplicates, (Date.now() - started) / 1000, interrupted);
  if (!interrupted) say(`Index: ${join(o.out, `${split}.csv`)}`);
  if (repeated > 0) say(`Same bytes: ${repeated} ${plural(repeated, 'image repeats', 'images repeat')} an earlier one (its id in duplicate_of)`);
  say(formatSummary(summary));
  return summary;
}

/**
 * The written table into `file`, with the verdicts on repeated bytes: placeholders' files removed
 * and their rows failed (and the tally told), duplicates named. Returns the duplicates named.
 */
async function settle(written: string, file: string, digests: DigestPrefixes, threshold: number, store: FsStore, tally: Tally): Promise<number> {
  const repeating = digests.repeating();
  if (repeating.sequences.length === 0) {
    await rename(written, file);
    return 0;
  }
  let duplicates = 0;
  const table = new TableFile(file);
  try {
    await settleSameBytes(written, table, repeating, threshold, async ({ before, after }) => {
      if (after.duplicate_of) duplicates++;
      if (before.status === 'failed' || after.status !== 'failed') return;
      await store.remove(before.path);
      tally.unstore(before.status === 'skipped' ? 'skipped' : 'fetched', Number(before.bytes), before.url, 'placeholder');
    });
  } catch (error) {
    await table.abandon();
    throw error;
  }
  await table.commit();
  return duplicates;
}

/** "resized to 384 px (crop), stored as webp at quality 90". */
function shaping(image: ImageOptions): string {
  const size = image.resize === null ? 'not resized' : `resized to ${image.resize} px${image.mode === 'keep' ? '' : ` (${image.mode})`}`;
  const format = image.format === 'keep' ? 'in their own format' : `as ${image.format}`;
  return `${size}, stored ${format} at quality ${image.quality}`;
}

/**
 * Jobs under way per request on the network (and per request to one host): the jobs of a host that
 * is busy or paused wait for it at the fetcher's gate (engine/host-gate.ts); past this many (or
 * past all slots but -c of them), the pool parks them and reads on, so the other hosts keep going.
 */
const JOBS_PER_REQUEST = 4;

/** "64 images at once, at most 6 per host": the per-host cap only when it is the tighter one. */
function inFlight(concurrency: number, hostConcurrency = DEFAULT_FETCHER_OPTIONS.hostConcurrency): string {
  const atOnce = `${concurrency} ${plural(concurrency, 'image')} at once`;
  return hostConcurrency < concurrency ? `${atOnce}, at most ${hostConcurrency} per host` : atOnce;
}
