// The jobs queue is SQS FIFO: a job's message group is a share of its host's slots, so SQS itself
// keeps at most hostConcurrency jobs of one origin in flight across every fetch function (FIFO
// hands out a group's next messages only once those in flight are deleted or visible again, and
// the fetch function runs at most a group's width of its records at once: fifo-batch.ts). Every
// sender of jobs (the split, retry, redrive, tests) takes its ids from here, so they agree.

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
 * Message groups per origin. SQS fills a batch with as many messages of one group as it can, so
 * an invocation mostly holds one group: a group of one slot would keep a function at one fetch at
 * a time. Two groups per origin, each running half the host's slots at once, keep every function
 * several fetches busy while a slow record or a delayed retry holds only half of its host.
 */
export const GROUPS_PER_ORIGIN = 2;

/**
 * `<origin hash>-<group>w<width>`: an origin's jobs spread evenly over min(hostConcurrency,
 * GROUPS_PER_ORIGIN) groups by `hash(id)`, the same job always in the same one; the group's width
 * is its share of the host's slots (the widths add up to hostConcurrency), what the fetch function
 * runs of it at once.
 */
export function messageGroupId(job: Pick<Job, 'urls' | 'id' | 'split'>, hostConcurrency: number): string {
  const slots = Math.max(1, hostConcurrency);
  const groups = Math.min(slots, GROUPS_PER_ORIGIN);
  const group = Number.parseInt(hex('slot', job.split, job.id).slice(0, 8), 16) % groups;
  const width = Math.floor(slots / groups) + (group < slots % groups ? 1 : 0);
  return `${originHash(jobOrigin(job))}-${group}w${width}`;
}

/** The widest group of an origin: the most images one fetch function fetches at once from a batch of one group. */
export function widestGroup(hostConcurrency: number): number {
  const slots = Math.max(1, hostConcurrency);
  return Math.ceil(slots / Math.min(slots, GROUPS_PER_ORIGIN));
}

/** The narrowest group's share of its host's slots: what one function may take of a pace the fleet keeps at a host. */
export function groupShare(hostConcurrency: number): number {
  const slots = Math.max(1, hostConcurrency);
  return Math.floor(slots / Math.min(slots, GROUPS_PER_ORIGIN)) / slots;
}

/** Records of a group the fetch function may run at once: its width, 1 for an id without one (jobs queued before widths). */
export function groupWidth(groupId: string | undefined): number {
  const width = Number(/w(\d{1,3})$/.exec(groupId ?? '')?.[1] ?? 1);
  // A batch holds at most 10 records (a FIFO event source's largest), so a wider group runs as 10.
  return Math.min(10, Math.max(1, width));
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
