// `cloudfetch sync`: brings images and index tables home, resumable, with a bar of bytes and rate.

import cliProgress from 'cli-progress';
import { FIRST_PAGE, bringSplitHome, openReader, placement, type HomeOptions, type SplitHome } from '../aws/home/sync.ts';
import { BucketLister } from '../aws/home/bucket-list.ts';
import { closeEarly } from '../aws/home/early-connections.ts';
import { PREFIX, imagesPrefix } from '../aws/bucket.ts';
import type { PackedResult } from '../aws/home/packed-sync.ts';
import { TokenBucket } from '../engine/token-bucket.ts';
import { CloudStateError, failureReasons, fetchRecords, queuedSplits, type Pages } from '../aws/home/cloud-state.ts';
import { describePending, queueBusy, readQueueState } from '../aws/home/queue-state.ts';
import type { Layout } from '../engine/keys.ts';
import type { ListedObject, ListedPage } from '../aws/listing.ts';
import type { ObjectReader } from '../aws/home/object-reader.ts';
import { formatBytes, formatDuration, plural } from '../engine/summary.ts';
import { CommandFailed, UsageError } from './errors.ts';
import { command, type Target } from './target.ts';

export interface SyncCommandOptions {
  dir: string;
  split?: string;
  layout: Layout;
  /** Downloads at once, pinned (HomeOptions.concurrency); without it, grown while the rate grows. */
  concurrency?: number;
  /** Bytes per second for all downloads together. */
  bwlimit?: number;
  progress: boolean;
  /** List and compare, write nothing: what a sync would copy. */
  dryRun?: boolean;
  /** Re-hash local files against the index's sha256 (HomeOptions.verify). */
  verify?: boolean;
  /** Bring the split's tar shards (cloudfetch pack) first; then copy what no shard holds object by object. */
  packed?: boolean;
  signal?: AbortSignal;
  log: NodeJS.WriteStream;
}

export async function syncCommand(t: Target, o: SyncCommandOptions): Promise<Array<{ split: string; home: SplitHome; seconds: number; packed?: PackedResult }>> {
  // The downloads' connections open while the splits' status is read (round trips of a long link).
  const reader = o.dryRun ? undefined : await openReader(t.s3, t.bucket, o);
  const lister = new BucketLister(t.s3, t.bucket);
  // While the SDK lists the splits' status (the SDK's connection then reads their status objects,
  // on which the downloads wait), the first page, the records and the failure listings get
  // connections of their own, open by the time the split's name is known. Without --split, the
  // first two go out at once, under every split's prefix (guessOneSplit), and open two of them.
  const guess = o.split || o.packed ? undefined : guessOneSplit(lister);
  void lister.warm(guess ? 1 : 3);
  try {
    return await syncSplits(t, o, reader, lister, guess);
  } catch (error) {
    // A body of the bucket's that kept breaking off: its one line, not an unexpected error.
    throw error instanceof CloudStateError ? new CommandFailed(error.message) : error;
  } finally {
    closeEarly();
    await Promise.all([reader?.close(), lister.close()]);
  }
}

/**
 * A bucket usually holds one split: its first page of images and its fetch records' listing are
 * asked for with the splits' status, under images/ and records/, a round trip before the status
 * names the split (on the lossy link: the first page at the status listing's end, not a round trip
 * and more after it). Taken only when they are that split's (splitPage); else, or if one failed,
 * asked for again under the split's prefix, as without the guess.
 */
interface Guess {
  images: Promise<ListedPage | undefined>;
  records: Promise<ListedPage | undefined>;
}

function guessOneSplit(lister: BucketLister): Guess {
  const guessed = (page: Promise<ListedPage>): Promise<ListedPage | undefined> => page.catch(() => undefined);
  return { images: guessed(lister.page(PREFIX.images, { maxKeys: FIRST_PAGE })), records: guessed(lister.page(PREFIX.records)) };
}

/**
 * A page listed under every split's prefix as `prefix`'s own: the whole listing (not truncated)
 * with the other splits' keys left out, or a truncated one whose keys are all under `prefix` (then
 * they are its first keys; the listing's shards leave them out). Else undefined.
 */
export function splitPage(page: ListedPage | undefined, prefix: string, o: { truncated: boolean }): ListedPage | undefined {
  if (!page) return undefined;
  const objects = page.objects.filter((x) => x.key.startsWith(prefix));
  if (!page.next) return { objects };
  return o.truncated && objects.length === page.objects.length ? page : undefined;
}

