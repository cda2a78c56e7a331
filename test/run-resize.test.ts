// `cloudfetch run --resize …`: what lands on disk is what the index says (decoded again with
// sharp), keys follow the stored format, undecodable images are failed rows, bad flags exit 2.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { parse } from 'csv-parse/sync';
import sharp from 'sharp';
import { detectImageFormat } from '../engine/fetch/image.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { cli } from './support/cli.ts';

let origin: Origin;
let dir: string;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-resize-'));
});
after(async () => {
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

const FAST = ['--allow-private-network', '--retries', '0', '--timeout', '10', '--quiet'];
type Row = Record<string, string>;

/** id → path on the origin: 8×8 samples in five formats, a 1×1 GIF, a JPEG cut short, a BMP. */
const ENTRIES: Record<string, string> = {
  a: '/img/a.jpg', b: '/img/b.png', c: '/img/c.webp', d: '/img/d.avif', e: '/img/e.gif', f: '/img/f.jpg?size=300', g: '/img/g.bmp',
};

async function runWith(name: string, flags: string[]): Promise<{ out: string; rows: Map<string, Row> }> {
  const manifest = join(dir, `${name}.csv`);
  await writeFile(manifest, 'id,url\n' + Object.entries(ENTRIES).map(([id, path]) => `${id},${origin.url}${path}`).join('\n') + '\n');
  const out = join(dir, `out-${name}`);
  const result = await cli(['run', manifest, '--out', out, ...flags, ...FAST]);
  assert.equal(result.code, 0, result.stderr);
  const rows = parse(await readFile(join(out, `${name}.csv`), 'utf8'), { columns: true }) as Row[];
  return { out, rows: new Map(rows.map((r) => [r.image_id!, r])) };
}

/** Every stored file against its row: bytes, sha256, format and size in pixels, decoded again. */
async function checkStored(out: string, rows: Map<string, Row>): Promise<void> {
  for (const row of rows.values()) {
    if (row.status !== 'fetched') continue;
    const bytes = await readFile(join(out, row.path!));
    const meta = await sharp(bytes).metadata();
    assert.deepEqual(
      { bytes: String(bytes.length), sha256: createHash('sha256').update(bytes).digest('hex'), format: detectImageFormat(bytes), width: String(meta.width), height: String(meta.height) },
      { bytes: row.bytes, sha256: row.sha256, format: row.format, width: row.width, height: row.height },
      row.image_id,
    );
  }
}

test('--resize 4 --image-format webp: every key ends in .webp, every file is a WebP of at most 4 px, the originals\' sizes recorded', async () => {
  const { out, rows } = await runWith('webp', ['--resize', '4', '--image-format', 'webp', '--quality', '70']);
  assert.deepEqual((await readdir(join(out, 'webp'))).sort(), ['a.webp', 'b.webp', 'c.webp', 'd.webp', 'e.webp']);
  await checkStored(out, rows);
  for (const id of ['a', 'b', 'c', 'd']) {
    const row = rows.get(id)!;
    assert.deepEqual([row.status, row.format, row.width, row.height], ['fetched', 'webp', '4', '4'], id);
    const [, name, ext] = /\/img\/(\w)\.(\w+)/.exec(ENTRIES[id]!)!;
    const format = ({ jpg: 'jpeg', png: 'png', webp: 'webp', avif: 'avif' } as const)[ext as 'jpg']!;
    assert.equal(row.original_bytes, String(sampleImage(name!, format).length), id);
  }
  // 1×1: never upscaled.
  assert.deepEqual([rows.get('e')!.width, rows.get('e')!.height], ['1', '1']);
  for (const id of ['f', 'g']) {
    const row = rows.get(id)!;
    assert.deepEqual([row.status, row.reason, row.path, row.width, row.original_bytes], ['failed', 'undecodable', '', '', ''], id);
  }
  assert.equal(rows.get('f')!.detail, 'jpeg: the image data is cut short');
  assert.equal(rows.get('g')!.detail, 'bmp: a format libvips cannot read here');
});

test('--resize 4 keeps each format and its URL\'s extension; without image flags nothing is decoded', async () => {
  const { out, rows } = await runWith('keep', ['--resize', '4', '--resize-mode', 'crop']);
  await checkStored(out, rows);
  assert.deepEqual([...rows.values()].filter((r) => r.status === 'fetched').map((r) => `${r.path} ${r.format} ${r.width}x${r.height}`), [
    'keep/a.jpg jpeg 4x4', 'keep/b.png png 4x4', 'keep/c.webp webp 4x4', 'keep/d.avif avif 4x4', 'keep/e.gif gif 1x1',
  ]);
  // The plain run stores the origin's bytes, leaves the pixel columns empty, and cannot tell a cut JPEG.
  const plain = await runWith('plain', []);
  const a = plain.rows.get('a')!;
  assert.deepEqual([a.bytes, a.original_bytes, a.width, a.height], [String(sampleImage('a', 'jpeg').length), String(sampleImage('a', 'jpeg').length), '', '']);
  assert.equal(plain.rows.get('f')!.status, 'fetched');
});

test('bad image flags: one line naming the flag, exit 2, nothing fetched', async () => {
  const manifest = join(dir, 'flags.csv');
  await writeFile(manifest, `id,url\n1,${origin.url}/img/one.jpg\n`);
  const before = origin.totalRequests();
  for (const [args, message] of [
    [['--resize', '0'], /^error: .*--resize takes a whole number from 1 to 16384, not "0"/],
    [['--resize', 'big'], /--resize takes a whole number/],
    [['--resize-mode', 'stretch', '--resize', '10'], /--resize-mode takes one of keep, crop, pad, not "stretch"/],
    [['--image-format', 'png'], /--image-format takes one of keep, jpeg, webp, not "png"/],
    [['--quality', '101'], /--quality takes a whole number from 1 to 100/],
    [['--resize-mode', 'crop'], /^cloudfetch: --resize-mode crop needs --resize <px>/],
  ] as const) {
    const result = await cli(['run', manifest, '--out', join(dir, 'out-flags'), ...args, ...FAST]);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.ok(!/unexpected|\n\s+at /.test(result.stderr), result.stderr);
  }
  assert.equal(origin.totalRequests(), before);
});
