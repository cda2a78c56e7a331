// `npm run demo`: the main job offline. A sample origin on loopback (real images, and hosts that
// fail the way the web does), a manifest in the iMaterialist Furniture shape, and a real run of
// the engine into ./demo-data, then the summary and where the index is.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatSummary } from '../functions/core/summary.ts';
import { startOrigin } from '../functions/local/origin.ts';
import { runCommand } from './run.ts';

const ENTRIES = 400;
const out = process.argv[2] ?? 'demo-data';

/** Mostly good images, and the failures a student meets: 404, 403, flaky 503, HTML pages, resets. */
function samplePath(i: number): string[] {
  const name = `item${i}`;
  switch (i % 20) {
    case 3: return [`/status/404`];
    case 7: return [`/status/403`];
    case 11: return [`/flaky/${name}.jpg?fail=1&code=503`];
    case 13: return [`/html/${name}`];
    case 17: return [`/reset-before/${name}?fail=1`];
    case 19: return [`/status/410`, `/img/${name}.png`];
    default: return [`/img/${name}.${i % 5 === 0 ? 'png' : 'jpg'}?size=${20_000 + (i % 7) * 3000}`];
  }
}

const origin = await startOrigin({ latencyMs: 20 });
const work = await mkdtemp(join(tmpdir(), 'cloudfetch-demo-'));
try {
  const manifest = join(work, 'train.json');
  const images = Array.from({ length: ENTRIES }, (_, i) => ({ url: samplePath(i + 1).map((p) => origin.url + p), image_id: i + 1 }));
  const annotations = images.map((image) => ({ image_id: image.image_id, label_id: 1 + (image.image_id % 8) }));
  await writeFile(manifest, JSON.stringify({ images, annotations }));
  process.stderr.write(`Demo: ${ENTRIES} images from a local sample origin at ${origin.url}, into ${out}\n`);
  const summary = await runCommand({
    manifest,
    out,
    layout: 'flat',
    concurrency: 32,
    fetcher: { guard: { allowLoopback: true }, retryBaseMs: 100 },
    log: process.stderr,
    progress: true,
  });
  process.stderr.write(formatSummary(summary) + '\n');
  process.stderr.write(`Images are in ${out}/train/, the table of every image in ${out}/train.csv.\n`);
} finally {
  await origin.close();
  await rm(work, { recursive: true, force: true });
}
