// The fetch function never runs out of memory: the byte budget, the settings that cannot fit, and
// a batch of 20 images of 49 MB through the real handler at 512 MB, its peak memory measured in a
// process of its own (the emulator in another, the origin here).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { readSettings, SettingsError } from '../aws/settings.ts';
import { startServer, type ServerProcess } from '../bench/measure.ts';
import { ByteBudget } from '../engine/byte-budget.ts';
import { awsClientConfig, connectEndpoint } from '../local-cloud/emulator.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';

const MiB = 1024 * 1024;

test('the budget hands out room first come first served; room given back wakes who waits', async () => {
  const budget = new ByteBudget(100);
  const first = await budget.reserve(60);
  const second = budget.reserve(50);
  const third = budget.reserve(10); // would fit now, but waits its turn behind the second
  assert.equal(budget.used, 60);
  first.release();
  first.release();
  assert.equal(budget.used, 60, 'the second and the third once the first gave its 60 back, once');
  (await second).release();
  assert.equal(budget.used, 10);
  (await third).release();
  assert.equal(budget.used, 0);
});

test('a wait ends when its signal aborts, and one image larger than the budget runs alone', async () => {
  const budget = new ByteBudget(10);
  const whole = await budget.reserve(50);
  assert.equal(budget.used, 50);
  const deadline = new AbortController();
  const given = budget.reserve(5, deadline.signal);
  const next = budget.reserve(5);
  deadline.abort(new Error('out of time'));
  await assert.rejects(given, /out of time/);
  whole.release();
  assert.equal(budget.used, 5, 'only the waiter still waiting got room');
  (await next).release();
  await assert.rejects(budget.reserve(1, AbortSignal.abort()));
  assert.equal(budget.used, 0);
});

test('the settings refuse a maxBytes that the fetch function cannot hold once at its memory', () => {
  const settings = (maxBytes: number, fetchMemoryMb = 512) => readSettings((key) => ({ 'cloudfetch:maxBytes': maxBytes, 'cloudfetch:fetchMemoryMb': fetchMemoryMb })[key]);
  // 512 MB less 128 for the runtime: 384 MiB, twice the body while fetched.
  assert.equal(settings(192 * MiB).maxBytes, 192 * MiB);
  assert.throws(() => settings(192 * MiB + 1), (e: Error) => e instanceof SettingsError && e.message ===
    'context cloudfetch:maxBytes (201326593) does not fit in cloudfetch:fetchMemoryMb (512): an image needs 385 MiB while fetched, ' +
    'cloudfetch:fetchMemoryMb less the runtime\'s 128 MiB leaves 384 MiB');
  assert.equal(settings(192 * MiB + 1, 1024).fetchMemoryMb, 1024);
  assert.equal(settings(50 * MiB, 256).maxBytes, 50 * MiB, 'the defaults fit the smallest memory allowed');
});

let emulator: ServerProcess;
let origin: Origin;
let s3: S3Client;
before(async () => {
  emulator = await startServer(new URL('../bench/emulator-server.ts', import.meta.url).pathname);
  origin = await startOrigin();
  s3 = new S3Client(awsClientConfig(connectEndpoint(emulator.url)));
});
after(async () => {
  s3.destroy();
  await origin.close();
  await emulator.stop();
});

/** Runs the fetch handler once in a child process; what it answered and its peak RSS. */
async function fetchInChild(bucket: string, memoryMb: number, urls: string[]): Promise<{ maxRssBytes: number; failed: string[] }> {
  const script = new URL('./support/fetch-memory.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, [script, emulator.url, bucket, String(memoryMb), ...urls], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((done) => child.once('close', done));
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout);
}

/** The failure records the function left, for an assertion's message. */
async function failureRecords(bucket: string): Promise<string> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'failures/' }));
  const bodies = await Promise.all((listed.Contents ?? []).map(async (o) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key }))).Body!.transformToString()));
  return bodies.join('\n');
}

test('20 images of 49 MB at 512 MB: every one stored, whole, and the function\'s peak memory under 512 MB', async (t) => {
  const bucket = 'fetch-memory';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const size = 49 * 1024 * 1024;
  const urls = Array.from({ length: 20 }, (_, i) => `${origin.url}/img/big${i}.jpg?size=${size}`);
  const { maxRssBytes, failed } = await fetchInChild(bucket, 512, urls);
  t.diagnostic(`peak RSS ${Math.round(maxRssBytes / MiB)} MiB`);
  assert.deepEqual(failed, [], await failureRecords(bucket));
  for (let i = 0; i < urls.length; i++) {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: `images/train/${i}.jpg` }));
    assert.equal(head.ContentLength, size, `images/train/${i}.jpg`);
  }
  const one = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'images/train/7.jpg' }));
  assert.ok(Buffer.from(await one.Body!.transformToByteArray()).equals(sampleImage('big7', 'jpeg', size)), 'the stored bytes are the origin\'s');
  assert.equal(origin.totalRequests(), 20, 'each image fetched once');
  assert.ok(maxRssBytes < 512 * MiB, `peak RSS ${Math.round(maxRssBytes / MiB)} MiB`);
});
