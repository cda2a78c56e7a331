// The jobs queue is SQS FIFO: a job's message group is a slot of its host, so SQS itself keeps at
// most hostConcurrency jobs of one origin in flight across every fetch function (FIFO hands out a
// group's next message only once the previous one is deleted or visible again). Every sender of
// jobs (the split, retry, redrive, tests) takes its ids from here, so they agree.

import { createHash, randomUUID } from 'node:crypto';
import type { Job } from '../engine/job.ts';

const hex = (...parts: string[]): string => createHash('sha256').update(parts.join('\0')).digest('hex');

/** The origin (scheme, host, port) of a job: its first URL's, as undici pools connections. */
export function jobOrigin(job: Pick<Job, 'urls'>): string {
  const url = URL.parse(job.urls[0] ?? '');
  // A job without a parsable URL is never fetched (its record fails at once): one group for all.
  return url && url.origin !== 'null' ? url.origin : 'none';
}

/** A short, stable name for an origin: group ids and hosts/<hash>.json keys (no host text in keys). */
export function originHash(origin: string): string {
  return hex('origin', origin).slice(0, 16);
}

/**
 * `<origin hash>-<slot>`, the slot `hash(id) mod hostConcurrency`: an origin's jobs spread evenly
 * over hostConcurrency groups, and the same job always lands in the same one.
 */
export function messageGroupId(job: Pick<Job, 'urls' | 'id' | 'split'>, hostConcurrency: number): string {
  const slot = Number.parseInt(hex('slot', job.split, job.id).slice(0, 8), 16) % Math.max(1, hostConcurrency);
  return `${originHash(jobOrigin(job))}-${slot}`;
}

/**
 * The split's deduplication id: the same submission (an upload, by ETag, and its resumptions:
 * SplitStatus.progress.submission) and image give the same id, so a split resumed after a crash
 * within SQS's 5-minute window does not queue an image twice; the same bytes uploaded again are a
 * new submission, sent in full.
 */
export function splitDeduplicationId(job: Pick<Job, 'split' | 'id'>, submission: string): string {
  return hex('split', job.split, submission, job.id);
}

/** A resend (retry, redrive): always delivered, never taken for a duplicate of the first send. */
export function resendDeduplicationId(): string {
  return `resend-${randomUUID()}`;
}

/** What a FIFO SendMessage(Batch) entry needs besides its body. */
export interface FifoIds {
  MessageGroupId: string;
  MessageDeduplicationId: string;
}

/** The FIFO ids of a job: its host slot's group; a fresh deduplication id unless one is given. */
export function jobIds(job: Pick<Job, 'urls' | 'id' | 'split'>, hostConcurrency: number, deduplicationId = resendDeduplicationId()): FifoIds {
  return { MessageGroupId: messageGroupId(job, hostConcurrency), MessageDeduplicationId: deduplicationId };
}

/** FIFO queue names end in .fifo (SQS refuses others). */
export const FIFO_SUFFIX = '.fifo';
