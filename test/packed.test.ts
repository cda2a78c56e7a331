// Packed transfer, on fauxqs and on moto: the pack function's shards (in the index's order, each with
// its SHA-256, resumable between invocations), and `sync --packed` bringing them home into the very
// files and table a plain sync writes; resumed by shard and within a shard, a damaged or cut
// transfer read again, hostile entries refused, images stored after packing still copied.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pack as tarPack } from 'tar-stream';
import { bringSplitHome, placement } from '../aws/home/sync.ts';
import { PACK_STATE_DIR, PackedSyncError, syncPacked, type PackedOptions } from '../aws/home/packed-sync.ts';
import { packSplit } from '../aws/lambda/packer.ts';
import { packRequest } from '../aws/pack-event.ts';
import { packManifestKey, packShardKey, type PackManifest } from '../aws/bucket.ts';
import { packCommand } from '../cli/pack.ts';
import { syncCommand } from '../cli/sync.ts';
import type { Target } from '../cli/target.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';
import { startLambdaApi } from '../local-cloud/lambda-api.ts';
import { awsClientConfig, connectEndpoint, startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { motoSkip, startMoto } from './support/moto.ts';

const IDS = Array.from({ length: 14 }, (_, i) => String(i + 1));
/** Bodies of 700-2,700 bytes, so a 6,000-byte shard holds a few. */
const bodies = new Map(IDS.map((id, i) => [id, randomBytes(700 + ((i * 523) % 2000))]));
// The index lists them out of key order (its order is the manifest's); 14 is listed but never stored.
const ORDER = ['9', '2', '11', '1', '5', '13', '3', '7', '12', '4', '10', '6', '8', '14'];
const SPLIT = 'train';

async function seed(s3: S3Client, bucket: string, create = true): Promise<void> {
  if (create) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const put = (key: string, body: string | Buffer) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  await put(`status/${SPLIT}.json`, JSON.stringify({ split: SPLIT, manifest: 'manifests/train.csv', state: 'queued', startedAt: '2026-12-01T00:00:00.000Z', queued: 14 }));
  await put(`index/${SPLIT}.csv`, `image_id,label,url,path,status\n${ORDER.map((id) => `${id},cat,https://a.example/${id}.jpg,${SPLIT}/${id}.jpg,queued`).join('\n')}\n`);
  for (const id of IDS.slice(0, 13)) await put(`images/${SPLIT}/${id}.jpg`, bodies.get(id)!);
  // Stored but not in the index: packed after the index's images.
  await put(`images/${SPLIT}/extra.jpg`, 'extra bytes');
}

async function manifestOf(s3: S3Client, bucket: string, split = SPLIT): Promise<PackManifest> {
  const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: packManifestKey(split) }));
  return JSON.parse(await answer.Body!.transformToString()) as PackManifest;
}

async function filesOf(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of await readdir(join(dir, SPLIT))) out.set(name, await readFile(join(dir, SPLIT, name)));
  return out;
}

/** An emulator: its endpoint, a client of it (or of a proxy in front of it), and its end. */
interface Backend {
  endpoint: string;
  client: (endpoint?: string) => S3Client;
  stop: () => Promise<void>;
}

