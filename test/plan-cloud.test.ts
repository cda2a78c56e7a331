// `cloudfetch plan --dev`: the sample fetched from this machine and, through Lambda's Invoke API,
// by the local cloud's real fetch handler in its dry mode; nothing lands in the bucket or the queue.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { PlanReport } from '../cli/plan.ts';
import { cloudProbe } from '../cli/plan-cloud.ts';
import type { Target } from '../cli/target.ts';
import { DEFAULT_SETTINGS } from '../aws/settings.ts';
import type { LocalCloud } from '../local-cloud/cloud.ts';
import { startLambdaApi } from '../local-cloud/lambda-api.ts';
import { startOrigin } from '../local-cloud/origin.ts';
import { cli } from './support/cli.ts';
import { startDevProcess, type DevProcess } from './support/dev.ts';
import { lazyFixture } from './support/fixture.ts';

const halfPath = (i: number): string => (i % 2 === 0 ? `/img/h${i}.jpg` : `/status/404?i=${i}`);

// Two origins, a manifest of both and a `cloudfetch dev`, for the tests that ask (support/fixture.ts).
const setUp = lazyFixture(async (onClose) => {
  const good = await startOrigin();
  onClose(() => good.close());
  const half = await startOrigin();
  onClose(() => half.close());
  const cwd = await mkdtemp(join(tmpdir(), 'cloudfetch-plan-cloud-'));
  onClose(() => rm(cwd, { recursive: true, force: true }));
  const rows = ['id,url'];
  for (let i = 0; i < 100; i++) rows.push(`g${i},${good.url}/img/g${i}.jpg`);
  for (let i = 0; i < 100; i++) rows.push(`h${i},${half.url}${halfPath(i)}`);
  await writeFile(join(cwd, 'm.csv'), rows.join('\n') + '\n');
  const dev: DevProcess = await startDevProcess(cwd, ['--allow-private-network']);
  onClose(() => dev.stop());
  return { good, half, cwd, dev, connection: dev.connection };
});

after(() => setUp.close());

test('plan --dev: both sides probe the same sample; the cloud side through the fetch function, storing nothing', async () => {
  const { good, half, cwd, dev, connection } = await setUp.get();
  assert.ok(connection.lambdaEndpoint && connection.fetchFunction, 'dev.json names the Invoke endpoint and the fetch function');
  const result = await cli(['plan', 'm.csv', '--dev', '--json', '-q', '--allow-private-network', '--min-per-origin', '20'], { cwd });
  assert.equal(result.code, 0, result.stderr);
  const r = JSON.parse(result.stdout) as PlanReport;
  assert.equal(r.cloud, `the fetch function ${connection.fetchFunction}`);
  assert.equal(r.prediction.basis, 'cloud');
  const by = new Map(r.perOrigin.map((o) => [o.origin, o]));
  const g = by.get(good.url)!;
  const h = by.get(half.url)!;
  assert.deepEqual([g.sampled, h.sampled], [20, 20]);
  assert.deepEqual([g.here!.okShare, g.cloud!.okShare, g.cloud!.probed], [1, 1, 20]);
  assert.ok(g.cloud!.meanBytes > 0 && g.cloud!.meanBytes === g.here!.meanBytes, 'the same images, the same bytes');
  // The same sampled paths from both sides: the same fates.
  assert.equal(h.cloud!.okShare, h.here!.okShare);
  assert.ok(h.cloud!.okShare > 0.2 && h.cloud!.okShare < 0.8, String(h.cloud!.okShare));
  assert.equal(h.cloud!.failures['http-404'], Math.round(20 * (1 - h.cloud!.okShare)));
  assert.ok(Math.abs(r.prediction.predictedSuccessRate - (100 + 100 * h.cloud!.okShare) / 200) < 1e-9);
  // Each side asked each sampled image once.
  assert.equal(good.totalRequests() + half.totalRequests(), 80);

  const listed = await dev.s3.send(new ListObjectsV2Command({ Bucket: connection.bucket }));
  assert.equal(listed.KeyCount ?? 0, 0, `nothing in the bucket: ${JSON.stringify(listed.Contents?.map((o) => o.Key))}`);
  const { Attributes: a = {} } = await dev.sqs.send(new GetQueueAttributesCommand({ QueueUrl: connection.queueUrl, AttributeNames: ['All'] }));
  assert.equal(Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible), 0);
});

test('plan --dev with a function that is not there: one line, exit 2', async () => {
  const { cwd } = await setUp.get();
  const result = await cli(['plan', 'm.csv', '--dev', '-q', '--allow-private-network', '--fetch-function', 'nope'], { cwd });
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stderr, 'cloudfetch: Lambda refused to invoke nope: ResourceNotFoundException: Function not found: nope\n');
});

test('a fetch function without the dry mode, or one that fails: one line saying so, from the empty plan sent first', async () => {
  const cloud = { settings: DEFAULT_SETTINGS, emulator: { region: 'us-east-1' } } as unknown as LocalCloud;
  const s3 = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const handlers = [
    { handler: async () => ({ batchItemFailures: [] }), error: /^UsageError: cloudfetch-fetch did not answer a plan: is it deployed from an older cloudfetch\?/ },
    { handler: async () => { throw new TypeError('no Records'); }, error: /^UsageError: cloudfetch-fetch failed: TypeError: no Records: is it deployed from an older cloudfetch, without the dry mode\?/ },
  ];
  try {
    for (const { handler, error } of handlers) {
      const api = await startLambdaApi(cloud, handler);
      try {
        const target = { s3, source: 'test', fetchFunction: api.fetchFunction, lambdaEndpoint: api.url, where: {} } as unknown as Target;
        const probe = await cloudProbe(target, { concurrency: 1, perOrigin: 1 });
        await assert.rejects(probe.check(), error);
      } finally {
        await api.close();
      }
    }
  } finally {
    s3.destroy();
  }
});
