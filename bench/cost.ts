// Cost model: a manifest of N entries (the demo's mix of good and failing images) through the
// local cloud with the real handlers and the stack's settings, every S3 and SQS request counted by
// kind and every fetch invocation timed; then scaled to 1M images and priced at AWS list prices.
//
//   npm run bench:cost -- [--entries 2000] [--latency 50] [--image-kb 30] [--json]

import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { parseArgs } from 'node:util';
import { readStatus } from '../aws/home/cloud-state.ts';
import { PRICE } from '../aws/prices.ts';
import { sampleMixPaths, startOrigin } from '../local-cloud/origin.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';
import { table } from './measure.ts';
import { timedFetch, type Invocation } from './timed-fetch.ts';

const MILLION = 1_000_000;

const USAGE = `usage: node bench/cost.ts [--entries N] [--latency MS] [--image-kb K] [--json]
  --entries N    manifest entries through the local cloud (default 2000)
  --latency MS   the sample origin's delay before each answer (default 50)
  --image-kb K   mean image size for storage and egress at 1M images (default 30, iMaterialist's)
  --json         the figures as JSON on stdout`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      entries: { type: 'string', default: '2000' },
      latency: { type: 'string', default: '50' },
      'image-kb': { type: 'string', default: '30' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (error) {
  process.stderr.write(`bench:cost: ${(error as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
const entries = Number(values.entries);
const latencyMs = Number(values.latency);
const imageKb = Number(values['image-kb']);
if (!Number.isSafeInteger(entries) || entries < 20 || !(latencyMs >= 0) || !(imageKb > 0)) {
  process.stderr.write(`bench:cost: --entries takes a whole number ≥ 20, --latency and --image-kb positive numbers\n${USAGE}\n`);
  process.exit(2);
}
const say = (line = ''): boolean => (values.json ? process.stderr : process.stdout).write(line + '\n');

// Every request any client in this process sends, by kind. The bench's own few requests (the
// upload, the status read) are left out by switching counting on and off around them.
const counts = new Map<string, number>();
let counting = true;
for (const Client of [S3Client, SQSClient] as Array<{ prototype: { send: (...args: never[]) => Promise<unknown> } }>) {
  const original = Client.prototype.send;
  Client.prototype.send = function (this: unknown, ...args: never[]) {
    if (counting) {
      const command = args[0] as { constructor: { name: string }; input?: { Key?: string; Prefix?: string } };
      const name = command.constructor.name.replace(/Command$/, '');
      const key = command.input?.Key ?? command.input?.Prefix;
      const kind = key !== undefined ? `${name} ${key.split('/')[0]}/` : name;
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
    return original.apply(this, args);
  } as typeof original;
}

const invocations: Invocation[] = [];
const origin = await startOrigin({ latencyMs });
const dev = await startDevCloud({ allowPrivateNetwork: true, log: () => {}, wrapFetch: timedFetch(invocations) });
let failed = false;
try {
  const { cloud, s3 } = dev;
  const settings = cloud.settings;
  const images = Array.from({ length: entries }, (_, i) => ({ url: sampleMixPaths(i + 1).map((p) => origin.url + p), image_id: i + 1 }));
  const annotations = images.map((image) => ({ image_id: image.image_id, label_id: 1 + (image.image_id % 8) }));
  counting = false;
  await s3.send(new PutObjectCommand({ Bucket: cloud.bucket, Key: 'manifests/train.json', Body: JSON.stringify({ images, annotations }) }));
  counting = true;
  const started = performance.now();
  await cloud.notifyObjectCreated('manifests/train.json');
  await cloud.idle();
  const seconds = (performance.now() - started) / 1000;
  counting = false;
  const status = await readStatus(s3, cloud.bucket, 'train');
  if (status?.state !== 'queued' || status.queued !== entries) throw new Error(`the split did not queue every entry: ${JSON.stringify(status)}`);

  const fetchMs = invocations.reduce((sum, i) => sum + i.ms, 0);
  const records = invocations.reduce((sum, i) => sum + i.records, 0);
  const perImage = (n: number): number => n / entries;
  const get = (kind: string): number => counts.get(kind) ?? 0;
  // The local cloud's own requests are not the stack's: it polls manifests/ where S3 would send a
  // notification, creates its bucket and queues, and asks the queue whether it is idle.
  const localOnly = (kind: string): boolean => /^(ListObjectsV2 manifests\/|CreateBucket|CreateQueue|GetQueueAttributes)/.test(kind);
  const billed = [...counts].filter(([kind]) => !localOnly(kind));
  const s3Writes = billed.filter(([k]) => /^(PutObject|CreateMultipartUpload|UploadPart|CompleteMultipartUpload|ListObjectsV2)\b/.test(k)).reduce((s, [, n]) => s + n, 0);
  const s3Reads = billed.filter(([k]) => /^(GetObject|HeadObject)\b/.test(k)).reduce((s, [, n]) => s + n, 0);
  const sqsBilled = billed.filter(([k]) => /^(SendMessageBatch|SendMessage|ReceiveMessage|DeleteMessageBatch|DeleteMessage|ChangeMessageVisibility|ChangeMessageVisibilityBatch)$/.test(k)).reduce((s, [, n]) => s + n, 0);
  const memoryGb = settings.fetchMemoryMb / 1024;
  const gbSecondsPerImage = (fetchMs / 1000) * memoryGb / entries;
  const meanInvocationS = fetchMs / 1000 / invocations.length;
  const invocationsPerImage = invocations.length / entries;
  const gb = (imageKb * 1024 * MILLION) / 1e9;

  const lambdaAt = (meanSeconds: number): number => MILLION * invocationsPerImage * (meanSeconds * memoryGb * PRICE.lambdaGbSecondArm + PRICE.lambdaRequest);
  const bill = {
    s3Requests: MILLION * (perImage(s3Writes) * PRICE.s3Write + perImage(s3Reads) * PRICE.s3Read),
    sqsRequests: MILLION * perImage(sqsBilled) * PRICE.sqsRequest,
    lambdaMeasured: lambdaAt(meanInvocationS),
    // The sync home: one GET per image, a LIST per 1,000 keys, and the bytes out of AWS.
    syncRequests: MILLION * (PRICE.s3Read + PRICE.s3Write / 1000),
    egress: gb * PRICE.egressGb,
    storageMonth: gb * PRICE.s3StorageGbMonth,
  };

  say(`Cost model: ${entries} entries (the demo's mix: 1 in 20 each 404, 403, flaky 503, HTML, reset, 410 with a mirror)`);
  say(`through the local cloud with the stack's settings (fetch: ${settings.fetchMemoryMb} MB, batches of ${settings.fetchBatchSize}), origin latency ${latencyMs} ms; ${seconds.toFixed(1)} s.`);
  say('');
  say(table([
    ['requests the stack would make', 'total', 'per image', 'per 1M images'],
    ...billed.sort((a, b) => b[1] - a[1]).map(([kind, n]) => [kind, String(n), perImage(n).toFixed(3), Math.round(perImage(n) * MILLION).toLocaleString('en-US')]),
  ]));
  say(`not counted (the local cloud's own): ${[...counts].filter(([kind]) => localOnly(kind)).map(([kind, n]) => `${kind} ${n}`).join(', ')}`);
  say('');
  say(`fetch invocations: ${invocations.length} (${(records / invocations.length).toFixed(1)} messages each, redeliveries included), mean ${(meanInvocationS * 1000).toFixed(0)} ms;`);
  say(`${gbSecondsPerImage.toFixed(4)} GB-s per image here, ${Math.round(gbSecondsPerImage * MILLION).toLocaleString('en-US')} GB-s per 1M images.`);
  say('');
  const usd = (n: number): string => `$${n.toFixed(2)}`;
  say(table([
    ['1M images, us-east-1 list prices', 'USD'],
    ['S3 requests (split, fetch: HEAD + PUT, failure records)', usd(bill.s3Requests)],
    ['SQS requests (send, receive, delete)', usd(bill.sqsRequests)],
    [`Lambda, fetch at the mean measured here (${meanInvocationS.toFixed(2)} s per invocation)`, usd(bill.lambdaMeasured)],
    ['sync home: GET per image, LIST per 1,000', usd(bill.syncRequests)],
    [`data out to the internet, ${gb.toFixed(0)} GB (first 100 GB a month are free)`, usd(bill.egress)],
    [`storage, ${gb.toFixed(0)} GB for a month`, usd(bill.storageMonth)],
  ]));
  if (values.json) {
    process.stdout.write(JSON.stringify({ entries, latencyMs, seconds, counts: Object.fromEntries(counts), invocations: invocations.length, meanInvocationS, gbSecondsPerImage, settings: { fetchMemoryMb: settings.fetchMemoryMb, fetchBatchSize: settings.fetchBatchSize }, prices: PRICE, bill }, null, 2) + '\n');
  }
} catch (error) {
  failed = true;
  process.stderr.write(`bench:cost: ${error instanceof Error ? error.message : String(error)}\n`);
} finally {
  counting = false;
  await dev.stop();
  await origin.close();
}
process.exitCode = failed ? 1 : 0;
