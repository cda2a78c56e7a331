// The local cloud's emulated event sources, driven with fake handlers over an embedded fauxqs:
// which uploads reach the manifest function and with what event, and what becomes of SQS
// messages the fetch function succeeds on, reports as failed, or throws on; the jobs queue is
// FIFO, handing out one message group at a time.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, S3Event, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { DEFAULT_SETTINGS, type Settings } from '../aws/settings.ts';
import { startLocalCloud, type FetchHandler, type LocalCloud, type LocalCloudOptions, type ManifestHandler } from '../local-cloud/cloud.ts';
import { awsClientConfig, connectEndpoint, startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { isManifestKey } from '../aws/bucket.ts';
import { s3EventKey } from '../local-cloud/s3-notifications.ts';
import { failedRecords } from '../local-cloud/sqs-poller.ts';

const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const quiet = () => {};

let emulator: Emulator;
let s3: S3Client;
let sqs: SQSClient;
let counter = 0;

before(async () => {
  emulator = await startEmulator();
  s3 = new S3Client(awsClientConfig(emulator));
  sqs = new SQSClient(awsClientConfig(emulator));
});

after(async () => {
  s3.destroy();
  sqs.destroy();
  await emulator.stop();
});

const unusedManifest: ManifestHandler = async () => assert.fail('no manifest upload in this test');
const unusedFetch: FetchHandler = async () => assert.fail('no job in this test');

/** A cloud with its own bucket and queues on the shared emulator. */
async function cloudWith(
  handlers: Partial<LocalCloudOptions['handlers']>,
  settings: Partial<Settings> = {},
  options: Partial<LocalCloudOptions> = {},
): Promise<LocalCloud> {
  counter++;
  return startLocalCloud({
    settings: { ...DEFAULT_SETTINGS, ...settings },
    emulator,
    bucket: `local-cloud-test-${counter}`,
    queueName: `local-cloud-test-${counter}`,
    handlers: { manifest: handlers.manifest ?? unusedManifest, fetch: handlers.fetch ?? unusedFetch },
    log: quiet,
    ...options,
  });
}

async function put(bucket: string, key: string, body: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** A FIFO message's ids: its group (default: one per body), a deduplication id never seen before. */
const fifo = (group: string) => ({ MessageGroupId: group, MessageDeduplicationId: randomUUID() });

async function send(queueUrl: string, bodies: string[], group: (body: string, i: number) => string = (body) => md5(body)): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const entries = bodies.slice(i, i + 10).map((body, j) => ({ Id: `e${j}`, MessageBody: body, ...fifo(group(body, i + j)) }));
    const result = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries }));
    assert.equal(result.Failed?.length ?? 0, 0);
  }
}

async function depth(queueUrl: string): Promise<number> {
  const { Attributes: a = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['All'] }));
  return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible) + Number(a.ApproximateNumberOfMessagesDelayed);
}

async function drain(queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
    if (Messages.length === 0) return bodies;
    bodies.push(...Messages.map((m) => m.Body ?? ''));
  }
}

