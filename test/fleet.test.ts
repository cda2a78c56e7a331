// Politeness across the fleet (issue #12): the FIFO jobs queue's message groups (shares of a host's
// slots), the fetch function's batches running at most a group's width at once, host pauses shared through hosts/ in the bucket,
// and retry/redrive sending into the same groups. On fauxqs (embedded); the same fleet limit on
// moto_server is in moto.test.ts.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { hostKey, statusKey, type FailureRecord, type HostNote } from '../aws/bucket.ts';
import { GROUPS_PER_ORIGIN, groupShare, groupWidth, widestGroup, jobIds, jobOrigin, messageGroupId, originHash, splitDeduplicationId } from '../aws/fifo.ts';
import { redriveDeadLetters, resendFailures, RetryLedger } from '../aws/home/redrive.ts';
import { encodeJob } from '../aws/job-message.ts';
import { processByGroup, type Settled } from '../aws/lambda/fifo-batch.ts';
import { S3HostPauses } from '../aws/lambda/host-pauses.ts';
import { MAX_REQUEUES, REQUEUES_ATTRIBUTE, Redelivery } from '../aws/lambda/redelivery.ts';
import { awsClientConfig, startEmulator } from '../local-cloud/emulator.ts';
import { sqsRecord } from '../local-cloud/sqs-poller.ts';
import { lambdaContext } from '../local-cloud/cloud.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { startOrigin, type Origin } from '../local-cloud/origin.ts';
import { startSimWeb, type SimWeb } from '../local-cloud/sim-web.ts';
import type { Job } from '../engine/job.ts';

const job = (id: string, url: string, split = 'fleet'): Job => ({ split, id, urls: [url], labels: [], key: `${split}/${id}.jpg`, position: Number(id.replace(/\D/g, '')) || 1 });

describe('message groups', () => {
  test('an origin\'s jobs spread over its groups, whose widths add up to hostConcurrency; the same job always in the same one; other origins apart', () => {
    const groupsOf = (hostConcurrency: number): string[] => [...new Set(Array.from({ length: 400 }, (_, i) => messageGroupId(job(String(i), `https://a.example/${i}.jpg`), hostConcurrency)))].sort();
    const hash = originHash('https://a.example');
    assert.equal(GROUPS_PER_ORIGIN, 2);
    assert.deepEqual(groupsOf(4), [`${hash}-0w2`, `${hash}-1w2`]);
    assert.deepEqual(groupsOf(5), [`${hash}-0w3`, `${hash}-1w2`]);
    assert.deepEqual(groupsOf(1), [`${hash}-0w1`]);
    for (let hostConcurrency = 1; hostConcurrency <= 12; hostConcurrency++) {
      assert.equal(groupsOf(hostConcurrency).reduce((sum, g) => sum + groupWidth(g), 0), hostConcurrency, `widths at ${hostConcurrency}`);
    }
    // What one function fetches at once from a batch of one group (plan's time in the cloud).
    assert.deepEqual([1, 2, 4, 5, 8].map(widestGroup), [1, 1, 2, 3, 4]);
    // A function's share of a host's pace: the narrowest group's width ÷ hostConcurrency, so two groups together never pass the whole.
    assert.deepEqual([1, 2, 3, 4, 5].map(groupShare), [1, 0.5, 1 / 3, 0.5, 2 / 5]);
    // A batch holds at most 10 records; an id without a width (queued before widths) runs one at a time.
    assert.equal(groupWidth(`${hash}-0w40`), 10);
    assert.deepEqual([groupWidth(`${hash}-3`), groupWidth(undefined), groupWidth('w'), groupWidth(`${hash}-0w0`)], [1, 1, 1, 1]);
    assert.equal(messageGroupId(job('7', 'https://a.example/7.jpg'), 4), messageGroupId(job('7', 'https://a.example/other-path.jpg'), 4));
    // An origin is scheme, name and port, as undici pools connections.
    for (const other of ['http://a.example/1.jpg', 'https://a.example:8443/1.jpg', 'https://b.example/1.jpg']) {
      assert.notEqual(messageGroupId(job('1', other), 1), messageGroupId(job('1', 'https://a.example/1.jpg'), 1), other);
    }
    assert.equal(jobOrigin(job('1', 'not a url')), 'none');
    assert.match(messageGroupId(job('1', 'https://ü.example/x'), 8), /^[0-9a-f]{16}-[01]w4$/, 'only characters SQS takes in a group id');
    // A resumed split re-sends with the same deduplication id; a new submission does not.
    assert.equal(splitDeduplicationId(job('1', 'u'), 's1'), splitDeduplicationId(job('1', 'u'), 's1'));
    assert.notEqual(splitDeduplicationId(job('1', 'u'), 's1'), splitDeduplicationId(job('1', 'u'), 's2'));
    assert.ok(splitDeduplicationId(job('1', 'u'), 's1').length <= 128);
    assert.notEqual(jobIds(job('1', 'u'), 2).MessageDeduplicationId, jobIds(job('1', 'u'), 2).MessageDeduplicationId);
  });
});

