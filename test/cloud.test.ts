// The whole cloud end to end through the local cloud: the real handlers on the S3/SQS emulator,
// fed by an upload under manifests/, fetching from the fault-injecting origin.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DeleteQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { parse } from 'csv-parse/sync';
import type { SQSEvent } from 'aws-lambda';
import { bringSplitHome } from '../aws/home/sync.ts';
import { readStatus } from '../aws/home/cloud-state.ts';
import { encodeJob } from '../aws/job-message.ts';
import { jobIds } from '../aws/fifo.ts';
import { lambdaContext } from '../local-cloud/cloud.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { formatRetry, retryCommand } from '../cli/retry.ts';
import { formatStatus, statusReport, watchStatus } from '../cli/status.ts';
import { submitCommand } from '../cli/submit.ts';
import type { Target } from '../cli/target.ts';
import { FakeTerminal } from './support/terminal.ts';

let origin: Origin;
let dir: string;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-cloud-'));
});
after(async () => {
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * A dev cloud with quick redelivery: a failed job is visible again after 5 s (longer than the
 * fetcher's retries of one transient failure, at most 3.5 s), parked after 2 receives; no
 * batching window, so a batch is never held past its visibility timeout.
 */
async function quickCloud({ settings, ...extra }: Parameters<typeof startDevCloud>[0] = {}): Promise<DevCloud> {
  return startDevCloud({
    allowPrivateNetwork: true,
    visibilityTimeoutSeconds: 5,
    settings: { maxReceiveCount: 2, imageTimeoutSeconds: 5, fetchTimeoutSeconds: 30, fetchBatchSize: 10, ...settings },
    logLevel: 'SILENT',
    log: () => {},
    ...extra,
  });
}

async function upload(dev: DevCloud, key: string, body: string): Promise<void> {
  await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: key, Body: body }));
  await dev.cloud.notifyObjectCreated(key);
}

/** The commands' view of a dev cloud, as `--dev` finds it. */
function targetOf(dev: DevCloud): Target {
  return {
    bucket: dev.cloud.bucket, queueUrl: dev.cloud.queueUrl, dlqUrl: dev.cloud.dlqUrl, s3: dev.s3, sqs: dev.sqs,
    source: 'the local cloud', where: { endpoint: dev.emulator.endpoint, dev: true }, args: ['--dev'], close() {},
  };
}

async function text(dev: DevCloud, key: string): Promise<string> {
  return (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: key }))).Body!.transformToString();
}

