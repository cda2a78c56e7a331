// `cloudfetch retry`: sends back what the dead-letter queue holds and recorded failures of chosen
// reasons. Its flags and its one line; the work is aws/home/redrive.ts's.

import { queuedSplits } from '../aws/home/cloud-state.ts';
import { redriveDeadLetters, resendFailures, RetryLedger } from '../aws/home/redrive.ts';
import { FAILURE_REASONS, isFailureReason, type FailureReason } from '../engine/outcome.ts';
import { plural } from '../engine/summary.ts';
import { UsageError } from './errors.ts';
import type { Target } from './target.ts';

export interface RetryResult {
  fromDeadLetter: number;
  resent: number;
  alreadyStored: number;
  /** Jobs for an image this retry had sent already, dropped; present when there were some. */
  duplicates?: number;
  /** Nothing was sent: the counts are what a retry would send. */
  dryRun?: true;
}

/** Problems of the manifest itself: sending them again cannot help. */
const MANIFEST_REASONS = new Set(['no-url', 'bad-url', 'unqueueable']);

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
  if (o.deadLetter && (!t.queueUrl || !t.dlqUrl)) throw new UsageError('retry needs the queue URLs: deploy with --outputs-file cdk-outputs.json, or pass --queue-url and --dlq-url');
  if (reasons.length > 0 && !t.queueUrl) throw new UsageError('retry needs the jobs queue URL: deploy with --outputs-file cdk-outputs.json, or pass --queue-url');
  // One ledger for both sources: an image in the dead-letter queue and with a failure record is sent once.
  const ledger = new RetryLedger(t.s3, t.bucket);
  const dryRun = o.dryRun ?? false;
  const fromDlq = o.deadLetter ? await redriveDeadLetters(t.sqs, ledger, { queueUrl: t.queueUrl!, dlqUrl: t.dlqUrl!, dryRun }) : null;
  const splits = reasons.length === 0 ? [] : (await queuedSplits(t.s3, t.bucket, o.split)).map((s) => s.split);
  const resent = reasons.length === 0 ? null : await resendFailures(t.s3, t.sqs, ledger, { bucket: t.bucket, queueUrl: t.queueUrl!, splits, reasons, dryRun });
  const duplicates = (fromDlq?.duplicates ?? 0) + (resent?.duplicates ?? 0);
  return {
    fromDeadLetter: fromDlq?.resent ?? 0,
    resent: resent?.resent ?? 0,
    alreadyStored: (fromDlq?.alreadyStored ?? 0) + (resent?.alreadyStored ?? 0),
    ...(duplicates > 0 ? { duplicates } : {}),
    ...(dryRun ? { dryRun: true } : {}),
  };
}

export function formatRetry(r: RetryResult): string {
  const left = [
    ...(r.alreadyStored ? [`${r.alreadyStored} stored since`] : []),
    ...(r.duplicates ? [`${r.duplicates} ${plural(r.duplicates, 'duplicate')} of an image already sent`] : []),
  ];
  const what = `${r.fromDeadLetter} ${plural(r.fromDeadLetter, 'job')} from the dead-letter queue and ${r.resent} recorded ${plural(r.resent, 'failure')}` +
    (left.length > 0 ? ` (${left.join(', ')}, left alone)` : '');
  return r.dryRun ? `Would send back ${what}. Dry run: nothing sent.` : `Sent back ${what}.`;
}
