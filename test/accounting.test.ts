// Every manifest entry accounted for when the cloud misbehaves (issues #12, #13): a fetch invocation
// killed mid-batch (its process gone, as Lambda's timeout or an out-of-memory kill leaves it), and
// two writers of one image meeting at the write-once put (moto honours If-None-Match: *; fauxqs
// does not, so that part runs on moto_server).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { SQSRecord } from 'aws-lambda';
import { parse } from 'csv-parse/sync';
import { PREFIX } from '../aws/bucket.ts';
import { bringSplitHome } from '../aws/home/sync.ts';
import { encodeJob } from '../aws/job-message.ts';
import { FetchLog, handleRecord } from '../aws/lambda/fetch-record.ts';
import { S3Store } from '../aws/lambda/s3-store.ts';
import { Fetcher } from '../engine/fetch/fetcher.ts';
import type { Job } from '../engine/job.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { awsClientConfig, startEmulator } from '../local-cloud/emulator.ts';
import { sampleImage } from '../local-cloud/origin.ts';
import { lazyFixture } from './support/fixture.ts';
import { motoSkip, startMoto } from './support/moto.ts';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
type Row = Record<string, string>;

/**
 * An origin on loopback. /held/<name>.jpg: the first request is held unanswered (until close()),
 * later ones get the image. /v/<name>.jpg: the image of `<name>-v<version>`, the version set by the test.
 */
async function startHeldOrigin(): Promise<{ url: string; held: Promise<string>; version: number; body(path: string): Buffer; close(): Promise<void> }> {
  const heldOnce = new Set<string>();
  const holding: ServerResponse[] = [];
  let arrived: (path: string) => void = () => {};
  const held = new Promise<string>((resolve) => (arrived = resolve));
  const origin = {
    url: '',
    held,
    version: 1,
    body(path: string): Buffer {
      const [, route, file] = path.split('/');
      const name = file!.replace(/\.jpg$/, '');
      return sampleImage(route === 'v' ? `${name}-v${origin.version}` : name, 'jpeg');
    },
    async close(): Promise<void> {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    if (!/^\/(held|v)\/[\w-]+\.jpg$/.test(path)) return void res.writeHead(404).end();
    if (path.startsWith('/held/') && !heldOnce.has(path)) {
      heldOnce.add(path);
      holding.push(res);
      arrived(path);
      return;
    }
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(origin.body(path));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return origin;
}

async function tableOf(dev: DevCloud, split: string, dir: string): Promise<{ rows: Row[]; dir: string }> {
  const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split, dir });
  return { rows: parse(await readFile(home.indexFile, 'utf8'), { columns: true }) as Row[], dir: join(dir, split) };
}