describe('a FIFO batch, at most a group\'s width at once', () => {
  const record = (id: string, group: string): SQSRecord => ({
    messageId: id, receiptHandle: `r-${id}`, body: id, md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: 'arn:aws:sqs:us-east-1:0:q.fifo', awsRegion: 'us-east-1', messageAttributes: {},
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0', MessageGroupId: group },
  });

  test('groups run at once, a group\'s records one after the other; a failure sends the rest of its group back with it', async () => {
    const records = [record('a1', 'A'), record('b1', 'B'), record('a2', 'A'), record('c1', 'C'), record('a3', 'A'), record('b2', 'B'), record('a4', 'A')];
    const running = new Map<string, number>();
    let most = 0;
    let mostOverall = 0;
    const started: string[] = [];
    // The first three to start wait for each other: only groups running at once get past this.
    let arrived = 0;
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const held: Array<[string[], number]> = [];
    const answer = await processByGroup(records, async (r): Promise<Settled> => {
      const g = r.attributes.MessageGroupId!;
      started.push(r.messageId);
      running.set(g, (running.get(g) ?? 0) + 1);
      most = Math.max(most, running.get(g)!);
      mostOverall = Math.max(mostOverall, [...running.values()].reduce((a, b) => a + b, 0));
      if (++arrived === 3) open();
      await gate;
      await new Promise((resolve) => setImmediate(resolve));
      running.set(g, running.get(g)! - 1);
      if (r.messageId === 'a2') return { ok: false, seconds: 7 };
      if (r.messageId === 'b2') throw new Error('a crash is a failure without a time');
      return { ok: true };
    }, { signal: new AbortController().signal, hold: async (rs, seconds) => void held.push([rs.map((r) => r.messageId), seconds]) });

    assert.equal(most, 1, 'never two records of one group at once');
    assert.equal(mostOverall, 3, 'the three groups at once');
    assert.ok(!started.includes('a3') && !started.includes('a4'), 'nothing of A after its failure');
    assert.deepEqual(answer.batchItemFailures.map((f) => f.itemIdentifier), ['a2', 'a3', 'b2', 'a4']);
    assert.deepEqual(held, [[['a3', 'a4'], 7]], 'the rest of A due with a2; b2 had no later record');
  });

  test('a group of width 2 runs two of its records at once, never three; a failure sends back only those not started', async () => {
    const records = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((id) => record(id, 'h-0w2'));
    let running = 0;
    let most = 0;
    let a2Failed = false;
    const started: string[] = [];
    const held: Array<[string[], number]> = [];
    const answer = await processByGroup(records, async (r): Promise<Settled> => {
      started.push(r.messageId);
      most = Math.max(most, ++running);
      // a1 is quick; a2 fails once a3 has started, and a3 ends after that: a4 on never start.
      const until = async (done: () => boolean): Promise<void> => {
        while (!done()) await new Promise((resolve) => setImmediate(resolve));
      };
      if (r.messageId === 'a2') await until(() => started.includes('a3'));
      if (r.messageId === 'a3') await until(() => a2Failed);
      await new Promise((resolve) => setImmediate(resolve));
      running--;
      if (r.messageId !== 'a2') return { ok: true };
      a2Failed = true;
      return { ok: false, seconds: 9 };
    }, { signal: new AbortController().signal, hold: async (rs, seconds) => void held.push([rs.map((r) => r.messageId), seconds]) });
    assert.equal(most, 2, 'two at once, as its width says');
    assert.deepEqual(started, ['a1', 'a2', 'a3']);
    assert.deepEqual(answer.batchItemFailures.map((f) => f.itemIdentifier), ['a2', 'a4', 'a5', 'a6'], 'a3, already running, finished');
    assert.deepEqual(held, [[['a4', 'a5', 'a6'], 9]]);
  });

  test('at the deadline no record starts: those left go back at once', async () => {
    const deadline = new AbortController();
    const held: Array<[string[], number]> = [];
    const ran: string[] = [];
    const answer = await processByGroup([record('a1', 'A'), record('a2', 'A'), record('b1', 'B')], async (r) => {
      ran.push(r.messageId);
      // The deadline passes while a1 and b1 run.
      await new Promise((resolve) => setImmediate(resolve));
      deadline.abort();
      return { ok: true };
    }, { signal: deadline.signal, hold: async (rs, seconds) => void held.push([rs.map((r) => r.messageId), seconds]) });
    assert.deepEqual(ran, ['a1', 'b1']);
    assert.deepEqual(answer.batchItemFailures.map((f) => f.itemIdentifier), ['a2']);
    assert.deepEqual(held, [[['a2'], 0]]);
  });
});

