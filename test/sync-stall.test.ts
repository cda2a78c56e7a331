// A link that stalls: the sync's own requests to the bucket (the status read, the listing, the
// fetch records, the index) go silent before their answer or in the middle of a body. Each must be
// cut and tried again, so that the sync ends with every file and the whole table; one that keeps
// stalling ends the sync with one line, never a hang. The client is built with the command's own
// settings (cli/target.ts), only the silence that cuts a request shortened.

import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { parse } from 'csv-parse/sync';
import { bringSplitHome } from '../aws/home/sync.ts';
import { queuedSplits } from '../aws/home/cloud-state.ts';
import { INDEX_HEADER, formatIndexRow } from '../engine/index-table.ts';
import { sampleImage } from '../local-cloud/origin.ts';
import { awsUsageError, clientSettings } from '../cli/target.ts';

const bucket = 'stall-bucket';
const COUNT = 30;
// Rows of the index beyond the stored images (pending ones): an index long enough to be cut midway.
const PENDING = 3_000;
const body = (n: number): Buffer => sampleImage(`t${n}`, 'jpeg', 4_000 + n * 31);
// Short enough for a test, long enough that a loaded machine's slow answers are not cut too.
const STALL_MS = 1_000;

type Fault = 'silent' | 'half-then-silent' | 'late';
/** What the proxy does the next times a request matches: the first fault in the list whose test passes. */
const faults: Array<{ match: (method: string, url: URL) => boolean; kind: Fault; times: number }> = [];
/** Requests the proxy stalled, by what they were. */
const stalled: string[] = [];
/** Every request's method and path, with its Range. */
const requests: string[] = [];
/** Resolved when the proxy sees the index asked for (a 'late' answer waits for it). */
let indexAsked = Promise.withResolvers<void>();

let emulator: Emulator;
let proxy: Server;
let proxyUrl: string;
let work: string;

before(async () => {
  // On 127.0.0.1 (fauxqs's startFauxqs listens on every interface).
  emulator = await startEmulator();
  const target = new URL(emulator.endpoint);
  proxy = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    const fault = faults.find((f) => f.times > 0 && f.match(req.method ?? '', url));
    if (fault) {
      fault.times--;
      stalled.push(`${fault.kind} ${req.method} ${url.searchParams.get('prefix') ?? url.pathname}`);
    }
    // Never answered: held until the client cuts it.
    if (fault?.kind === 'silent') return;
    if (object('index/train.csv')(req.method ?? '', url)) indexAsked.resolve();
    // Answered whole, but only three times the silence that cuts a request after the
    // index was asked for: meanwhile the index's answer waits unread.
    if (fault?.kind === 'late') return void indexAsked.promise.then(() => setTimeout(() => forward(req, res, target, false), 3 * STALL_MS));
    forward(req, res, target, fault?.kind === 'half-then-silent');
  });
  const forward = (req: IncomingMessage, res: ServerResponse, target: URL, half: boolean): void => {
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (!half) return void answer.pipe(res);
      // The headers and half the body, then silence on an open connection.
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const all = Buffer.concat(chunks);
        res.write(all.subarray(0, all.length >> 1));
      });
    });
    // A request the client cut (or the proxy's close at the end) ends its upstream request too.
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const direct = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  await direct.send(new CreateBucketCommand({ Bucket: bucket }));
  for (let n = 1; n <= COUNT; n++) await direct.send(new PutObjectCommand({ Bucket: bucket, Key: `images/train/${n}.jpg`, Body: body(n) }));
  const rows = Array.from({ length: COUNT + PENDING }, (_, i) => formatIndexRow({ image_id: String(i + 1), label: String(i % 7), url: `https://example.com/${i + 1}.jpg`, path: `train/${i + 1}.jpg`, status: 'queued' }));
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'index/train.csv', Body: INDEX_HEADER + rows.join('') }));
  const status = { split: 'train', manifest: 'manifests/train.jsonl', state: 'queued', startedAt: '2026-12-02T00:00:00Z', queued: COUNT + PENDING, note: 'x'.repeat(4_000) };
  await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'status/train.json', Body: JSON.stringify(status) }));
  direct.destroy();
  work = await mkdtemp(join(tmpdir(), 'cloudfetch-sync-stall-'));
});

after(async () => {
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await emulator.stop();
  await rm(work, { recursive: true, force: true });
});

const client = (maxAttempts?: number): S3Client => new S3Client({
  ...clientSettings({ endpoint: proxyUrl, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }, { sockets: 16, stallMs: STALL_MS, ...(maxAttempts ? { maxAttempts } : {}) }),
  forcePathStyle: true,
});

