// `cloudfetch retry`: moves what the dead-letter queue holds back to the jobs queue, and sends
// recorded failures of chosen reasons again (after changing the user agent, say). Images stored
// since are left alone.

import { GetObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { queuedSplits, readQueueState, storedImages } from '../aws/home/cloud-state.ts';
import type { FailureRecord } from '../aws/bucket.ts';
import { listObjects } from '../aws/listing.ts';
import { failurePrefix } from '../aws/bucket.ts';
import { JobSender } from '../aws/sqs-jobs.ts';
import { FAILURE_REASONS, isFailureReason } from '../engine/outcome.ts';
import { plural } from '../engine/summary.ts';
import { UsageError } from './errors.ts';
import type { Target } from './target.ts';

export interface RetryResult {
  fromDeadLetter: number;
  resent: number;
  alreadyStored: number;
  /** Nothing was sent: the counts are what a retry would send. */
  dryRun?: true;
}

/** Problems of the manifest itself: sending them again cannot help. */
const MANIFEST_REASONS = new Set(['no-url', 'bad-url']);

/** Receives from the DLQ and sends to the jobs queue, deleting only what was sent; a dry run only counts. */
async function redrive(t: Target, dryRun: boolean): Promise<number> {
  if (!t.queueUrl || !t.dlqUrl) throw new UsageError('retry needs the queue URLs: deploy with --outputs-file cdk-outputs.json, or pass --queue-url and --dlq-url');
  // Receiving would hide the messages and count a receive against them: the attribute touches nothing.
  if (dryRun) return (await readQueueState(t.sqs, t.queueUrl, t.dlqUrl)).deadLetter;
  let moved = 0;
  for (let empty = 0; empty < 2; ) {
    const answer = await t.sqs.send(new ReceiveMessageCommand({ QueueUrl: t.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60 }));
    const messages = answer.Messages ?? [];
    if (messages.length === 0) {
      empty++;
      continue;
    }
    empty = 0;
    const sent = await t.sqs.send(new SendMessageBatchCommand({ QueueUrl: t.queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), MessageBody: m.Body ?? '' })) }));
    const ok = new Set((sent.Successful ?? []).map((s) => s.Id));
    const done = messages.filter((_, i) => ok.has(String(i)));
    if (done.length > 0) {
      await t.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: t.dlqUrl, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
    }
    moved += done.length;
  }
  return moved;
}

export async function retryCommand(t: Target, o: { split?: string; reasons: string[]; deadLetter: boolean; dryRun?: boolean }): Promise<RetryResult> {
  for (const reason of o.reasons) {
    if (!isFailureReason(reason)) {
      const valid = Object.keys(FAILURE_REASONS).filter((r) => !MANIFEST_REASONS.has(r));
      throw new UsageError(`unknown reason "${reason}": --reasons takes ${valid.join(', ')}`);
    }
    if (MANIFEST_REASONS.has(reason)) throw new UsageError(`${reason} is a problem of the manifest itself: fix the manifest and submit it again`);
  }
  const result: RetryResult = { fromDeadLetter: 0, resent: 0, alreadyStored: 0, ...(o.dryRun ? { dryRun: true } : {}) };
  if (o.deadLetter) result.fromDeadLetter = await redrive(t, o.dryRun ?? false);
  if (o.reasons.length === 0) return result;
  if (!t.queueUrl) throw new UsageError('retry needs the jobs queue URL: deploy with --outputs-file cdk-outputs.json, or pass --queue-url');

  const splits = (await queuedSplits(t.s3, t.bucket, o.split)).map((s) => s.split);
  const sender = new JobSender(t.sqs, t.queueUrl);
  for (const split of splits) {
    const stored = await storedImages(t.s3, t.bucket, split);
    const seen = new Set<string>();
    for (const reason of o.reasons) {
      for await (const page of listObjects(t.s3, t.bucket, `${failurePrefix(split)}${reason}/`)) {
        const records = await Promise.all(page.map(async (object) => {
          const answer = await t.s3.send(new GetObjectCommand({ Bucket: t.bucket, Key: object.key }));
          return JSON.parse(await answer.Body!.transformToString()) as FailureRecord;
        }));
        for (const f of records) {
          if (seen.has(f.key)) continue;
          seen.add(f.key);
          if (stored.has(f.key)) {
            result.alreadyStored++;
            continue;
          }
          if (!o.dryRun) await sender.send({ split: f.split, id: f.id, urls: f.urls, labels: f.labels, key: f.key, position: 0 });
          result.resent++;
        }
      }
    }
  }
  await sender.flush();
  return result;
}

export function formatRetry(r: RetryResult): string {
  const what = `${r.fromDeadLetter} ${plural(r.fromDeadLetter, 'job')} from the dead-letter queue and ${r.resent} recorded ${plural(r.resent, 'failure')}` +
    (r.alreadyStored ? ` (${r.alreadyStored} stored since, left alone)` : '');
  return r.dryRun ? `Would send back ${what}. Dry run: nothing sent.` : `Sent back ${what}.`;
}
