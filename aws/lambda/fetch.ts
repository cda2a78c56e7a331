// Lambda: the fetch function. Batches of jobs from the FIFO queue, one job at a time per message
// group (a host slot: fifo-batch.ts), the groups concurrently; a partial batch response tells SQS
// which records to deliver again.

import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { bucketName, fetcherOptions, imageOptions, keepOriginals, maxReceiveCount, perEnvironment, placeholderThreshold, retryDelaySeconds, s3Client, sqsClient } from './config.ts';
import { FetchLog, TransientFailure, handleRecord, type RecordDeps } from './fetch-record.ts';
import { answerPlan } from './plan-probe.ts';
import { isPlanEvent, type PlanAnswer, type PlanEvent } from '../plan-event.ts';
import { PREFIX } from '../bucket.ts';
import { BadMessageError } from '../job-message.ts';
import { Redelivery } from './redelivery.ts';
import { processByGroup, type Settled } from './fifo-batch.ts';
import { HostPaused, S3HostPauses } from './host-pauses.ts';
import { BatchProgress, Unfinished, recordDeadline, shareMs } from './straggler.ts';
import { S3Store } from './s3-store.ts';
import { signedObjectsOnce, type SignedObjects } from '../signed-request.ts';
import { ByteBudget, budgetBytes, fetchReservation, type Reservation } from '../../engine/byte-budget.ts';
import { Fetcher, type Room } from '../../engine/fetch/fetcher.ts';
import { refusingPlaceholders, SameBytes } from '../../engine/same-bytes.ts';
import type { Job } from '../../engine/job.ts';
import type { Outcome } from '../../engine/outcome.ts';
import type { ImageFetcher, ImageStep } from '../../engine/worker.ts';

const logger = new Logger();
const metrics = new Metrics();
/** Time kept back from the deadline to record failures and answer SQS. */
const WRAP_UP_MS = 8_000;

// Built on the first invocation and kept by the container: clients, keep-alive pools, DNS cache.
// `sameBytes`: what this container's fetches saw, to refuse a placeholder it already knows before
// the PUT (a warm container runs many batches); sync makes the split's exact verdict from every record.
type Container = Omit<RecordDeps, 'signal'> & { fetcher: Fetcher; maxBytes: number; maxReceiveCount: number; sqs: SQSClient; redelivery: Redelivery; sameBytes: SameBytes; pauses: S3HostPauses; objects: SignedObjects };

function setUp(): Container {
  const s3 = s3Client();
  const bucket = bucketName();
  const sqs = sqsClient();
  const options = fetcherOptions();
  // Pauses shared by the fleet: what this function's fetcher learns of a host, the others follow.
  const pauses = new S3HostPauses(s3, bucket);
  // The images' HEADs and PUTs and the records' PUTs, signed over one keep-alive pool (the SDK stays for host pauses).
  const objects = signedObjectsOnce(s3, bucket);
  const store = new S3Store(s3, bucket, PREFIX.images, objects);
  // What is stored, for the records of redelivered jobs and refused puts (fetch-record.ts).
  const described = (key: string) => store.described(key);
  return { s3, sqs, redelivery: new Redelivery(sqs, retryDelaySeconds()), pauses, bucket, objects, store, described, ...imageStep(s3, bucket, objects), fetcher: new Fetcher({ ...options, hostPauses: pauses }), maxBytes: options.maxBytes!, maxReceiveCount: maxReceiveCount(), sameBytes: new SameBytes(placeholderThreshold()), onOutcome: record };
}

/** Resizing when the stack asks for it, the originals kept under originals/ when it says so. */
function imageStep(s3: S3Client, bucket: string, objects: SignedObjects): { image?: ImageStep } {
  const options = imageOptions();
  if (!options) return {};
  return { image: { options, ...(keepOriginals() ? { originals: new S3Store(s3, bucket, PREFIX.originals, objects) } : {}) } };
}

const setUpOnce = perEnvironment(setUp, (old) => {
  void old.fetcher.close();
  old.objects.destroy();
  old.s3.destroy();
  old.sqs.destroy();
});

function record(job: Job, outcome: Outcome): void {
  metrics.addMetric(outcome.status, MetricUnit.Count, 1);
  if (outcome.status === 'fetched') metrics.addMetric('bytes', MetricUnit.Bytes, outcome.bytes);
  if (outcome.status === 'failed') {
    const byReason = metrics.singleMetric();
    byReason.addDimension('reason', outcome.reason);
    byReason.addMetric('failed', MetricUnit.Count, 1);
    logger.info('image failed', { split: job.split, id: job.id, url: outcome.url, reason: outcome.reason, detail: outcome.detail });
  }
}

