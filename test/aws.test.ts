// The AWS adapters against the embedded S3/SQS emulator: the S3 store, sending jobs, and the
// manifest split (index, status object, one message per distinct image, errors with positions).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { parse } from 'csv-parse/sync';
import { ObjectReadError, ObjectReader } from '../aws/home/object-reader.ts';
import { S3Store } from '../aws/lambda/s3-store.ts';
import { splitManifest, type SplitDeps } from '../aws/lambda/split.ts';
import type { SplitStatus } from '../aws/bucket.ts';
import { JobSender } from '../aws/sqs-jobs.ts';
import { jobIds } from '../aws/fifo.ts';
import { decodeJob, encodeJob, BadMessageError } from '../aws/job-message.ts';
import { redeliveryDelaySeconds } from '../aws/lambda/redelivery.ts';
import type { Job } from '../engine/job.ts';
import { FsStore } from '../engine/fs-store.ts';
import type { Store } from '../engine/store.ts';
import { awsClientConfig, startEmulator } from '../local-cloud/emulator.ts';
import { lazyFixture } from './support/fixture.ts';

let s3: S3Client;
let sqs: SQSClient;
let queueCount = 0;
const bucket = 'test-bucket';

// The embedded emulator on 127.0.0.1 (fauxqs's own startFauxqs listens on every interface).
// Started from `before` through a fixture, so `after` is safe whatever subset of the tests runs.
const emulator = lazyFixture(async (onClose) => {
  const started = await startEmulator();
  onClose(() => started.stop());
  const config = awsClientConfig(started);
  s3 = new S3Client(config);
  onClose(() => s3.destroy());
  sqs = new SQSClient(config);
  onClose(() => sqs.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});
before(() => emulator.get());
after(() => emulator.close());

async function newQueue(): Promise<string> {
  const answer = await sqs.send(new CreateQueueCommand({ QueueName: `jobs-${++queueCount}.fifo`, Attributes: { FifoQueue: 'true' } }));
  return answer.QueueUrl!;
}

async function drain(queueUrl: string): Promise<Job[]> {
  const jobs: Job[] = [];
  for (;;) {
    const answer = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const messages = answer.Messages ?? [];
    if (messages.length === 0) return jobs;
    for (const m of messages) jobs.push(decodeJob(m.Body!));
    await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
  }
}

async function text(key: string): Promise<string> {
  const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return answer.Body!.transformToString();
}

const job = (n: number): Job => ({ split: 'train', id: String(n), urls: [`https://h/${n}.jpg`], labels: ['1'], key: `train/${n}.jpg`, position: n });

describe('job messages', () => {
  test('a job survives the queue unchanged', () => {
    const j: Job = { split: 'train', id: 'a/b', urls: ['https://h/x.jpg', 'https://m/x.jpg'], labels: ['95', '66'], key: 'train/a%2Fb.jpg', position: 7 };
    assert.deepEqual(decodeJob(encodeJob(j)), j);
  });

  test('poison messages are refused', () => {
    assert.throws(() => decodeJob('not json'), BadMessageError);
    assert.throws(() => decodeJob('{"v":1,"split":"train"}'), BadMessageError);
    assert.throws(() => decodeJob(encodeJob({ ...job(1), key: 'train/../../etc/x.jpg' })), /unsafe key/);
    // A failure record was once written at failures/../manifests/…: the split is a name, not a path.
    assert.throws(() => decodeJob(encodeJob({ ...job(1), split: '../manifests', key: '../manifests/1.jpg' })), /unsafe split name: \.\.\/manifests/);
    assert.throws(() => decodeJob(encodeJob({ ...job(1), split: 'train', key: 'test/1.jpg' })), /key test\/1\.jpg is not in split train/);
    // What is shown of a poison body is safe on a terminal.
    assert.throws(() => decodeJob('\u001b[2J\u001b]0;owned\u0007'), (error: Error) => !/[\u0000-\u001f]/.test(error.message) && /\\x1b\[2J/.test(error.message));
  });

  test('bodies are ASCII whatever the manifest held, and decode to the same job', () => {
    const hostile: Job = {
      split: 'train', id: 'caf\u00e9 \ud83d\udcf7 \ufffe\uffff \ud800 \u0000\u001b',
      urls: ['https://h/\u5199\u771f.jpg'], labels: ['\u2028', 'x'], key: 'train/caf%C3%A9.jpg', position: 3,
    };
    const body = encodeJob(hostile);
    assert.match(body, /^[\x20-\x7e]*$/);
    assert.deepEqual(decodeJob(body), hostile);
  });
});

describe('redelivery of transient failures', () => {
  test('waits grow threefold from 5 s, with jitter of up to half, and stop at 15 minutes', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map((n) => redeliveryDelaySeconds(n, 5, undefined, () => 1)), [5, 15, 45, 135, 405]);
    assert.deepEqual([1, 2, 3, 4, 5].map((n) => redeliveryDelaySeconds(n, 5, undefined, () => 0)), [3, 8, 23, 68, 203]);
    assert.equal(redeliveryDelaySeconds(20, 5, undefined, () => 1), 900);
    assert.equal(redeliveryDelaySeconds(0, 5, undefined, () => 1), 5);
    assert.equal(redeliveryDelaySeconds(1, 600, undefined, () => 1), 600);
  });

  test("a host's Retry-After is honoured when longer than the backoff, up to 15 minutes", () => {
    assert.equal(redeliveryDelaySeconds(1, 5, 120_500, () => 1), 121);
    assert.equal(redeliveryDelaySeconds(3, 5, 2_000, () => 1), 45);
    assert.equal(redeliveryDelaySeconds(1, 5, 86_400_000, () => 1), 900);
  });
});

