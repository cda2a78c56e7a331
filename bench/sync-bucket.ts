// What the sync benchmarks share (bench/sync.ts on loopback, bench/link.ts over a simulated long
// link): the emulated bucket of N images with the status and index objects `cloudfetch sync`
// reads, the check of a copy against it, and the three tools as a user would run them.

import { readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { packSplit } from '../aws/lambda/packer.ts';
import { INDEX_HEADER, formatIndexRow } from '../engine/index-table.ts';
import { EMULATOR_CREDENTIALS } from '../local-cloud/emulator.ts';
import { sampleImage } from '../local-cloud/origin.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const BUCKET = 'cloudfetch-bench-sync';
export const SPLIT = 'train';
export const REGION = 'us-east-1';

export interface Image {
  name: string;
  size: number;
}

/** `count` images of minBytes–maxBytes, sizes spread evenly (the same on every call). */
export function benchImages(count: number, minBytes: number, maxBytes: number): Image[] {
  return Array.from({ length: count }, (_, i) => ({
    name: String(i + 1),
    size: minBytes + ((i * 7919) % (maxBytes - minBytes + 1)),
  }));
}

/** images/<split>/<n>.jpg, and the status and index objects `cloudfetch sync` reads. */
export async function fillBucket(s3: S3Client, images: readonly Image[]): Promise<void> {
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const status = { split: SPLIT, manifest: `manifests/${SPLIT}.txt`, state: 'queued', startedAt: new Date().toISOString(), entries: images.length, queued: images.length };
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `status/${SPLIT}.json`, Body: JSON.stringify(status), ContentType: 'application/json' }));
  const rows = images.map((image) => formatIndexRow({ image_id: image.name, label: '', url: `https://images.example/${image.name}.jpg`, path: `${SPLIT}/${image.name}.jpg`, status: 'queued' }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `index/${SPLIT}.csv`, Body: INDEX_HEADER + rows.join(''), ContentType: 'text/csv' }));
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < images.length) {
      const image = images[next++]!;
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `images/${SPLIT}/${image.name}.jpg`, Body: sampleImage(image.name, 'jpeg', image.size), ContentType: 'image/jpeg' }));
    }
  }));
}

/** Packs the split into shards of `shardBytes` as the pack function does, for `sync --packed`. */
export async function packBucket(s3: S3Client, shardBytes: number): Promise<void> {
  await packSplit({ split: SPLIT, shardBytes, repack: true }, { s3, bucket: BUCKET, remainingMs: () => Number.POSITIVE_INFINITY });
}

/** Every image in `dir` with the bucket's bytes, and no other file (partial or temporary). */
export async function verifyCopy(dir: string, images: readonly Image[]): Promise<string | null> {
  const names = new Set(await readdir(dir).catch(() => [] as string[]));
  let wrong = 0;
  let first = '';
  for (const image of images) {
    const file = `${image.name}.jpg`;
    names.delete(file);
    const info = await stat(join(dir, file)).catch(() => null);
    const problem = !info ? 'missing'
      : info.size !== image.size ? `${info.size} bytes, expected ${image.size}`
      : (await readFile(join(dir, file))).equals(sampleImage(image.name, 'jpeg', image.size)) ? null : 'bytes differ';
    if (problem && wrong++ === 0) first = `${file}: ${problem}`;
  }
  if (wrong > 0) return `${wrong} of ${images.length} files missing or wrong (first: ${first})`;
  if (names.size > 0) return `${names.size} unexpected entries (first: ${[...names][0]})`;
  return null;
}

export interface Tool {
  name: string;
  command: string;
  args(endpoint: string, out: string): string[];
  /** The folder that ends up holding the images. */
  imagesDir(out: string): string;
}

export const cloudfetchSync = (name: string, flags: readonly string[] = []): Tool => ({
  name,
  command: process.execPath,
  args: (endpoint, out) => [join(ROOT, 'cli', 'cloudfetch.js'), 'sync', out, '--bucket', BUCKET, '--endpoint', endpoint, '--region', REGION, '--quiet', ...flags],
  imagesDir: (out) => join(out, SPLIT),
});

export const awsS3Sync: Tool = {
  name: 'aws s3 sync',
  command: 'aws',
  args: (endpoint, out) => ['s3', 'sync', `s3://${BUCKET}/images/${SPLIT}/`, join(out, SPLIT), '--endpoint-url', endpoint, '--only-show-errors'],
  imagesDir: (out) => join(out, SPLIT),
};

export const rcloneCopy = (name: string, flags: readonly string[]): Tool => ({
  name,
  command: 'rclone',
  args: (endpoint, out) => [
    'copy', `:s3,provider=Other,endpoint='${endpoint}',access_key_id=${EMULATOR_CREDENTIALS.accessKeyId},secret_access_key=${EMULATOR_CREDENTIALS.secretAccessKey},force_path_style=true:${BUCKET}/images/${SPLIT}`,
    join(out, SPLIT), ...flags,
  ],
  imagesDir: (out) => join(out, SPLIT),
});

// Credentials for the emulator, and no user configuration that could change the figures.
export const TOOL_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
  AWS_REGION: REGION,
  AWS_DEFAULT_REGION: REGION,
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  AWS_EC2_METADATA_DISABLED: 'true',
  RCLONE_CONFIG: '/dev/null',
};
// The endpoint is plain http; a CA bundle set for the machine's proxy would only make rclone's
// AWS SDK refuse to start.
for (const name of ['AWS_PROFILE', 'AWS_ENDPOINT_URL', 'AWS_CA_BUNDLE']) delete TOOL_ENV[name];