async function dlqMessages(dev: DevCloud): Promise<number> {
  const answer = await dev.sqs.send(new GetQueueAttributesCommand({ QueueUrl: dev.cloud.dlqUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
  return Number(answer.Attributes?.ApproximateNumberOfMessages ?? 0);
}

describe('the local cloud runs the real handlers', () => {
  test('manifest upload → every image in the bucket with the right bytes; index and failures complete', async () => {
    const dev = await quickCloud();
    try {
      const good = Array.from({ length: 30 }, (_, i) => ({ id: i + 1, path: `/img/c${i + 1}.${i % 3 === 0 ? 'png' : 'jpg'}` }));
      const bad = [
        { id: 31, path: '/status/404', reason: 'http-404' },
        { id: 32, path: '/html/c32', reason: 'not-image' },
        { id: 33, path: '/status/403', reason: 'http-403' },
      ];
      const images = [...good, ...bad].map((e) => ({ url: [origin.url + e.path], image_id: e.id }));
      images.push({ url: [], image_id: 34 });
      const annotations = images.map((e) => ({ image_id: e.image_id, label_id: e.image_id % 4 }));
      await upload(dev, 'manifests/train.json', JSON.stringify({ images, annotations }));
      await dev.cloud.idle();

      const status = await readStatus(dev.s3, dev.cloud.bucket, 'train');
      assert.equal(status?.state, 'queued');
      assert.equal(status?.queued, 33);
      assert.equal(status?.invalid, 1);

      for (const e of good) {
        const ext = e.path.endsWith('.png') ? 'png' : 'jpg';
        const object = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `images/train/${e.id}.${ext}` }));
        const bytes = Buffer.from(await object.Body!.transformToByteArray());
        assert.ok(bytes.equals(sampleImage(`c${e.id}`, ext === 'png' ? 'png' : 'jpeg')), `bytes of ${e.id}`);
        assert.equal(object.Metadata?.['source-url'], origin.url + e.path);
      }
      for (const e of bad) {
        const record = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `failures/train/${e.reason}/${e.id}.json` }));
        const failure = JSON.parse(await record.Body!.transformToString()) as Record<string, unknown>;
        assert.equal(failure.reason, e.reason);
        assert.equal(failure.transient, false);
      }
      assert.equal(await dlqMessages(dev), 0);

      // Home: the images and a table with every entry accounted for once.
      const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'train', dir });
      assert.deepEqual(
        { entries: home.counts.entries, fetched: home.counts.fetched, failed: home.counts.failed, pending: home.counts.pending },
        { entries: 34, fetched: 30, failed: 4, pending: 0 },
      );
      assert.deepEqual(home.counts.byReason, { 'http-404': 1, 'not-image': 1, 'http-403': 1, 'no-url': 1 });
      assert.equal((await readdir(join(dir, 'train'))).length, 30);
      assert.ok((await readFile(join(dir, 'train', '2.jpg'))).equals(sampleImage('c2', 'jpeg')));
      const rows = parse(await readFile(join(dir, 'train.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
      assert.deepEqual(rows.map((r) => r.image_id), Array.from({ length: 34 }, (_, i) => String(i + 1)));
      assert.equal(rows[30]!.reason, 'http-404');
      assert.equal(rows[0]!.path, 'train/1.png');
    } finally {
      await dev.stop();
    }
  });

  test('from a stack deployed with layout=by-label, sync --layout by-label names the label once', async () => {
    const dev = await quickCloud({ settings: { layout: 'by-label' } });
    try {
      const images = [1, 2, 3].map((id) => ({ url: [`${origin.url}/img/bl${id}.jpg`], image_id: id }));
      const annotations = images.map((e) => ({ image_id: e.image_id, label_id: e.image_id === 3 ? 7 : 5 }));
      await upload(dev, 'manifests/shelf.json', JSON.stringify({ images, annotations }));
      await dev.cloud.idle();
      const home = join(dir, 'by-label');
      const sync = () => bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'shelf', dir: home, layout: 'by-label' });
      const first = await sync();
      assert.deepEqual({ fetched: first.counts.fetched, downloaded: first.images.downloaded }, { fetched: 3, downloaded: 3 });
      assert.deepEqual((await readdir(join(home, 'shelf'))).sort(), ['5', '7']);
      assert.deepEqual((await readdir(join(home, 'shelf', '5'))).sort(), ['1.jpg', '2.jpg']);
      assert.deepEqual(await readdir(join(home, 'shelf', '7')), ['3.jpg']);
      assert.ok((await readFile(join(home, 'shelf', '7', '3.jpg'))).equals(sampleImage('bl3', 'jpeg')));
      const rows = parse(await readFile(join(home, 'shelf.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
      assert.deepEqual(rows.map((r) => r.path), ['shelf/5/1.jpg', 'shelf/5/2.jpg', 'shelf/7/3.jpg']);
      // Again: every file is found where the first sync put it.
      const second = await sync();
      assert.deepEqual({ downloaded: second.images.downloaded, skipped: second.images.skipped }, { downloaded: 0, skipped: 3 });
    } finally {
      await dev.stop();
    }
  });

  test('a message delivered twice writes once: the second delivery is skipped without a request', async () => {
    const dev = await quickCloud();
    try {
      const job = { split: 'twice', id: '1', urls: [`${origin.url}/img/twice.jpg`], labels: [], key: 'twice/1.jpg', position: 1 };
      const event = (n: number): SQSEvent => ({
        Records: [{
          messageId: `m${n}`, receiptHandle: `r${n}`, body: encodeJob(job), md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: dev.cloud.queueArn, awsRegion: 'us-east-1', messageAttributes: {},
          attributes: { ApproximateReceiveCount: String(n), SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' },
        }],
      });
      const { handler } = await import('../aws/lambda/fetch.ts');
      const context = () => lambdaContext({ name: 'fetch', memoryMb: 512, timeoutSeconds: 30 }, 'us-east-1');
      assert.deepEqual(await handler(event(1), context()), { batchItemFailures: [] });
      assert.deepEqual(await handler(event(2), context()), { batchItemFailures: [] });
      assert.equal(origin.hits('/img/twice.jpg'), 1);
      const object = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'images/twice/1.jpg' }));
      assert.ok(Buffer.from(await object.Body!.transformToByteArray()).equals(sampleImage('twice', 'jpeg')));
    } finally {
      await dev.stop();
    }
  });

  test('a fetch function that dies mid-batch loses nothing: its batch is delivered again', async () => {
    let died = false;
    const dev = await quickCloud({
      wrapFetch: (real) => async (event, context) => {
        if (!died && event.Records.length > 1) {
          died = true;
          await real({ Records: event.Records.slice(0, 1) }, context);
          throw new Error('the function ran out of memory');
        }
        return real(event, context);
      },
    });
    try {
      const images = Array.from({ length: 12 }, (_, i) => ({ url: [`${origin.url}/img/d${i + 1}.jpg`], image_id: i + 1 }));
      await upload(dev, 'manifests/dies.json', JSON.stringify({ images }));
      await dev.cloud.idle();
      assert.ok(died, 'the function died once');
      const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'dies', dir: join(dir, 'dies') });
      assert.equal(home.counts.fetched, 12);
      for (let n = 1; n <= 12; n++) assert.ok((await readFile(join(dir, 'dies', 'dies', `${n}.jpg`))).equals(sampleImage(`d${n}`, 'jpeg')));
      assert.equal(await dlqMessages(dev), 0);
    } finally {
      await dev.stop();
    }
  });

  test('a transient failure comes back after its own short delay, not after the visibility timeout', async () => {
    // Five failures: more than one invocation's retries, so only a second delivery can fetch it.
    // The queue's visibility timeout (10 minutes) is longer than this test may run.
    const dev = await quickCloud({ visibilityTimeoutSeconds: 600 });
    try {
      const job = { split: 'flaky', id: '1', urls: [`${origin.url}/flaky/redeliver.jpg?fail=5&code=503`], labels: [], key: 'flaky/1.jpg', position: 1 };
      await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.queueUrl, MessageBody: encodeJob(job), ...jobIds(job, 4) }));
      // A guard, not a synchronisation: without the feature the job would be back only in 10 minutes.
      const guard = new AbortController();
      const tooLong = sleep(90_000, 'still waiting after 90 s', { signal: guard.signal }).catch(() => 'ok');
      assert.equal(await Promise.race([dev.cloud.idle().then(() => 'ok'), tooLong]), 'ok');
      guard.abort();
      const stored = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'images/flaky/1.jpg' }));
      assert.ok((await stored.Body!.transformToByteArray()).length > 0);
      const record = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'failures/flaky/http-5xx/1.json' }));
      assert.equal((JSON.parse(await record.Body!.transformToString()) as { receiveCount: number }).receiveCount, 1);
      assert.equal(await dlqMessages(dev), 0);
    } finally {
      await dev.stop();
    }
  });

  test('a poison message is acknowledged at once; an image that keeps failing ends in the dead-letter queue with its failure recorded', async () => {
    const dev = await quickCloud();
    try {
      await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.queueUrl, MessageBody: 'this is not a job', MessageGroupId: 'poison', MessageDeduplicationId: 'poison' }));
      const job = { split: 'dlq', id: '7', urls: [`${origin.url}/status/503`], labels: [], key: 'dlq/7.jpg', position: 1 };
      await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.queueUrl, MessageBody: encodeJob(job), ...jobIds(job, 4) }));
      await dev.cloud.idle();
      const parked = await dev.sqs.send(new ReceiveMessageCommand({ QueueUrl: dev.cloud.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      // Five deliveries of a body that can never become a job would only delay the DLQ alarm.
      assert.deepEqual((parked.Messages ?? []).map((m) => m.Body), [encodeJob(job)]);
      const record = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'failures/dlq/http-5xx/7.json' }));
      const failure = JSON.parse(await record.Body!.transformToString()) as Record<string, unknown>;
      assert.equal(failure.transient, true);
      assert.equal(failure.receiveCount, 2);
    } finally {
      await dev.stop();
    }
  });

  test('a malformed manifest enqueues nothing and leaves its error with the position', async () => {
    const dev = await quickCloud();
    try {
      await upload(dev, 'manifests/broken.csv', `id,url\n1,${origin.url}/img/b1.jpg\n2,"${origin.url}/img/b2.jpg,\n`);
      await dev.cloud.idle();
      const status = await readStatus(dev.s3, dev.cloud.bucket, 'broken');
      assert.equal(status?.state, 'failed');
      assert.match(status?.error ?? '', /broken\.csv/);
      assert.match(status?.position ?? '', /line/);
      assert.equal(dev.cloud.stats().fetch.received, 0);
      assert.equal(origin.hits('/img/b1.jpg'), 0);
    } finally {
      await dev.stop();
    }
  });

  test('an entry too large for a job message fails as unqueueable; the split ends queued and the rest are fetched', async () => {
    const dev = await quickCloud();
    try {
      // 600 URLs of 2 KB: a job message of some 1.2 MB, over SQS's 1 MiB.
      const huge = Array.from({ length: 600 }, (_, i) => `${origin.url}/img/huge-${i}-${'x'.repeat(2000)}.jpg`);
      const images = [1, 2, 3, 4].map((id) => ({ url: id === 3 ? huge : [`${origin.url}/img/h${id}.jpg`], image_id: id }));
      await upload(dev, 'manifests/heavy.json', JSON.stringify({ images }));
      await dev.cloud.idle();
      const status = await readStatus(dev.s3, dev.cloud.bucket, 'heavy');
      assert.deepEqual([status?.state, status?.queued, status?.unqueueable], ['queued', 3, 1]);
      const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'heavy', dir: join(dir, 'heavy') });
      const rows = parse(await readFile(home.indexFile, 'utf8'), { columns: true }) as Array<Record<string, string>>;
      assert.deepEqual(rows.map((r) => [r.image_id, r.status, r.reason]), [['1', 'fetched', ''], ['2', 'fetched', ''], ['3', 'failed', 'unqueueable'], ['4', 'fetched', '']]);
      assert.ok((await readFile(join(dir, 'heavy', 'heavy', '4.jpg'))).equals(sampleImage('h4', 'jpeg')));
    } finally {
      await dev.stop();
    }
  });

  test('a split that cannot reach its queue ends failed with the error, and submit says so at once', async () => {
    const dev = await quickCloud();
    const t = targetOf(dev);
    try {
      await dev.sqs.send(new DeleteQueueCommand({ QueueUrl: dev.cloud.queueUrl }));
      const file = join(dir, 'orphan.json');
      await writeFile(file, JSON.stringify({ images: [{ url: [`${origin.url}/img/o1.jpg`], image_id: 1 }] }));
      let said = '';
      const log = { isTTY: false, write: (text: string) => ((said += text), true) } as unknown as NodeJS.WriteStream;
      const started = Date.now();
      await assert.rejects(submitCommand(t, { manifest: file, check: false, wait: 120, log }), (error: Error) => {
        assert.equal(error.name, 'ManifestRefused');
        assert.match(error.message, /^the manifest function refused manifests\/orphan\.json: the split stopped: QueueDoesNotExist: /);
        return true;
      });
      // Seconds (the poll of the manifest prefix, one invocation), not the two minutes allowed.
      assert.ok(Date.now() - started < 30_000, `${Date.now() - started} ms`);
      assert.doesNotMatch(said, /not finished/);
      assert.equal((await readStatus(dev.s3, dev.cloud.bucket, 'orphan'))?.state, 'failed');
    } finally {
      await dev.stop();
    }
  });

  test('retry sends one job per failed image: the dead-letter queue (twice over) and the failure records together', async () => {
    const dev = await quickCloud();
    const t = targetOf(dev);
    try {
      const images = [1, 2, 3, 4, 5].map((id) => ({ url: [`${origin.url}/status/404`], image_id: id }));
      await upload(dev, 'manifests/again.json', JSON.stringify({ images }));
      await dev.cloud.idle();
      const index = parse(await text(dev, 'index/again.csv'), { columns: true }) as Array<Record<string, string>>;
      const job = (id: number) => ({ split: 'again', id: String(id), urls: [`${origin.url}/status/404`], labels: [], key: index[id - 1]!.path!, position: id });
      // What a manifest submitted twice leaves: images 1 and 2 in the dead-letter queue (1 twice),
      // 4 there too; 4 and 5 stored since. Every image also has its http-404 failure record.
      for (const id of [1, 1, 2, 4]) await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.dlqUrl, MessageBody: encodeJob(job(id)), ...jobIds(job(id), 4) }));
      for (const id of [4, 5]) await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: `images/${job(id).key}`, Body: 'stored' }));
      const hits = origin.hits('/status/404');

      const result = await retryCommand(t, { reasons: ['http-404'], deadLetter: true });
      // Images 1, 2 and 3: three jobs, where the old retry sent seven.
      assert.deepEqual(result, { fromDeadLetter: 2, resent: 1, alreadyStored: 3, duplicates: 3 });
      assert.equal(formatRetry(result), 'Sent back 2 jobs from the dead-letter queue and 1 recorded failure (3 stored since, 3 duplicates of an image already sent, left alone).');
      await dev.cloud.idle();
      assert.equal(origin.hits('/status/404') - hits, 3);
      assert.equal(await dlqMessages(dev), 0);
    } finally {
      await dev.stop();
    }
  });

  test('jobs being retried show as in flight and due again, their images as retrying, not failed; the ETA has a unit or a dash', async () => {
    let tried = 0;
    let allTried!: () => void;
    const firstAttempts = new Promise<void>((resolve) => (allTried = resolve));
    // Failed jobs stay hidden for 5 to 10 minutes: long enough to look at them at leisure.
    const dev = await quickCloud({
      visibilityTimeoutSeconds: 600,
      // hostConcurrency 8 puts the three jobs in three message groups (slots 5, 4, 1): none waits
      // behind another's failure, as a job of the same group would (FIFO).
      // imageTimeoutSeconds 20: a share of 10 s on the first of 2 deliveries, so none of the three,
      // still retrying its 503s when the others are done, is returned as a straggler (straggler.ts).
      settings: { retryDelaySeconds: 600, hostConcurrency: 8, imageTimeoutSeconds: 20 },
      wrapFetch: (real) => async (event, context) => {
        try {
          return await real(event, context);
        } finally {
          tried += event.Records.length;
          if (tried === 3) allTried();
        }
      },
    });
    const t = targetOf(dev);
    try {
      const images = [1, 2, 3].map((id) => ({ url: [`${origin.url}/status/503`], image_id: id }));
      await upload(dev, 'manifests/busy.json', JSON.stringify({ images }));
      await firstAttempts;

      const report = await statusReport(t, { counts: true });
      assert.deepEqual({ ...report.queue, nextDeliveryIn: undefined }, { waiting: 0, inFlight: 3, delayed: 0, deadLetter: 0, visibilityTimeout: 600, nextDeliveryIn: undefined });
      const due = report.queue!.nextDeliveryIn!;
      assert.ok(due > 250 && due <= 600, `due again in ${due} s`);
      assert.equal(report.done, false);
      assert.deepEqual(report.splits[0]!.counts, { entries: 3, fetched: 0, failed: 0, pending: 3, retrying: 3, bytes: 0, byReason: {} });
      const lines = formatStatus(report, t).split('\n');
      assert.equal(lines[1], '  now: 0 stored, 0 failed, 3 still queued or in flight (3 retrying after a failed attempt)');
      assert.match(lines[2]!, /^Queue: 0 waiting, 3 in flight \(being fetched, or failed and due again in \d+m\d\ds\); dead-letter queue: 0$/);
      assert.equal(lines[3], 'Still working.');

      // The table calls them pending, with the reason of the attempt that failed.
      const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'busy', dir: join(dir, 'busy'), queueBusy: true });
      const rows = parse(await readFile(home.indexFile, 'utf8'), { columns: true }) as Array<Record<string, string>>;
      assert.deepEqual(rows.map((r) => [r.status, r.reason]), [['pending', 'http-5xx'], ['pending', 'http-5xx'], ['pending', 'http-5xx']]);

      // Nothing moves, so no rate: the ETA is a dash, on a terminal and off one.
      const stopped = AbortSignal.abort();
      let plain = '';
      const pipe = { isTTY: false, write: (text: string) => ((plain += text), true) } as unknown as NodeJS.WriteStream;
      await watchStatus(t, { intervalMs: 1000, log: pipe, signal: stopped });
      assert.match(plain, /^status: 3 left \(0 waiting, 3 in flight \(being fetched, or failed and due again in \d+m\d\ds\)\), 0 in the dead-letter queue, 0\/s, ETA —\n$/);
      const terminal = new FakeTerminal(200);
      await watchStatus(t, { intervalMs: 1000, log: terminal as unknown as NodeJS.WriteStream, signal: stopped });
      assert.match(terminal.screen().join('\n'), /0\/3 done \| 0 waiting, 3 in flight, due again in \d+m\d\ds \| 0 parked \| 0\/s \| ETA —$/m);
    } finally {
      await dev.stop();
    }
  });
});