describe('a job going back untried on its last allowed delivery', () => {
  test('is sent anew into its group with a fresh receive count, at most MAX_REQUEUES times; the batch counts it done', async () => {
    const emulator = await startEmulator();
    const sqs = new SQSClient(awsClientConfig(emulator));
    try {
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'requeue.fifo', Attributes: { FifoQueue: 'true', VisibilityTimeout: '30' } }));
      const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
      for (const body of ['last', 'early', 'given-up']) {
        await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body, MessageGroupId: `g-${body}`, MessageDeduplicationId: body, ...(body === 'given-up' ? { MessageAttributes: { [REQUEUES_ATTRIBUTE]: { DataType: 'Number', StringValue: String(MAX_REQUEUES) } } } : {}) }));
      }
      const received = async () => (await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All'] }))).Messages ?? [];
      const records = (await received()).map((m) => sqsRecord(m, arn, emulator.region));
      // 'early' is on its first of 3 allowed deliveries: left to hold(); the others on their last.
      const limit = (r: SQSRecord): number => (r.body === 'early' ? 3 : 1);
      const redelivery = new Redelivery(sqs, 5);
      const sent = new Set<string>();
      for (const r of records) for (const id of await redelivery.requeue([r], limit(r))) sent.add(id);
      assert.deepEqual(records.filter((r) => sent.has(r.messageId)).map((r) => r.body), ['last']);
      // The caller acknowledges what was sent anew: a batch's record behind a failed one of its
      // group, sent anew by hold(), is left out of the failures (fifo-batch.ts).
      const group = ['x1', 'x2', 'x3'].map((id) => ({ ...records[0]!, messageId: id, attributes: { ...records[0]!.attributes, MessageGroupId: 'x' } }));
      const answer = await processByGroup(group, async (r) => (r.messageId === 'x1' ? { ok: false, seconds: 60 } : { ok: true }), {
        signal: new AbortController().signal,
        hold: async (held, seconds) => (assert.deepEqual([held.map((r) => r.messageId), seconds], [['x2', 'x3'], 60]), new Set(['x2'])),
      });
      assert.deepEqual(answer.batchItemFailures.map((f) => f.itemIdentifier), ['x1', 'x3']);
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl, Entries: records.filter((r) => sent.has(r.messageId)).map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle })) }));
      const [again, ...rest] = await received();
      assert.equal(rest.length, 0, 'the two others are still in flight');
      assert.deepEqual([again?.Body, again?.Attributes?.MessageGroupId, again?.Attributes?.ApproximateReceiveCount, again?.MessageAttributes?.[REQUEUES_ATTRIBUTE]?.StringValue], ['last', 'g-last', '1', '1']);
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });
});

