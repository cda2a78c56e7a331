// What resizing in the cloud saves on the way home, and what it costs in CPU (#13, part 1).
// Makes a set of varied photos at 800–2000 px with ImageMagick (plasma, gradients under noise,
// drawn shapes with text, blurred noise; JPEG quality 75–95) in a temp folder, then runs the
// engine's resizer (engine/resize.ts, as run and the fetch function do) on each, one image at a
// time on one libvips thread: bytes per image and images/s per core, originals vs --resize 384 as
// JPEG and WebP, and what that makes of 1M images: GB, hours home at 50 Mbit/s, egress dollars.
//
//   node bench/resize.ts [--images 40] [--rounds 3] [--seed 1] [--json]

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import sharp from 'sharp';
import { detectImageFormat } from '../engine/fetch/image.ts';
import { shapeImage, type ImageOptions } from '../engine/resize.ts';

const run = promisify(execFile);
const { values: args } = parseArgs({
  options: { images: { type: 'string', default: '40' }, rounds: { type: 'string', default: '3' }, seed: { type: 'string', default: '1' }, json: { type: 'boolean', default: false } },
});
const IMAGES = Number(args.images);
const ROUNDS = Number(args.rounds);
const LINK_MBIT = 50;
const EGRESS_USD_PER_GB = 0.09;

/** A deterministic pseudo-random sequence from the seed. */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** ImageMagick arguments for photo i: four kinds of content, sizes 800–2000 px, JPEG quality 75–95. */
function recipe(i: number, next: () => number, file: string): string[] {
  const w = 800 + Math.round(next() * 1200);
  const h = 800 + Math.round(next() * 1200);
  const quality = String(75 + 5 * Math.floor(next() * 5));
  const size = `${w}x${h}`;
  const seed = String(1 + Math.floor(next() * 1e6));
  const colours = ['navy-orange', 'darkgreen-khaki', 'black-skyblue', 'maroon-gold'][i % 4]!;
  switch (i % 4) {
    case 0: return ['-seed', seed, '-size', size, 'plasma:fractal', '-blur', '0x1', '-quality', quality, file];
    case 1: return ['-seed', seed, '-size', size, `gradient:${colours}`, '-attenuate', '0.25', '+noise', 'Gaussian', '-quality', quality, file];
    case 2: return ['-seed', seed, '-size', size, 'xc:skyblue', '-fill', 'white', '-draw', `circle ${w / 2},${h / 2} ${w / 2},${h / 5}`,
      '-fill', 'darkred', '-draw', `rectangle ${w / 10},${h / 10} ${w / 3},${h / 2}`, '-fill', 'black', '-pointsize', String(Math.round(h / 12)),
      '-annotate', `+${Math.round(w / 10)}+${Math.round(h * 0.85)}`, `photo ${i}`, '-attenuate', '0.15', '+noise', 'Gaussian', '-quality', quality, file];
    default: return ['-seed', seed, '-size', size, 'xc:gray', '+noise', 'Random', '-blur', '0x4', '-modulate', '100,180', '-quality', quality, file];
  }
}

/** What a check without resizing would cost: the header read (sharp's metadata) and a whole decode. */
const CHECKS: Array<{ name: string; check: (photo: Buffer) => Promise<unknown> }> = [
  { name: 'header read only (sharp metadata; passes a cut image)', check: (photo) => sharp(photo).metadata() },
  { name: 'full decode, nothing written (finds a cut image)', check: (photo) => sharp(photo, { failOn: 'error' }).raw().toBuffer() },
];

interface Case { name: string; options: ImageOptions | null }
const CASES: Case[] = [
  { name: 'original (stored as fetched)', options: null },
  { name: '--resize 384 --image-format jpeg', options: { resize: 384, mode: 'keep', format: 'jpeg', quality: 90 } },
  { name: '--resize 384 --image-format webp', options: { resize: 384, mode: 'keep', format: 'webp', quality: 90 } },
  { name: '--resize 384 --resize-mode crop (jpeg)', options: { resize: 384, mode: 'crop', format: 'jpeg', quality: 90 } },
];

