// `cloudfetch retry`: sends back what the dead-letter queue holds and recorded failures of chosen
// reasons. Its flags and its one line; the work is aws/home/redrive.ts's.

import { queuedSplits } from '../aws/home/cloud-state.ts';
import { redriveDeadLetters, resendFailures } from '../aws/home/redrive.ts';
import { FAILURE_REASONS, isFailureReason, type FailureReason } from '../engine/outcome.ts';
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

export async function retryCommand(t: Target, o: { split?: string; reasons: string[]; deadLetter: boolean; dryRun?: boolean }): Promise<RetryResult> {
  const reasons: FailureReason[] = [];
  for (const reason of o.reasons) {
    if (!isFailureReason(reason)) {
      const valid = Object.keys(FAILURE_REASONS).filter((r) => !MANIFEST_REASONS.has(r));
      throw new UsageError(`unknown reason "${reason}": --reasons takes ${valid.join(', ')}`);
    }
    if (MANIFEST_REASONS.has(reason)) throw new UsageError(`${reason} is a problem of the manifest itself: fix the manifest and submit it again`);
    reasons.push(reason);
  }
  const result: RetryResult = { fromDeadLetter: 0, resent: 0, alreadyStored: 0, ...(o.dryRun ? { dryRun: true } : {}) };
  if (o.deadLetter) {
    if (!t.queueUrl || !t.dlqUrl) throw new UsageError('retry needs the queue URLs: deploy with --outputs-file cdk-outputs.json, or pass --queue-url and --dlq-url');
    result.fromDeadLetter = await redriveDeadLetters(t.sqs, { queueUrl: t.queueUrl, dlqUrl: t.dlqUrl, dryRun: o.dryRun ?? false });
  }
  if (reasons.length === 0) return result;
  if (!t.queueUrl) throw new UsageError('retry needs the jobs queue URL: deploy with --outputs-file cdk-outputs.json, or pass --queue-url');

  const splits = (await queuedSplits(t.s3, t.bucket, o.split)).map((s) => s.split);
  const resent = await resendFailures(t.s3, t.sqs, { bucket: t.bucket, queueUrl: t.queueUrl, splits, reasons, dryRun: o.dryRun ?? false });
  return { ...result, ...resent };
}

export function formatRetry(r: RetryResult): string {
  const what = `${r.fromDeadLetter} ${plural(r.fromDeadLetter, 'job')} from the dead-letter queue and ${r.resent} recorded ${plural(r.resent, 'failure')}` +
    (r.alreadyStored ? ` (${r.alreadyStored} stored since, left alone)` : '');
  return r.dryRun ? `Would send back ${what}. Dry run: nothing sent.` : `Sent back ${what}.`;
}
