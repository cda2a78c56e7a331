// `cloudfetch submit`: check a manifest here, upload it under manifests/ (multipart, with
// progress), and wait until the manifest function has split it, or show the error it recorded.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import cliProgress from 'cli-progress';
import { readStatus } from '../aws/home/cloud-state.ts';
import { MANIFEST_SUFFIXES, PREFIX } from '../aws/bucket.ts';
import type { SplitStatus } from '../aws/bucket.ts';
import { printable } from '../engine/printable.ts';
import { formatBytes } from '../engine/summary.ts';
import { ManifestRefused, UsageError } from './errors.ts';
import { openManifestFile } from './manifest-file.ts';
import { command, type Target } from './target.ts';

export interface SubmitOptions {
  manifest: string;
  split?: string;
  check: boolean;
  /** Seconds to wait for the split; 0 returns after the upload. */
  wait: number;
  /** Check and say what would be uploaded; upload nothing. */
  dryRun?: boolean;
  log: NodeJS.WriteStream;
}

/**
 * The split as the manifest function left it; `uploaded` when it has not started on this upload
 * (or was not waited for); in a dry run, what would be uploaded.
 */
export type SubmitResult =
  | SplitStatus
  | { split: string; manifest: string; state: 'uploaded' }
  | { dryRun: true; split: string; manifest: string; bucket: string; bytes: number; entries?: number };

export async function submitCommand(t: Target, o: SubmitOptions): Promise<SubmitResult> {
  const suffix = MANIFEST_SUFFIXES.filter((s) => o.manifest.toLowerCase().endsWith(s)).sort((a, b) => b.length - a.length)[0];
  if (!suffix) throw new UsageError(`${basename(o.manifest)}: the manifest function takes names ending in ${MANIFEST_SUFFIXES.filter((s) => !s.endsWith('.gz')).join(', ')} (or those with .gz)`);
  const { manifest, split } = await openManifestFile({ manifest: o.manifest, ...(o.split ? { split: o.split } : {}) });
  let entries: number | undefined;
  if (o.check) {
    o.log.write(`Checking ${o.manifest} (${manifest.format})…\n`);
    ({ entries } = await manifest.scan());
    o.log.write(`${entries} entries.\n`);
  }
  const key = `${PREFIX.manifests}${split}${suffix}`;
  const { size } = await stat(o.manifest);
  if (o.dryRun) {
    o.log.write(`Would upload ${formatBytes(size)}${entries === undefined ? '' : ` (${entries} entries)`} to s3://${t.bucket}/${key}, split "${split}". Dry run: nothing uploaded.\n`);
    return { dryRun: true, split, manifest: key, bucket: t.bucket, bytes: size, ...(entries === undefined ? {} : { entries }) };
  }
  const upload = new Upload({
    client: t.s3,
    params: { Bucket: t.bucket, Key: key, Body: createReadStream(o.manifest) },
    partSize: 8 * 1024 * 1024,
    queueSize: 4,
  });
  const bar = o.log.isTTY ? new cliProgress.SingleBar({ stream: o.log, format: ' upload {bar} {percentage}% | {sent} of {size}', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  bar?.start(size, 0, { sent: formatBytes(0), size: formatBytes(size) });
  upload.on('httpUploadProgress', (p) => bar?.update(p.loaded ?? 0, { sent: formatBytes(p.loaded ?? 0), size: formatBytes(size) }));
  try {
    await upload.done();
  } finally {
    bar?.stop();
  }
  o.log.write(`Uploaded ${formatBytes(size)} to s3://${t.bucket}/${key}\n`);
  const uploaded = { split, manifest: key, state: 'uploaded' } as const;
  if (o.wait === 0) return uploaded;

  // The split of this upload: a status written no earlier than the upload (both clocks are S3's).
  const head = await t.s3.send(new HeadObjectCommand({ Bucket: t.bucket, Key: key }));
  const uploadedAt = (head.LastModified?.getTime() ?? Date.now()) - 1000;
  const deadline = Date.now() + o.wait * 1000;
  let status: SplitStatus | null = null;
  let said = '';
  while (Date.now() < deadline) {
    status = await readStatus(t.s3, t.bucket, split);
    const fresh = status && Date.parse(status.startedAt) >= uploadedAt;
    if (fresh && status!.state !== 'splitting') break;
    const now = fresh ? 'splitting…' : 'waiting for the manifest function…';
    if (now !== said) o.log.write(`${now}\n`);
    said = now;
    await sleep(1000);
  }
  if (!status || Date.parse(status.startedAt) < uploadedAt || status.state === 'splitting') {
    o.log.write(`The split is not finished after ${o.wait} s; follow it with ${command(t, 'status --watch')}.\n`);
    return status && Date.parse(status.startedAt) >= uploadedAt ? status : uploaded;
  }
  // The error is the bucket's text (from a manifest, from SQS): shown escaped.
  if (status.state === 'failed') throw new ManifestRefused(`the manifest function refused ${key}: ${printable(status.error ?? 'unknown error', 400)}`);
  o.log.write(
    `Split "${split}": ${status.entries} entries, ${status.queued} queued, ${status.alreadyStored ?? 0} already stored, ` +
      `${status.invalid ?? 0} without a usable URL, ${status.duplicates ?? 0} duplicate ids` +
      (status.unqueueable ? `, ${status.unqueueable} too large for the queue (or refused by it), failed as unqueueable` : '') + '.\n' +
      `Follow with ${command(t, 'status --watch')}, then ${command(t, 'sync <dir>')}.\n`,
  );
  return status;
}