describe('S3 ObjectCreated emulation', () => {
  it('invokes the manifest function once per matching upload, with the event S3 sends', async () => {
    const calls: Array<{ event: S3Event; context: Context; env: Record<string, string | undefined> }> = [];
    const bucket = `local-cloud-test-${counter + 1}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await put(bucket, 'manifests/before-start.csv', 'url\n');
    const cloud = await cloudWith(
      {
        manifest: async (event, context) => {
          calls.push({ event, context, env: { ...process.env } });
        },
      },
      {},
      { env: { ALLOW_PRIVATE_NETWORK: 'true' } },
    );
    assert.equal(cloud.bucket, bucket);
    try {
      const manifests = ['manifests/my train (v2).csv', 'manifests/a+b.json.gz', 'manifests/sub/items.jsonl'];
      for (const key of manifests) await put(bucket, key, `content of ${key}`);
      for (const key of ['manifests/readme.md', 'manifests/train.csv.zip', 'other/train.csv', 'train.csv']) await put(bucket, key, 'ignored');
      await cloud.idle();

      assert.deepEqual(calls.map((c) => c.event.Records[0]!.s3.object.key).sort(), ['manifests/a%2Bb.json.gz', 'manifests/my+train+%28v2%29.csv', 'manifests/sub/items.jsonl']);
      const { event, context, env } = calls.find((c) => c.event.Records[0]!.s3.object.key.startsWith('manifests/my'))!;
      assert.equal(event.Records.length, 1);
      const record = event.Records[0]!;
      assert.equal(record.eventSource, 'aws:s3');
      assert.equal(record.eventName, 'ObjectCreated:Put');
      assert.equal(record.awsRegion, emulator.region);
      assert.equal(record.s3.bucket.name, bucket);
      assert.equal(record.s3.bucket.arn, `arn:aws:s3:::${bucket}`);
      assert.equal(record.s3.object.size, Buffer.byteLength('content of manifests/my train (v2).csv'));
      assert.equal(record.s3.object.eTag, md5('content of manifests/my train (v2).csv'));
      assert.match(record.s3.object.sequencer, /^[0-9A-F]+$/);
      assert.equal(decodeURIComponent(record.s3.object.key.replace(/\+/g, ' ')), 'manifests/my train (v2).csv');

      assert.equal(context.functionName, 'cloudfetch-manifest');
      assert.equal(context.memoryLimitInMB, String(DEFAULT_SETTINGS.manifestMemoryMb));
      assert.match(context.awsRequestId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const remaining = context.getRemainingTimeInMillis();
      assert.ok(remaining > 0 && remaining <= DEFAULT_SETTINGS.manifestTimeoutSeconds * 1000);
      assert.equal(context.logGroupName, '/aws/lambda/cloudfetch-manifest');

      assert.equal(env.BUCKET_NAME, bucket);
      assert.equal(env.JOBS_QUEUE_URL, cloud.queueUrl);
      assert.equal(env.AWS_ENDPOINT_URL, emulator.endpoint);
      assert.equal(env.LAYOUT, DEFAULT_SETTINGS.layout);
      assert.equal(env.MAX_BYTES, String(DEFAULT_SETTINGS.maxBytes));
      assert.equal(env.POWERTOOLS_METRICS_NAMESPACE, 'cloudfetch');
      assert.equal(env.ALLOW_PRIVATE_NETWORK, 'true');

      // Every upload is reported, as S3 does, even of the same bytes; a notified key only once.
      await put(bucket, 'manifests/a+b.json.gz', 'content of manifests/a+b.json.gz');
      await put(bucket, 'manifests/sub/items.jsonl', 'changed');
      await put(bucket, 'manifests/notified.txt', 'http://example.com/a.jpg\n');
      assert.equal(await cloud.notifyObjectCreated('manifests/notified.txt'), true);
      assert.equal(await cloud.notifyObjectCreated('manifests/notified.txt'), false);
      assert.equal(await cloud.notifyObjectCreated('other/x.csv'), false);
      await cloud.idle();
      const keys = calls.map((c) => c.event.Records[0]!.s3.object.key);
      assert.equal(keys.filter((k) => k === 'manifests/sub/items.jsonl').length, 2);
      assert.equal(keys.filter((k) => k === 'manifests/notified.txt').length, 1);
      assert.equal(keys.filter((k) => k === 'manifests/a%2Bb.json.gz').length, 2);
      assert.ok(!keys.includes('manifests/before-start.csv'), 'a manifest present before start is not an upload');
      assert.deepEqual(cloud.stats().manifest, { invocations: 6, errors: 0, retries: 0, gaveUp: 0 });
    } finally {
      await cloud.stop();
    }
    assert.equal(process.env.BUCKET_NAME, undefined, 'stop() restores the environment');
    await assert.rejects(cloud.idle(), /stopped/);
  });

  it('retries a failing manifest invocation twice, like an asynchronous Lambda invocation', async () => {
    let calls = 0;
    const cloud = await cloudWith(
      {
        manifest: async () => {
          calls++;
          throw new Error('cannot read manifest');
        },
      },
      {},
      { manifestRetryDelaysMs: [10, 10] },
    );
    try {
      await put(cloud.bucket, 'manifests/bad.json', '{');
      await cloud.idle();
      assert.equal(calls, 3);
      assert.deepEqual(cloud.stats().manifest, { invocations: 3, errors: 3, retries: 2, gaveUp: 1 });
    } finally {
      await cloud.stop();
    }
  });

  it('logs keys and errors with their control characters escaped', async () => {
    const lines: string[] = [];
    const cloud = await cloudWith(
      { manifest: async () => assert.fail('\u001b]0;owned\u0007 in the manifest') },
      {},
      { manifestRetryDelaysMs: [], log: (line) => lines.push(line) },
    );
    try {
      await put(cloud.bucket, 'manifests/\u001b[2Jx.json', '{');
      await cloud.idle();
      const failed = lines.filter((line) => line.includes('invocation failed'));
      assert.equal(failed.length, 1);
      assert.match(failed[0]!, /^manifest manifests\/\\x1b\[2Jx\.json: invocation failed: .*\\x1b\]0;owned\\x07 in the manifest/);
      assert.doesNotMatch(lines.join(''), /[\u0000-\u001f\u007f-\u009f]/);
    } finally {
      await cloud.stop();
    }
  });

  it('runs a handler that uses SDK clients configured only by the environment, as in Lambda', async () => {
    const fetched: string[] = [];
    const cloud = await cloudWith({
      // A manifest function in miniature: reads the upload, enqueues one job per line.
      manifest: async (event) => {
        const { bucket, object } = event.Records[0]!.s3;
        const s3 = new S3Client({});
        const sqs = new SQSClient({});
        try {
          const key = decodeURIComponent(object.key.replace(/\+/g, ' '));
          const text = await (await s3.send(new GetObjectCommand({ Bucket: bucket.name, Key: key }))).Body!.transformToString();
          const lines = text.split('\n').filter(Boolean);
          for (let i = 0; i < lines.length; i += 10) {
            await sqs.send(new SendMessageBatchCommand({
              QueueUrl: process.env.JOBS_QUEUE_URL,
              Entries: lines.slice(i, i + 10).map((body, j) => ({ Id: `l${j}`, MessageBody: body, ...fifo(md5(body)) })),
            }));
          }
        } finally {
          s3.destroy();
          sqs.destroy();
        }
      },
      fetch: async (event) => {
        fetched.push(...event.Records.map((r) => r.body));
        return { batchItemFailures: [] };
      },
    });
    try {
      const urls = Array.from({ length: 23 }, (_, i) => `http://127.0.0.1:9/img/${i}.jpg`);
      await put(cloud.bucket, 'manifests/urls list.txt', urls.join('\n') + '\n');
      await cloud.idle();
      assert.deepEqual(fetched.sort(), urls.sort());
      assert.equal(await depth(cloud.queueUrl), 0);
    } finally {
      await cloud.stop();
    }
  });

  it('filters keys exactly as the stack does', () => {
    for (const key of ['manifests/a.json', 'manifests/a.jsonl.gz', 'manifests/x/y.tsv', 'manifests/a.ndjson', 'manifests/a.txt.gz']) assert.ok(isManifestKey(key), key);
    for (const key of ['manifests/a.JSON', 'manifests/a.gz', 'manifests/', 'Manifests/a.csv', 'x/manifests/a.csv', 'manifests/a.csv.bz2']) assert.ok(!isManifestKey(key), key);
    assert.equal(s3EventKey('manifests/my file+1 (a)é.csv'), 'manifests/my+file%2B1+%28a%29%C3%A9.csv');
  });
});

