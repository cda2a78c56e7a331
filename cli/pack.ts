// `cloudfetch pack <split>`: has the stack's pack function pack a split into tar shards under
// packs/<split>/ for `sync --packed`, invoking it again while it stops for time (an invocation lasts
// at most 15 minutes; the manifest it leaves says where to carry on).

import { functionInvoker, InvokeError } from '../aws/home/invoke.ts';
import type { PackAnswer } from '../aws/pack-event.ts';
import { formatBytes, plural } from '../engine/summary.ts';
import { printable } from '../engine/printable.ts';
import { UsageError } from './errors.ts';
import { command, type Target } from './target.ts';

export interface PackCommandOptions {
  split: string;
  /** Bytes at which a shard is closed (default: the function's, 256 MiB). */
  shardBytes?: number;
  /** Pack anew, even if packed already. */
  repack?: boolean;
  log: { write(text: string): unknown };
}

export async function packCommand(t: Target, o: PackCommandOptions): Promise<PackAnswer> {
  if (!t.packFunction) throw new UsageError(`${t.source} names no pack function: deploy this version of the stack (\`npx cdk deploy\`), or restart \`cloudfetch dev\``);
  const invoker = await functionInvoker(t.s3, t.packFunction, t.lambdaEndpoint ?? t.where.endpoint);
  let repack = o.repack === true;
  for (;;) {
    const event = { split: o.split, ...(o.shardBytes ? { shardBytes: o.shardBytes } : {}), ...(repack ? { repack } : {}) };
    const answer = (await invoker.invoke(event).catch((error: unknown) => {
      throw error instanceof InvokeError ? new UsageError(error.message) : error;
    })) as Partial<PackAnswer> | undefined;
    if (typeof answer?.complete !== 'boolean' || typeof answer.shards !== 'number') throw new UsageError(`${t.packFunction} did not answer as the pack function does`);
    const a = answer as PackAnswer;
    const what = `${a.shards} ${plural(a.shards, 'shard')} (${a.images} ${plural(a.images, 'image')}, ${formatBytes(a.bytes)})`;
    o.log.write(a.complete ? `${printable(o.split)}: packed in ${what}; bring it home with ${command(t, 'sync <dir> --packed')}\n` : `${printable(o.split)}: ${what} so far; packing on\n`);
    if (a.complete) return a;
    // An invocation that packed nothing before stopping would loop for ever.
    if (a.written === 0) throw new UsageError(`${t.packFunction} stopped without packing a shard: raise its timeout, or pack smaller shards (--shard-size)`);
    repack = false;
  }
}
