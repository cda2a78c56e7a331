// Bringing a bucket home over a bad link: a proxy in front of the emulator answers 503, resets
// connections, cuts bodies short and damages bytes the first time some objects are asked for. The
// sync must end with every file complete and nothing partial (a cut body resumed with Range from
// where it broke off), a damaged body must not land with --verify, a permanent refusal must stop it
// with the key named, and every byte read passes the shared rate limit of --bwlimit.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { syncImages, type Decisions } from '../aws/home/sync.ts';
import { listPage } from '../aws/listing.ts';
import { TokenBucket, type Clock } from '../engine/token-bucket.ts';
import { sampleImage } from '../local-cloud/origin.ts';

const bucket = 'sync-bucket';
const COUNT = 40;
const body = (n: number): Buffer => sampleImage(`s${n}`, 'jpeg', 5_000 + n * 97);

let emulator: Emulator;
let proxy: Server;
let proxyUrl: string;
let work: string;
/** Key (path tail) → what the proxy does the first times it is asked for it. */
const faults = new Map<string, { kind: 'status-503' | 'reset' | 'truncate' | 'status-403' | 'corrupt' | 'stall'; times: number; /** with truncate: the object is replaced by these bytes before the connection drops */ replaceWith?: Buffer }>();
const gets = new Map<string, number>();
/** GETs and the end of a stalled one, in the order the proxy saw them. */
const seen: string[] = [];
/** Listing requests: their prefix. */
const listed: string[] = [];
/** Key → the Range header of each GET (undefined: the whole object). */
const ranges = new Map<string, Array<string | undefined>>();
const BIG = 24;
const big = (n: number): Buffer => sampleImage(`b${n}`, 'jpeg', 150_000 + n * 1_001);

