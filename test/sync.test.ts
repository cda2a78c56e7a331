// Bringing a bucket home over a bad link: a proxy in front of the emulator answers 503, resets
// connections and cuts bodies short the first time some objects are asked for. The sync must end
// with every file complete and nothing partial; a permanent refusal must stop it with the key named.

import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startFauxqs, type FauxqsServer } from 'fauxqs';
import { syncImages } from '../aws/home/sync.ts';
import { sampleImage } from '../local-cloud/origin.ts';

const bucket = 'sync-bucket';
const COUNT = 40;
const body = (n: number): Buffer => sampleImage(`s${n}`, 'jpeg', 5_000 + n * 97);

let emulator: FauxqsServer;
let proxy: Server;
let proxyUrl: string;
let work: string;
/** Key (path tail) → what the proxy does the first times it is asked for it. */
const faults = new Map<string, { kind: 'status-503' | 'reset' | 'truncate' | 'status-403'; times: number }>();
const gets = new Map<string, number>();

before(async () => {
  emulator = await startFauxqs({ port: 0, logger: false });
  const target = new URL(emulator.address);
  proxy = createServer((req, res) => {
    const tail = (req.url ?? '').split('/').pop() ?? '';
    if (req.method === 'GET') gets.set(tail, (gets.get(tail) ?? 0) + 1);
    const fault = req.method === 'GET' ? faults.get(tail) : undefined;
    const active = fault && fault.times > 0 ? fault.kind : null;
    if (fault && active) fault.times--;
    if (active === 'reset') return void req.socket.destroy();
    if (active === 'status-503' || active === 'status-403') {
      const status = active === 'status-503' ? 503 : 403;
      res.writeHead(status, { 'content-type': 'application/xml' });
      return void res.end(`<?xml version="1.0"?><Error><Code>${status === 503 ? 'SlowDown' : 'AccessDenied'}</Code></Error>`);
    }
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (active !== 'truncate') return void answer.pipe(res);
      // Headers with the full length, half the body, then the connection drops.
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const all = Buffer.concat(chunks);
        res.write(all.subarray(0, all.length >> 1), () => req.socket.destroy());
      });
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const direct = new S3Client({ endpoint: emulator.address, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  for (let n = 1; n <= COUNT; n++) await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/train/${n}.jpg`, Body: body(n) }));
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'images/denied/1.jpg', Body: body(1) }));
  direct.destroy();
  work = await mkdtemp(join(tmpdir(), 'cloudfetch-sync-'));
});

after(async () => {
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await emulator.stop();
  await rm(work, { recursive: true, force: true });
});

const client = (): S3Client => new S3Client({ endpoint: proxyUrl, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });

test('503s, resets and bodies cut short are retried: every file complete, nothing partial', async () => {
  faults.set('3.jpg', { kind: 'status-503', times: 2 });
  faults.set('7.jpg', { kind: 'reset', times: 1 });
  faults.set('11.jpg', { kind: 'truncate', times: 1 });
  const s3 = client();
  const dir = join(work, 'lossy');
  try {
    const result = await syncImages({ s3, bucket, split: 'train', dir, concurrency: 8 }, (key) => key);
    assert.deepEqual(result, { listed: COUNT, downloaded: COUNT, skipped: 0, repaired: 0, bytes: Array.from({ length: COUNT }, (_, i) => body(i + 1).length).reduce((a, b) => a + b, 0) });
  } finally {
    s3.destroy();
  }
  for (let n = 1; n <= COUNT; n++) assert.ok((await readFile(join(dir, 'train', `${n}.jpg`))).equals(body(n)), `${n}.jpg`);
  assert.deepEqual((await readdir(join(dir, 'train'))).length, COUNT);
  assert.deepEqual(await readdir(dir), ['train'], 'no temporary folder left behind');
  assert.equal(gets.get('3.jpg'), 3, 'two 503s, then the object');
  assert.equal(gets.get('7.jpg'), 2, 'a reset, then the object');
  assert.equal(gets.get('11.jpg'), 2, 'half a body, then the object');
  assert.equal(gets.get('1.jpg'), 1, 'a healthy object is read once');
});

test('a refusal (403) stops the sync with the key named, and is not retried', async () => {
  faults.set('1.jpg', { kind: 'status-403', times: 1 });
  gets.clear();
  const s3 = client();
  try {
    await assert.rejects(
      syncImages({ s3, bucket, split: 'denied', dir: join(work, 'denied'), concurrency: 2 }, (key) => key),
      /images\/denied\/1\.jpg: HTTP 403 AccessDenied/,
    );
  } finally {
    s3.destroy();
  }
  assert.equal(gets.get('1.jpg'), 1);
});
