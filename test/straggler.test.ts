// Stragglers (aws/lambda/straggler.ts): a record whose origin does not answer within its share of
// the invocation is returned to the queue, not failed, and fetched on a later delivery; the real
// fetch handler in the local cloud, against an origin the test controls.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import { fetchRecords } from '../aws/home/cloud-state.ts';
import { encodeJob } from '../aws/job-message.ts';
import { BatchProgress, RETURN_VISIBILITY_SECONDS, recordDeadline, shareMs } from '../aws/lambda/straggler.ts';
import { lambdaContext } from '../local-cloud/cloud.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';
import { sampleImage } from '../local-cloud/origin.ts';

describe('a straggler', () => {
  test('gets a doubling share of the image deadline, all of it on its last allowed delivery', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map((k) => shareMs(k, 5, 30_000)), [1_875, 3_750, 7_500, 15_000, undefined]);
    assert.equal(shareMs(9, 5, 30_000), undefined);
    assert.equal(shareMs(1, 1, 30_000), undefined);
  });

  test('is cut after its share only once most of its batch is finished, never when the batch is slow all over', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const invocation = new AbortController();
    const batch = new BatchProgress(4);
    const [slow, other, third, last] = [1, 2, 3, 4].map(() => recordDeadline(invocation.signal, 1_000, batch));
    t.mock.timers.tick(5_000);
    assert.equal(slow!.signal.aborted, false, 'all four still running: the batch is slow all over');
    other!.dispose();
    assert.equal(slow!.signal.aborted, false, 'one of four finished');
    third!.dispose();
    assert.equal(slow!.signal.aborted, true, 'half finished: the rest are stragglers');
    assert.equal(slow!.shareEnded(), true);
    assert.equal(last!.signal.aborted, true);
    const lastDelivery = recordDeadline(invocation.signal, undefined, batch);
    t.mock.timers.tick(60_000);
    assert.equal(lastDelivery.signal.aborted, false, 'no share on the last allowed delivery');
    invocation.abort();
    assert.equal(lastDelivery.signal.aborted, true, "the invocation's deadline still applies");
    assert.equal(lastDelivery.shareEnded(), false);
    for (const r of [slow, last, lastDelivery]) r!.dispose();
  });

  test('waiting for memory does not use up its share', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const batch = new BatchProgress(2);
    const waiting = recordDeadline(new AbortController().signal, 1_000, batch);
    recordDeadline(new AbortController().signal, 1_000, batch).dispose();
    waiting.pause();
    t.mock.timers.tick(60_000);
    waiting.resume();
    assert.equal(waiting.signal.aborted, false, 'the share has not run while it waited');
    t.mock.timers.tick(1_000);
    assert.equal(waiting.signal.aborted, true, 'then its share ends, its peer done');
    waiting.dispose();
  });

  test('a batch of one is never cut: there is nothing to be behind', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const only = recordDeadline(new AbortController().signal, 1_000, new BatchProgress(1));
    t.mock.timers.tick(60_000);
    assert.equal(only.signal.aborted, false);
    only.dispose();
  });

  test('is returned to the queue, not failed, and fetched on a later delivery when its origin answers', async () => {
    const slow = sampleImage('straggler', 'jpeg', 20_000);
    // Each its own bytes: many URLs of one host with the same bytes are a placeholder.
    const fast = (path: string): Buffer => sampleImage(`quick${path}`, 'jpeg', 10_000);
    const seen: Array<{ path: string; ended: 'answered' | 'abandoned' }> = [];
    let slowRequests = 0;
    // Two hosts (the fast ones must not wait for the slow one's host). /slow.jpg: the first request is never answered (the
    // client must give up); the second is answered after 3 s, longer than the first delivery's
    // share (8 s ÷ 4) and within the second's (8 s ÷ 2), so it is stored only if the share grows.
    const origins = [createServer(), createServer()];
    for (const origin of origins) {
      origin.on('request', (req, res) => {
        const entry = { path: req.url ?? '', ended: 'abandoned' as 'answered' | 'abandoned' };
        seen.push(entry);
        const answer = (body: Buffer): void => {
          entry.ended = 'answered';
          res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
        };
        if (req.url?.startsWith('/fast')) return answer(fast(req.url));
        if (req.url === '/slow.jpg' && ++slowRequests === 2) {
          const timer = setTimeout(() => answer(slow), 3_000);
          res.once('close', () => clearTimeout(timer));
        }
      });
      origin.listen(0, '127.0.0.1');
      await once(origin, 'listening');
    }
    const [slowUrl, fastUrl] = origins.map((o) => `http://127.0.0.1:${(o.address() as AddressInfo).port}`);

    // What the function counts and how it hands records back, seen from the outside.
    const metricNames: string[] = [];
    const addMetric = Metrics.prototype.addMetric;
    Metrics.prototype.addMetric = function (this: Metrics, name, ...rest) {
      metricNames.push(name);
      return addMetric.call(this, name, ...rest);
    };
    const visibilityChanges: number[] = [];
    const send = SQSClient.prototype.send;
    SQSClient.prototype.send = function (this: SQSClient, command: unknown, ...rest: unknown[]) {
      if (command instanceof ChangeMessageVisibilityCommand) visibilityChanges.push(command.input.VisibilityTimeout!);
      return (send as (...args: unknown[]) => unknown).call(this, command, ...rest);
    } as typeof send;

    // The local cloud gives the handler its environment, bucket and queue; the test hands it the
    // batches itself, so what is in each batch is decided here, not by the poller's timing.
    const dev = await startDevCloud({
      allowPrivateNetwork: true,
      settings: { maxReceiveCount: 3, imageTimeoutSeconds: 8, fetchTimeoutSeconds: 30, retryDelaySeconds: 60 },
      fetchConcurrency: 1,
      logLevel: 'SILENT',
      log: () => {},
    });
    try {
      const record = (id: number, url: string, receiveCount: number): SQSRecord => ({
        messageId: `m${id}-${receiveCount}`, receiptHandle: `r${id}-${receiveCount}`, md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: dev.cloud.queueArn, awsRegion: 'us-east-1', messageAttributes: {},
        body: encodeJob({ split: 'straggle', id: String(id), urls: [url], labels: [], key: `straggle/${id}.jpg`, position: id }),
        attributes: { ApproximateReceiveCount: String(receiveCount), SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0', MessageGroupId: `g${id}` },
      });
      const { handler } = await import('../aws/lambda/fetch.ts');
      const context = () => lambdaContext({ name: 'fetch', memoryMb: 512, timeoutSeconds: 30 }, 'us-east-1');
      // First delivery: the fast two finish, the slow one is behind them past its share: returned.
      const first = await handler({ Records: [record(1, `${slowUrl}/slow.jpg`, 1), record(2, `${fastUrl}/fast2.jpg`, 1), record(3, `${fastUrl}/fast3.jpg`, 1)] }, context());
      assert.deepEqual(first, { batchItemFailures: [{ itemIdentifier: 'm1-1' }] });
      // Second delivery, beside a new fast one: its share has doubled, and its origin answers within it.
      const second = await handler({ Records: [record(1, `${slowUrl}/slow.jpg`, 2), record(4, `${fastUrl}/fast4.jpg`, 1)] }, context());
      assert.deepEqual(second, { batchItemFailures: [] });

      const stored = async (id: number): Promise<string> => {
        const object = await dev.s3.send(new GetObjectCommand({ Bucket: dev.cloud.bucket, Key: `images/straggle/${id}.jpg` }));
        return createHash('sha256').update(await object.Body!.transformToByteArray()).digest('hex');
      };
      const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      assert.deepEqual(await Promise.all([1, 2, 3, 4].map(stored)), [sha256(slow), ...[2, 3, 4].map((id) => sha256(fast(`/fast${id}.jpg`)))]);
      const ends = (path: string): string[] => seen.filter((s) => s.path === path).map((s) => s.ended);
      assert.deepEqual(ends('/slow.jpg'), ['abandoned', 'answered']);
      assert.deepEqual([2, 3, 4].flatMap((id) => ends(`/fast${id}.jpg`)), ['answered', 'answered', 'answered']);
      // Returned once, to come back soon: not a failure, so no backoff (60 s here), no failure
      // record, no fetch record of a failure, no `failed` metric.
      assert.deepEqual(visibilityChanges, [RETURN_VISIBILITY_SECONDS]);
      const failures = await dev.s3.send(new ListObjectsV2Command({ Bucket: dev.cloud.bucket, Prefix: 'failures/' }));
      assert.equal(failures.KeyCount ?? 0, 0);
      const records = await fetchRecords(dev.s3, dev.cloud.bucket, 'straggle');
      assert.deepEqual([records.fetched.size, records.failed.size], [4, 0]);
      assert.deepEqual(metricNames.filter((n) => n !== 'bytes').sort(), ['fetched', 'fetched', 'fetched', 'fetched']);
    } finally {
      Metrics.prototype.addMetric = addMetric;
      SQSClient.prototype.send = send;
      await dev.stop();
      for (const origin of origins) {
        origin.closeAllConnections();
        origin.close();
      }
    }
  });
});