before(async () => {
  // On 127.0.0.1 (fauxqs's startFauxqs listens on every interface).
  emulator = await startEmulator();
  const target = new URL(emulator.endpoint);
  proxy = createServer((req, res) => {
    const tail = (req.url ?? '').split('/').pop() ?? '';
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    if (query.get('list-type') === '2') listed.push(query.get('prefix') ?? '');
    if (req.method === 'GET') {
      seen.push(`get ${tail}`);
      gets.set(tail, (gets.get(tail) ?? 0) + 1);
      ranges.set(tail, [...(ranges.get(tail) ?? []), req.headers.range]);
    }
    const fault = req.method === 'GET' ? faults.get(tail) : undefined;
    const active = fault && fault.times > 0 ? fault.kind : null;
    if (fault && active) fault.times--;
    if (active === 'reset') return void req.socket.destroy();
    // Never answered: held until the client gives up on it.
    if (active === 'stall') return void res.once('close', () => seen.push(`closed ${tail}`));
    if (active === 'status-503' || active === 'status-403') {
      const status = active === 'status-503' ? 503 : 403;
      res.writeHead(status, { 'content-type': 'application/xml' });
      return void res.end(`<?xml version="1.0"?><Error><Code>${status === 503 ? 'SlowDown' : 'AccessDenied'}</Code></Error>`);
    }
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (active === 'corrupt') {
        // Same length, one byte changed: only a hash tells.
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          const all = Buffer.concat(chunks);
          all[all.length >> 1]! ^= 0xff;
          res.end(all);
        });
        return;
      }
      if (active !== 'truncate') return void answer.pipe(res);
      // Headers with the full length, half the body, then the connection drops.
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const all = Buffer.concat(chunks);
        res.write(all.subarray(0, all.length >> 1), () => {
          if (!fault?.replaceWith) return void req.socket.destroy();
          const key = (req.url ?? '').split('?')[0]!.split('/').slice(2).join('/');
          const direct = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
          direct.send(new PutObjectCommand({ Bucket: bucket, Key: decodeURIComponent(key), Body: fault.replaceWith })).finally(() => {
            direct.destroy();
            req.socket.destroy();
          });
        });
      });
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const direct = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  for (let n = 1; n <= COUNT; n++) await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/train/${n}.jpg`, Body: body(n) }));
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'images/denied/1.jpg', Body: body(1) }));
  for (let n = 1; n <= BIG; n++) await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/big/${n}.jpg`, Body: big(n) }));
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
    const result = await syncImages({ s3, bucket, split: 'train', dir, hedge: false, concurrency: 8 }, (key) => key);
    assert.deepEqual(result, { listed: COUNT, downloaded: COUNT, skipped: 0, repaired: 0, placeholders: 0, bytes: Array.from({ length: COUNT }, (_, i) => body(i + 1).length).reduce((a, b) => a + b, 0) });
  } finally {
    s3.destroy();
  }
  for (let n = 1; n <= COUNT; n++) assert.ok((await readFile(join(dir, 'train', `${n}.jpg`))).equals(body(n)), `${n}.jpg`);
  assert.deepEqual((await readdir(join(dir, 'train'))).length, COUNT);
  assert.deepEqual(await readdir(dir), ['train'], 'no temporary folder left behind');
  assert.equal(gets.get('3.jpg'), 3, 'two 503s, then the object');
  assert.equal(gets.get('7.jpg'), 2, 'a reset, then the object');
  assert.equal(gets.get('11.jpg'), 2, 'half a body, then the rest');
  assert.deepEqual(ranges.get('11.jpg'), [undefined, `bytes=${body(11).length >> 1}-`], 'the rest only, from where it broke off');
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

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('with verify, a body damaged on the way is read again and never lands; damaged twice stops the sync', async () => {
  faults.set('5.jpg', { kind: 'corrupt', times: 1 });
  gets.clear();
  const hashes = new Map(Array.from({ length: COUNT }, (_, i) => [`train/${i + 1}.jpg`, sha256(body(i + 1))]));
  const s3 = client();
  const dir = join(work, 'verified');
  try {
    const result = await syncImages({ s3, bucket, split: 'train', dir, hedge: false, concurrency: 4, verify: true }, (key) => key, undefined, { hashes });
    assert.equal(result.downloaded, COUNT);
    assert.ok((await readFile(join(dir, 'train', '5.jpg'))).equals(body(5)));
    assert.equal(gets.get('5.jpg'), 2, 'the damaged body, then the right one');

    faults.set('6.jpg', { kind: 'corrupt', times: 2 });
    await assert.rejects(
      syncImages({ s3, bucket, split: 'train', dir: join(work, 'verified-twice'), hedge: false, concurrency: 4, verify: true }, (key) => key, undefined, { hashes }),
      /images\/train\/6\.jpg: its bytes differ from the SHA-256 its fetch recorded \(read twice\): not written/,
    );
    assert.deepEqual(await readdir(join(work, 'verified-twice', 'train')).then((names) => names.filter((n) => n === '6.jpg')), [], 'the damaged file is not written');
  } finally {
    s3.destroy();
  }
});

test('a large body cut midway resumes from where it broke off, and the file equals the object', async () => {
  faults.set('7.jpg', { kind: 'truncate', times: 1 });
  faults.set('8.jpg', { kind: 'truncate', times: 2 });
  ranges.clear();
  const s3 = client();
  const dir = join(work, 'big');
  try {
    await syncImages({ s3, bucket, split: 'big', dir, hedge: false, concurrency: 4 }, (key) => key);
  } finally {
    s3.destroy();
  }
  for (let n = 1; n <= BIG; n++) assert.ok((await readFile(join(dir, 'big', `${n}.jpg`))).equals(big(n)), `${n}.jpg`);
  const half = big(7).length >> 1;
  assert.deepEqual(ranges.get('7.jpg'), [undefined, `bytes=${half}-`]);
  // Cut twice: the second attempt starts at the first cut and is cut at half of what it was sent.
  const eight = big(8).length;
  const second = (eight - (eight >> 1)) >> 1;
  assert.deepEqual(ranges.get('8.jpg'), [undefined, `bytes=${eight >> 1}-`, `bytes=${(eight >> 1) + second}-`]);
});