interface Result { name: string; meanBytes: number; cpuMsPerImage: number; imagesPerCoreSecond: number; gbPerMillion: number; hoursHome: number; egressUsd: number }

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-bench-resize-'));
  try {
    const next = random(Number(args.seed));
    const files = Array.from({ length: IMAGES }, (_, i) => ({ i, file: join(dir, `${i}.jpg`), argv: recipe(i, next, join(dir, `${i}.jpg`)) }));
    process.stderr.write(`making ${IMAGES} photos with ImageMagick in ${dir}…\n`);
    for (let at = 0; at < files.length; at += cpus().length) await Promise.all(files.slice(at, at + cpus().length).map((f) => run('convert', f.argv)));
    const photos = await Promise.all(files.map((f) => readFile(f.file)));
    const sizes = await Promise.all(photos.map(async (p) => (await sharp(p).metadata())));
    const pixels = sizes.map((m) => `${m.width}x${m.height}`);
    process.stderr.write(`${IMAGES} photos, ${Math.min(...sizes.map((m) => Math.max(m.width, m.height)))}–${Math.max(...sizes.map((m) => Math.max(m.width, m.height)))} px on the long side, mean ${kib(mean(photos.map((p) => p.length)))} (e.g. ${pixels.slice(0, 3).join(', ')})\n`);

    // One image at a time on one libvips thread: CPU per image is the cost on one core.
    sharp.concurrency(1);
    const results: Result[] = [];
    for (const c of CASES) {
      let bytes = 0;
      let best = Infinity;
      for (let round = 0; round < ROUNDS; round++) {
        const before = process.cpuUsage();
        bytes = 0;
        for (const photo of photos) {
          if (!c.options) {
            bytes += photo.length;
            continue;
          }
          const shaped = await shapeImage(photo, 'jpeg', '', c.options);
          if (!shaped.ok) throw new Error(`${c.name}: ${shaped.detail}`);
          // Checked: the stored bytes are what was asked for.
          if (Math.max(shaped.width, shaped.height) > 384 || detectImageFormat(shaped.body) !== c.options.format) throw new Error(`${c.name}: wrong output`);
          bytes += shaped.body.length;
        }
        const used = process.cpuUsage(before);
        best = Math.min(best, (used.user + used.system) / 1000 / photos.length);
      }
      const meanBytes = bytes / photos.length;
      const gb = (meanBytes * 1e6) / 1e9;
      results.push({
        name: c.name, meanBytes, cpuMsPerImage: c.options ? best : 0, imagesPerCoreSecond: c.options ? 1000 / best : Infinity,
        gbPerMillion: gb, hoursHome: (gb * 8e9) / (LINK_MBIT * 1e6) / 3600, egressUsd: gb * EGRESS_USD_PER_GB,
      });
    }
    const checks: Array<{ name: string; cpuMsPerImage: number }> = [];
    for (const c of CHECKS) {
      let best = Infinity;
      for (let round = 0; round < ROUNDS; round++) {
        const before = process.cpuUsage();
        for (const photo of photos) await c.check(photo);
        const used = process.cpuUsage(before);
        best = Math.min(best, (used.user + used.system) / 1000 / photos.length);
      }
      checks.push({ name: c.name, cpuMsPerImage: best });
    }
    if (args.json) {
      process.stdout.write(JSON.stringify({ images: IMAGES, rounds: ROUNDS, results, checks }, null, 2) + '\n');
      return;
    }
    process.stdout.write(`\n| ${IMAGES} photos, ${ROUNDS} rounds (best) | bytes per image | CPU ms per image | images/s per core | 1M images | hours home at ${LINK_MBIT} Mbit/s | egress at $${EGRESS_USD_PER_GB}/GB |\n|---|---|---|---|---|---|---|\n`);
    for (const r of results) {
      process.stdout.write(`| ${r.name} | ${kib(r.meanBytes)} | ${r.cpuMsPerImage ? r.cpuMsPerImage.toFixed(1) : '—'} | ${Number.isFinite(r.imagesPerCoreSecond) ? r.imagesPerCoreSecond.toFixed(0) : '—'} | ${r.gbPerMillion.toFixed(1)} GB | ${r.hoursHome.toFixed(1)} | $${r.egressUsd.toFixed(2)} |\n`);
    }
    for (const c of checks) process.stdout.write(`| ${c.name} | | ${c.cpuMsPerImage.toFixed(1)} | ${(1000 / c.cpuMsPerImage).toFixed(0)} | | | |\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

await main();
