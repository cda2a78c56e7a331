// Resizing and re-encoding (engine/resize.ts): the stored bytes decoded again with sharp, so the
// sizes, formats and qualities checked are those a training script would read.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import sharp from 'sharp';
import { detectImageFormat } from '../engine/fetch/image.ts';
import { DEFAULT_IMAGE_OPTIONS, shapeImage, type ImageOptions, type Shaped } from '../engine/resize.ts';

/** A photo-like image (noise over a gradient, so encoders cannot cheat) of the given size. */
async function photo(width: number, height: number, o: { format?: 'jpeg' | 'png' | 'webp'; alpha?: boolean; orientation?: number } = {}): Promise<Buffer> {
  const channels = o.alpha ? 4 : 3;
  const pixels = Buffer.alloc(width * height * channels);
  let seed = width * 31 + height;
  for (let i = 0; i < pixels.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    pixels[i] = ((i / channels) % width) * 200 / width + (seed % 56);
  }
  let image = sharp(pixels, { raw: { width, height, channels } });
  if (o.orientation) image = image.withMetadata({ orientation: o.orientation });
  const format = o.format ?? 'jpeg';
  return (format === 'png' ? image.png() : format === 'webp' ? image.webp({ quality: 90 }) : image.jpeg({ quality: 92 })).toBuffer();
}

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

async function shape(bytes: Buffer, o: Partial<ImageOptions>): Promise<Extract<Shaped, { ok: true }>> {
  const format = detectImageFormat(bytes)!;
  const shaped = await shapeImage(bytes, format, sha(bytes), { ...DEFAULT_IMAGE_OPTIONS, ...o });
  assert.ok(shaped.ok, shaped.ok ? '' : shaped.detail);
  // What is said of the stored bytes is what they are.
  const stored = await sharp(shaped.body).metadata();
  assert.deepEqual({ width: stored.width, height: stored.height, format: detectImageFormat(shaped.body) }, { width: shaped.width, height: shaped.height, format: shaped.format });
  assert.equal(shaped.sha256, sha(shaped.body));
  return shaped;
}

test('keep mode: the largest side becomes --resize, the aspect stays, and nothing is upscaled', async () => {
  const wide = await shape(await photo(1200, 800), { resize: 384 });
  assert.deepEqual([wide.width, wide.height, wide.format, wide.changed], [384, 256, 'jpeg', true]);
  const tall = await shape(await photo(500, 1000, { format: 'png' }), { resize: 100 });
  assert.deepEqual([tall.width, tall.height, tall.format], [50, 100, 'png']);
  // Already small, format kept: the fetched bytes are stored untouched.
  const small = await photo(300, 200);
  const kept = await shape(small, { resize: 384 });
  assert.equal(kept.changed, false);
  assert.equal(kept.body, small);
  assert.deepEqual([kept.width, kept.height], [300, 200]);
});

test('crop and pad give squares: the short side (crop) or the long side (pad), at most --resize', async () => {
  const big = await photo(1200, 800);
  const crop = await shape(big, { resize: 384, mode: 'crop' });
  assert.deepEqual([crop.width, crop.height], [384, 384]);
  const pad = await shape(big, { resize: 384, mode: 'pad' });
  assert.deepEqual([pad.width, pad.height], [384, 384]);
  // Padding is white where JPEG has no transparency: the top rows of a 3:2 image padded to a square.
  const { data } = await sharp(pad.body).extract({ left: 0, top: 0, width: 384, height: 4 }).raw().toBuffer({ resolveWithObject: true });
  assert.ok(data.every((v) => v > 245), 'white bands above and below');
  const small = await photo(300, 200);
  const smallCrop = await shape(small, { resize: 384, mode: 'crop' });
  assert.deepEqual([smallCrop.width, smallCrop.height, smallCrop.changed], [200, 200, true]);
  const smallPad = await shape(small, { resize: 384, mode: 'pad' });
  assert.deepEqual([smallPad.width, smallPad.height], [300, 300]);
});