test('--bwlimit: every byte read passes the shared rate, which holds the transfer to it', async () => {
  // The test's own clock: a sleep moves it to the sleeper's deadline, so no wall time is measured.
  let time = 0;
  const clock: Clock = { now: () => time, sleep: async (ms) => { time = Math.max(time, clock.now() + ms); } };
  const rate = 512 * 1024;
  const bandwidth = new TokenBucket(rate, { clock });
  const s3 = client();
  try {
    const result = await syncImages({ s3, bucket, split: 'big', dir: join(work, 'limited'), concurrency: 8, bandwidth }, (key) => key);
    const total = Array.from({ length: BIG }, (_, i) => big(i + 1).length).reduce((a, b) => a + b, 0);
    assert.equal(result.bytes, total);
    assert.equal(bandwidth.granted, total, 'every byte of every body was taken from the bucket');
    // ~4 MB at 512 KiB/s: the rate over the clock's time is the limit, give or take the burst.
    const measured = total / (time / 1000);
    // (All but the first burst pass at the rate: total ≤ burst + rate × time.)
    assert.ok(measured <= (rate * total) / (total - bandwidth.burst) && measured >= rate * 0.98, `${Math.round(measured)} bytes/s against ${rate}`);
  } finally {
    s3.destroy();
  }
});

test('an object replaced between the cut and the resume is read whole: the new bytes land, never a mix', async () => {
  // The same size (a re-fetch that got other bytes): a resume without If-Match would splice the two.
  const replaced = sampleImage('replaced', 'jpeg', big(9).length);
  faults.set('9.jpg', { kind: 'truncate', times: 1, replaceWith: replaced });
  ranges.clear();
  const s3 = client();
  const dir = join(work, 'replaced');
  try {
    await syncImages({ s3, bucket, split: 'big', dir, hedge: false, concurrency: 4 }, (key) => key);
  } finally {
    s3.destroy();
  }
  assert.ok((await readFile(join(dir, 'big', '9.jpg'))).equals(replaced));
  // The resume asked for the rest of the old object (If-Match refused it: 412), then the whole new one.
  assert.deepEqual(ranges.get('9.jpg'), [undefined, `bytes=${big(9).length >> 1}-`, undefined]);
});

test('a placeholder is never downloaded, even when its key is listed before the records are read', async () => {
  const direct = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  const late = (n: number): Buffer => sampleImage(`late${n}`, 'jpeg', 4_000 + n);
  try {
    for (let n = 1; n <= 6; n++) await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/late/late${n}.jpg`, Body: late(n) }));
  } finally {
    direct.destroy();
  }
  const dir = join(work, 'late');
  // An earlier sync's copy of a placeholder goes.
  await mkdir(join(dir, 'late'), { recursive: true });
  await writeFile(join(dir, 'late', 'late5.jpg'), late(5));
  const imageGets = (): number => [...gets].filter(([tail]) => tail.startsWith('late')).reduce((sum, [, n]) => sum + n, 0);
  let decide!: (d: Decisions) => void;
  const decisions = new Promise<Decisions>((resolve) => (decide = resolve));
  let before = -1;
  const s3 = client();
  try {
    const result = await syncImages({
      s3, bucket, split: 'late', dir, concurrency: 8,
      // The records arrive after the whole listing, and after one more round trip through the proxy
      // (time for any download started early to reach it).
      onListed: () => void s3.send(new HeadBucketCommand({ Bucket: bucket })).then(() => {
        before = imageGets();
        decide({ placeholders: new Set(['late/late2.jpg', 'late/late5.jpg']) });
      }),
    }, (key) => key, undefined, decisions);
    assert.equal(before, 0, 'no image was asked for before the records were known');
    assert.deepEqual({ listed: result.listed, downloaded: result.downloaded, placeholders: result.placeholders }, { listed: 6, downloaded: 4, placeholders: 2 });
  } finally {
    s3.destroy();
  }
  assert.equal(gets.get('late2.jpg'), undefined);
  assert.equal(gets.get('late5.jpg'), undefined);
  assert.deepEqual((await readdir(join(dir, 'late'))).sort(), ['late1.jpg', 'late3.jpg', 'late4.jpg', 'late6.jpg']);
  for (const n of [1, 3, 4, 6]) assert.ok((await readFile(join(dir, 'late', `late${n}.jpg`))).equals(late(n)));
});

/** Stores each key under images/, its name as its bytes. */
async function putKeys(keys: readonly string[]): Promise<void> {
  const direct = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  try {
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/${key}`, Body: key }))));
  } finally {
    direct.destroy();
  }
}