describe('the fleet on the local cloud (fauxqs)', () => {
  let dev: DevCloud;
  let origin: Origin;
  let web: SimWeb;
  // Two groups of widths 2 and 1 (aws/fifo.ts). Whether the peak reaches 3 is timing (the groups' batches
  // in one invocation or two, each function's gate starting at one request per origin): the bound is
  // what must hold; a width-2 group running two at once and never three is shown in 'a FIFO batch' above.
  const HOST_CONCURRENCY = 3;

  before(async () => {
    origin = await startOrigin();
    // One host without a limit of its own (its peak is ours alone) and slow enough to overlap.
    web = await startSimWeb({
      seed: 12, hosts: 2,
      adjust: (p) => ({ ...p, medianMs: 40, sigma: 0.2, maxMs: 200, limit: { kind: 'concurrency', max: 1000 }, deadShare: 0, placeholderShare: 0, flakyShare: 0, resetShare: 0 }),
    });
    dev = await startDevCloud({
      allowPrivateNetwork: true,
      visibilityTimeoutSeconds: 30,
      // Long shares (straggler.ts): a loaded machine's slow answer is not fetched twice.
      settings: { hostConcurrency: HOST_CONCURRENCY, maxReceiveCount: 5, imageTimeoutSeconds: 30, fetchTimeoutSeconds: 60, fetchBatchSize: 10 },
      // More fetch invocations than the host's groups: only the groups keep them off the host.
      fetchConcurrency: 6,
      logLevel: 'SILENT',
      log: () => {},
    });
  });
  after(async () => {
    await dev?.stop();
    await web?.close();
    await origin?.close();
  });

  test(`no more than hostConcurrency (${HOST_CONCURRENCY}) requests at one host at once, with 6 fetch invocations; every image stored`, async () => {
    const entries = Array.from({ length: 60 }, (_, i) => ({ id: i + 1, url: `${web.hosts[i % 4 === 0 ? 1 : 0]!.url}/img/f${i}.jpg` }));
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/fleet.csv', Body: 'id,url\n' + entries.map((e) => `${e.id},${e.url}\n`).join('') }));
    await dev.cloud.notifyObjectCreated('manifests/fleet.csv');
    await dev.cloud.idle();
    const [busy, small] = web.report();
    // Every entry asked for (once, unless a slow answer was returned and asked again).
    assert.ok(busy!.requests >= 45 && small!.requests >= 15, `${busy!.requests} and ${small!.requests} requests`);
    assert.ok(busy!.peakConcurrency >= 2 && busy!.peakConcurrency <= HOST_CONCURRENCY, `peak ${busy!.peakConcurrency}: its groups ran at once, never more than hostConcurrency`);
    assert.ok(small!.peakConcurrency <= HOST_CONCURRENCY);
    const status = JSON.parse(await (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: statusKey('fleet') }))).Body!.transformToString());
    assert.deepEqual([status.queued, status.hostConcurrency], [60, HOST_CONCURRENCY]);
    // Each stored image is the host's bytes (bodies read to their end: one left unread holds a connection).
    for (const e of entries) {
      const stored = await (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `images/fleet/${e.id}.jpg` }))).Body!.transformToByteArray();
      assert.ok(Buffer.from(stored).equals(Buffer.from(await (await fetch(e.url)).arrayBuffer())), `${e.id}`);
    }
  });

  test('a host\'s 429 with Retry-After pauses it for every function (hosts/ in the bucket); a pause another function wrote stops this one asking', async () => {
    const { handler } = await import('../aws/lambda/fetch.ts');
    const context = () => lambdaContext({ name: 'fetch', memoryMb: 512, timeoutSeconds: 30 }, 'us-east-1');
    const event = (n: number, j: Job): SQSEvent => ({
      Records: [{
        messageId: `m${n}`, receiptHandle: `r${n}`, body: encodeJob(j), md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: dev.cloud.queueArn, awsRegion: 'us-east-1', messageAttributes: {},
        attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0', MessageGroupId: messageGroupId(j, 2) },
      }],
    });
    const note = async (o: string): Promise<HostNote> =>
      JSON.parse(await (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: hostKey(originHash(o)) }))).Body!.transformToString()) as HostNote;

    // This function meets a 429 asking for 60 s (longer than the image may wait): the job goes
    // back, not failed, and the host is paused in the bucket.
    const before = Date.now();
    const limited = job('1', `${origin.url}/ratelimit/p1.jpg?fail=9&after=60`, 'paused');
    assert.deepEqual(await handler(event(1, limited), context()), { batchItemFailures: [{ itemIdentifier: 'm1' }] });
    const written = await note(origin.url);
    assert.equal(written.origin, origin.url);
    assert.equal(written.reason, 'retry-after');
    assert.ok(written.pausedUntil >= before + 59_000 && written.pausedUntil <= Date.now() + 61_000, `${written.pausedUntil - before} ms`);
    // Another function (another container, nothing cached) reads the pause from the bucket.
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket).get(origin.url), written.pausedUntil);
    // Nothing recorded as failed: the image waits.
    await assert.rejects(dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: 'failures/paused/rate-limited/1.json' })), { name: 'NoSuchKey' });

    // Another function paused an origin this container never asked: its job is not sent there.
    const elsewhere = origin.url.replace('127.0.0.1', 'localhost');
    await new S3HostPauses(dev.s3, dev.cloud.bucket).set(elsewhere, Date.now() + 60_000, 'ban');
    const waiting = job('2', `${elsewhere}/img/waits.jpg`, 'paused');
    assert.deepEqual(await handler(event(2, waiting), context()), { batchItemFailures: [{ itemIdentifier: 'm2' }] });
    assert.equal(origin.hits('/img/waits.jpg'), 0);
  });
});

