// Sending jobs back to the jobs queue: what the dead-letter queue holds, and recorded failures of
// chosen reasons (after changing the user agent, say). Images stored since are left alone.

import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { FailureReason } from '../../engine/outcome.ts';
import { failurePrefix, type FailureRecord } from '../bucket.ts';
import { listObjects } from '../listing.ts';
import { JobSender } from '../sqs-jobs.ts';
import { storedImages } from './cloud-state.ts';
import { readQueueState } from './queue-state.ts';

/**
 * Moves what the dead-letter queue holds to the jobs queue, deleting only what was sent; resolves
 * with how many moved. A dry run only counts them.
 */
export async function redriveDeadLetters(sqs: SQSClient, o: { queueUrl: string; dlqUrl: string; dryRun?: boolean }): Promise<number> {
  // Receiving would hide the messages and count a receive against them: the attribute touches nothing.
  if (o.dryRun) return (await readQueueState(sqs, o.queueUrl, o.dlqUrl)).deadLetter;
  let moved = 0;
  for (let empty = 0; empty < 2; ) {
    const answer = await sqs.send(new ReceiveMessageCommand({ QueueUrl: o.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60 }));
    const messages = answer.Messages ?? [];
    if (messages.length === 0) {
      empty++;
      continue;
    }
    empty = 0;
    const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: o.queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), MessageBody: m.Body ?? '' })) }));
    const ok = new Set((sent.Successful ?? []).map((s) => s.Id));
    const done = messages.filter((_, i) => ok.has(String(i)));
    if (done.length > 0) {
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: o.dlqUrl, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
    }
    moved += done.length;
  }
  return moved;
}

export interface Resent {
  resent: number;
  /** Recorded failures whose image was stored since: not sent. */
  alreadyStored: number;
}

/**
 * Sends a job again for every image of `splits` with a failure record of one of `reasons`, once
 * per image, unless it is stored by now. A dry run only counts.
 */
export async function resendFailures(
  s3: S3Client,
  sqs: SQSClient,
  o: { bucket: string; queueUrl: string; splits: readonly string[]; reasons: readonly FailureReason[]; dryRun?: boolean },
): Promise<Resent> {
  const result: Resent = { resent: 0, alreadyStored: 0 };
  const sender = new JobSender(sqs, o.queueUrl);
  for (const split of o.splits) {
    const stored = await storedImages(s3, o.bucket, split);
    const seen = new Set<string>();
    for (const reason of o.reasons) {
      for await (const page of listObjects(s3, o.bucket, `${failurePrefix(split)}${reason}/`)) {
        const records = await Promise.all(page.map(async (object) => {
          const answer = await s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: object.key }));
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
