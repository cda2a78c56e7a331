// sync's start without --split: the first page of images and the fetch records' listing are asked
// for under every split's prefix while the splits' status is listed (a round trip sooner on a long
// link), and taken only when they are the synced split's own.

import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { awsClientConfig, startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { sampleImage } from '../local-cloud/origin.ts';
import { splitPage, syncCommand } from '../cli/sync.ts';
import type { Target } from '../cli/target.ts';

let emulator: Emulator;
let direct: S3Client;
let proxied: S3Client;
let sqs: SQSClient;
let proxy: Server;
let work: string;
// Each listing the proxy passed on: its prefix and max-keys.
let listings: string[] = [];
// What the status listing's answer was held for: the listing of images/ (asked before it), or a time-out.
let statusHeld: Array<'images' | 'timeout'> = [];
let imagesAsked: () => void = () => {};
let imagesListing = new Promise<void>((resolve) => (imagesAsked = resolve));

before(async () => {
  emulator = await startEmulator();
  direct = new S3Client(awsClientConfig(emulator));
  sqs = new SQSClient(awsClientConfig(emulator));
  work = await mkdtemp(join(tmpdir(), 'cloudfetch-sync-start-'));
  const target = new URL(emulator.endpoint);
  proxy = createServer(async (req, res) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    if (query.get('list-type') === '2') {
      const prefix = query.get('prefix') ?? '';
      listings.push(`${prefix}${query.has('max-keys') ? ` max ${query.get('max-keys')}` : ''}`);
      if (prefix === 'images/') imagesAsked();
      if (prefix === 'status/') {
        // Held until the images/ listing comes (the code before this change asked for no such
        // listing: it would have waited here for ever); 5 s is a fallback so that it fails, not hangs.
        let timer: NodeJS.Timeout | undefined;
        statusHeld.push(await Promise.race([imagesListing.then(() => 'images' as const), new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, 5_000, 'timeout')))]));
        clearTimeout(timer);
      }
    }
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  proxied = new S3Client({ ...awsClientConfig(emulator), endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
});
after(async () => {
  direct.destroy();
  proxied.destroy();
  sqs.destroy();
  proxy.closeAllConnections();
  await new Promise((done) => proxy.close(done));
  await emulator.stop();
  await rm(work, { recursive: true, force: true });
});

const put = (bucket: string, key: string, body: string | Buffer) => direct.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
const status = (split: string, state: string, images: number) => JSON.stringify({ split, manifest: `manifests/${split}.txt`, state, startedAt: '2026-12-01T00:00:00.000Z', queued: images });
const image = (split: string, n: number): Buffer => sampleImage(`${split}${n}`, 'jpeg', 300 + n);

async function fill(bucket: string, split: string, state: string, images: number): Promise<void> {
  await put(bucket, `status/${split}.json`, status(split, state, images));
  await put(bucket, `index/${split}.csv`, 'image_id,label,url,path,status\n');
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < images) {
      const n = next++;
      await put(bucket, `images/${split}/${String(n).padStart(3, '0')}.jpg`, image(split, n));
    }
  }));
}

async function syncInto(bucket: string, dir: string): Promise<string[]> {
  listings = [];
  statusHeld = [];
  imagesListing = new Promise<void>((resolve) => (imagesAsked = resolve));
  const t: Target = { bucket, s3: proxied, sqs, source: 'test', where: { endpoint: emulator.endpoint }, args: [], close() {} };
  const results = await syncCommand(t, { dir, layout: 'flat', concurrency: 8, progress: false, log: { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream });
  return results.map((r) => r.split);
}

async function assertCopied(dir: string, split: string, images: number): Promise<void> {
  for (let n = 0; n < images; n++) assert.deepEqual(await readFile(join(dir, split, `${String(n).padStart(3, '0')}.jpg`)), image(split, n), `${split} ${n}`);
}

test("one split: its first page and records' listing go out with the status listing, and are taken (not asked for again)", async () => {
  const bucket = 'start-one';
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  await fill(bucket, 'train', 'queued', 130);
  const dir = join(work, 'one');
  assert.deepEqual(await syncInto(bucket, dir), ['train']);
  assert.deepEqual(statusHeld, ['images']);
  assert.ok(listings.includes('images/ max 100') && listings.includes('records/'), listings.join(', '));
  // The guessed page of 100 keys (all train's) is the first page; the records' listing was whole.
  assert.ok(!listings.includes('images/train/ max 100') && !listings.includes('records/train/'), listings.join(', '));
  await assertCopied(dir, 'train', 130);
});

test("another split's keys first: the guessed page is not taken, the split's own first page is listed; nothing of the other split comes home", async () => {
  const bucket = 'start-two';
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  await fill(bucket, 'a', 'splitting', 105);
  await fill(bucket, 'b', 'queued', 6);
  await put(bucket, 'records/a/x.jsonl', '\n');
  const dir = join(work, 'two');
  assert.deepEqual(await syncInto(bucket, dir), ['b']);
  assert.deepEqual(statusHeld, ['images']);
  assert.ok(listings.includes('images/b/ max 100'), listings.join(', '));
  await assertCopied(dir, 'b', 6);
  await assert.rejects(readFile(join(dir, 'a', '000.jpg')), { code: 'ENOENT' });
});

test("splitPage: a whole listing less the other splits' keys; a truncated one only when all its keys are the split's", () => {
  const o = (key: string) => ({ key, size: 1, etag: '"e"', lastModified: 0 });
  const whole = { objects: [o('images/a/1.jpg'), o('images/b/1.jpg')] };
  assert.deepEqual(splitPage(whole, 'images/b/', { truncated: true }), { objects: [o('images/b/1.jpg')] });
  const cut = { objects: [o('images/b/1.jpg'), o('images/b/2.jpg')], next: 't' };
  assert.equal(splitPage(cut, 'images/b/', { truncated: true }), cut);
  assert.equal(splitPage(cut, 'images/b/', { truncated: false }), undefined);
  assert.equal(splitPage({ ...whole, next: 't' }, 'images/b/', { truncated: true }), undefined);
  assert.equal(splitPage(undefined, 'images/b/', { truncated: true }), undefined);
});
