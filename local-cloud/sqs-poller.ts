// The fetch function's SQS event source mapping on a FIFO queue, emulated over a real SQS API:
// pollers receive batches (one ReceiveMessage of at most 10, no batching window, as Lambda reads a
// FIFO queue; the emulator hands out a message group only while none of its messages is in
// flight), hand AWS-shaped events to an `invoke` the caller provides, and then do with the
// messages what Lambda would: delete what succeeded, leave the rest to be delivered again.

import { setTimeout as sleep } from 'node:timers/promises';
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
import type { SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import { Activity, errorText, within, type Log } from './activity.ts';

const isAbort = (error: unknown): boolean => error instanceof Error && error.name === 'AbortError';

/** What the fetch function returns; undefined or null mean that every record succeeded. */
export type BatchResult = { batchItemFailures?: Array<{ itemIdentifier?: string | null }> | null } | null | undefined | void;

export interface SqsSourceOptions {
  sqs: SQSClient;
  queueUrl: string;
  queueArn: string;
  region: string;
  /** Runs the fetch function once, from poller number `poller`; a rejection fails the whole batch. */
  invoke: (event: SQSEvent, poller: number) => Promise<BatchResult>;
  /** Most records in one invocation (the mapping's BatchSize; at most 10 from a FIFO queue). */
  batchSize: number;
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
 * The SQS event source mapping of a FIFO queue: `concurrency` pollers, each receiving up to
 * `batchSize` messages in one call, invoking, then deleting every record not named in
 * batchItemFailures. A throwing invocation deletes nothing.
 * Records left behind come back after the visibility timeout; after maxReceiveCount receives the
 * queue's redrive policy parks them in the DLQ (emulated here if the emulator ignores the policy).
 */
export function startSqsSource(options: SqsSourceOptions): SqsSource {
  const { sqs, queueUrl, queueArn, region, invoke, maxReceiveCount, dlqUrl } = options;
  const batchSize = Math.min(10, Math.max(1, options.batchSize));
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

  // One ReceiveMessage at a time across the pollers: SQS hands a message group to one receive
  // only, but an emulator serving requests on threads (moto) can give one group to two that overlap.
  let receiving: Promise<unknown> = Promise.resolve();

  function receive(max: number, wait: number): Promise<Message[]> {
    const turn = receiving.then(() => (stopRequested ? [] : receiveNow(max, wait)));
    receiving = turn.catch(() => {});
    return turn;
  }

  async function receiveNow(max: number, wait: number): Promise<Message[]> {
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

  /** One long poll: a FIFO event source has no batching window. */
  async function gather(batch: Message[]): Promise<void> {
    batch.push(...(await receive(batchSize, waitTimeSeconds)));
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
        await sqs.send(new SendMessageCommand({
          QueueUrl: dlqUrl, MessageBody: message.Body ?? '', MessageAttributes: message.MessageAttributes,
          MessageGroupId: message.Attributes?.MessageGroupId ?? 'none', MessageDeduplicationId: message.MessageId,
        }));
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

  async function runBatch(messages: Message[], index: number): Promise<void> {
    const records = messages.map((m) => sqsRecord(m, queueArn, region));
    counts.invocations++;
    let keep: Set<string>;
    try {
      const verdict = failedRecords(await invoke({ Records: records }, index), records);
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

  async function poller(index: number): Promise<void> {
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
        if (ready.length > 0) await runBatch(ready, index);
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

  const pollers = Array.from({ length: Math.max(1, options.concurrency) }, (_, index) => poller(index));

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