describe('SQS event source emulation', () => {
  it('hands every message to the fetch function as SQS records and deletes them after success', async () => {
    const batches: SQSEvent[] = [];
    const cloud = await cloudWith(
      {
        fetch: async (event) => {
          batches.push(event);
          return { batchItemFailures: [] };
        },
      },
      { fetchBatchSize: 10 },
      { fetchConcurrency: 2 },
    );
    try {
      const bodies = Array.from({ length: 25 }, (_, i) => JSON.stringify({ v: 1, id: String(i), text: 'ünïcødé ✓ "quoted"' }));
      await send(cloud.queueUrl, bodies);
      await sqs.send(new SendMessageCommand({
        QueueUrl: cloud.queueUrl,
        MessageBody: 'with attributes',
        ...fifo('attributes'),
        MessageAttributes: { split: { DataType: 'String', StringValue: 'train' }, raw: { DataType: 'Binary', BinaryValue: Buffer.from([1, 2, 3]) } },
      }));
      await cloud.idle();

      const withAttributes = batches.flatMap((b) => b.Records).find((r) => r.body === 'with attributes')!;
      assert.deepEqual(withAttributes.messageAttributes, {
        split: { stringValue: 'train', stringListValues: [], binaryListValues: [], dataType: 'String' },
        raw: { binaryValue: 'AQID', stringListValues: [], binaryListValues: [], dataType: 'Binary' },
      });
      assert.ok(withAttributes.md5OfMessageAttributes);
      bodies.push('with attributes');

      const records = batches.flatMap((b) => b.Records);
      assert.deepEqual(records.map((r) => r.body).sort(), [...bodies].sort());
      assert.ok(batches.every((b) => b.Records.length >= 1 && b.Records.length <= 10));
      const record = records[0]!;
      assert.equal(record.eventSource, 'aws:sqs');
      assert.equal(record.eventSourceARN, cloud.queueArn);
      assert.equal(record.awsRegion, emulator.region);
      assert.equal(record.md5OfBody, md5(record.body));
      assert.equal(record.attributes.ApproximateReceiveCount, '1');
      assert.match(record.attributes.SentTimestamp, /^\d+$/);
      assert.ok(record.messageId && record.receiptHandle);

      assert.equal(await depth(cloud.queueUrl), 0);
      assert.deepEqual(await drain(cloud.dlqUrl), []);
      const stats = cloud.stats().fetch;
      assert.equal(stats.received, 26);
      assert.equal(stats.deleted, 26);
      assert.equal(stats.failed, 0);
      assert.equal(stats.invocations, batches.length);
    } finally {
      await cloud.stop();
    }
  });

  it('the embedded emulator fills a FIFO receive from one group first, as SQS does (fifo-batches.ts); a group in flight is not handed out again', async () => {
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `batches-${randomUUID().slice(0, 8)}.fifo`, Attributes: { FifoQueue: 'true', VisibilityTimeout: '30' } }));
    // 30 messages, groups interleaved a b c a b c …
    const bodies = Array.from({ length: 30 }, (_, i) => `m${i}`);
    await send(QueueUrl!, bodies, (_, i) => 'abc'[i % 3]!);
    const receive = async () => (await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['MessageGroupId'] }))).Messages ?? [];
    const first = await receive();
    assert.deepEqual(first.map((m) => m.Body), bodies.filter((_, i) => i % 3 === 0), 'the ten of group a, in order');
    const second = await receive();
    assert.deepEqual(second.map((m) => m.Attributes?.MessageGroupId), Array(10).fill('b'));
    // Groups a and b are in flight until deleted: the third receive is group c's, the fourth finds nothing.
    assert.deepEqual((await receive()).map((m) => m.Attributes?.MessageGroupId), Array(10).fill('c'));
    assert.equal((await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }))).Messages?.length ?? 0, 0);
  });

  it('hands out a message group only while none of its messages is in flight, in order, batches of at most 10', async () => {
    // Per group: invocations holding one of its messages now, the most at once, and the order seen.
    const holding = new Map<string, number>();
    const most = new Map<string, number>();
    const order = new Map<string, string[]>();
    let release: () => void = () => {};
    let slow = new Promise<void>((resolve) => (release = resolve));
    const sizes: number[] = [];
    const cloud = await cloudWith(
      {
        fetch: async (event) => {
          sizes.push(event.Records.length);
          const groups = new Set(event.Records.map((r) => r.attributes.MessageGroupId!));
          for (const g of groups) {
            holding.set(g, (holding.get(g) ?? 0) + 1);
            most.set(g, Math.max(most.get(g) ?? 0, holding.get(g)!));
          }
          for (const r of event.Records) order.set(r.attributes.MessageGroupId!, [...(order.get(r.attributes.MessageGroupId!) ?? []), r.body]);
          // The first invocations wait until every poller has had a chance to take more of their groups.
          await slow;
          for (const g of groups) holding.set(g, holding.get(g)! - 1);
          return { batchItemFailures: [] };
        },
      },
      { fetchBatchSize: 10 },
      { fetchConcurrency: 4 },
    );
    try {
      const bodies = Array.from({ length: 36 }, (_, i) => `job ${i}`);
      await send(cloud.queueUrl, bodies, (_, i) => `host-${i % 3}`);
      // Every group in flight (in one invocation or several): the other pollers find them locked.
      while ([...holding.values()].filter((n) => n > 0).length < 3) await depth(cloud.queueUrl);
      release();
      slow = Promise.resolve();
      await cloud.idle();
      assert.deepEqual([...most.values()], [1, 1, 1], 'never two invocations holding messages of one group');
      for (const [g, seen] of order) assert.deepEqual(seen, bodies.filter((_, i) => `host-${i % 3}` === g), `${g} in order`);
      assert.ok(sizes.every((n) => n >= 1 && n <= 10), `batches ${sizes}`);
      assert.equal(sizes.reduce((a, b) => a + b, 0), 36);
    } finally {
      await cloud.stop();
    }
  });

  it('redelivers a record reported in batchItemFailures and parks it in the DLQ after maxReceiveCount receives', async () => {
    const deliveries = new Map<string, string[]>();
    const cloud = await cloudWith(
      {
        fetch: async (event): Promise<SQSBatchResponse> => {
          for (const r of event.Records) deliveries.set(r.body, [...(deliveries.get(r.body) ?? []), r.attributes.ApproximateReceiveCount]);
          return { batchItemFailures: event.Records.filter((r) => r.body === 'poison').map((r) => ({ itemIdentifier: r.messageId })) };
        },
      },
      { maxReceiveCount: 2 },
      { visibilityTimeoutSeconds: 1 },
    );
    try {
      await send(cloud.queueUrl, ['good-1', 'poison', 'good-2']);
      await cloud.idle();

      assert.deepEqual(deliveries.get('poison'), ['1', '2']);
      assert.deepEqual(deliveries.get('good-1'), ['1']);
      assert.deepEqual(deliveries.get('good-2'), ['1']);
      assert.equal(await depth(cloud.queueUrl), 0);
      assert.deepEqual(await drain(cloud.dlqUrl), ['poison']);
      const stats = cloud.stats().fetch;
      assert.equal(stats.deleted, 2);
      assert.equal(stats.failed, 2);
      assert.equal(stats.deadLettered, 1);
    } finally {
      await cloud.stop();
    }
  });

  it('loses nothing when the fetch function throws: the whole batch comes back', async () => {
    let thrownBatch: SQSRecord[] | undefined;
    const succeeded: SQSRecord[] = [];
    const cloud = await cloudWith(
      {
        fetch: async (event) => {
          if (!thrownBatch) {
            thrownBatch = event.Records;
            throw new Error('function crashed');
          }
          succeeded.push(...event.Records);
          return { batchItemFailures: [] };
        },
      },
      {},
      { visibilityTimeoutSeconds: 1, fetchConcurrency: 1 },
    );
    try {
      await send(cloud.queueUrl, ['a', 'b', 'c']);
      await cloud.idle();

      assert.ok(thrownBatch && thrownBatch.length > 0);
      assert.deepEqual(succeeded.map((r) => r.body).sort(), ['a', 'b', 'c']);
      for (const lost of thrownBatch) {
        assert.equal(succeeded.find((r) => r.messageId === lost.messageId)?.attributes.ApproximateReceiveCount, '2');
      }
      assert.equal(await depth(cloud.queueUrl), 0);
      assert.deepEqual(await drain(cloud.dlqUrl), []);
      const stats = cloud.stats().fetch;
      assert.equal(stats.errors, 1);
      assert.equal(stats.deleted, 3);
      assert.equal(stats.deadLettered, 0);
    } finally {
      await cloud.stop();
    }
  });

  it('stop() with drainOnStop hands back what a long poll received after the stop', async () => {
    const cloud = await cloudWith({}, {}, { drainOnStop: true, fetchConcurrency: 1, waitTimeSeconds: 10 });
    let stopped = false;
    try {
      // The poller is in its first long poll: stop, then a message arrives, which that poll takes.
      const stopping = cloud.stop();
      await send(cloud.queueUrl, ['late']);
      await stopping;
      stopped = true;
      assert.equal(cloud.stats().fetch.received, 1);
      const { Attributes: a = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: cloud.queueUrl, AttributeNames: ['All'] }));
      assert.equal(a.ApproximateNumberOfMessages, '1');
      assert.equal(a.ApproximateNumberOfMessagesNotVisible, '0');
      assert.equal(cloud.stats().fetch.invocations, 0);
    } finally {
      if (!stopped) await cloud.stop();
    }
  });

  it('reads batch responses as Lambda does', () => {
    const batch = [{ messageId: 'm1' }, { messageId: 'm2' }] as SQSRecord[];
    assert.deepEqual(failedRecords(undefined, batch), { failed: new Set() });
    assert.deepEqual(failedRecords({}, batch), { failed: new Set() });
    assert.deepEqual(failedRecords({ batchItemFailures: null }, batch), { failed: new Set() });
    assert.deepEqual(failedRecords({ batchItemFailures: [{ itemIdentifier: 'm2' }] }, batch), { failed: new Set(['m2']) });
    assert.ok('invalid' in failedRecords({ batchItemFailures: [{ itemIdentifier: '' }] }, batch));
    assert.ok('invalid' in failedRecords({ batchItemFailures: [{ itemIdentifier: 'm3' }] }, batch));
    assert.ok('invalid' in failedRecords({ batchItemFailures: [{ id: 'm1' }] }, batch));
    assert.ok('invalid' in failedRecords('ok', batch));
  });
});