async function syncSplits(t: Target, o: SyncCommandOptions, reader: ObjectReader | undefined, lister: BucketLister, guess?: Guess): Promise<Array<{ split: string; home: SplitHome; seconds: number; packed?: PackedResult }>> {
  // Whether a failed attempt may still be retried: then its row is pending, not failed. Read with
  // the splits: each is a round trip of a long link.
  // One split (the usual case): the first page of its images, its fetch records and its failure
  // listing are asked for while its status is read, a round trip of a long link sooner (unused if
  // the status says it is not queued). Not with --packed: its plain pass comes minutes later.
  const early = new Map<string, Pick<HomeOptions, 'firstPage' | 'early'>>();
  const pages = (prefix: string): AsyncIterable<ListedObject[]> => lister.pages(prefix);
  const named = (names: readonly string[]): void => {
    if (names.length !== 1 || o.packed) return;
    const split = names[0]!;
    const fresh = (): Promise<ListedPage> => lister.page(imagesPrefix(split), { maxKeys: FIRST_PAGE });
    const firstPage = guess ? guess.images.then((page) => splitPage(page, imagesPrefix(split), { truncated: true }) ?? fresh()) : fresh();
    // The records are read to their last page: a truncated guess is listed again.
    const recordPages: Pages = guess
      ? (prefix) => (async function* () {
          const page = splitPage(await guess.records, prefix, { truncated: false });
          if (page) yield page.objects;
          else yield* pages(prefix);
        })()
      : pages;
    const records = fetchRecords(t.s3, t.bucket, split, recordPages);
    const failures = failureReasons(t.s3, t.bucket, split, pages);
    // Awaited by the split's sync, if it is one to sync.
    for (const p of [firstPage, records, failures]) p.catch(() => {});
    early.set(split, { firstPage, early: { records, failures } });
  };
  const [statuses, queue] = await Promise.all([queuedSplits(t.s3, t.bucket, o.split, named), t.queueUrl ? readQueueState(t.sqs, t.queueUrl, t.dlqUrl) : null]);
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
      const packed = o.packed ? await packedShards(t, o, split, bandwidth, reader) : undefined;
      const home = await bringSplitHome({
        s3: t.s3, bucket: t.bucket, split, dir: o.dir, layout: o.layout, ...(o.concurrency ? { concurrency: o.concurrency } : {}),
        ...(reader ? { reader } : {}),
        lister,
        ...(bandwidth ? { bandwidth } : {}),
        ...early.get(split),
        queueBusy: queueBusy(queue), dryRun: o.dryRun ?? false, verify: o.verify ?? false,
        // The threshold the split was made with (the stack's setting then), so the table says what the functions did.
        ...threshold(statuses.find((s) => s.split === split)?.placeholderThreshold),
        ...expectedImages(statuses.find((s) => s.split === split)),
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
      results.push({ split, home, seconds, ...(packed ? { packed } : {}) });
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

/** How many images the status says the split may hold: how it is listed (HomeOptions.expectedImages). */
function expectedImages(status: { queued?: unknown; alreadyStored?: unknown } | undefined): { expectedImages?: number } {
  const n = (value: unknown): number => (Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : 0);
  return status ? { expectedImages: n(status.queued) + n(status.alreadyStored) } : {};
}

/** A recorded threshold, when it is one (the status is bucket content, not trusted). */
function threshold(value: unknown): { placeholderThreshold?: number } {
  return Number.isSafeInteger(value) && (value === 0 || (value as number) >= 2) ? { placeholderThreshold: value as number } : {};
}

/** The split's shards, before its object-by-object pass; a split not packed says so and is copied object by object. */
async function packedShards(t: Target, o: SyncCommandOptions, split: string, bandwidth: TokenBucket | undefined, reader: ObjectReader | undefined): Promise<PackedResult | undefined> {
  // Loaded with --packed only: tar-stream and the shard reader are start-up time every other sync would pay.
  const { PackedSyncError, syncPacked } = await import('../aws/home/packed-sync.ts');
  const started = Date.now();
  let received = 0;
  const timer = o.progress ? setInterval(() => o.log.write(`sync ${split}: ${formatBytes(received)} of shards received\n`), 10_000) : null;
  timer?.unref();
  try {
    const place = await placement({ s3: t.s3, bucket: t.bucket, split, dir: o.dir, layout: o.layout });
    const r = await syncPacked({
      s3: t.s3, bucket: t.bucket, split, dir: o.dir, place, ...(o.concurrency ? { concurrency: o.concurrency } : {}), dryRun: o.dryRun ?? false,
      ...(bandwidth ? { bandwidth } : {}), ...(o.signal ? { signal: o.signal } : {}), ...(reader ? { reader } : {}),
      onBytes: (n) => (received += n),
    });
    const seconds = (Date.now() - started) / 1000;
    const unfinished = r.complete ? '' : ' (packing was not finished: the rest comes object by object)';
    o.log.write(o.dryRun
      ? `${split}: would read ${r.fetched} of ${r.shards} ${plural(r.shards, 'shard')} (${formatBytes(r.bytes)}), ${r.alreadyHere} here already${unfinished}\n`
      : `${split}: ${r.fetched} of ${r.shards} ${plural(r.shards, 'shard')} read (${formatBytes(r.bytes)}, ${r.images} ${plural(r.images, 'image')}) in ${formatDuration(seconds)}, ${r.alreadyHere} here already${unfinished}; now what no shard holds\n`);
    return r;
  } catch (error) {
    if (!(error instanceof PackedSyncError)) throw error;
    if (!/is not packed/.test(error.message)) throw new CommandFailed(error.message);
    o.log.write(`${split}: ${error.message.replace(/: pack it first.*$/, '')}; copied object by object (${command(t, `pack ${split}`)} packs it)\n`);
    return undefined;
  } finally {
    if (timer) clearInterval(timer);
  }
}
