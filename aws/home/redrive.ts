// Sending jobs back to the jobs queue: what the dead-letter queue holds, and recorded failures of
// chosen reasons (after changing the user agent, say). One job per image per retry: the
// dead-letter queue may hold an image twice (a manifest submitted again) and a failure record for
// it too; images stored since are left alone. The jobs queue is FIFO: a job goes back into its
// host slot's message group (the one it left, or the one its split was sent with), with a fresh
// deduplication id so SQS never takes it for the first send.

import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { FailureReason } from '../../engine/outcome.ts';
import { failurePrefix, type FailureRecord } from '../bucket.ts';
import { DEFAULT_SETTINGS } from '../settings.ts';
import { jobIds, messageGroupId, resendDeduplicationId } from '../fifo.ts';
import { decodeJob } from '../job-message.ts';
import { listObjects } from '../listing.ts';
import { JobSender } from '../sqs-jobs.ts';
import { readStatus, storedImages } from './cloud-state.ts';
import { readQueueState } from './queue-state.ts';

export interface Resent {
  resent: number;
  /** Images stored since their failure: not sent. */
  alreadyStored: number;
  /** Jobs for an image already sent by this retry: dropped (deleted from the dead-letter queue). */
  duplicates: number;
}

/** What one retry has sent, by image key, and which images each split has stored (listed once). */
export class RetryLedger {
  readonly sent = new Set<string>();
  readonly #stored = new Map<string, Promise<Map<string, number>>>();
  readonly #hostConcurrency = new Map<string, Promise<number>>();
  readonly #s3: S3Client;
  readonly #bucket: string;

  constructor(s3: S3Client, bucket: string) {
    this.#s3 = s3;
    this.#bucket = bucket;
  }

  async isStored(split: string, key: string): Promise<boolean> {
    let stored = this.#stored.get(split);
    if (!stored) this.#stored.set(split, (stored = storedImages(this.#s3, this.#bucket, split)));
    return (await stored).has(key);
  }

  /** The message groups per origin the split was sent with (its status); the default for a split split before they were recorded. */
  hostConcurrency(split: string): Promise<number> {
    let known = this.#hostConcurrency.get(split);
    if (!known) {
      known = readStatus(this.#s3, this.#bucket, split).then((status) => status?.hostConcurrency ?? DEFAULT_SETTINGS.hostConcurrency);
      this.#hostConcurrency.set(split, known);
    }
    return known;
  }
}

/**
 * Moves what the dead-letter queue holds to the jobs queue, one job per image: a second job for
 * an image, or one for an image stored since, is deleted unsent. Deletes only what was sent or
 * dropped. A dry run only counts the messages held.
 */
export async function redriveDeadLetters(
  sqs: SQSClient,
  ledger: RetryLedger,
  o: { queueUrl: string; dlqUrl: string; dryRun?: boolean },
): Promise<Resent> {
  // Receiving would hide the messages and count a receive against them: the attribute touches
  // nothing, and cannot tell duplicates apart.
  if (o.dryRun) return { resent: (await readQueueState(sqs, o.queueUrl, o.dlqUrl)).deadLetter, alreadyStored: 0, duplicates: 0 };
  const result: Resent = { resent: 0, alreadyStored: 0, duplicates: 0 };
  for (let empty = 0; empty < 2; ) {
    const answer = await sqs.send(new ReceiveMessageCommand({
      QueueUrl: o.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60, MessageSystemAttributeNames: ['MessageGroupId'],
    }));
    const messages = answer.Messages ?? [];
    if (messages.length === 0) {
      empty++;
      continue;
    }
    empty = 0;
    const send: Message[] = [];
    const groups: string[] = [];
    const drop: Message[] = [];
    const claimed: string[] = [];
    for (const m of messages) {
      let job;
      try {
        job = decodeJob(m.Body ?? '');
      } catch {
        // Not a job: moved as it is, for the fetch function to drop with its log line.
        groups[send.length] = m.Attributes?.MessageGroupId ?? 'not-a-job';
        send.push(m);
        continue;
      }
      if (ledger.sent.has(job.key)) {
        result.duplicates++;
        drop.push(m);
      } else if (await ledger.isStored(job.split, job.key)) {
        result.alreadyStored++;
        drop.push(m);
      } else {
        ledger.sent.add(job.key);
        claimed[send.length] = job.key;
        groups[send.length] = m.Attributes?.MessageGroupId ?? messageGroupId(job, await ledger.hostConcurrency(job.split));
        send.push(m);
      }
    }
    const done = [...drop];
    if (send.length > 0) {
      const sent = await sqs.send(new SendMessageBatchCommand({
        QueueUrl: o.queueUrl,
        Entries: send.map((m, i) => ({ Id: String(i), MessageBody: m.Body ?? '', MessageGroupId: groups[i]!, MessageDeduplicationId: resendDeduplicationId() })),
      }));
      const ok = new Set((sent.Successful ?? []).map((s) => s.Id));
      send.forEach((m, i) => {
        if (ok.has(String(i))) done.push(m);
        // Left in the dead-letter queue, visible again later: not sent by this retry.
        else if (claimed[i] !== undefined) ledger.sent.delete(claimed[i]);
      });
      result.resent += ok.size;
    }
    if (done.length > 0) {
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: o.dlqUrl, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
    }
  }
  return result;
}

/**
 * Sends a job again for every image of `splits` with a failure record of one of `reasons`, once
 * per image, unless it is stored by now or this retry sent it already. A dry run only counts.
 */
export async function resendFailures(
  s3: S3Client,
  sqs: SQSClient,
  ledger: RetryLedger,
  o: { bucket: string; queueUrl: string; splits: readonly string[]; reasons: readonly FailureReason[]; dryRun?: boolean },
): Promise<Resent> {
  const result: Resent = { resent: 0, alreadyStored: 0, duplicates: 0 };
  const groupsPerOrigin = new Map<string, number>();
  const sender = new JobSender(sqs, o.queueUrl, (job) => jobIds(job, groupsPerOrigin.get(job.split) ?? DEFAULT_SETTINGS.hostConcurrency));
  for (const split of o.splits) {
    groupsPerOrigin.set(split, await ledger.hostConcurrency(split));
    const seen = new Set<string>();
    for (const reason of o.reasons) {
      for await (const page of listObjects(s3, o.bucket, `${failurePrefix(split)}${reason}/`)) {
        const records = await Promise.all(page.map(async (object) => {
          const answer = await s3.send(new GetObjectCommand({ Bucket: o.bucket, Key: object.key }));
          return JSON.parse(await answer.Body!.transformToString()) as FailureRecord;
        }));
        for (const f of records) {
          // Records of one image under several reasons are one image, not duplicate jobs.
          if (seen.has(f.key)) continue;
          seen.add(f.key);
          if (ledger.sent.has(f.key)) {
            result.duplicates++;
            continue;
          }
          if (await ledger.isStored(split, f.key)) {
            result.alreadyStored++;
            continue;
          }
          ledger.sent.add(f.key);
          // It was queued once: only a queue with a smaller size limit than before refuses it.
          if (!o.dryRun && (await sender.send({ split: f.split, id: f.id, urls: f.urls, labels: f.labels, key: f.key, position: 0 }))) continue;
          result.resent++;
        }
      }
    }
  }
  await sender.flush();
  result.resent -= sender.refused.length;
  return result;
}
