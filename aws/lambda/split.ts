// Splitting a manifest in S3 into one queue message per distinct image, with the index table and
// a status object that the CLI reads. A malformed manifest enqueues nothing and records its error.

import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { indexRow, TableFile, type IndexRow } from '../../engine/index-table.ts';
import type { Job } from '../../engine/job.ts';
import type { Layout } from '../../engine/keys.ts';
import { safeSegment } from '../../engine/keys.ts';
import { ManifestError, openManifest, splitNameOf } from '../../engine/manifest/index.ts';
import { MultiLabelError, planJobs, type PlanStats } from '../../engine/plan.ts';
import { listObjects } from '../listing.ts';
import { imagesPrefix, indexKey, PREFIX, statusKey, type SplitStatus } from '../bucket.ts';
import { s3Source } from './s3-source.ts';
import { JobSender } from '../sqs-jobs.ts';


export interface SplitDeps {
  s3: S3Client;
  sqs: SQSClient;
  bucket: string;
  queueUrl: string;
  layout: Layout;
  skipExisting: boolean;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export async function splitManifest(manifestKey: string, deps: SplitDeps): Promise<SplitStatus> {
  const split = splitNameOf(manifestKey);
  const status: SplitStatus = { split, manifest: manifestKey, state: 'splitting', startedAt: new Date().toISOString() };
  const finish = async (update: Partial<SplitStatus>): Promise<SplitStatus> => {
    Object.assign(status, update, { finishedAt: new Date().toISOString() });
    await putJson(deps, statusKey(split), status);
    return status;
  };
  if (split === '' || safeSegment(split) !== split) {
    return finish({ state: 'failed', error: `the split name "${split}" (from the file name) may hold only letters, digits, . _ -: rename the manifest` });
  }
  await putJson(deps, statusKey(split), status);

  const manifest = await openManifest(s3Source(deps.s3, deps.bucket, manifestKey)).catch(manifestFailure);
  if ('failed' in manifest) return finish(manifest.failed);
  const scanned = await manifest.scan().catch(manifestFailure);
  if ('failed' in scanned) return finish(scanned.failed);
  deps.log?.('manifest scanned', { split, format: manifest.format, entries: scanned.entries });

  const stored = deps.skipExisting ? await listStored(deps, split) : new Set<string>();
  const work = await mkdtemp(join(tmpdir(), 'cloudfetch-index-'));
  const index = new TableFile(join(work, 'index.csv'));
  const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
  const sender = new JobSender(deps.sqs, deps.queueUrl);
  let queued = 0;
  let alreadyStored = 0;
  let invalid = 0;
  try {
    for await (const planned of planJobs(manifest.entries(), split, deps.layout, stats)) {
      if ('record' in planned) {
        invalid++;
        if (!index.write(indexRow(planned.record))) await index.drained();
        continue;
      }
      const { job } = planned;
      const already = stored.has(job.key);
      if (!index.write(plannedRow(job, already ? 'skipped' : 'queued'))) await index.drained();
      if (already) {
        alreadyStored++;
        continue;
      }
      await sender.send(job);
      queued++;
    }
    await sender.flush();
  } catch (error) {
    await index.abandon();
    await rm(work, { recursive: true, force: true });
    const known = manifestFailure(error);
    // A manifest problem found while streaming (or a multi-label entry with the by-label layout):
    // jobs sent so far are harmless, they would be sent again by a fixed upload.
    return finish({ ...known.failed, queued: sender.sent });
  }
  try {
    await index.commit();
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
  return finish({ state: 'queued', entries: scanned.entries, queued, alreadyStored, invalid, duplicates: stats.duplicates });
}

function manifestFailure(error: unknown): { failed: Partial<SplitStatus> } {
  if (error instanceof ManifestError) return { failed: { state: 'failed', error: error.message, position: error.position } };
  if (error instanceof MultiLabelError) return { failed: { state: 'failed', error: error.message } };
  throw error;
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

async function putJson(deps: SplitDeps, key: string, value: unknown): Promise<void> {
  await deps.s3.send(new PutObjectCommand({
    Bucket: deps.bucket, Key: key, Body: JSON.stringify(value, null, 2), ContentType: 'application/json',
  }));
}