export async function handler(event: SQSEvent, context: Context): Promise<SQSBatchResponse>;
/** A direct invocation by `cloudfetch plan` (see plan-probe.ts): probes, stores nothing. */
export async function handler(event: PlanEvent, context: Context): Promise<PlanAnswer>;
export async function handler(event: SQSEvent | PlanEvent, context: Context): Promise<SQSBatchResponse | PlanAnswer> {
  const container = setUpOnce();
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), Math.max(0, context.getRemainingTimeInMillis() - WRAP_UP_MS));
  const log = new FetchLog(container.s3, container.bucket, context.awsRequestId, container.objects);
  const deps: RecordDeps = { ...container, signal: deadline.signal, log };
  // The function's memory bounds the image bodies held at once (Lambda and the local cloud both say it here).
  const budget = new ByteBudget(budgetBytes(Number(context.memoryLimitInMB)));
  try {
    if (isPlanEvent(event)) return await answerPlan(event, { fetchImage: (urls, signal) => withinBudget(budget, container, (fetcher) => fetcher.fetchImage(urls, signal)) }, deadline.signal);
    const progress = new BatchProgress(event.Records.length);
    return await processByGroup(
      event.Records,
      async (item: SQSRecord): Promise<Settled> => {
        // A straggler is returned once it has had its share and most of the batch is done (straggler.ts).
        const share = recordDeadline(deadline.signal, shareMs(Number(item.attributes.ApproximateReceiveCount ?? 1), container.maxReceiveCount, container.fetcher.options.timeoutMs), progress);
        try {
          await withinBudget(budget, container, (fetcher) => handleRecord(item, { ...deps, fetcher: refusingPlaceholders(fetcher, container.sameBytes), signal: share.signal }), share);
          return { ok: true };
        } catch (error) {
          if (error instanceof BadMessageError) {
            // Never a job, however often delivered: logged, counted and acknowledged.
            logger.error('message is not a job: dropped', { messageId: item.messageId, error: error.message });
            metrics.addMetric('rejected', MetricUnit.Count, 1);
            return { ok: true };
          }
          // Each way back says when the record is due again; the later records of its group follow then.
          let seconds: number | undefined;
          if (error instanceof HostPaused) {
            // Waiting is not failing: on its last allowed delivery the job is sent anew instead.
            if ((await container.redelivery.requeue([item], container.maxReceiveCount)).has(item.messageId)) {
              metrics.addMetric('paused', MetricUnit.Count, 1);
              return { ok: true };
            }
            seconds = await container.redelivery.pause(item, error.until);
            metrics.addMetric('paused', MetricUnit.Count, 1);
            logger.info('image waits for its host', { messageId: item.messageId, reason: error.message, seconds });
          } else if (error instanceof Unfinished) {
            seconds = await container.redelivery.returnUnfinished(item, error.outcome.retryAfterMs);
            logger.info('image returned unfinished', { messageId: item.messageId, why: share.shareEnded() ? 'its share of the invocation ended' : 'the invocation ran out of time', seconds });
          } else if (error instanceof TransientFailure) {
            seconds = await container.redelivery.schedule(item, error.outcome.retryAfterMs);
            logger.info('image will be retried', { messageId: item.messageId, reason: error.message, seconds });
          } else {
            logger.error('record failed', { messageId: item.messageId, error: error as Error });
          }
          return { ok: false, ...(seconds !== undefined ? { seconds } : {}) };
        } finally {
          share.dispose();
        }
      },
      {
        signal: deadline.signal,
        // Records going back untried: those on their last allowed delivery are sent anew, the rest held.
        hold: async (records, seconds) => {
          const sent = await container.redelivery.requeue(records, container.maxReceiveCount);
          await container.redelivery.hold(records.filter((r) => !sent.has(r.messageId)), seconds);
          return sent;
        },
      },
    );
  } finally {
    clearTimeout(timer);
    // Not thrown: a redelivered batch would find its images stored and learn nothing more.
    await log.flush().catch((error: unknown) => logger.error('fetch records not written: sync shows these images without format or sha256', { error: error as Error }));
    // Powertools warns on every publish of nothing: a batch that counted nothing (messages that
    // are not jobs) or, in the local cloud, one whose counts another invocation just published.
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  }
}

/**
 * Runs one record with its image's body counted against the budget: room is reserved once the
 * response says the body's size (the largest allowed when it does not), before the body is read,
 * and given back when the record is done, its put included.
 */
async function withinBudget<T>(budget: ByteBudget, container: Container, run: (fetcher: ImageFetcher) => Promise<T>, share?: { pause(): void; resume(): void }): Promise<T> {
  let held: Reservation | undefined;
  const room: Room = async (bytes, signal) => {
    // A retry or the next mirror: give back the last attempt's room before asking again.
    held?.release();
    // Waiting for memory is not the web's time: the record's share stops meanwhile (straggler.ts).
    share?.pause();
    try {
      held = await budget.reserve(fetchReservation(bytes ?? container.maxBytes), signal);
    } finally {
      share?.resume();
    }
  };
  try {
    return await run({ fetchImage: (urls, signal) => container.fetcher.fetchImage(urls, signal, room) });
  } finally {
    held?.release();
  }
}