const listing = (prefix: string) => (method: string, url: URL): boolean => method === 'GET' && url.searchParams.get('list-type') === '2' && (url.searchParams.get('prefix') ?? '').startsWith(prefix);
const object = (key: string) => (method: string, url: URL): boolean => method === 'GET' && !url.searchParams.has('list-type') && url.pathname === `/${bucket}/${key}`;

test('status, listing, records and index stalled before their answer or midway: cut, asked again, the sync complete', async () => {
  faults.length = 0;
  stalled.length = 0;
  faults.push(
    { match: listing('status/'), kind: 'silent', times: 1 },
    { match: object('status/train.json'), kind: 'half-then-silent', times: 1 },
    { match: listing('records/train/'), kind: 'silent', times: 1 },
    { match: listing('images/train/'), kind: 'silent', times: 2 },
    { match: object('index/train.csv'), kind: 'half-then-silent', times: 1 },
  );
  const s3 = client();
  try {
    const statuses = await queuedSplits(s3, bucket);
    assert.deepEqual(statuses.map((s) => [s.split, s.queued]), [['train', COUNT + PENDING]]);
    const dir = join(work, 'home');
    const home = await bringSplitHome({ s3, bucket, split: 'train', dir, hedge: false, expectedImages: COUNT + PENDING });
    // Every fault was met: each request went silent once and was asked again.
    assert.equal(faults.reduce((sum, f) => sum + f.times, 0), 0, `faults not met: ${JSON.stringify(faults.filter((f) => f.times > 0).map((f) => f.kind))}`);
    assert.equal(stalled.length, 6);
    assert.equal(home.images.downloaded, COUNT);
    for (let n = 1; n <= COUNT; n++) assert.deepEqual(await readFile(join(dir, 'train', `${n}.jpg`)), body(n), `train/${n}.jpg`);
    // The table whole and once: every row of the index, the stored ones fetched, none twice.
    const table = parse(await readFile(home.indexFile), { columns: true }) as Array<Record<string, string>>;
    assert.equal(table.length, COUNT + PENDING);
    assert.deepEqual(table.map((r) => r.image_id), Array.from({ length: COUNT + PENDING }, (_, i) => String(i + 1)));
    assert.equal(table.filter((r) => r.status === 'fetched').length, COUNT);
    assert.equal(home.counts.pending, PENDING);
  } finally {
    s3.destroy();
  }
});

test('the index, asked for while the last downloads run, waits unread longer than the silence that cuts it: read again, the table whole', async () => {
  faults.length = 0;
  stalled.length = 0;
  // One download a second late: the index's answer (sent with the last downloads) waits unread meanwhile.
  faults.push({ match: object('images/train/7.jpg'), kind: 'late', times: 1 });
  requests.length = 0;
  indexAsked = Promise.withResolvers<void>();
  const s3 = client();
  try {
    const dir = join(work, 'late');
    const home = await bringSplitHome({ s3, bucket, split: 'train', dir, hedge: false, expectedImages: COUNT + PENDING });
    assert.deepEqual(stalled, ['late GET /stall-bucket/images/train/7.jpg']);
    assert.deepEqual(requests.filter((r) => r.includes('/index/')), ['GET /stall-bucket/index/train.csv', 'GET /stall-bucket/index/train.csv bytes=0-'], 'the index cut while unread, and asked for again from its start');
    assert.equal(home.images.downloaded, COUNT);
    const table = parse(await readFile(home.indexFile), { columns: true }) as Array<Record<string, string>>;
    assert.equal(table.length, COUNT + PENDING);
    assert.equal(table.filter((r) => r.status === 'fetched').length, COUNT);
  } finally {
    s3.destroy();
  }
});

test('a listing that stays silent ends the sync with one line, not a hang', async () => {
  faults.length = 0;
  stalled.length = 0;
  faults.push({ match: listing('images/train/'), kind: 'silent', times: 1_000 });
  const s3 = client(2);
  try {
    const error = await bringSplitHome({ s3, bucket, split: 'train', dir: join(work, 'never'), hedge: false }).then(() => null, (e: unknown) => e);
    assert.ok(error, 'the sync should fail');
    assert.ok(stalled.length >= 2, `asked ${stalled.length} times (${(error as Error).name}: ${(error as Error).message})`);
    const line = awsUsageError(error, { where: { endpoint: proxyUrl } }).message;
    assert.match(line, /timed out/);
    assert.doesNotMatch(line, /\n/);
  } finally {
    s3.destroy();
  }
});
