// `cloudfetch sync`: brings images and index tables home, resumable, with a bar of bytes and rate.

import cliProgress from 'cli-progress';
import { bringSplitHome, openReader, type SplitHome } from '../aws/home/sync.ts';
import { TokenBucket } from '../engine/token-bucket.ts';
import { queuedSplits } from '../aws/home/cloud-state.ts';
import { describePending, queueBusy, readQueueState } from '../aws/home/queue-state.ts';
import type { Layout } from '../engine/keys.ts';
import type { ObjectReader } from '../aws/home/object-reader.ts';
import { formatBytes, formatDuration, plural } from '../engine/summary.ts';
import { UsageError } from './errors.ts';
import { command, type Target } from './target.ts';

export interface SyncCommandOptions {
  dir: string;
  split?: string;
  layout: Layout;
  concurrency: number;
  /** Start with a few downloads and add more while the rate grows (HomeOptions.ramp). */
  ramp?: boolean;
  /** Bytes per second for all downloads together. */
  bwlimit?: number;
  progress: boolean;
  /** List and compare, write nothing: what a sync would copy. */
  dryRun?: boolean;
  /** Re-hash local files against the index's sha256 (HomeOptions.verify). */
  verify?: boolean;
  signal?: AbortSignal;
  log: NodeJS.WriteStream;
}

export async function syncCommand(t: Target, o: SyncCommandOptions): Promise<Array<{ split: string; home: SplitHome; seconds: number }>> {
  // The downloads' connections open while the splits' status is read (round trips of a long link).
  const reader = o.dryRun ? undefined : await openReader(t.s3, t.bucket, o);
  try {
    return await syncSplits(t, o, reader);
  } finally {
    await reader?.close();
  }
}

async function syncSplits(t: Target, o: SyncCommandOptions, reader: ObjectReader | undefined): Promise<Array<{ split: string; home: SplitHome; seconds: number }>> {
  // Whether a failed attempt may still be retried: then its row is pending, not failed. Read with
  // the splits: each is a round trip of a long link.
  const [statuses, queue] = await Promise.all([queuedSplits(t.s3, t.bucket, o.split), t.queueUrl ? readQueueState(t.sqs, t.queueUrl, t.dlqUrl) : null]);
  const splits = statuses.map((s) => s.split);
  if (splits.length === 0) throw new UsageError(o.split ? `no split "${o.split}" in the bucket (see ${command(t, 'status')})` : `nothing to sync yet: ${command(t, 'submit <manifest>')} first`);
  const results = [];
  // One rate for every split: they are copied one after another over the same link.
  const bandwidth = o.bwlimit ? new TokenBucket(o.bwlimit) : undefined;
  for (const split of splits) {
    const started = Date.now();
    let listed = 0;
    let listedBytes = 0;
    let done = 0;
    let bytes = 0;
    const bar = o.progress && o.log.isTTY
      ? new cliProgress.SingleBar({ stream: o.log, format: ` ${split} {bar} {value}/{total} files | {size} | {rate}/s`, hideCursor: true, fps: 5 }, cliProgress.Presets.shades_classic)
      : null;
    bar?.start(0, 0, { size: '0 B', rate: '0 B' });
    const tick = (): void => {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      bar?.setTotal(listed);
      bar?.update(done, { size: `${formatBytes(bytes)} of ${formatBytes(listedBytes)}`, rate: formatBytes(bytes / seconds) });
    };
    const timer = !bar && o.progress
      ? setInterval(() => o.log.write(`sync ${split}: ${done}/${listed} files, ${formatBytes(bytes)} copied\n`), 10_000)
      : null;
    timer?.unref();
    try {
      const home = await bringSplitHome({
        s3: t.s3, bucket: t.bucket, split, dir: o.dir, layout: o.layout, concurrency: o.concurrency, ramp: o.ramp ?? false,
        ...(reader ? { reader } : {}),
        ...(bandwidth ? { bandwidth } : {}),
        queueBusy: queueBusy(queue), dryRun: o.dryRun ?? false, verify: o.verify ?? false,
        // The threshold the split was made with (the stack's setting then), so the table says what the functions did.
        ...threshold(statuses.find((s) => s.split === split)?.placeholderThreshold),
        ...(o.signal ? { signal: o.signal } : {}),
        onListed: (n, size) => {
          listed += n;
          listedBytes += size;
          tick();
        },
        onFile: (f) => {
          done++;
          if (f.downloaded) bytes += f.bytes;
          tick();
        },
      });
      const seconds = (Date.now() - started) / 1000;
      results.push({ split, home, seconds });
      bar?.stop();
      const c = home.counts;
      const { downloaded, skipped, repaired } = home.images;
      const repairs = o.verify || repaired > 0 ? `, ${repaired} damaged ${plural(repaired, 'file')} ${o.dryRun ? 'to repair' : 'repaired'}` : '';
      const table = `${c.fetched} stored, ${c.failed} failed, ${describePending(c, queue)}`;
      o.log.write(o.dryRun
        ? `${split}: would copy ${downloaded} ${plural(downloaded, 'file')} (${formatBytes(home.images.bytes)}), ${skipped} already here${repairs}; ` +
            `table ${home.indexFile} would list ${table}. Dry run: nothing written.\n`
        : `${split}: ${downloaded} ${plural(downloaded, 'file')} copied (${formatBytes(home.images.bytes)}), ${skipped} already here${repairs}, in ${formatDuration(seconds)}; ` +
            `table ${home.indexFile}: ${table}\n`);
    } finally {
      bar?.stop();
      if (timer) clearInterval(timer);
    }
  }
  return results;
}

/** A recorded threshold, when it is one (the status is bucket content, not trusted). */
function threshold(value: unknown): { placeholderThreshold?: number } {
  return Number.isSafeInteger(value) && (value === 0 || (value as number) >= 2) ? { placeholderThreshold: value as number } : {};
}