function scenario(name: string, open: () => Promise<Backend>): void {
  describe(`packed transfer on ${name}`, () => {
    let s3: S3Client;
    let backend: Backend;
    let work: string;
    const bucket = `packed-${name}`;
    before(async () => {
      backend = await open();
      s3 = backend.client();
      work = await mkdtemp(join(tmpdir(), `cloudfetch-packed-${name}-`));
      await seed(s3, bucket);
    });
    after(async () => {
      s3.destroy();
      await backend.stop();
      await rm(work, { recursive: true, force: true });
    });

    const home = (dir: string, more: Partial<PackedOptions> = {}): Promise<ReturnType<typeof syncPacked> extends Promise<infer R> ? R : never> =>
      syncPacked({ s3, bucket, split: SPLIT, dir, place: (key) => key, concurrency: 4, rangeBytes: 1000, ...more });

    test('pack: shards of about the size asked, in the index\'s order, each with its SHA-256; an invocation short of time stops between shards', async () => {
      const request = packRequest({ split: SPLIT, shardBytes: 6000 });
      // No time left after each shard: one shard an invocation, carried on from the manifest.
      let invocations = 0;
      for (let complete = false; !complete; invocations++) {
        const answer = await packSplit(request, { s3, bucket, remainingMs: () => 0 });
        complete = answer.complete;
        assert.equal(answer.written, complete && answer.written === 0 ? 0 : 1);
        assert.ok(invocations < 20);
      }
      const manifest = await manifestOf(s3, bucket);
      assert.ok(manifest.finishedAt);
      assert.equal(manifest.listed, 14, '13 of the index and extra.jpg');
      assert.ok(manifest.shards.length >= 4 && invocations >= manifest.shards.length);
      const packed: string[] = [];
      for (const shard of manifest.shards) {
        const tar = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: packShardKey(SPLIT, shard.name) }))).Body!.transformToByteArray());
        assert.equal(tar.length, shard.bytes);
        assert.equal(createHash('sha256').update(tar).digest('hex'), shard.sha256);
        const names = [...tar.toString('latin1').matchAll(/(train\/[\w.]+)\0/g)].map((m) => m[1]!);
        assert.equal(names.length, shard.images);
        assert.deepEqual([names[0], names.at(-1)], [shard.first.key, shard.last.key]);
        packed.push(...names);
      }
      assert.deepEqual(packed, [...ORDER.slice(0, 13).map((id) => `${SPLIT}/${id}.jpg`), `${SPLIT}/extra.jpg`]);
      // A second invocation finds it packed and writes nothing.
      assert.deepEqual(await packSplit(request, { s3, bucket, remainingMs: () => 900_000 }), { split: SPLIT, complete: true, shards: manifest.shards.length, written: 0, images: 14, bytes: manifest.shards.reduce((sum, s) => sum + s.bytes, 0) });
    });

    test('sync --packed writes the files and table a plain sync writes; a second run reads no shard', async () => {
      const plain = join(work, 'plain');
      const packed = join(work, 'packed');
      await bringSplitHome({ s3, bucket, split: SPLIT, dir: plain, concurrency: 4 });
      const shards = (await manifestOf(s3, bucket)).shards;
      const first = await home(packed);
      assert.deepEqual(first, { shards: shards.length, complete: true, fetched: shards.length, bytes: shards.reduce((sum, s) => sum + s.bytes, 0), alreadyHere: 0, images: 14 });
      const after = await bringSplitHome({ s3, bucket, split: SPLIT, dir: packed, concurrency: 4 });
      assert.equal(after.images.downloaded, 0, 'every image came in a shard');
      assert.equal(after.images.skipped, 14);
      assert.deepEqual(await filesOf(packed), await filesOf(plain));
      for (const id of IDS.slice(0, 13)) assert.ok((await readFile(join(packed, SPLIT, `${id}.jpg`))).equals(bodies.get(id)!));
      assert.equal(await readFile(join(packed, `${SPLIT}.csv`), 'utf8'), await readFile(join(plain, `${SPLIT}.csv`), 'utf8'));
      const again = await home(packed);
      assert.deepEqual([again.fetched, again.alreadyHere, again.images], [0, shards.length, 0]);
    });

    test('a shard cut off midway resumes after its last whole range; one whose ranges are damaged is read again whole', async () => {
      const dir = join(work, 'resume');
      const shard = (await manifestOf(s3, bucket)).shards[0]!;
      const tar = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: packShardKey(SPLIT, shard.name) }))).Body!.transformToByteArray());
      const state = join(dir, PACK_STATE_DIR, SPLIT);
      const stem = `${shard.name.slice(0, -4)}-${shard.sha256.slice(0, 16)}`;
      // A first run that wrote range 0 and part of range 1, then died.
      const { mkdir } = await import('node:fs/promises');
      await mkdir(state, { recursive: true });
      await writeFile(join(state, `${stem}.part`), tar.subarray(0, 1500));
      await writeFile(join(state, `${stem}.ranges`), '0\n');
      let received = 0;
      const total = (await manifestOf(s3, bucket)).shards.reduce((sum, s) => sum + s.bytes, 0);
      await home(dir, { onBytes: (n) => (received += n) });
      assert.equal(received, total - 1000, 'range 0 of the first shard was not read again');
      for (const id of IDS.slice(0, 13)) assert.ok((await readFile(join(dir, SPLIT, `${id}.jpg`))).equals(bodies.get(id)!));
      assert.deepEqual((await readdir(state)).filter((n) => !n.endsWith('.done')), [], 'no part or range log left');

      // Range 0 logged as done, but its bytes are not the shard's: the check fails and the shard is read again.
      await rm(join(state, `${stem}.done`));
      await writeFile(join(state, `${stem}.part`), Buffer.alloc(1000, 7));
      await writeFile(join(state, `${stem}.ranges`), '0\n');
      received = 0;
      const r = await home(dir, { onBytes: (n) => (received += n) });
      assert.equal(r.fetched, 1);
      assert.equal(received, shard.bytes - 1000 + shard.bytes);
      assert.ok((await readFile(join(dir, SPLIT, `${shard.first.key.split('/')[1]}`))).equals(bodies.get(shard.first.key.split('/')[1]!.replace('.jpg', ''))!));
    });

    test('a range whose connection is reset midway asks only for the rest', async () => {
      // A proxy in front of the emulator that cuts the first answer of each shard range after 300 bytes.
      let cut = 0;
      const cutKeys = new Set<string>();
      const target = new URL(backend.endpoint);
      const proxy = createServer((req, res) => {
        const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          const key = `${req.url} ${req.headers.range}`;
          const path = new URL(req.url ?? '/', 'http://x').pathname;
          if (path.includes('/packs/') && path.endsWith('.tar') && !cutKeys.has(key)) {
            cutKeys.add(key);
            cut++;
            let sent = 0;
            answer.on('data', (chunk: Buffer) => {
              if (sent >= 300) return;
              res.write(chunk.subarray(0, 300 - sent));
              sent += Math.min(chunk.length, 300 - sent);
              if (sent >= 300) res.socket?.destroy();
            });
          } else answer.pipe(res);
        });
        req.pipe(upstream);
      });
      proxy.listen(0, '127.0.0.1');
      await once(proxy, 'listening');
      const cutting = backend.client(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
      try {
        const dir = join(work, 'reset');
        let received = 0;
        const total = (await manifestOf(s3, bucket)).shards.reduce((sum, s) => sum + s.bytes, 0);
        // On fauxqs a cut answer may stall rather than fail: then the stall limit cuts it.
        const r = await syncPacked({ s3: cutting, bucket, split: SPLIT, dir, place: (key) => key, concurrency: 4, rangeBytes: 1000, stallMs: 1000, onBytes: (n) => (received += n) });
        assert.ok(cut >= r.shards, 'every shard had a range cut');
        assert.equal(received, total, 'no byte was read twice');
        for (const id of IDS.slice(0, 13)) assert.ok((await readFile(join(dir, SPLIT, `${id}.jpg`))).equals(bodies.get(id)!));
      } finally {
        cutting.destroy();
        proxy.closeAllConnections();
        proxy.close();
      }
    });

    test('sync --packed as the command runs it: shards, then the rest and the table; a split not packed is copied object by object, saying so', async () => {
      const run = async (dir: string, split?: string): Promise<{ log: string; results: Awaited<ReturnType<typeof syncCommand>> }> => {
        let log = '';
        const t = { bucket, s3, sqs: undefined, source: 'test', where: { endpoint: backend.endpoint }, args: ['--dev'], close() {} } as unknown as Target;
        const results = await syncCommand(t, {
          dir, ...(split ? { split } : {}), layout: 'flat', concurrency: 4, progress: false, packed: true,
          log: { isTTY: false, write: (text: string) => ((log += text), true) } as unknown as NodeJS.WriteStream,
        });
        return { log, results };
      };
      const dir = join(work, 'command');
      const shards = (await manifestOf(s3, bucket)).shards.length;
      const first = await run(dir, SPLIT);
      assert.match(first.log, new RegExp(`^${SPLIT}: ${shards} of ${shards} shards read \\(.*, 14 images\\) in .*, 0 here already; now what no shard holds\\n${SPLIT}: 0 files copied .*, 14 already here`));
      assert.deepEqual(first.results[0]!.packed, { shards, complete: true, fetched: shards, bytes: first.results[0]!.packed!.bytes, alreadyHere: 0, images: 14 });
      assert.equal((await readdir(join(dir, SPLIT))).length, 14);
      assert.match(await readFile(join(dir, `${SPLIT}.csv`), 'utf8'), /^image_id,/);
      // Another split, not packed.
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'status/plain.json', Body: JSON.stringify({ split: 'plain', manifest: 'manifests/plain.csv', state: 'queued', startedAt: '2026-12-01T00:00:00.000Z', queued: 1 }) }));
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'index/plain.csv', Body: 'image_id,label,url,path,status\n1,,https://a.example/1.jpg,plain/1.jpg,queued\n' }));
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'images/plain/1.jpg', Body: 'one' }));
      const other = await run(dir, 'plain');
      assert.match(other.log, /^plain: split plain is not packed; copied object by object \(`cloudfetch pack plain --dev` packs it\)\nplain: 1 file copied/);
      assert.equal(await readFile(join(dir, 'plain', '1.jpg'), 'utf8'), 'one');
    });

    test('an image stored after packing is copied object by object', async () => {
      const dir = join(work, 'later');
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `images/${SPLIT}/14.jpg`, Body: 'stored late' }));
      try {
        const r = await home(dir);
        assert.equal(r.images, 14);
        const rest = await bringSplitHome({ s3, bucket, split: SPLIT, dir, concurrency: 4 });
        assert.equal(rest.images.downloaded, 1);
        assert.equal(await readFile(join(dir, SPLIT, '14.jpg'), 'utf8'), 'stored late');
      } finally {
        const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `images/${SPLIT}/14.jpg` }));
      }
    });

    test('a shard with a name outside the split, or a link, stops the sync with one line; nothing is written outside', async () => {
      for (const [split, entry] of [['evil', { name: 'evil/../../escaped.jpg' }], ['linked', { name: 'linked/1.jpg', type: 'symlink' as const, linkname: '/etc/passwd' }], ['ctrl', { name: 'ctrl/a\u001b[2J.jpg' }]] as const) {
        const tar = tarPack();
        const chunks: Buffer[] = [];
        tar.on('data', (c: unknown) => void chunks.push(c as Buffer));
        const ended = once(tar, 'end');
        tar.entry({ name: `${split}/ok.jpg` }, Buffer.from('fine'));
        if ('type' in entry) tar.entry(entry);
        else tar.entry(entry, Buffer.from('evil'));
        tar.finalize();
        await ended;
        const body = Buffer.concat(chunks);
        const sha256 = createHash('sha256').update(body).digest('hex');
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: packShardKey(split, '00000.tar'), Body: body }));
        const manifest: PackManifest = { split, shardBytes: 6000, startedAt: 'x', finishedAt: 'y', listed: 2, listedBytes: 8, shards: [{ name: '00000.tar', bytes: body.length, sha256, images: 2, first: { position: 0, key: `${split}/ok.jpg` }, last: { position: 1, key: entry.name } }] };
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: packManifestKey(split), Body: JSON.stringify(manifest) }));
        const dir = join(work, `hostile-${split}`);
        await assert.rejects(syncPacked({ s3, bucket, split, dir, place: (key) => key }), (error: Error) => {
          assert.ok(error instanceof PackedSyncError);
          assert.match(error.message, new RegExp(`^refused ${split}/.* in shard 00000\\.tar of ${split}: not an image of the split; nothing of it written$`));
          assert.doesNotMatch(error.message, /\u001b/);
          return true;
        });
        assert.deepEqual((await readdir(work)).filter((n) => n.includes('escaped')), []);
        assert.deepEqual((await readdir(dir)).filter((n) => n !== PACK_STATE_DIR && n !== split), []);
        assert.deepEqual((await readdir(join(dir, split)).catch(() => [])).filter((n) => n !== 'ok.jpg' && !n.startsWith('.')), []);
      }
      await assert.rejects(syncPacked({ s3, bucket, split: 'unpacked', dir: join(work, 'none'), place: (key) => key }), /^PackedSyncError: split unpacked is not packed: pack it first \(cloudfetch pack unpacked\)$/);
    });
  });
}

