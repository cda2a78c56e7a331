// The deployed stack's two event sources, emulated over a real S3/SQS API: S3 ObjectCreated
// notifications for manifest uploads (found by listing, since fauxqs has no bucket notifications)
// and the fetch function's SQS event source mapping. Both hand AWS-shaped events to an `invoke`
// the caller provides; what happens to the messages afterwards is what Lambda would do.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, type S3Client, type _Object } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { S3Event, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { isManifestKey, PREFIX } from '../aws/bucket.ts';

type Log = (line: string) => void;

/**
 * Tells whoever waits for the local cloud to settle that something happened. `progressed()` marks
 * real work (an event found, an invocation started or finished, messages deleted); `tick()` only
 * wakes waiters (a poll that found nothing), so they can look again without sleeping.
 */
export class Activity {
  #progress = 0;
  #waiters: Array<() => void> = [];

  get progress(): number {
    return this.#progress;
  }

  progressed(): void {
    this.#progress++;
    this.tick();
  }

  tick(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next progressed() or tick(). */
  next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

const errorText = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

const isAbort = (error: unknown): boolean => error instanceof Error && error.name === 'AbortError';

/** Waits for `work`, at most `ms` (Infinity: for ever). */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  if (!Number.isFinite(ms)) {
    await work;
    return;
  }
  const done = new AbortController();
  await Promise.race([work, sleep(ms, undefined, { signal: done.signal }).catch(() => {})]);
  done.abort();
}

// ---------------------------------------------------------------------------------------------
// S3 ObjectCreated → manifest function

/**
 * A key as S3 writes it into event notifications: form-URL-encoded, so a space is `+` and a `+`
 * is `%2B`. Slashes and RFC 3986 unreserved characters stay as they are; everything else is
 * percent-encoded as UTF-8. Decode with decodeURIComponent(key.replace(/\+/g, ' ')).
 */
export function s3EventKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

export interface CreatedObject {
  key: string;
  size: number;
  /** As S3 lists it, with or without the quotes. */
  eTag: string;
}

let sequence = 0n;

/**
 * The event S3 sends to a Lambda function for one new object. eventName is
 * `ObjectCreated:CompleteMultipartUpload` for an object whose ETag shows it was uploaded in parts,
 * `ObjectCreated:Put` otherwise.
 */
export function s3ObjectCreatedEvent(bucket: string, region: string, object: CreatedObject, configurationId = 'manifest-upload'): S3Event {
  const eTag = object.eTag.replace(/"/g, '');
  // Sequencers only order events for one key; time then a counter keeps them increasing.
  const sequencer = ((BigInt(Date.now()) << 16n) + (sequence++ & 0xffffn)).toString(16).toUpperCase().padStart(18, '0');
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: region,
        eventTime: new Date().toISOString(),
        eventName: /-\d+$/.test(eTag) ? 'ObjectCreated:CompleteMultipartUpload' : 'ObjectCreated:Put',
        userIdentity: { principalId: 'AWS:LOCALCLOUD' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: {
          'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase(),
          'x-amz-id-2': randomBytes(48).toString('base64'),
        },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId,
          bucket: { name: bucket, ownerIdentity: { principalId: 'LOCALCLOUD' }, arn: `arn:aws:s3:::${bucket}` },
          object: { key: s3EventKey(object.key), size: object.size, eTag, sequencer },
        },
      },
    ],
  };
}

export interface ManifestSourceOptions {
  s3: S3Client;
  bucket: string;
  region: string;
  /** Runs the manifest function once; a rejection is a failed invocation. */
  invoke: (event: S3Event) => Promise<unknown>;
  /** Between two listings of manifests/. Default 1000 ms. */
  pollIntervalMs?: number;
  /**
   * Waits before Lambda's two asynchronous retries of a failed invocation. AWS waits about one
   * minute, then two; the default here is 1 s, then 2 s.
   */
  retryDelaysMs?: readonly number[];
  /** Invoke for manifests already in the bucket at start. Default false: S3 only notifies uploads. */
  processExisting?: boolean;
  activity?: Activity;
  log?: Log;
}

