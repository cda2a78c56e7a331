// With resizing on, what comes home still equals what `run` writes: the same manifest through
// `cloudfetch run --resize …` and through the local cloud (the stack's resize settings) + sync, the
// tables compared column by column, the stored files byte for byte, and the originals kept in the
// bucket under originals/ when keepOriginals is on.

import assert from 'node:assert/strict';
import { readFile, rm, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { parse } from 'csv-parse/sync';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { PREFIX } from '../aws/bucket.ts';
import { bringSplitHome } from '../aws/home/sync.ts';
import { INDEX_COLUMNS } from '../engine/index-table.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { sampleImage, startOrigin, type Origin, type SampleFormat } from '../local-cloud/origin.ts';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { cli } from './support/cli.ts';

let origin: Origin;
let dir: string;
let dev: DevCloud;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-home-resize-'));
  dev = await startDevCloud({
    allowPrivateNetwork: true,
    visibilityTimeoutSeconds: 5,
    fetchConcurrency: 2,
    settings: { maxReceiveCount: 2, imageTimeoutSeconds: 5, fetchTimeoutSeconds: 30, resize: 6, resizeMode: 'pad', imageFormat: 'jpeg', quality: 75, keepOriginals: true },
    logLevel: 'SILENT',
    log: () => {},
  });
});
after(async () => {
  await dev.stop();
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

type Row = Record<string, string>;
const readTable = async (file: string): Promise<Row[]> => parse(await readFile(file, 'utf8'), { columns: true }) as Row[];

/** 8×8 samples in five formats, a 1×1 GIF, a JPEG cut short, a BMP (libvips cannot read it), a 404. */
const ENTRIES: Array<{ id: string; path: string; format?: SampleFormat }> = [
  { id: '1', path: '/img/one.jpg', format: 'jpeg' },
  { id: '2', path: '/img/two.png', format: 'png' },
  { id: '3', path: '/img/three.webp', format: 'webp' },
  { id: '4', path: '/img/four.avif', format: 'avif' },
  { id: '5', path: '/img/five.gif', format: 'gif' },
  { id: '6', path: '/img/six.jpg?size=300' },
  { id: '7', path: '/img/seven.bmp' },
  { id: '8', path: '/status/404' },
];

test('--resize 6 --resize-mode pad --image-format jpeg: run and cloud + sync write the same table and the same files; originals kept in the bucket', async () => {
  const body = JSON.stringify({
    images: ENTRIES.map((e) => ({ url: [origin.url + e.path], image_id: Number(e.id) })),
    annotations: ENTRIES.map((e) => ({ image_id: Number(e.id), label_id: 1 })),
  });
  const file = join(dir, 'shrunk.json');
  await writeFile(file, body);
  const out = join(dir, 'run');
  const ran = await cli(['run', file, '--out', out, '--resize', '6', '--resize-mode', 'pad', '--image-format', 'jpeg', '--quality', '75', '--allow-private-network', '--timeout', '10', '--retries', '0', '--quiet']);
  assert.equal(ran.code, 0, ran.stderr);
  const local = await readTable(join(out, 'shrunk.csv'));

  await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/shrunk.json', Body: body }));
  await dev.cloud.notifyObjectCreated('manifests/shrunk.json');
  await dev.cloud.idle();
  const home = join(dir, 'home');
  await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'shrunk', dir: home });
  const synced = await readTable(join(home, 'shrunk.csv'));

  // Every column of every row, not a summary: attempts, sha256 and the pixel columns included.
  assert.deepEqual(synced, local);
  assert.deepEqual(local.map((r) => `${r.image_id} ${r.status} ${r.path} ${r.format} ${r.width}x${r.height} ${r.reason}`), [
    '1 fetched shrunk/1.jpg jpeg 6x6 ', '2 fetched shrunk/2.jpg jpeg 6x6 ', '3 fetched shrunk/3.jpg jpeg 6x6 ', '4 fetched shrunk/4.jpg jpeg 6x6 ',
    '5 fetched shrunk/5.jpg jpeg 1x1 ', '6 failed   x undecodable', '7 failed   x undecodable', '8 failed   x http-404',
  ]);
  for (const row of local.filter((r) => r.status === 'fetched')) {
    const [ran, came] = await Promise.all([readFile(join(out, row.path!)), readFile(join(home, row.path!))]);
    assert.deepEqual(came, ran, `${row.path}: the same bytes on both paths`);
    const meta = await sharp(ran).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, String(ran.length)], ['jpeg', Number(row.width), Number(row.height), row.bytes]);
    // The original beside it, under its own extension, byte for byte what the origin served.
    const entry = ENTRIES.find((e) => e.id === row.image_id)!;
    const ext = entry.format === 'jpeg' ? 'jpg' : entry.format!;
    const original = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `${PREFIX.originals}shrunk/${row.image_id}.${ext}` }));
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    assert.deepEqual(bytes, sampleImage(entry.path.slice(5, entry.path.lastIndexOf('.')), entry.format), row.path);
    assert.equal(row.original_bytes, String(bytes.length));
  }
  assert.deepEqual(Object.keys(local[0]!), [...INDEX_COLUMNS]);
});
