// `cloudfetch run`: a whole manifest onto disk, resumable; the index CSV and a summary at the end.

import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { Fetcher, type FetcherOptions } from '../functions/core/fetcher.ts';
import { INDEX_HEADER, indexRow } from '../functions/core/index-table.ts';
import type { Layout } from '../functions/core/keys.ts';
import type { ManifestFormat } from '../functions/core/manifest/index.ts';
import { planJobs, runPool, type PlanStats } from '../functions/core/run.ts';
import { Tally, type Summary } from '../functions/core/summary.ts';
import { FsStore } from '../functions/local/fs-store.ts';
import { openManifestFile } from './manifest-file.ts';
import { startProgress } from './progress.ts';

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
  fetcher: Partial<FetcherOptions>;
  signal?: AbortSignal;
  /** Where progress and notes go (stderr in the CLI). */
  log: NodeJS.WriteStream;
  progress: boolean;
}

export async function runCommand(o: RunCommandOptions): Promise<Summary> {
  const started = Date.now();
  const { manifest, split } = await openManifestFile(o);
  o.log.write(`Reading ${o.manifest} (${manifest.format})…\n`);
  const { entries } = await manifest.scan();
  o.log.write(`${entries} entries; fetching split "${split}" into ${o.out} with ${o.concurrency} connections\n`);

  const store = await FsStore.open(o.out);
  const fetcher = new Fetcher(o.fetcher);
  const indexPath = join(store.root, `${split}.csv`);
  const partial = `${indexPath}.part`;
  const index = createWriteStream(partial);
  // Rows are written in 64 KiB pieces: one write per row would cost a thread-pool round trip each.
  let rows = INDEX_HEADER;
  const tally = new Tally();
  const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
  const progress = o.progress ? startProgress(entries, tally, o.log) : null;
  let completed = false;
  try {
    await runPool(planJobs(manifest.entries(), split, o.layout, stats), store, fetcher, { concurrency: o.concurrency, ...(o.signal ? { signal: o.signal } : {}) }, (record) => {
      tally.add(record);
      rows += indexRow(record);
      if (rows.length >= 65_536) {
        index.write(rows);
        rows = '';
      }
      progress?.tick();
    });
    completed = !o.signal?.aborted;
  } finally {
    progress?.stop();
    await (completed ? fetcher.close() : fetcher.destroy());
    index.end(rows);
    await once(index, 'close');
    await store.close();
    // The index is complete only after a full run; otherwise the last complete one stays.
    if (completed) await rename(partial, indexPath);
    else await rm(partial, { force: true });
  }
  const interrupted = !completed;
  const summary = tally.summary(split, stats.duplicates, (Date.now() - started) / 1000, interrupted);
  if (!interrupted) o.log.write(`Index: ${indexPath}\n`);
  return summary;
}
