// Splitting a manifest in S3 into one queue message per distinct image, with the index table and
// a status object that the CLI reads. A malformed manifest enqueues nothing and records its error;
// so does any other failure. A re-run of the same upload sends only what earlier runs did not.

import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { parse } from 'csv-parse';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { formatIndexRow, indexRow, TableFile, type IndexRow } from '../../engine/index-table.ts';
import type { Job } from '../../engine/job.ts';
import type { Layout } from '../../engine/keys.ts';
import { safeSegment } from '../../engine/keys.ts';
import { ManifestError, openManifest, splitNameOf } from '../../engine/manifest/index.ts';
import { MultiLabelError, planJobs, type PlanStats } from '../../engine/plan.ts';
import { printable } from '../../engine/printable.ts';
import { listObjects } from '../listing.ts';
import { imagesPrefix, indexKey, PREFIX, statusKey, type SplitStatus } from '../bucket.ts';
import { s3Source } from './s3-source.ts';
import { JobSender, oversized, type Refusal } from '../sqs-jobs.ts';
import { jobIds, splitDeduplicationId } from '../fifo.ts';
import { DEFAULT_SETTINGS } from '../settings.ts';


export interface SplitDeps {
  s3: S3Client;
  sqs: SQSClient;
  bucket: string;
  queueUrl: string;
  layout: Layout;
  /** The keys' extension when the stack stores one format (`imageFormat`); null: from each URL. */
  extension?: string | null;
  skipExisting: boolean;
  /** Message groups per origin (aws/fifo.ts): at most this many of an origin's jobs in flight. */
  hostConcurrency: number;
  /** Recorded in the split's status, for sync (default: the stack's default). */
  placeholderThreshold?: number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export async function splitManifest(manifestKey: string, deps: SplitDeps): Promise<SplitStatus> {
  const split = splitNameOf(manifestKey);
  const status: SplitStatus = { split, manifest: manifestKey, state: 'splitting', startedAt: new Date().toISOString(), hostConcurrency: deps.hostConcurrency,
    placeholderThreshold: deps.placeholderThreshold ?? DEFAULT_SETTINGS.placeholderThreshold };
  const finish = async (update: Partial<SplitStatus>): Promise<SplitStatus> => {
    Object.assign(status, update, { finishedAt: new Date().toISOString() });
    await putJson(deps, statusKey(split), status);
    return status;
  };
  if (split === '' || safeSegment(split) !== split) {
    return finish({ state: 'failed', error: `the split name "${split}" (from the file name) may hold only letters, digits, . _ -: rename the manifest` });
  }
  try {
    return await splitInto(status, finish, deps);
  } catch (error) {
    // Not left `splitting`: submit and status show the error at once; rethrown, so the invocation
    // fails too (the failed-manifests queue, the alarm).
    await finish({ state: 'failed', error: `the split stopped: ${printable(error instanceof Error ? `${error.name}: ${error.message}` : String(error))}` });
    throw error;
  }
}

/** How often a split records its progress: what a re-run after a crash would send again at most. */
const CHECKPOINT_MS = 5000;

async function splitInto(status: SplitStatus, finish: (update: Partial<SplitStatus>) => Promise<SplitStatus>, deps: SplitDeps): Promise<SplitStatus> {
  const { split, manifest: manifestKey } = status;
  const head = await deps.s3.send(new HeadObjectCommand({ Bucket: deps.bucket, Key: manifestKey }));
  const upload = { etag: head.ETag ?? '', bytes: head.ContentLength ?? 0 };
  const previous = await readPrevious(deps, split);
  const resumed = previous?.state !== 'queued' && previous?.progress?.etag === upload.etag && previous.progress.bytes === upload.bytes
    && (previous.hostConcurrency ?? deps.hostConcurrency) === deps.hostConcurrency ? previous.progress : null;
  const earlier = resumed?.done ?? 0;
  const submission = resumed?.submission ?? randomUUID();
  const progress = { ...upload, done: earlier, submission };
  status.progress = progress;
  await putJson(deps, statusKey(split), status);

  const manifest = await openManifest(s3Source(deps.s3, deps.bucket, manifestKey)).catch(manifestFailure);
  if ('failed' in manifest) return finish(manifest.failed);
  const scanned = await manifest.scan().catch(manifestFailure);
  if ('failed' in scanned) return finish(scanned.failed);
  deps.log?.('manifest scanned', { split, format: manifest.format, entries: scanned.entries, resumedAfter: earlier });

  const stored = deps.skipExisting ? await listStored(deps, split) : new Set<string>();
  const work = await mkdtemp(join(tmpdir(), 'cloudfetch-index-'));
  const index = new TableFile(join(work, 'index.csv'));
  const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
  const sender = new JobSender(deps.sqs, deps.queueUrl, (job) => jobIds(job, deps.hostConcurrency, splitDeduplicationId(job, submission)));
  let planned = 0;
  let queued = 0;
  let alreadyStored = 0;
  let invalid = 0;
  let unqueueable = 0;
  // Planned entries before the oldest job SQS has not taken yet: all queued (or not to be).
  const known = (): number => Math.max(earlier, sender.oldestUnsent() ?? planned);
  let checkpointAt = Date.now() + CHECKPOINT_MS;
  const row = async (r: IndexRow): Promise<void> => {
    if (!index.write(r)) await index.drained();
  };
  try {
    for await (const plan of planJobs(manifest.entries(), split, deps.layout, stats, undefined, deps.extension)) {
      const position = planned++;
      if ('record' in plan) {
        invalid++;
        await row(indexRow(plan.record));
        continue;
      }
      const { job } = plan;
      if (stored.has(job.key)) {
        alreadyStored++;
        await row(plannedRow(job, 'skipped'));
        continue;
      }
      // Sent by an earlier run of this upload: not again.
      const refusal = position < earlier ? oversized(job) : await sender.send(job, position);
      if (refusal) {
        unqueueable++;
        await row(unqueueableRow(refusal));
        continue;
      }
      queued++;
      await row(plannedRow(job, 'queued'));
      if (Date.now() >= checkpointAt) {
        progress.done = known();
        await putJson(deps, statusKey(split), status);
        checkpointAt = Date.now() + CHECKPOINT_MS;
      }
    }
    await sender.flush();
  } catch (error) {
    await sender.settle();
    progress.done = known();
    await index.abandon();
    await rm(work, { recursive: true, force: true });
    // A manifest problem found while streaming (or a multi-label entry with the by-label layout):
    // a fixed upload is another ETag, and sends every job again (duplicates are harmless).
    return finish({ ...manifestFailure(error).failed, queued: sender.sent });
  }
  progress.done = planned;
  try {
    await index.commit();
    if (sender.refused.length > 0) await markRefused(index.file, sender.refused);
    // In parts when large (a 1M-entry index is ~100 MB): S3 emulators refuse big single bodies,
    // and a failed part is retried alone.
    await new Upload({
      client: deps.s3,
      params: { Bucket: deps.bucket, Key: indexKey(split), Body: createReadStream(index.file), ContentType: 'text/csv; charset=utf-8' },
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
    }).done();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return finish({
    state: 'queued', entries: scanned.entries, queued: queued - sender.refused.length, alreadyStored, invalid,
    unqueueable: unqueueable + sender.refused.length, duplicates: stats.duplicates,
  });
}

function manifestFailure(error: unknown): { failed: Partial<SplitStatus> } {
  if (error instanceof ManifestError) return { failed: { state: 'failed', error: error.message, position: error.position } };
  if (error instanceof MultiLabelError) return { failed: { state: 'failed', error: error.message } };
  throw error;
}

/** The row of a job SQS will not take: failed, for good (a manifest problem, like no-url). */
function unqueueableRow(refusal: Refusal): IndexRow {
  return { ...plannedRow(refusal.job, 'queued'), path: '', status: 'failed', reason: 'unqueueable', attempts: 0, detail: refusal.detail };
}

/**
 * Rewrites the rows of jobs SQS refused after their `queued` row was written. A queued row is
 * known from its job alone; rows are read as CSV records, as written (a quoted id may hold line
 * breaks). The file is in the split's work folder, removed whatever happens.
 */
async function markRefused(file: string, refused: readonly Refusal[]): Promise<void> {
  const replace = new Map(refused.map((r) => [formatIndexRow(plannedRow(r.job, 'queued')), formatIndexRow(unqueueableRow(r))]));
  const out = createWriteStream(`${file}.marked`);
  for await (const { raw } of createReadStream(file).pipe(parse({ raw: true })) as AsyncIterable<{ raw: string }>) {
    if (!out.write(replace.get(raw) ?? raw)) await once(out, 'drain');
  }
  out.end();
  await finished(out);
  await rename(`${file}.marked`, file);
}

/** A row of the split-time index: the fetch outcome is not known yet. */
export function plannedRow(job: Job, status: 'queued' | 'skipped'): IndexRow {
  return { image_id: job.id, label: job.labels.join(' '), url: job.urls[0] ?? '', path: job.key, status };
}

/** Keys under images/<split>/, relative to images/: one listing instead of a HeadObject per image. */
async function listStored(deps: SplitDeps, split: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const page of listObjects(deps.s3, deps.bucket, imagesPrefix(split))) {
    for (const object of page) keys.add(object.key.slice(PREFIX.images.length));
  }
  return keys;
}

/** The status an earlier run of this split left, if any. */
async function readPrevious(deps: SplitDeps, split: string): Promise<SplitStatus | null> {
  try {
    const answer = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: statusKey(split) }));
    return JSON.parse(await answer.Body!.transformToString()) as SplitStatus;
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

async function putJson(deps: SplitDeps, key: string, value: unknown): Promise<void> {
  await deps.s3.send(new PutObjectCommand({
    Bucket: deps.bucket, Key: key, Body: JSON.stringify(value, null, 2), ContentType: 'application/json',
  }));
}
