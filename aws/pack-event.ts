// The pack function's event and answer: what `cloudfetch pack` sends (aws/lambda/pack.ts answers).

import { safeSegment } from '../engine/keys.ts';

export const DEFAULT_SHARD_BYTES = 256 * 1024 * 1024;

export interface PackEvent {
  split: string;
  /** Default DEFAULT_SHARD_BYTES; at least 1 KiB (tests pack small shards). */
  shardBytes?: number;
  /** Pack anew: the earlier manifest is replaced, its shards overwritten. */
  repack?: boolean;
}

export interface PackAnswer {
  split: string;
  /** Every image listed when packing started is in a shard. */
  complete: boolean;
  shards: number;
  /** Shards written by this invocation. */
  written: number;
  images: number;
  bytes: number;
}

export class PackRequestError extends Error {
  override name = 'PackRequestError';
}

/** The event's fields, checked: it comes from whoever may invoke the function. */
export function packRequest(event: unknown): Required<PackEvent> {
  const e = (event && typeof event === 'object' ? event : {}) as Record<string, unknown>;
  if (typeof e.split !== 'string' || e.split === '' || safeSegment(e.split) !== e.split) throw new PackRequestError('the event needs "split": the name of a split in the bucket');
  const shardBytes = e.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (typeof shardBytes !== 'number' || !Number.isSafeInteger(shardBytes) || shardBytes < 1024) throw new PackRequestError('"shardBytes" must be a whole number of bytes, at least 1024');
  return { split: e.split, shardBytes, repack: e.repack === true };
}