test('--image-format re-encodes every image at --quality; keep re-encodes in the original format', async () => {
  const png = await photo(600, 400, { format: 'png' });
  const webp = await shape(png, { format: 'webp', quality: 80 });
  assert.deepEqual([webp.format, webp.width, webp.height], ['webp', 600, 400]);
  const jpeg = await photo(800, 600);
  // A JPEG is re-encoded even without resizing when a format is asked for: one quality for the set.
  const low = await shape(jpeg, { format: 'jpeg', quality: 20 });
  const high = await shape(jpeg, { format: 'jpeg', quality: 95 });
  assert.equal(low.changed, true);
  assert.ok(low.body.length < high.body.length / 2, `quality 20 (${low.body.length} B) well under quality 95 (${high.body.length} B)`);
  const keptWebp = await shape(await photo(800, 600, { format: 'webp' }), { resize: 200 });
  assert.deepEqual([keptWebp.format, keptWebp.width, keptWebp.height], ['webp', 200, 150]);
});

test('transparency: flattened on white for JPEG, kept for WebP', async () => {
  const png = await photo(200, 100, { format: 'png', alpha: true });
  const jpeg = await shape(png, { format: 'jpeg' });
  assert.equal((await sharp(jpeg.body).metadata()).channels, 3);
  const webp = await shape(png, { format: 'webp', resize: 100, mode: 'pad' });
  assert.equal((await sharp(webp.body).metadata()).hasAlpha, true);
  assert.deepEqual([webp.width, webp.height], [100, 100]);
});

test('EXIF orientation is applied: a 90° photo is stored upright, re-encoded even when not resized', async () => {
  const rotated = await photo(800, 400, { orientation: 6 });
  assert.equal((await sharp(rotated).metadata()).orientation, 6);
  const upright = await shape(rotated, { resize: 1000 });
  assert.deepEqual([upright.width, upright.height, upright.changed], [400, 800, true]);
  assert.equal((await sharp(upright.body).metadata()).orientation, undefined);
});

test('undecodable: a cut-short PNG is named so from its bytes (no IEND), whatever words libvips gives', async () => {
  // libvips says only "libpng read error" here; its words for one damage also vary, and decodes at
  // once share its error buffer (a run saw a cut JPEG's message come back empty).
  const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
  const cut = png.subarray(0, Math.floor(png.length * 0.6));
  const shaped = await shapeImage(cut, 'png', sha(cut), { ...DEFAULT_IMAGE_OPTIONS, resize: 100 });
  assert.deepEqual(shaped, { ok: false, reason: 'undecodable', detail: 'png: the image data is cut short' });
});

test('undecodable: a JPEG cut in its image data (a valid header) fails, as does a format libvips cannot read', async () => {
  const whole = await photo(800, 600);
  const cut = whole.subarray(0, Math.floor(whole.length / 2));
  // The header alone is fine: only a decode finds the damage.
  assert.equal((await sharp(cut).metadata()).width, 800);
  const shaped = await shapeImage(cut, 'jpeg', sha(cut), { ...DEFAULT_IMAGE_OPTIONS, resize: 384 });
  assert.equal(shaped.ok, false);
  assert.ok(!shaped.ok && shaped.reason === 'undecodable' && shaped.detail === 'jpeg: the image data is cut short', JSON.stringify(shaped));
  // A 2×2 BMP: an image by its bytes, but libvips here has no BMP loader.
  const bmp = Buffer.alloc(70);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(70, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(2, 18);
  bmp.writeInt32LE(2, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  const failed = await shapeImage(bmp, 'bmp', sha(bmp), { ...DEFAULT_IMAGE_OPTIONS, format: 'jpeg' });
  assert.ok(!failed.ok && failed.reason === 'undecodable' && failed.detail === 'bmp: a format libvips cannot read here', JSON.stringify(failed));
});
