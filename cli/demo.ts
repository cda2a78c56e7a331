// `npm run demo`: the whole cloud, offline. The local cloud (S3 and SQS emulated in this process,
// the real Lambda handlers), a sample origin on loopback serving real images and failing the way
// the web does, a manifest in the iMaterialist Furniture shape uploaded under manifests/; then,
// once the queue has drained, the bucket is brought home to ./demo-data with its table.

import { isAbsolute } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { bringSplitHome } from '../aws/home/sync.ts';
import { readStatus } from '../aws/home/cloud-state.ts';
import { FAILURE_REASONS, isFailureReason } from '../engine/outcome.ts';
import { formatBytes, formatDuration } from '../engine/summary.ts';
import { sampleMixPaths, startOrigin } from '../local-cloud/origin.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';

const ENTRIES = 400;
const out = process.argv[2] ?? 'demo-data';
const shown = isAbsolute(out) || out.startsWith('.') ? out : `./${out}`;

const say = (line: string): boolean => process.stderr.write(line + '\n');
const started = Date.now();
const origin = await startOrigin({ latencyMs: 20 });
const dev = await startDevCloud({ allowPrivateNetwork: true, log: () => {} });
try {
  const { cloud, s3, sqs } = dev;
  say(`Local cloud: S3 and SQS emulated at ${cloud.emulator.endpoint}, bucket ${cloud.bucket}, the real handlers`);
  say(`Sample origin: ${origin.url} (real images; 404, 403, flaky 503, HTML pages, resets)`);

  const images = Array.from({ length: ENTRIES }, (_, i) => ({ url: sampleMixPaths(i + 1).map((p) => origin.url + p), image_id: i + 1 }));
  const annotations = images.map((image) => ({ image_id: image.image_id, label_id: 1 + (image.image_id % 8) }));
  await s3.send(new PutObjectCommand({ Bucket: cloud.bucket, Key: 'manifests/train.json', Body: JSON.stringify({ images, annotations }) }));
  say(`Uploaded manifests/train.json (${ENTRIES} images): the manifest function splits it, fetch functions take the jobs…`);
  await cloud.notifyObjectCreated('manifests/train.json');
  await cloud.idle();

  const status = await readStatus(s3, cloud.bucket, 'train');
  if (status?.state !== 'queued') throw new Error(`the manifest was not split: ${status?.error ?? 'no status'}`);
  const dlq = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: cloud.dlqUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
  const stats = cloud.stats();
  say(`Queue drained: ${stats.fetch.invocations} fetch invocations, ${stats.fetch.received} messages, ${dlq.Attributes?.ApproximateNumberOfMessages ?? 0} in the dead-letter queue.`);

  say(`Bringing the bucket home to ${shown}…`);
  const home = await bringSplitHome({ s3, bucket: cloud.bucket, split: 'train', dir: out, concurrency: 32 });
  const { counts } = home;
  say(`Done in ${formatDuration((Date.now() - started) / 1000)}: split train, ${counts.entries} images`);
  say(`  fetched  ${counts.fetched}  (${formatBytes(counts.bytes)}, ${home.images.downloaded} files copied home)`);
  say(`  failed   ${counts.failed}`);
  if (counts.pending > 0) say(`  pending  ${counts.pending}`);
  for (const [reason, n] of Object.entries(counts.byReason).sort((a, b) => b[1] - a[1])) {
    say(`    ${reason.padEnd(18)} ${String(n).padStart(6)}  ${isFailureReason(reason) ? FAILURE_REASONS[reason] : ''}`);
  }
  say(`Images are in ${out}/train/, the table of every image in ${out}/train.csv.`);
} finally {
  await dev.stop();
  await origin.close();
}
