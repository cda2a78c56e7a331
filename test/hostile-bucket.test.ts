// A bucket whose contents were written by someone else: sync takes split names from keys, never
// from the bodies of status records, and writes no file outside the folder it was given.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { OutsideFolderError } from '../engine/fs-store.ts';
import { awsClientConfig, startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { sampleImage } from '../local-cloud/origin.ts';
import { formatStatus } from '../cli/status.ts';
import { syncCommand } from '../cli/sync.ts';
import type { Target } from '../cli/target.ts';

let emulator: Emulator;
let s3: S3Client;
let sqs: SQSClient;
let work: string;

before(async () => {
  emulator = await startEmulator();
  s3 = new S3Client(awsClientConfig(emulator));
  sqs = new SQSClient(awsClientConfig(emulator));
  work = await mkdtemp(join(tmpdir(), 'cloudfetch-hostile-'));
});
after(async () => {
  s3.destroy();
  sqs.destroy();
  await emulator.stop();
  await rm(work, { recursive: true, force: true });
});

const put = (bucket: string, key: string, body: string | Buffer) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
const status = (split: string) => JSON.stringify({ split, manifest: 'manifests/x.json', state: 'queued', startedAt: '2026-12-01T00:00:00.000Z', queued: 1 });

async function syncInto(bucket: string, dir: string): Promise<{ splits: string[]; log: string }> {
  let log = '';
  const t: Target = { bucket, s3, sqs, source: 'test', where: { endpoint: emulator.endpoint }, args: [], close() {} };
  const results = await syncCommand(t, {
    dir, layout: 'flat', concurrency: 4, progress: false,
    log: { isTTY: false, write: (text: string) => ((log += text), true) } as unknown as NodeJS.WriteStream,
  });
  return { splits: results.map((r) => r.split), log };
}

test('a status record naming another split ("../escaped") is read under its key\'s split; keys that are no split are ignored', async () => {
  const bucket = 'hostile-status';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await put(bucket, 'status/train.json', status('../escaped'));
  await put(bucket, 'status/a/b.json', status('../escaped'));
  await put(bucket, 'status/..%2Fx.json', status('../x'));
  await put(bucket, 'index/train.csv', 'image_id,label,url,path,status\n1,,https://a.example/1.jpg,train/1.jpg,queued\n');
  await put(bucket, 'images/train/1.jpg', sampleImage('h1'));
  // Not under one of the listing's shards: never listed, never written.
  await put(bucket, 'images/train/../../x.jpg', 'outside');
  const dir = join(work, 'status-home');

  const { splits, log } = await syncInto(bucket, dir);
  assert.deepEqual(splits, ['train']);
  assert.match(log, /^train: 1 file copied/);
  assert.deepEqual(await readdir(work), ['status-home']);
  assert.deepEqual((await readdir(dir)).sort(), ['train', 'train.csv']);
  assert.deepEqual(await readdir(join(dir, 'train')), ['1.jpg']);
  assert.ok((await readFile(join(dir, 'train', '1.jpg'))).equals(sampleImage('h1')));
});

test('an image key that resolves outside the folder stops the sync with one line naming its folder, escaped; nothing is written outside', async () => {
  const bucket = 'hostile-key';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await put(bucket, 'status/evil.json', status('evil'));
  await put(bucket, 'index/evil.csv', 'image_id,label,url,path,status\n1,,https://a.example/1.jpg,evil/1.jpg,queued\n');
  const key = 'images/evil/a\u001b[2J/../../../x.jpg';
  await put(bucket, key, 'outside');
  // The emulator keeps the key as given: the test reaches the store's check, not a normalised key.
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'images/evil/a' }));
  assert.deepEqual(listed.Contents?.map((o) => o.Key), [key]);
  const dir = join(work, 'key-home');

  await assert.rejects(syncInto(bucket, dir), (error: Error) => {
    assert.ok(error instanceof OutsideFolderError);
    assert.equal(error.message, `refused evil/a\\x1b[2J/../../..: it lies outside ${dir}`);
    return true;
  });
  assert.deepEqual((await readdir(work)).sort(), ['key-home', 'status-home']);
  assert.deepEqual(await readdir(dir), []);
});

test('status shows what status records say with their control characters escaped', async () => {
  const splits = [
    { split: 'a', manifest: 'manifests/a.csv', state: 'failed' as const, startedAt: '2026-12-01T00:00:00.000Z', error: 'line 2: \u001b]0;owned\u0007\u001b[2J\r\nrm -rf' },
    { split: 'b', manifest: 'manifests/\u001b[31mb.csv', state: 'splitting' as const, startedAt: 'now\u009b' },
  ];
  assert.equal(
    formatStatus({ splits, queue: null, done: false }, { args: [] }),
    'a: REFUSED — line 2: \\x1b]0;owned\\x07\\x1b[2J\\x0d\\x0arm -rf\nb: splitting manifests/\\x1b[31mb.csv (since now\\x9b)\nStill working.',
  );
});