describe('emulator', () => {
  it("keeps the SDK's connection open after a HeadObject of a missing key (the fetch function's skip check)", async () => {
    const bucket = `keepalive-${++counter}`;
    const client = new S3Client(awsClientConfig(emulator));
    let connections = 0;
    const count = (): void => void connections++;
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      subscribe('net.client.socket', count);
      const before = connections;
      for (let i = 0; i < 3; i++) {
        await assert.rejects(client.send(new HeadObjectCommand({ Bucket: bucket, Key: `k${i}` })), { name: 'NotFound' });
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `k${i}`, Body: 'bytes' }));
      }
      // Without Transfer-Encoding on the 404, Node's client closed the socket: 3 new connections.
      assert.equal(connections - before, 0);
      const stored = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'k2' }));
      assert.equal(await stored.Body!.transformToString(), 'bytes');
    } finally {
      unsubscribe('net.client.socket', count);
      client.destroy();
    }
  });

  it('connects to an external endpoint without owning it', async () => {
    const external = connectEndpoint('http://localhost:4566/');
    assert.equal(external.endpoint, 'http://127.0.0.1:4566');
    assert.equal(external.kind, 'external');
    await external.stop();
    assert.throws(() => connectEndpoint('localhost:4566'), /http/);
  });

  it('stops cleanly: a process that stops its local cloud and emulator exits by itself', async () => {
    // In a child process, because only there "exits by itself" can be observed.
    const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
    const script = `
      import { startLocalCloud } from ${url('../local-cloud/cloud.ts')};
      import { startEmulator, awsClientConfig } from ${url('../local-cloud/emulator.ts')};
      import { DEFAULT_SETTINGS } from ${url('../aws/settings.ts')};
      import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
      const emulator = await startEmulator();
      let fetched = 0;
      const cloud = await startLocalCloud({
        settings: DEFAULT_SETTINGS, emulator, log: () => {},
        handlers: { manifest: async () => {}, fetch: async (event) => { fetched += event.Records.length; return { batchItemFailures: [] }; } },
      });
      const sqs = new SQSClient(awsClientConfig(emulator));
      await sqs.send(new SendMessageCommand({ QueueUrl: cloud.queueUrl, MessageBody: 'x', MessageGroupId: 'g', MessageDeduplicationId: 'x' }));
      sqs.destroy();
      await cloud.idle();
      await cloud.stop();
      await emulator.stop();
      console.log('fetched', fetched);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // A guard, not a synchronisation: an open handle would keep the child alive past it.
    const guard = setTimeout(() => child.kill(), 20_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(guard);
    assert.equal(signal, null, 'the child was still running 20 s later: something kept it alive');
    assert.equal(code, 0);
    assert.equal(output.trim(), 'fetched 1');
  });
});