describe('a fetch invocation killed mid-batch (local cloud, fauxqs)', () => {
  const fixture = lazyFixture(async (onClose) => {
    const origin = await startHeldOrigin();
    onClose(() => origin.close());
    const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-accounting-'));
    onClose(() => rm(dir, { recursive: true, force: true }));
    const killed: { signal?: string | null; stdout: string } = { stdout: '' };
    let first = true;
    let dev: DevCloud | undefined;
    const started = await startDevCloud({
      allowPrivateNetwork: true,
      // One invocation at a time, one group per host of width 1: the batch's records run one after
      // another in manifest order, so which are done when the held one starts is known.
      fetchConcurrency: 1,
      settings: { hostConcurrency: 1, fetchBatchSize: 10, maxReceiveCount: 5, imageTimeoutSeconds: 30, fetchTimeoutSeconds: 60 },
      // What a killed invocation leaves comes back after this; it is not waited out by the test.
      visibilityTimeoutSeconds: 2,
      logLevel: 'SILENT',
      log: () => {},
      wrapFetch: (real) => async (event, context) => {
        if (!first) return real(event, context);
        first = false;
        // The first invocation runs the real handler in a process of its own, killed (SIGKILL) once
        // its batch has reached the held image: what it stored stays, nothing after the kill runs.
        const child = spawn(process.execPath, [fileURLToPath(new URL('./support/fetch-child.ts', import.meta.url)), '60'], {
          env: { ...process.env, ...dev!.cloud.env.fetch },
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => (killed.stdout += chunk));
        const exited = once(child, 'exit');
        child.stdin.end(JSON.stringify(event));
        const ended = await Promise.race([origin.held.then(() => false), exited.then(() => true)]);
        if (!ended) child.kill('SIGKILL');
        const [, signal] = await exited;
        killed.signal = signal as string | null;
        throw new Error('Runtime exited with error: signal: killed');
      },
    });
    dev = started;
    onClose(() => started.stop());
    return { origin, dir, dev: started, killed };
  });
  after(() => fixture.close());

  test('its batch is delivered again: every entry ends in the table with a status, the stored bytes are the origin\'s', async (t) => {
    const { origin, dir, dev, killed } = await fixture.get();
    // 1 and 3 stored and 2 failed by the invocation that is killed while 4 is held; 4 to 8 only by the next.
    const paths = ['/v/k1.jpg', '/v/missing', '/v/k3.jpg', '/held/k4.jpg', '/v/k5.jpg', '/v/k6.jpg', '/v/k7.jpg', '/v/k8.jpg'];
    const csv = 'id,url\n' + paths.map((p, i) => `${i + 1},${origin.url}${p}\n`).join('');
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/killed.csv', Body: csv }));
    await dev.cloud.notifyObjectCreated('manifests/killed.csv');
    await dev.cloud.idle();
    assert.equal(killed.signal, 'SIGKILL', `the first invocation was killed, not ended (it answered ${killed.stdout || 'nothing'})`);
    assert.ok(dev.cloud.stats().fetch.errors >= 1, 'the killed invocation counted as failed');

    const { rows, dir: images } = await tableOf(dev, 'killed', dir);
    assert.deepEqual(rows.map((r) => [r.image_id, r.status, r.reason]), [
      ['1', 'fetched', ''], ['2', 'failed', 'http-404'], ['3', 'fetched', ''], ['4', 'fetched', ''],
      ['5', 'fetched', ''], ['6', 'fetched', ''], ['7', 'fetched', ''], ['8', 'fetched', ''],
    ]);
    for (const [i, p] of paths.entries()) {
      if (i === 1) continue;
      const bytes = await readFile(join(images, `${i + 1}.jpg`));
      assert.ok(bytes.equals(origin.body(p)), `bytes of ${i + 1}`);
      assert.equal(Number(rows[i]!.bytes), bytes.length);
    }
    // What only the fetch records give (records/, written once per invocation at its end): the
    // images stored by the killed invocation have none of their own; their second delivery finds
    // them stored (HEAD) and records them from the object's metadata (its sha256).
    await t.test('the images the killed invocation stored have their sha256, format and attempts in the table', () => {
      for (const [i, r] of rows.entries()) {
        if (r.status !== 'fetched') continue;
        assert.deepEqual([r.image_id, r.sha256, r.format, r.attempts !== '', r.url], [r.image_id, sha256(origin.body(paths[i]!)), 'jpeg', true, `${origin.url}${paths[i]}`]);
      }
      // The redelivery made no request for them: what the table says of 1 and 3 is what is stored.
      assert.deepEqual([rows[0]!.attempts, rows[2]!.attempts], ['0', '0']);
    });
  });
});

describe('what a stored image says of itself (fauxqs)', () => {
  const fixture = lazyFixture(async (onClose) => {
    const emulator = await startEmulator();
    onClose(() => emulator.stop());
    const s3 = new S3Client(awsClientConfig(emulator));
    onClose(() => s3.destroy());
    await s3.send(new CreateBucketCommand({ Bucket: 'described' }));
    const store = new S3Store(s3, 'described', PREFIX.images);
    return { store };
  });
  after(() => fixture.close());

  // What a record is rebuilt from when the fetch's own is lost; an image over one part goes up in parts.
  for (const size of [1_000, 6 * 1024 * 1024 + 3]) {
    test(`an image of ${size} bytes: its HEAD gives its size, SHA-256, source URL and format`, async () => {
      const { store } = await fixture.get();
      const body = Buffer.alloc(size, 7);
      body.set([0xff, 0xd8, 0xff]);
      assert.equal(await store.put(`s/${size}.jpg`, body, { url: 'https://h/ü.jpg', id: '1', labels: [], contentType: 'image/jpeg' }), true);
      assert.deepEqual(await store.described(`s/${size}.jpg`), { bytes: size, sha256: sha256(body), url: 'https://h/%C3%BC.jpg', format: 'jpeg' });
    });
  }
});

describe('two writers of one image meet at the write-once put (moto_server)', { skip: motoSkip }, () => {
  const fixture = lazyFixture(async (onClose) => {
    const moto = await startMoto();
    onClose(async () => {
      if (moto.process.exitCode !== null) return;
      const exited = once(moto.process, 'exit');
      process.kill(-moto.process.pid!, 'SIGTERM');
      await exited;
    });
    const origin = await startHeldOrigin();
    onClose(() => origin.close());
    const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-accounting-moto-'));
    onClose(() => rm(dir, { recursive: true, force: true }));
    const dev = await startDevCloud({ endpoint: moto.endpoint, allowPrivateNetwork: true, fetchConcurrency: 1, visibilityTimeoutSeconds: 30, logLevel: 'SILENT', log: () => {} });
    onClose(() => dev.stop());
    const fetcher = new Fetcher({ guard: { allowPrivateNetwork: true }, retries: 0, timeoutMs: 10_000 });
    onClose(() => fetcher.close());
    return { origin, dir, dev, fetcher };
  });
  after(() => fixture.close());

  test('the second writer\'s put is refused: the first bytes stay, the entry is skipped, and the table describes the bytes stored', async (t) => {
    const { origin, dir, dev, fetcher } = await fixture.get();
    const bucket = dev.cloud.bucket;
    await dev.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'manifests/race.csv', Body: `id,url\n1,${origin.url}/v/r1.jpg\n` }));
    await dev.cloud.notifyObjectCreated('manifests/race.csv');
    await dev.cloud.idle();
    const first = origin.body('/v/r1.jpg');
    const stored = async (): Promise<Buffer> => Buffer.from(await (await dev.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'images/race/1.jpg' }))).Body!.transformToByteArray());
    assert.ok((await stored()).equals(first), 'the fetch function stored the image');

    // A second delivery of the same job whose HeadObject ran before the first writer's put (so it
    // fetches), and whose fetch meets the image changed since on its host.
    origin.version = 2;
    const job: Job = { split: 'race', id: '1', urls: [`${origin.url}/v/r1.jpg`], labels: [], key: 'race/1.jpg', position: 1 };
    const record = {
      messageId: 'm-again', receiptHandle: 'r', body: encodeJob(job), md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: dev.cloud.queueArn, awsRegion: 'us-east-1', messageAttributes: {},
      attributes: { ApproximateReceiveCount: '2', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' },
    } as SQSRecord;
    const store = new S3Store(dev.s3, bucket, PREFIX.images);
    const headBeforeTheFirstPut = { head: async () => null, put: store.put.bind(store), replace: store.replace.bind(store), names: store.names.bind(store) };
    const log = new FetchLog(dev.s3, bucket, 'second-writer');
    // Its HEAD answered before the first put; the one after the refused put (described) sees it.
    let described = 0;
    const outcome = await handleRecord(record, { s3: dev.s3, bucket, store: headBeforeTheFirstPut, described: (key) => (described++, store.described(key)), fetcher, signal: new AbortController().signal, log });
    await log.flush();
    assert.equal(outcome.status, 'skipped', 'moto refused the put (If-None-Match: *): not counted as fetched twice');
    assert.ok(outcome.attempts > 0, 'it fetched (its HEAD came before the first put): the put was refused');
    assert.ok((await stored()).equals(first), 'the first bytes stay');
    const listed = await dev.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'failures/race/' }));
    assert.equal(listed.KeyCount ?? 0, 0, 'no failure recorded');

    const { rows, dir: images } = await tableOf(dev, 'race', dir);
    assert.deepEqual(rows.map((r) => [r.image_id, r.status]), [['1', 'fetched']]);
    assert.ok((await readFile(join(images, '1.jpg'))).equals(first), 'home has the stored bytes');
    // The refused writer's fetch record is the split's latest for this id: it describes the object
    // stored (one HEAD after the refusal), not the bytes it was refused.
    await t.test('the table\'s sha256 is of the bytes stored, not of those refused', () => {
      assert.notEqual(sha256(origin.body('/v/r1.jpg')), sha256(first), 'the second writer fetched other bytes');
      assert.equal(described, 1);
      assert.deepEqual([rows[0]!.sha256, rows[0]!.bytes, rows[0]!.format, rows[0]!.url], [sha256(first), String(first.length), 'jpeg', `${origin.url}/v/r1.jpg`]);
    });
  });
});