describe('S3 store', () => {
  test('head, put, and the put of an existing key', async () => {
    const store = new S3Store(s3, bucket, 'images/');
    assert.equal(await store.head('train/1.jpg'), null);
    const bytes = Buffer.from([0xff, 0xd8, 0xff, 1, 2, 3]);
    assert.equal(await store.put('train/1.jpg', bytes, { url: 'https://h/ü.jpg', id: 'ü/1', labels: ['a b'], contentType: 'image/jpeg' }), true);
    // With what its metadata says (the bytes' SHA-256 stored with them), as fetch records need it.
    assert.deepEqual(await store.head('train/1.jpg'), { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), url: 'https://h/%C3%BC.jpg', format: 'jpeg' });
    const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'images/train/1.jpg' }));
    assert.ok(Buffer.from(await stored.Body!.transformToByteArray()).equals(bytes));
    assert.equal(stored.ContentType, 'image/jpeg');
    assert.equal(stored.Metadata?.['image-id'], '%C3%BC/1');
  });

  test('replace overwrites and names lists one folder, in S3 as in a local folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-stores-'));
    const folder = await FsStore.open(dir);
    try {
      for (const store of [new S3Store(s3, bucket, 'replaced/'), folder] as Store[]) {
        assert.deepEqual(await store.names('train'), new Set());
        await store.replace('train/1.jpg', Buffer.from('first'));
        await store.replace('train/1.jpg', Buffer.from('second'));
        await store.replace('train/5/2.jpg', Buffer.from('x'));
        assert.deepEqual(await store.head('train/1.jpg'), { bytes: 6 });
        assert.deepEqual(await store.names('train'), new Set(['1.jpg', '5']));
        assert.deepEqual(await store.names('train/5'), new Set(['2.jpg']));
      }
    } finally {
      await folder.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('sending jobs', () => {
  test('every job arrives exactly once, in batches of ten with several in flight', async () => {
    const queueUrl = await newQueue();
    const sender = new JobSender(sqs, queueUrl, (j) => jobIds(j, 4), 3);
    for (let n = 1; n <= 95; n++) await sender.send(job(n));
    await sender.flush();
    assert.equal(sender.sent, 95);
    const jobs = await drain(queueUrl);
    assert.deepEqual(jobs.map((j) => Number(j.id)).sort((a, b) => a - b), Array.from({ length: 95 }, (_, i) => i + 1));
  });
});

describe('splitting a manifest', () => {
  const deps = async (overrides: Partial<SplitDeps> = {}): Promise<SplitDeps> => ({
    s3, sqs, bucket, queueUrl: await newQueue(), layout: 'flat', skipExisting: true, hostConcurrency: 4, ...overrides,
  });

  test('one job per distinct image, the index and the status object', async () => {
    const manifest = {
      images: [
        { url: ['https://a.example/1.jpg'], image_id: 1 },
        { url: ['https://a.example/2.png', 'https://b.example/2.png'], image_id: 2 },
        { url: [], image_id: 3 },
        { url: ['https://a.example/1-again.jpg'], image_id: 1 },
        { url: ['https://a.example/4'], image_id: 4 },
      ],
      annotations: [{ image_id: 1, label_id: 5 }, { image_id: 2, label_id: 6 }, { image_id: 4, label_id: 5 }],
    };
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/furniture.json', Body: JSON.stringify(manifest) }));
    // One image is already in the bucket: it is not sent again.
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'images/furniture/4.jpg', Body: 'x' }));
    const d = await deps();
    const status = await splitManifest('manifests/furniture.json', d);
    assert.equal(status.state, 'queued');
    assert.deepEqual(
      { entries: status.entries, queued: status.queued, alreadyStored: status.alreadyStored, invalid: status.invalid, duplicates: status.duplicates },
      { entries: 5, queued: 2, alreadyStored: 1, invalid: 1, duplicates: 1 },
    );
    assert.deepEqual(JSON.parse(await text('status/furniture.json')), status);

    const jobs = (await drain(d.queueUrl)).sort((a, b) => a.position - b.position);
    assert.deepEqual(jobs, [
      { split: 'furniture', id: '1', urls: ['https://a.example/1.jpg'], labels: ['5'], key: 'furniture/1.jpg', position: 1 },
      { split: 'furniture', id: '2', urls: ['https://a.example/2.png', 'https://b.example/2.png'], labels: ['6'], key: 'furniture/2.png', position: 2 },
    ]);

    const rows = parse(await text('index/furniture.csv'), { columns: true }) as Array<Record<string, string>>;
    assert.deepEqual(rows.map((r) => [r.image_id, r.label, r.path, r.status, r.reason]), [
      ['1', '5', 'furniture/1.jpg', 'queued', ''],
      ['2', '6', 'furniture/2.png', 'queued', ''],
      ['3', '', '', 'failed', 'no-url'],
      ['4', '5', 'furniture/4.jpg', 'skipped', ''],
    ]);
  });

  test('a malformed manifest enqueues nothing and leaves its error with the position', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/broken.json', Body: '{"images": [{"url": ["https://a/1.jpg"], "image_id": 1}, {"url": ' }));
    const d = await deps();
    const status = await splitManifest('manifests/broken.json', d);
    assert.equal(status.state, 'failed');
    assert.match(status.error!, /broken\.json/);
    assert.ok(status.position, 'a position');
    assert.deepEqual(JSON.parse(await text('status/broken.json')), status);
    assert.deepEqual(await drain(d.queueUrl), []);
  });

  test('the by-label layout refuses a multi-label manifest without sending anything', async () => {
    const fashion = { images: [{ url: 'https://c.example/1', imageId: '1' }], annotations: [{ labelId: ['95', '66'], imageId: '1' }] };
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/fashion.json', Body: JSON.stringify(fashion) }));
    const d = await deps({ layout: 'by-label' });
    const status = await splitManifest('manifests/fashion.json', d);
    assert.equal(status.state, 'failed');
    assert.match(status.error!, /by-label needs one label per image/);
    assert.deepEqual(await drain(d.queueUrl), []);
  });
});