export interface ManifestSource {
  /** Lists manifests/ once and invokes for each new or changed manifest; resolves with how many. */
  scan(): Promise<number>;
  /** Invokes at once for a key just uploaded (if it passes the filter and is new); true if it did. */
  notifyObjectCreated(key: string): Promise<boolean>;
  /** Invocations running or waiting for a retry. */
  readonly inFlight: number;
  stats(): { invocations: number; errors: number; retries: number; gaveUp: number };
  /**
   * Stops polling and retrying, then waits for running invocations to finish, at most `graceMs`;
   * resolves with how many were still running (left to finish on their own).
   */
  stop(graceMs?: number): Promise<number>;
}

/**
 * Polls ListObjectsV2 under manifests/ and invokes for every key that passes the stack's filter
 * and is new, or whose ETag or LastModified changed (a second upload of the same bytes goes
 * unnoticed only if the listing shows the same LastModified: AWS lists whole seconds, fauxqs
 * milliseconds). Invocations are asynchronous, as S3 → Lambda is: a
 * failure is logged and retried twice with the same event, then dropped.
 */
export async function startManifestSource(options: ManifestSourceOptions): Promise<ManifestSource> {
  const { s3, bucket, region, invoke } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const retryDelaysMs = options.retryDelaysMs ?? [1000, 2000];
  const activity = options.activity ?? new Activity();
  const log = options.log ?? (() => {});
  const stopping = new AbortController();
  /** key → version last invoked for, and the stamp of when it was recorded. */
  const seen = new Map<string, { version: string; stamp: number }>();
  let stamp = 0;
  const running = new Set<Promise<void>>();
  const counts = { invocations: 0, errors: 0, retries: 0, gaveUp: 0 };
  let timer: NodeJS.Timeout | undefined;

  // S3 notifies every PUT, even of the same bytes: LastModified tells a new upload of them apart.
  const versionOf = (object: _Object): string => `${object.ETag ?? ''}|${object.LastModified?.getTime() ?? ''}`;

  async function list(prefix: string): Promise<_Object[]> {
    const objects: _Object[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), {
        abortSignal: stopping.signal,
      });
      objects.push(...(page.Contents ?? []));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  /** Synchronous check-and-set, so a scan and a notify racing for one upload invoke once. */
  function claim(object: _Object): boolean {
    if (!object.Key || !isManifestKey(object.Key)) return false;
    const version = versionOf(object);
    if (seen.get(object.Key)?.version === version) return false;
    seen.set(object.Key, { version, stamp: ++stamp });
    return true;
  }

  function dispatch(object: _Object): void {
    const event = s3ObjectCreatedEvent(bucket, region, { key: object.Key!, size: object.Size ?? 0, eTag: object.ETag ?? '' });
    const run = (async () => {
      for (let attempt = 0; attempt <= retryDelaysMs.length; attempt++) {
        if (attempt > 0) {
          counts.retries++;
          try {
            await sleep(retryDelaysMs[attempt - 1], undefined, { signal: stopping.signal });
          } catch {
            log(`manifest ${object.Key}: local cloud stopped before retry ${attempt}`);
            return;
          }
        }
        counts.invocations++;
        activity.progressed();
        try {
          await invoke(event);
          return;
        } catch (error) {
          counts.errors++;
          const next = attempt < retryDelaysMs.length ? `; retry ${attempt + 1} of ${retryDelaysMs.length} in ${retryDelaysMs[attempt]} ms` : '; no retries left, event dropped';
          log(`manifest ${object.Key}: invocation failed: ${errorText(error)}${next}`);
        }
      }
      counts.gaveUp++;
    })();
    running.add(run);
    void run.finally(() => {
      running.delete(run);
      activity.progressed();
    });
  }

  async function scan(): Promise<number> {
    if (stopping.signal.aborted) return 0;
    const startStamp = stamp;
    const objects = await list(PREFIX.manifests);
    let dispatched = 0;
    const present = new Set<string>();
    for (const object of objects) {
      if (object.Key) present.add(object.Key);
      if (claim(object)) {
        dispatch(object);
        dispatched++;
      }
    }
    // Forget deleted keys, so uploading one again is new; not those claimed during this listing.
    for (const [key, entry] of seen) if (!present.has(key) && entry.stamp <= startStamp) seen.delete(key);
    return dispatched;
  }

  async function poll(): Promise<void> {
    try {
      await scan();
    } catch (error) {
      if (!stopping.signal.aborted) log(`manifest poll: ListObjectsV2 failed: ${errorText(error)}`);
    }
    if (!stopping.signal.aborted) timer = setTimeout(poll, pollIntervalMs);
  }

  // The baseline: what is there before the trigger exists is not an upload.
  if (options.processExisting) {
    await scan();
  } else {
    for (const object of await list(PREFIX.manifests)) claim(object);
  }
  timer = setTimeout(poll, pollIntervalMs);

  return {
    scan,
    async notifyObjectCreated(key) {
      if (!isManifestKey(key) || stopping.signal.aborted) return false;
      // Listing (not HeadObject) gives the same ETag and LastModified the poller compares.
      const object = (await list(key)).find((o) => o.Key === key);
      if (!object || !claim(object)) return false;
      dispatch(object);
      return true;
    },
    get inFlight() {
      return running.size;
    },
    stats: () => ({ ...counts }),
    async stop(graceMs = Infinity) {
      stopping.abort();
      clearTimeout(timer);
      const settled = (async () => {
        while (running.size > 0) await Promise.allSettled([...running]);
      })();
      await within(settled, graceMs);
      return running.size;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// SQS → fetch function

/** What the fetch function returns; undefined or null mean that every record succeeded. */
export type BatchResult = { batchItemFailures?: Array<{ itemIdentifier?: string | null }> | null } | null | undefined | void;

export interface SqsSourceOptions {
  sqs: SQSClient;
  queueUrl: string;
  queueArn: string;
  region: string;
  /** Runs the fetch function once; a rejection fails the whole batch. */
  invoke: (event: SQSEvent) => Promise<BatchResult>;
  /** Most records in one invocation (the mapping's BatchSize). */
  batchSize: number;
  /** MaximumBatchingWindowInSeconds: how long to keep gathering a batch that is not full. */
  batchWindowSeconds: number;
  /** Invocations at once (the mapping's maximum concurrency); each runs its own poller. */
  concurrency: number;
  /** The redrive policy's maxReceiveCount: used to count, and to redrive if the emulator does not. */
  maxReceiveCount: number;
  /** Where to move a message received more than maxReceiveCount times, if the emulator did not. */
  dlqUrl?: string;
  /** Long-poll length of one ReceiveMessage. Default 1 s: short, so stop() and idle checks are quick. */
  waitTimeSeconds?: number;
  /**
   * What stop() does with a long poll in progress. `abort` (default) cancels the request at once.
   * But an emulator may go on serving a cancelled poll: fauxqs hands the next message to arrive
   * within its WaitTimeSeconds to the departed request, which hides it for a visibility timeout.
   * Harmless when the emulator stops too; for one that keeps running, `drain` lets the polls end
   * (at most waitTimeSeconds) and makes what they took visible again.
   */
  onStop?: 'abort' | 'drain';
  activity?: Activity;
  log?: Log;
}

export interface SqsSourceStats {
  invocations: number;
  /** Invocations that threw (or returned an invalid response): their whole batch was kept. */
  errors: number;
  received: number;
  deleted: number;
  /** Records left in the queue after an invocation: reported in batchItemFailures, or in a failed batch. */
  failed: number;
  /**
   * Messages parked in the DLQ: those that failed on their last allowed receive (the queue's
   * redrive policy moves them at the next receive), and any this source moved itself.
   */
  deadLettered: number;
}

export interface SqsSource {
  /** Invocations running, with their batch gathered and not yet settled (deleted or released). */
  readonly inFlight: number;
  stats(): SqsSourceStats;
  /**
   * Ends the long polls (see SqsSourceOptions.onStop), makes messages gathered but not yet handed
   * to the function visible again, and waits for running invocations and their deletions, at most
   * `graceMs`; resolves with how many invocations were still running (their messages come back
   * after the visibility timeout).
   */
  stop(graceMs?: number): Promise<number>;
}

function lambdaMessageAttributes(attributes: Record<string, MessageAttributeValue> | undefined): SQSMessageAttributes {
  const result: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(attributes ?? {})) {
    result[name] = {
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
      stringListValues: value.StringListValues ?? [],
      binaryListValues: (value.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: value.DataType ?? 'String',
    };
  }
  return result;
}

/** The record Lambda builds from one received message. */
export function sqsRecord(message: Message, queueArn: string, region: string): SQSRecord {
  const a = message.Attributes ?? {};
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? '000000000000',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(a.AWSTraceHeader ? { AWSTraceHeader: a.AWSTraceHeader } : {}),
      ...(a.SequenceNumber ? { SequenceNumber: a.SequenceNumber } : {}),
      ...(a.MessageGroupId ? { MessageGroupId: a.MessageGroupId } : {}),
      ...(a.MessageDeduplicationId ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
    },
    messageAttributes: lambdaMessageAttributes(message.MessageAttributes),
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/**
 * Which records to keep, as Lambda reads a ReportBatchItemFailures response: nothing (undefined,
 * null, {}, an empty or null list) is complete success; an identifier that is empty, missing or
 * not a message of the batch, or a response that is not an object, is complete failure.
 */
export function failedRecords(result: unknown, batch: readonly SQSRecord[]): { failed: Set<string> } | { invalid: string } {
  if (result === undefined || result === null) return { failed: new Set() };
  if (typeof result !== 'object' || Array.isArray(result)) return { invalid: `response is not an object: ${JSON.stringify(result)?.slice(0, 80)}` };
  const list = (result as { batchItemFailures?: unknown }).batchItemFailures;
  if (list === undefined || list === null) return { failed: new Set() };
  if (!Array.isArray(list)) return { invalid: 'batchItemFailures is not a list' };
  const ids = new Set(batch.map((r) => r.messageId));
  const failed = new Set<string>();
  for (const item of list) {
    const id = (item as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '' || !ids.has(id)) return { invalid: `batchItemFailures names ${JSON.stringify(id)}, not a message of this batch` };
    failed.add(id);
  }
  return { failed };
}

/**
 * The SQS event source mapping: `concurrency` pollers, each gathering up to `batchSize` messages
 * (ReceiveMessage takes at most 10, so several calls) within the batching window, invoking, then
 * deleting every record not named in batchItemFailures. A throwing invocation deletes nothing.
 * Records left behind come back after the visibility timeout; after maxReceiveCount receives the
 * queue's redrive policy parks them in the DLQ (emulated here if the emulator ignores the policy).
 */
export function startSqsSource(options: SqsSourceOptions): SqsSource {
  const { sqs, queueUrl, queueArn, region, invoke, maxReceiveCount, dlqUrl } = options;
  const batchSize = Math.max(1, options.batchSize);
  const windowMs = Math.max(0, options.batchWindowSeconds) * 1000;
  const waitTimeSeconds = options.waitTimeSeconds ?? 1;
  const activity = options.activity ?? new Activity();
  const log = options.log ?? (() => {});
  const onStop = options.onStop ?? 'abort';
  /** Set by stop(): no new poll, no new invocation. */
  let stopRequested = false;
  /** Aborted by stop() in `abort` mode (and after draining, to cut the retry wait). */
  const stopping = new AbortController();
  const counts: SqsSourceStats = { invocations: 0, errors: 0, received: 0, deleted: 0, failed: 0, deadLettered: 0 };
  const deadLettered = new Set<string>();
  let inFlight = 0;

  const receiveCount = (m: Message): number => Number(m.Attributes?.ApproximateReceiveCount ?? '1');

  async function receive(max: number, wait: number): Promise<Message[]> {
    const result = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, max),
        WaitTimeSeconds: wait,
        MessageSystemAttributeNames: ['All'],
        MessageAttributeNames: ['All'],
      }),
      { abortSignal: stopping.signal },
    );
    const messages = result.Messages ?? [];
    counts.received += messages.length;
    if (messages.length > 0) activity.progressed();
    return messages;
  }

  /** Long-polls for a first message, then fills the batch until it is full or the window closes. */
  async function gather(batch: Message[]): Promise<void> {
    batch.push(...(await receive(batchSize, waitTimeSeconds)));
    if (batch.length === 0) return;
    const deadline = Date.now() + windowMs;
    while (batch.length < batchSize && !stopRequested) {
      const remainingMs = deadline - Date.now();
      const wait = remainingMs >= 1000 ? Math.min(waitTimeSeconds, Math.floor(remainingMs / 1000)) : 0;
      const more = await receive(batchSize - batch.length, wait);
      batch.push(...more);
      // Past the window, keep taking only what is already waiting.
      if (more.length === 0 && wait === 0) break;
    }
  }

  async function deleteMessages(messages: readonly Message[]): Promise<number> {
    let deleted = 0;
    for (let i = 0; i < messages.length; i += 10) {
      const chunk = messages.slice(i, i + 10);
      try {
        const result = await sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, j) => ({ Id: `m${j}`, ReceiptHandle: m.ReceiptHandle })) }),
        );
        deleted += result.Successful?.length ?? 0;
        for (const failure of result.Failed ?? []) log(`fetch: DeleteMessageBatch entry ${failure.Id} failed: ${failure.Code} ${failure.Message ?? ''}`);
      } catch (error) {
        log(`fetch: DeleteMessageBatch failed, ${chunk.length} messages will be delivered again: ${errorText(error)}`);
      }
    }
    return deleted;
  }

  /** Makes gathered messages visible again at once (used when stopping before an invocation). */
  async function release(messages: readonly Message[]): Promise<void> {
    for (let i = 0; i < messages.length; i += 10) {
      const chunk = messages.slice(i, i + 10);
      await sqs
        .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, j) => ({ Id: `m${j}`, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 })) }))
        .catch((error: unknown) => log(`fetch: could not release ${chunk.length} messages on stop (they return after the visibility timeout): ${errorText(error)}`));
    }
  }

  /** Redrive for an emulator that ignores RedrivePolicy; with one that honours it this finds nothing. */
  async function redriveOverLimit(batch: Message[]): Promise<Message[]> {
    if (!dlqUrl) return batch;
    const keep: Message[] = [];
    for (const message of batch) {
      if (receiveCount(message) <= maxReceiveCount) {
        keep.push(message);
        continue;
      }
      try {
        await sqs.send(new SendMessageCommand({ QueueUrl: dlqUrl, MessageBody: message.Body ?? '', MessageAttributes: message.MessageAttributes }));
        await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
        deadLettered.add(message.MessageId ?? '');
        counts.deadLettered = deadLettered.size;
        log(`fetch: message ${message.MessageId} received ${receiveCount(message)} times, moved to the DLQ`);
      } catch (error) {
        log(`fetch: could not move message ${message.MessageId} to the DLQ: ${errorText(error)}`);
      }
    }
    return keep;
  }

  async function runBatch(messages: Message[]): Promise<void> {
    const records = messages.map((m) => sqsRecord(m, queueArn, region));
    counts.invocations++;
    let keep: Set<string>;
    try {
      const verdict = failedRecords(await invoke({ Records: records }), records);
      if ('invalid' in verdict) throw new Error(`invalid batch response, the whole batch fails: ${verdict.invalid}`);
      keep = verdict.failed;
    } catch (error) {
      counts.errors++;
      log(`fetch: invocation with ${records.length} records failed, all will be delivered again: ${errorText(error)}`);
      keep = new Set(records.map((r) => r.messageId));
    }
    counts.failed += keep.size;
    for (const message of messages) {
      if (keep.has(message.MessageId ?? '') && receiveCount(message) >= maxReceiveCount) deadLettered.add(message.MessageId ?? '');
    }
    counts.deadLettered = deadLettered.size;
    const done = messages.filter((m) => !keep.has(m.MessageId ?? ''));
    // Not `counts.deleted += await ...`: that reads the counter before the await, losing concurrent updates.
    const deleted = done.length > 0 ? await deleteMessages(done) : 0;
    counts.deleted += deleted;
  }

  async function poller(): Promise<void> {
    while (!stopRequested) {
      const batch: Message[] = [];
      let holding = false;
      try {
        try {
          await gather(batch);
        } catch (error) {
          if (!stopRequested && !isAbort(error)) {
            log(`fetch: ReceiveMessage failed: ${errorText(error)}`);
            if (batch.length === 0) {
              // Keep a broken endpoint from spinning this loop.
              await sleep(1000, undefined, { signal: stopping.signal }).catch(() => {});
              continue;
            }
          }
        }
        if (batch.length === 0) continue;
        // Until now the gathered messages were visible to idle() only as not-visible queue messages.
        holding = true;
        inFlight++;
        if (stopRequested) {
          await release(batch);
          break;
        }
        const ready = await redriveOverLimit(batch);
        if (ready.length > 0) await runBatch(ready);
      } finally {
        if (holding) {
          inFlight--;
          activity.progressed();
        } else {
          activity.tick();
        }
      }
    }
  }

  const pollers = Array.from({ length: Math.max(1, options.concurrency) }, () => poller());

  return {
    get inFlight() {
      return inFlight;
    },
    stats: () => ({ ...counts }),
    async stop(graceMs = Infinity) {
      stopRequested = true;
      if (onStop === 'abort') stopping.abort();
      await within(Promise.allSettled(pollers), graceMs);
      stopping.abort();
      return inFlight;
    },
  };
}
