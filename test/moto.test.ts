// The local cloud end to end on a second emulator: moto's server (Python), a separate process
// that applies the redrive policy itself and honours If-None-Match: * on PutObject. Skipped,
// saying so, where moto_server is not installed.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { parse } from 'csv-parse/sync';
import { bringSplitHome } from '../aws/home/sync.ts';
import { readStatus } from '../aws/home/cloud-state.ts';
import { encodeJob } from '../aws/job-message.ts';
import { jobIds } from '../aws/fifo.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { startSimWeb, type SimWeb } from '../local-cloud/sim-web.ts';
import { motoSkip as skip, startMoto } from './support/moto.ts';

describe('the local cloud on moto_server', { skip }, () => {
  let moto: { endpoint: string; process: ChildProcess };
  let origin: Origin;
  let web: SimWeb;
  let dir: string;
  let dev: DevCloud;
  const logged: string[] = [];

  before(async () => {
    moto = await startMoto();
    origin = await startOrigin();
    // One host without a limit of its own, slow enough that requests overlap: its peak is ours.
    web = await startSimWeb({
      seed: 5, hosts: 1,
      adjust: (p) => ({ ...p, medianMs: 40, sigma: 0.2, maxMs: 200, limit: { kind: 'concurrency', max: 1000 }, deadShare: 0, placeholderShare: 0, flakyShare: 0, resetShare: 0 }),
    });
    dir = await mkdtemp(join(tmpdir(), 'cloudfetch-moto-'));
    // Quick redelivery: visible again after 5 s, parked (by moto) after 2 receives.
    dev = await startDevCloud({
      endpoint: moto.endpoint,
      allowPrivateNetwork: true,
      visibilityTimeoutSeconds: 5,
      // Batches of 4: a group's records run one after another, ~0.4 s each against moto (a HEAD and a
      // PUT), and a batch must end well inside the 5 s visibility timeout, as the stack's 720 s ensure
      // there; past it moto hands the group out again and the host sees it twice (peak 3 seen under load).
      settings: { maxReceiveCount: 2, imageTimeoutSeconds: 5, fetchTimeoutSeconds: 30, fetchBatchSize: 4, hostConcurrency: 2 },
      // More invocations than a host's groups: only the FIFO groups keep them off it.
      fetchConcurrency: 6,
      logLevel: 'SILENT',
      log: (line) => logged.push(line),
    });
  });

  after(async () => {
    await dev?.stop();
    await origin?.close();
    await web?.close();
    if (moto && moto.process.exitCode === null) {
      const exited = new Promise((resolve) => moto.process.once('exit', resolve));
      process.kill(-moto.process.pid!, 'SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('manifest → bucket → home: the origin\'s bytes, every entry accounted for; a job that keeps failing parked by moto\'s redrive; a second put refused', async () => {
    const good = Array.from({ length: 12 }, (_, i) => ({ id: i + 1, path: `/img/m${i + 1}.${i % 4 === 0 ? 'png' : 'jpg'}` }));
    const images = [...good, { id: 13, path: '/status/404' }].map((e) => ({ url: [origin.url + e.path], image_id: e.id }));
    images.push({ url: [], image_id: 14 });
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/moto.json', Body: JSON.stringify({ images }) }));
    await dev.cloud.notifyObjectCreated('manifests/moto.json');
    // A body that is no job, and a job whose URL always answers 503.
    await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.queueUrl, MessageBody: 'this is not a job', MessageGroupId: 'poison', MessageDeduplicationId: 'poison' }));
    const doomed = { split: 'doomed', id: '9', urls: [`${origin.url}/status/503`], labels: [], key: 'doomed/9.jpg', position: 1 };
    await dev.sqs.send(new SendMessageCommand({ QueueUrl: dev.cloud.queueUrl, MessageBody: encodeJob(doomed), ...jobIds(doomed, 4) }));
    await dev.cloud.idle();

    assert.equal((await readStatus(dev.s3, dev.cloud.bucket, 'moto'))?.queued, 13);
    const home = await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'moto', dir });
    assert.deepEqual(
      { entries: home.counts.entries, fetched: home.counts.fetched, failed: home.counts.failed, pending: home.counts.pending, downloaded: home.images.downloaded },
      { entries: 14, fetched: 12, failed: 2, pending: 0, downloaded: 12 },
    );
    assert.deepEqual(home.counts.byReason, { 'http-404': 1, 'no-url': 1 });
    assert.equal((await readdir(join(dir, 'moto'))).length, 12);
    for (const e of good) {
      const png = e.path.endsWith('.png');
      const bytes = await readFile(join(dir, 'moto', `${e.id}.${png ? 'png' : 'jpg'}`));
      assert.ok(bytes.equals(sampleImage(`m${e.id}`, png ? 'png' : 'jpeg')), `bytes of ${e.id}`);
    }
    const rows = parse(await readFile(join(dir, 'moto.csv'), 'utf8'), { columns: true }) as Array<Record<string, string>>;
    assert.deepEqual(rows.map((r) => `${r.image_id}:${r.status}`), [...good.map((e) => `${e.id}:fetched`), '13:failed', '14:failed']);

    // moto moved the job to the DLQ after its second receive (the poller's own fallback redrive,
    // for emulators that ignore RedrivePolicy, never ran); the poison body was acknowledged at once.
    assert.deepEqual(logged.filter((line) => line.includes('moved to the DLQ')), []);
    const parked = await dev.sqs.send(new ReceiveMessageCommand({ QueueUrl: dev.cloud.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    assert.deepEqual((parked.Messages ?? []).map((m) => m.Body), [encodeJob(doomed)]);
    const record = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'failures/doomed/http-5xx/9.json' }));
    assert.equal((JSON.parse(await record.Body!.transformToString()) as { receiveCount: number }).receiveCount, 2);

    // The fetch function's write-once put: moto refuses a second one, and the bytes stay.
    const again = dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'images/moto/2.jpg', Body: 'other bytes', IfNoneMatch: '*' }));
    await assert.rejects(again, (error: Error & { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 412);
    const kept = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'images/moto/2.jpg' }));
    assert.ok(Buffer.from(await kept.Body!.transformToByteArray()).equals(sampleImage('m2', 'jpeg')));
  });

  test('moto hands out several messages of one group in a batch: the fetch function still sends a host at most hostConcurrency (2) requests at once', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => i + 1);
    const csv = 'id,url\n' + ids.map((id) => `${id},${web.hosts[0]!.url}/img/m${id}.jpg\n`).join('');
    const receivedBefore = dev.cloud.stats().fetch.received;
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/fleet.csv', Body: csv }));
    await dev.cloud.notifyObjectCreated('manifests/fleet.csv');
    await dev.cloud.idle();
    const [host] = web.report();
    assert.ok(host!.requests >= 40, `${host!.requests} requests`);
    // The cap is what must hold; whether the two groups (width 1 each) ever overlap is timing, not
    // asserted. A job received again while its first delivery still runs (a batch outliving the 5 s
    // visibility timeout on a loaded machine; the stack's is 6x the function's timeout) puts its group
    // at the host twice, as SQS would: each such receive may add one request at once, no more.
    const againReceived = dev.cloud.stats().fetch.received - receivedBefore - ids.length;
    assert.ok(againReceived >= 0, `${againReceived}`);
    assert.ok(host!.peakConcurrency >= 1 && host!.peakConcurrency <= 2 + againReceived, `peak ${host!.peakConcurrency} with ${againReceived} jobs received again: never more than hostConcurrency (2) a batch's group at a time`);
    // Every image stored, as its host serves it (each body read to its end: one left unread would
    // hold its socket until the client is destroyed, and error then).
    for (const id of ids) {
      const stored = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `images/fleet/${id}.jpg` }));
      assert.ok(Buffer.from(await stored.Body!.transformToByteArray()).equals(web.hosts[0]!.body(`/img/m${id}.jpg`)), `images/fleet/${id}.jpg`);
    }
  });
});