test('more than one page: the first page unsharded, then the shards without its keys: each key once', async () => {
  // 250 keys over four shards: the first page (100) stops inside one of them.
  const keys = [...[['0', 90], ['A', 80], ['a', 50], ['z', 30]] as const].flatMap(([c, n]) => Array.from({ length: n }, (_, i) => `many/${c}${i}.bin`));
  await putKeys(keys);
  const s3 = client();
  const stored = new Map<string, number>();
  const dir = join(work, 'many');
  try {
    const result = await syncImages({ s3, bucket, split: 'many', dir, concurrency: 16 }, (key) => key, stored);
    assert.deepEqual({ listed: result.listed, downloaded: result.downloaded }, { listed: keys.length, downloaded: keys.length });
  } finally {
    s3.destroy();
  }
  assert.deepEqual([...stored.keys()].sort(), [...keys].sort());
  assert.equal((await readdir(join(dir, 'many'))).length, keys.length);
  assert.equal(await readFile(join(dir, 'many', 'a49.bin'), 'utf8'), 'many/a49.bin');
});

test('the tail: a download that hears nothing is asked for again on another connection, the first body wins, the other is aborted', async () => {
  faults.set('9.jpg', { kind: 'stall', times: 1 });
  seen.length = 0;
  const s3 = client();
  const dir = join(work, 'hedged');
  try {
    const result = await syncImages({ s3, bucket, split: 'train', dir, concurrency: 8 }, (key) => key);
    assert.equal(result.downloaded, COUNT);
  } finally {
    s3.destroy();
  }
  for (let n = 1; n <= COUNT; n++) assert.ok((await readFile(join(dir, 'train', `${n}.jpg`))).equals(body(n)), `${n}.jpg`);
  assert.deepEqual(await readdir(dir), ['train'], 'no temporary folder left behind');
  // Without the second request the held one would end by undici's 60 s header time-out, and only then be asked again.
  assert.deepEqual(seen.filter((e) => e.endsWith(' 9.jpg')), ['get 9.jpg', 'get 9.jpg', 'closed 9.jpg'], 'asked again while the first was held, which was then given up');
});

test('a split its status says is large is listed in the shards at once, without the first page: each key once', async () => {
  const keys = Array.from({ length: 150 }, (_, i) => `sharded/${'0Aaz'[i % 4]}${i}.bin`);
  await putKeys(keys);
  const s3 = client();
  const dir = join(work, 'sharded');
  listed.length = 0;
  try {
    const result = await syncImages({ s3, bucket, split: 'sharded', dir, concurrency: 16, expectedImages: 150 }, (key) => key);
    assert.deepEqual({ listed: result.listed, downloaded: result.downloaded }, { listed: keys.length, downloaded: keys.length });
  } finally {
    s3.destroy();
  }
  assert.ok(!listed.includes('images/sharded/'), 'no unsharded first page');
  assert.ok(listed.includes('images/sharded/0') && listed.includes('images/sharded/z'), 'the shards');
  assert.equal((await readdir(join(dir, 'sharded'))).length, keys.length);
  assert.equal(await readFile(join(dir, 'sharded', 'z3.bin'), 'utf8'), 'sharded/z3.bin');
});

test('a first page asked for while the status was read, then the shards at once: each key once, none missed', async () => {
  const keys = Array.from({ length: 150 }, (_, i) => `prefetched/${'0Aaz'[i % 4]}${i}.bin`);
  await putKeys(keys);
  const s3 = client();
  const dir = join(work, 'prefetched');
  listed.length = 0;
  try {
    const firstPage = listPage(s3, bucket, 'images/prefetched/', { maxKeys: 100 });
    const result = await syncImages({ s3, bucket, split: 'prefetched', dir, concurrency: 16, expectedImages: 150, firstPage }, (key) => key);
    assert.deepEqual({ listed: result.listed, downloaded: result.downloaded }, { listed: keys.length, downloaded: keys.length });
  } finally {
    s3.destroy();
  }
  assert.equal(listed.filter((p) => p === 'images/prefetched/').length, 1, 'the first page once, by the caller');
  assert.ok(listed.includes('images/prefetched/0') && listed.includes('images/prefetched/z'), 'the shards');
  assert.equal((await readdir(join(dir, 'prefetched'))).length, keys.length);
  assert.equal(await readFile(join(dir, 'prefetched', 'a2.bin'), 'utf8'), 'prefetched/a2.bin');
});
