// The fetch function alone in this process, so its peak memory can be measured: one invocation of
// the real handler with a batch of jobs, against the emulator at an endpoint.
// Prints {"maxRssBytes":…,"failed":[messageIds]} on stdout.
//
//   node test/support/fetch-memory.ts ENDPOINT BUCKET MEMORY_MB URL...

import type { SQSEvent } from 'aws-lambda';
import { encodeJob } from '../../aws/job-message.ts';
import { DEFAULT_SETTINGS, functionEnvironment } from '../../aws/settings.ts';
import { lambdaContext } from '../../local-cloud/cloud.ts';
import { DEFAULT_EMULATOR_REGION, EMULATOR_CREDENTIALS } from '../../local-cloud/emulator.ts';

const [endpoint, bucket, memoryMb, ...urls] = process.argv.slice(2);
if (!endpoint || !bucket || !memoryMb) throw new Error('usage: fetch-memory.ts ENDPOINT BUCKET MEMORY_MB URL...');
// The function's longest limits: this measures memory, and a loaded machine must not turn slowness
// into failures; one receive allowed, so this delivery is the last and no record is returned as a
// straggler (aws/lambda/straggler.ts).
const settings = { ...DEFAULT_SETTINGS, fetchTimeoutSeconds: 900, imageTimeoutSeconds: 600, maxReceiveCount: 1 };
Object.assign(process.env, functionEnvironment(settings, 'fetch', { bucket, jobsQueueUrl: '' }), {
  AWS_REGION: DEFAULT_EMULATOR_REGION,
  AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
  AWS_ENDPOINT_URL: endpoint,
  ALLOW_PRIVATE_NETWORK: 'true',
  POWERTOOLS_LOG_LEVEL: 'SILENT',
  POWERTOOLS_METRICS_DISABLED: 'true',
});
const { handler } = await import('../../aws/lambda/fetch.ts');

const event: SQSEvent = {
  Records: urls.map((url, i) => ({
    messageId: `m${i}`,
    receiptHandle: `r${i}`,
    body: encodeJob({ split: 'train', id: String(i), urls: [url], labels: [], key: `train/${i}.jpg`, position: i + 1 }),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'test', ApproximateFirstReceiveTimestamp: '0' },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:jobs',
    awsRegion: DEFAULT_EMULATOR_REGION,
  })),
};
const fn = { name: 'cloudfetch-fetch', memoryMb: Number(memoryMb), timeoutSeconds: settings.fetchTimeoutSeconds };
const answer = await handler(event, lambdaContext(fn, DEFAULT_EMULATOR_REGION));
// maxRSS is in KiB.
process.stdout.write(JSON.stringify({ maxRssBytes: process.resourceUsage().maxRSS * 1024, failed: answer.batchItemFailures.map((f) => f.itemIdentifier) }) + '\n');
process.exit(0);
