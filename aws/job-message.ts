// A Job as a queue message body, and back, checked: a malformed body is a poison message.
// Bodies are plain ASCII: SQS refuses some characters (U+FFFE, U+FFFF; emulators refuse more), and
// ids, labels and URLs from a manifest may hold any of them.

import type { Job } from '../engine/job.ts';
import { safeSegment } from '../engine/keys.ts';
import { printable } from '../engine/printable.ts';

export class BadMessageError extends Error {
  override name = 'BadMessageError';
}

export function encodeJob(job: Job): string {
  const { split, id, urls, labels, key, position } = job;
  const json = JSON.stringify({ v: 1, split, id, urls, labels, key, position });
  // JSON.parse reads \uXXXX back to the same UTF-16 units, lone surrogates included.
  return json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

export function decodeJob(body: string): Job {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new BadMessageError(`not JSON: ${printable(body, 80)}`);
  }
  const m = value as Record<string, unknown>;
  if (
    typeof m !== 'object' || m === null || m.v !== 1 ||
    typeof m.split !== 'string' || typeof m.id !== 'string' || typeof m.key !== 'string' ||
    !isStringArray(m.urls) || !isStringArray(m.labels) || typeof m.position !== 'number'
  ) {
    throw new BadMessageError(`not a cloudfetch job: ${printable(body, 80)}`);
  }
  // The split and the key name places in the bucket (failures/<split>/…, images/<key>): a job may
  // only write inside its own split.
  if (m.split === '' || safeSegment(m.split) !== m.split) throw new BadMessageError(`unsafe split name: ${printable(m.split, 80)}`);
  if (m.key.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new BadMessageError(`unsafe key: ${printable(m.key, 120)}`);
  if (!m.key.startsWith(`${m.split}/`)) throw new BadMessageError(`key ${printable(m.key, 120)} is not in split ${m.split}`);
  return { split: m.split, id: m.id, urls: m.urls, labels: m.labels, key: m.key, position: m.position };
}
