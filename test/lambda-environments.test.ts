// How the local cloud maps fetch invocations onto execution environments, as Lambda does: one
// environment per concurrency slot, loaded once and kept for all of that slot's invocations (its
// module state: clients, the fetcher and its host gate, the host notes it read), running one
// invocation at a time; never one environment shared by the whole fleet, never a fresh one per
// invocation.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { after, before } from './support/hooks.ts';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { DEFAULT_SETTINGS } from '../aws/settings.ts';
import { perEnvironment } from '../aws/lambda/config.ts';
import { startLocalCloud, type FetchHandler } from '../local-cloud/cloud.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';
import { awsClientConfig, startEmulator, type Emulator } from '../local-cloud/emulator.ts';

let emulator: Emulator;
let sqs: SQSClient;

before(async () => {
  emulator = await startEmulator();
  sqs = new SQSClient(awsClientConfig(emulator));
});

after(async () => {
  sqs.destroy();
  await emulator.stop();
});

async function sendJobs(queueUrl: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 10) {
    const entries = Array.from({ length: Math.min(10, count - i) }, (_, j) => ({
      Id: `e${j}`, MessageBody: `job ${i + j}`, MessageGroupId: `group-${i + j}`, MessageDeduplicationId: randomUUID(),
    }));
    const result = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
    assert.equal(result.Failed?.length ?? 0, 0);
  }
}

describe('execution environments of the fetch function', () => {
  it('one per concurrency slot: loaded once, reused by that slot, one invocation at a time, the slots at once', { timeout: 60_000 }, async () => {
    const slots = 3;
    const loads: number[] = [];
    /** Per environment: invocations run, and how many ran at once. */
    const runs = new Map<number, number>();
    const busy = new Map<number, number>();
    const mostAtOnce = new Map<number, number>();
    let running = 0;
    let mostRunning = 0;
    let open: () => void = () => {};
    const allSlotsBusy = new Promise<void>((resolve) => (open = resolve));
    const cloud = await startLocalCloud({
      settings: { ...DEFAULT_SETTINGS, fetchBatchSize: 1 },
      emulator,
      bucket: `lambda-environments-${randomUUID().slice(0, 8)}`,
      queueName: `lambda-environments-${randomUUID().slice(0, 8)}`,
      log: () => {},
      fetchConcurrency: slots,
      handlers: {
        manifest: async () => assert.fail('no manifest upload in this test'),
        fetch: {
          // An environment's module state: its number, fixed when it is loaded.
          load: async (environment): Promise<FetchHandler> => {
            loads.push(environment);
            return async (event: SQSEvent) => {
              runs.set(environment, (runs.get(environment) ?? 0) + event.Records.length);
              busy.set(environment, (busy.get(environment) ?? 0) + 1);
              mostAtOnce.set(environment, Math.max(mostAtOnce.get(environment) ?? 0, busy.get(environment)!));
              mostRunning = Math.max(mostRunning, ++running);
              if (running === slots) open();
              // The first invocations wait until every slot runs one: the fleet at its concurrency.
              await allSlotsBusy;
              running--;
              busy.set(environment, busy.get(environment)! - 1);
              return { batchItemFailures: [] };
            };
          },
        },
      },
    });
    try {
      // Batches of one: each job is one invocation, far more invocations than slots.
      const jobs = 5 * slots;
      await sendJobs(cloud.queueUrl, jobs);
      await cloud.idle();
      assert.deepEqual([...loads].sort(), [0, 1, 2], 'each slot loads its environment once, at start');
      assert.equal(mostRunning, slots, 'every slot ran an invocation at once');
      assert.deepEqual([...mostAtOnce.values()], [1, 1, 1], 'an environment runs one invocation at a time');
      const total = [...runs.values()].reduce((a, b) => a + b, 0);
      assert.equal(total, jobs);
      assert.ok(total > runs.size, `environments reused: ${JSON.stringify([...runs])}`);
    } finally {
      await cloud.stop();
    }
  });

  it('the real fetch function: a module instance of its own per slot (its own container, fetcher and host gate)', async () => {
    const loaded: FetchHandler[] = [];
    const dev = await startDevCloud({
      fetchConcurrency: 3,
      log: () => {},
      logLevel: 'SILENT',
      wrapFetch: (real) => (loaded.push(real), real),
    });
    try {
      assert.equal(loaded.length, 3);
      assert.equal(new Set(loaded).size, 3, 'three module instances, not one shared by the fleet');
    } finally {
      await dev.stop();
    }
  });

  it('a container is built once and kept while its environment stays, rebuilt (the old disposed) when it changes', () => {
    const saved = process.env.BUCKET_NAME;
    const disposed: number[] = [];
    let built = 0;
    try {
      process.env.BUCKET_NAME = 'one';
      const container = perEnvironment(() => ++built, (old) => disposed.push(old));
      assert.equal(container(), 1);
      assert.equal(container(), 1);
      assert.equal(built, 1, 'kept across invocations');
      process.env.BUCKET_NAME = 'two';
      assert.equal(container(), 2);
      assert.deepEqual(disposed, [1]);
    } finally {
      if (saved === undefined) delete process.env.BUCKET_NAME;
      else process.env.BUCKET_NAME = saved;
    }
  });
});