describe('retry and redrive send into the jobs\' groups', () => {
  let dev: DevCloud;
  before(async () => {
    // Only the emulator and the queues: no poller takes what is sent (fetchConcurrency would).
    dev = await startDevCloud({ settings: { hostConcurrency: 3 }, logLevel: 'SILENT', log: () => {} });
  });
  after(async () => dev?.stop());

  test('host pauses: read once per few seconds per container, never shortened by a shorter one, a note of another origin ignored', async () => {
    let now = Date.UTC(2026, 0, 1);
    const clock = { now: () => now };
    const [mine, theirs] = [new S3HostPauses(dev.s3, dev.cloud.bucket, clock), new S3HostPauses(dev.s3, dev.cloud.bucket, clock)];
    const host = 'https://pause.example';
    assert.equal(await mine.get(host), 0, 'no note: not paused');
    await theirs.set(host, now + 60_000, 'ban');
    assert.equal(await mine.get(host), 0, 'what it read is kept 5 s');
    now += 5_001;
    assert.equal(await mine.get(host), now - 5_001 + 60_000, 'then read again');
    await mine.set(host, now + 1_000, 'retry-after');
    const key = hostKey(originHash(host));
    const note = JSON.parse(await (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: key }))).Body!.transformToString()) as HostNote;
    assert.deepEqual([note.reason, note.pausedUntil], ['ban', now - 5_001 + 60_000], 'a shorter pause does not replace a longer one');
    // A note under this origin's key that names another origin (a hash collision, or a hand edit) pauses nothing.
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: hostKey(originHash('https://other.example')), Body: JSON.stringify({ ...note, origin: host }) }));
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket, clock).get('https://other.example'), 0);
    now += 60_000;
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket, clock).get(host), 0, 'a pause that ended');
  });

  test('a pace learnt by one function: written as the fleet\'s, read as each one\'s share; kept with a pause, never raised, forgotten after 15 minutes', async () => {
    let now = Date.UTC(2026, 0, 2);
    const clock = { now: () => now, share: 0.5 };
    const [mine, theirs] = [new S3HostPauses(dev.s3, dev.cloud.bucket, clock), new S3HostPauses(dev.s3, dev.cloud.bucket, clock)];
    const host = 'https://pace.example';
    assert.equal(await theirs.pace(host), 0, 'none learnt');
    await mine.learnt(host, 6);
    now += 5_001;
    assert.equal(await theirs.pace(host), 3, 'the fleet keeps 6 a second: half of it each');
    const key = hostKey(originHash(host));
    const read = async (): Promise<HostNote> => JSON.parse(await (await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: key }))).Body!.transformToString()) as HostNote;
    assert.equal((await read()).pace, 6);
    // A faster lesson does not replace a slower one; a pause written later keeps the pace.
    await theirs.learnt(host, 9);
    await theirs.set(host, now + 10_000, 'retry-after');
    assert.deepEqual([(await read()).pace, (await read()).pausedUntil], [6, now + 10_000]);
    await theirs.learnt(host, 4);
    now += 5_001;
    assert.equal(await mine.pace(host), 2);
    // A malformed pace paces nothing; nor one learnt more than 15 minutes ago.
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: key, Body: JSON.stringify({ ...(await read()), pace: -1 }) }));
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket, clock).pace(host), 0);
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: key, Body: JSON.stringify({ ...(await read()), pace: 6, paceAt: now }) }));
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket, clock).pace(host), 3);
    now += 15 * 60_000;
    assert.equal(await new S3HostPauses(dev.s3, dev.cloud.bucket, clock).pace(host), 0);
  });

  test('a dead letter keeps its group; a recorded failure gets its split\'s group (status hostConcurrency), with fresh deduplication ids', async () => {
    const sqs = dev.sqs;
    const fifo = { FifoQueue: 'true' };
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'redrive-jobs.fifo', Attributes: fifo }))).QueueUrl!;
    const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'redrive-dlq.fifo', Attributes: fifo }))).QueueUrl!;
    const [parked, failed] = [job('1', 'https://a.example/1.jpg', 'again'), job('2', 'https://a.example/2.jpg', 'again')];
    await sqs.send(new SendMessageCommand({ QueueUrl: dlqUrl, MessageBody: encodeJob(parked), MessageGroupId: 'its-own-group', MessageDeduplicationId: 'first' }));
    const record: FailureRecord = { ...failed, url: failed.urls[0]!, reason: 'http-5xx', detail: '503', attempts: 3, transient: true, receiveCount: 5, at: new Date().toISOString() };
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'failures/again/http-5xx/2.json', Body: JSON.stringify(record) }));
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: statusKey('again'), Body: JSON.stringify({ split: 'again', state: 'queued', hostConcurrency: 5 }) }));
    // The same job sent with the split's deduplication id a moment ago: a retry is not dropped as its duplicate.
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: encodeJob(failed), ...jobIds(failed, 5, splitDeduplicationId(failed, 'sub')) }));

    const ledger = new RetryLedger(dev.s3, dev.cloud.bucket);
    assert.equal((await redriveDeadLetters(sqs, ledger, { queueUrl, dlqUrl })).resent, 1);
    assert.equal((await resendFailures(dev.s3, sqs, ledger, { bucket: dev.cloud.bucket, queueUrl, splits: ['again'], reasons: ['http-5xx'] })).resent, 1);

    const got: Array<[string, string]> = [];
    for (;;) {
      const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['MessageGroupId'] }));
      if (Messages.length === 0) break;
      for (const m of Messages) got.push([JSON.parse(m.Body!).id as string, m.Attributes!.MessageGroupId!]);
      // Deleted, or FIFO would not hand out the group's next message.
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
    }
    assert.deepEqual(got.sort(), [['1', 'its-own-group'], ['2', messageGroupId(failed, 5)], ['2', messageGroupId(failed, 5)]]);
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    assert.deepEqual([Attributes?.ApproximateNumberOfMessages, Attributes?.ApproximateNumberOfMessagesNotVisible], ['0', '0']);
  });
});