describe('a split never gets stuck', () => {
  const deps = async (overrides: Partial<SplitDeps> = {}): Promise<SplitDeps> => ({
    s3, sqs, bucket, queueUrl: await newQueue(), layout: 'flat', skipExisting: true, hostConcurrency: 4, ...overrides,
  });
  const rows = async (split: string): Promise<Array<Record<string, string>>> => parse(await text(`index/${split}.csv`), { columns: true });
  /** `count` URLs of about 2 KB each: 600 make a job message of some 1.2 MB, over SQS's 1 MiB. */
  const longUrls = (id: number, count: number): string[] => Array.from({ length: count }, (_, i) => `https://a.example/${id}/${i}/${'x'.repeat(2000)}.jpg`);

  test('an entry over the message limit is a failed row (unqueueable), the others are queued', async () => {
    const images = [1, 2, 3].map((id) => ({ url: id === 2 ? longUrls(id, 600) : [`https://a.example/${id}.jpg`], image_id: id }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/huge.json', Body: JSON.stringify({ images }) }));
    const d = await deps();
    const status = await splitManifest('manifests/huge.json', d);
    assert.deepEqual([status.state, status.queued, status.unqueueable], ['queued', 2, 1]);
    assert.deepEqual((await drain(d.queueUrl)).map((j) => j.id).sort(), ['1', '3']);
    assert.deepEqual((await rows('huge')).map((r) => [r.image_id, r.path, r.status, r.reason, r.attempts]), [
      ['1', 'huge/1.jpg', 'queued', '', ''],
      ['2', '', 'failed', 'unqueueable', '0'],
      ['3', 'huge/3.jpg', 'queued', '', ''],
    ]);
    assert.match((await rows('huge'))[1]!.detail!, /^its job message is 12\d{5} bytes, over SQS's limit of 1048576$/);
  });

  test('an entry the queue refuses (its own, smaller size limit) is a failed row too, found after it was written as queued', async () => {
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `small-${++queueCount}.fifo`, Attributes: { FifoQueue: 'true', MaximumMessageSize: '262144' } }))).QueueUrl!;
    const images = [1, 2, 3, 4].map((id) => ({ url: id === 3 ? longUrls(id, 150) : [`https://a.example/${id}.jpg`], image_id: id }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/refused.json', Body: JSON.stringify({ images }) }));
    const status = await splitManifest('manifests/refused.json', await deps({ queueUrl }));
    assert.deepEqual([status.state, status.queued, status.unqueueable], ['queued', 3, 1]);
    assert.deepEqual((await drain(queueUrl)).map((j) => j.id).sort(), ['1', '2', '4']);
    const table = await rows('refused');
    assert.deepEqual(table.map((r) => [r.image_id, r.status, r.reason]), [['1', 'queued', ''], ['2', 'queued', ''], ['3', 'failed', 'unqueueable'], ['4', 'queued', '']]);
    assert.match(table[2]!.detail!, /^SQS refused its job: InvalidParameterValue: .*shorter than 262144 bytes/);
  });

  test('any other error ends the split failed with its message (escaped), not splitting', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/lost.json', Body: JSON.stringify({ images: [{ url: ['https://a.example/1.jpg'], image_id: 1 }] }) }));
    const refusing = { send: async () => { throw Object.assign(new Error('no queue here\u001b[31m'), { name: 'QueueDoesNotExist' }); } } as unknown as SQSClient;
    await assert.rejects(splitManifest('manifests/lost.json', await deps({ sqs: refusing })), /no queue here/);
    const status = JSON.parse(await text('status/lost.json')) as SplitStatus;
    assert.equal(status.state, 'failed');
    assert.equal(status.error, 'the split stopped: QueueDoesNotExist: no queue here\\x1b[31m');
  });

  test('a split that fails after 40 jobs, run again, queues every job exactly once', async () => {
    const images = Array.from({ length: 95 }, (_, i) => ({ url: [`https://a.example/${i + 1}.jpg`], image_id: i + 1 }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/resumed.json', Body: JSON.stringify({ images }) }));
    let started = 0;
    let taken = 0;
    // Passes the first 40 jobs (4 batches, sent concurrently), then fails every send.
    const failing = {
      send: async (command: SendMessageBatchCommand) => {
        if (started >= 40) throw new Error('injected failure');
        started += command.input.Entries!.length;
        const answer = await sqs.send(command);
        taken += answer.Successful?.length ?? 0;
        return answer;
      },
    } as unknown as SQSClient;
    const d = await deps({ sqs: failing });
    await assert.rejects(splitManifest('manifests/resumed.json', d), /injected failure/);
    const failed = JSON.parse(await text('status/resumed.json')) as SplitStatus;
    assert.equal(failed.state, 'failed');
    assert.deepEqual([taken, failed.progress!.done], [40, 40]);

    const status = await splitManifest('manifests/resumed.json', { ...d, sqs });
    assert.deepEqual([status.state, status.queued, status.progress!.done], ['queued', 95, 95]);
    const ids = (await drain(d.queueUrl)).map((j) => Number(j.id)).sort((a, b) => a - b);
    assert.deepEqual(ids, Array.from({ length: 95 }, (_, i) => i + 1));

    // A finished split uploaded again is a new submission: every job is sent again.
    await splitManifest('manifests/resumed.json', { ...d, sqs });
    assert.equal((await drain(d.queueUrl)).length, 95);
  });
});

describe('object reader (the sync path)', () => {
  test('reads keys with reserved characters byte for byte; a missing key is a 404 that is not retried', async () => {
    const reader = await ObjectReader.open(s3, bucket, 4);
    try {
      const keys = ['images/train/a%2Fb c+d.jpg', "images/train/ü!'()*&=.jpg", 'images/train/plain.jpg'];
      for (const [i, key] of keys.entries()) {
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(`body ${i} of ${key}`) }));
      }
      for (const [i, key] of keys.entries()) assert.equal((await reader.get(key)).toString(), `body ${i} of ${key}`);
      const missing = await reader.get('images/train/none.jpg').catch((error: unknown) => error);
      assert.ok(missing instanceof ObjectReadError);
      assert.equal(missing.status, 404);
      assert.equal(missing.transient, false);
    } finally {
      await reader.close();
    }
  });

  test('a connection that fails is transient; the endpoint follows the SDK rules (path style here, virtual hosts on AWS)', async () => {
    const refused = new S3Client({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, forcePathStyle: true, maxAttempts: 1 });
    const aws = new S3Client({ region: 'ap-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    const readers = [await ObjectReader.open(refused, 'my-bucket', 1), await ObjectReader.open(aws, 'my-bucket', 1)];
    try {
      assert.equal(readers[0]!.urlOf('images/t/1 2.jpg'), 'http://127.0.0.1:9/my-bucket/images/t/1%202.jpg');
      assert.equal(readers[1]!.urlOf('images/t/%41.jpg'), 'https://my-bucket.s3.ap-east-1.amazonaws.com/images/t/%2541.jpg');
      const failed = await readers[0]!.get('images/t/1.jpg').catch((error: unknown) => error);
      assert.ok(failed instanceof ObjectReadError && failed.transient, String(failed));
    } finally {
      await Promise.all(readers.map((r) => r.close()));
      refused.destroy();
      aws.destroy();
    }
  });
});