scenario('fauxqs', async () => {
  const emulator: Emulator = await startEmulator();
  return { endpoint: emulator.endpoint, client: (endpoint) => new S3Client({ ...awsClientConfig(emulator), ...(endpoint ? { endpoint } : {}) }), stop: () => emulator.stop() };
});

describe('moto', { skip: motoSkip }, () => {
  scenario('moto', async () => {
    const moto = await startMoto();
    return {
      endpoint: moto.endpoint,
      client: (endpoint) => new S3Client(awsClientConfig(connectEndpoint(endpoint ?? moto.endpoint))),
      stop: async () => {
        if (moto.process.exitCode !== null) return;
        const exited = once(moto.process, 'exit');
        process.kill(-moto.process.pid!, 'SIGTERM');
        await exited;
      },
    };
  });
});

test('cloudfetch pack invokes the local cloud\'s pack function through Lambda\'s Invoke API until the split is packed', async () => {
  const dev = await startDevCloud({ logLevel: 'SILENT', log: () => {} });
  const api = await startLambdaApi(dev.cloud);
  try {
    await seed(dev.s3, dev.cloud.bucket, false);
    let log = '';
    const t = { s3: dev.s3, bucket: dev.cloud.bucket, source: 'test', where: { endpoint: dev.emulator.endpoint }, args: ['--dev'], packFunction: api.packFunction, lambdaEndpoint: api.url } as unknown as Target;
    const answer = await packCommand(t, { split: SPLIT, shardBytes: 6000, log: { write: (text: string) => (log += text) } });
    assert.equal(answer.complete, true);
    assert.equal(answer.images, 14);
    assert.match(log, new RegExp(`^${SPLIT}: packed in ${answer.shards} shards \\(14 images, .*\\); bring it home with \`cloudfetch sync <dir> --packed --dev\`\\n$`));
    const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-packed-dev-'));
    try {
      const r = await syncPacked({ s3: dev.s3, bucket: dev.cloud.bucket, split: SPLIT, dir, place: await placement({ s3: dev.s3, bucket: dev.cloud.bucket, split: SPLIT, dir }) });
      assert.equal(r.images, 14);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(packCommand(t, { split: '../x', log: { write: () => true } }), /PackRequestError: the event needs "split"/);
  } finally {
    await api.close();
    await dev.stop();
  }
});
