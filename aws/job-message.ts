// A Job as a queue message body, and back, checked: a malformed body is a poison message.

import type { Job } from '../engine/job.ts';

export class BadMessageError extends Error {
  override name = 'BadMessageError';
}

export function encodeJob(job: Job): string {
  const { split, id, urls, labels, key, position } = job;
  return JSON.stringify({ v: 1, split, id, urls, labels, key, position });
}

const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

export function decodeJob(body: string): Job {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new BadMessageError(`not JSON: ${body.slice(0, 80)}`);
  }
  const m = value as Record<string, unknown>;
  if (
    typeof m !== 'object' || m === null || m.v !== 1 ||
    typeof m.split !== 'string' || typeof m.id !== 'string' || typeof m.key !== 'string' ||
    !isStringArray(m.urls) || !isStringArray(m.labels) || typeof m.position !== 'number'
  ) {
    throw new BadMessageError(`not a cloudfetch job: ${body.slice(0, 80)}`);
  }
  if (m.key.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new BadMessageError(`unsafe key: ${m.key}`);
  return { split: m.split, id: m.id, urls: m.urls, labels: m.labels, key: m.key, position: m.position };
}
