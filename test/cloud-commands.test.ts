// The cloud commands as a user meets them, each a child process against `cloudfetch dev`: one line
// when the endpoint cannot be reached, next steps that repeat the flags given, --json and
// --dry-run, the reasons retry takes, and how `dev` stops on Ctrl-C while fetches hang.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DevConnection } from '../cli/dev.ts';
import { awsUsageError, command, targetArgs } from '../cli/target.ts';
import { encodeJob } from '../aws/job-message.ts';
import { jobIds } from '../aws/fifo.ts';
import { FAILURE_REASONS } from '../engine/outcome.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { cli, startCli, type CliResult } from './support/cli.ts';
import { devClients, until } from './support/dev.ts';

let origin: Origin;
let cwd: string;
let dev: ChildProcess;
let devDone: Promise<CliResult>;
let devLog = '';
let connection: DevConnection;
let s3: S3Client;
let sqs: SQSClient;

/** Resolves once the dev process has said `pattern` (on stderr or stdout) after `from`; rejects if it ends first. */
function devSays(pattern: RegExp, from = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    const look = (): void => {
      if (!pattern.test(devLog.slice(from))) return;
      dev.stderr!.off('data', look);
      dev.stdout!.off('data', look);
      resolve();
    };
    dev.stderr!.on('data', look);
    dev.stdout!.on('data', look);
    void devDone.then((r) => reject(new Error(`cloudfetch dev ended (${r.code}) before saying ${pattern}: ${r.stderr}`)));
    look();
  });
}

/** An address nothing listens on: a port the OS gave us, closed again. */
async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

before(async () => {
  origin = await startOrigin();
  cwd = await mkdtemp(join(tmpdir(), 'cloudfetch-commands-'));
  // A long visibility timeout: jobs that fail stay in flight for the whole file.
  const started = startCli(['dev', '--allow-private-network', '--visibility-timeout', '600'], { cwd });
  dev = started.child;
  devDone = started.done;
  dev.stderr!.on('data', (chunk: string) => (devLog += chunk));
  dev.stdout!.on('data', (chunk: string) => (devLog += chunk));
  await devSays(/^Local cloud running/m);
  connection = JSON.parse(await readFile(join(cwd, '.cloudfetch', 'dev.json'), 'utf8')) as DevConnection;
  ({ s3, sqs } = devClients(connection));
});

after(async () => {
  s3?.destroy();
  sqs?.destroy();
  dev?.kill('SIGKILL');
  await devDone;
  await origin.close();
  await rm(cwd, { recursive: true, force: true });
});

const run = (...args: string[]) => cli([...args, '--dev'], { cwd });

async function depths(url: string): Promise<[number, number, number]> {
  const { Attributes: a = {} } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }));
  return [Number(a.ApproximateNumberOfMessages), Number(a.ApproximateNumberOfMessagesNotVisible), Number(a.ApproximateNumberOfMessagesDelayed)];
}

// 24 images (eight of each size), 6 missing: three batches of the stack's 20 or fewer.
const IMAGES = Array.from({ length: 30 }, (_, i) => i + 1);
const stored = IMAGES.filter((i) => i % 5 !== 0);
const bytesOf = (i: number): number => sampleImage(`g${i}`, 'jpeg', 1000 + (i % 3) * 500).length;

describe('cloud commands', () => {
  test('an endpoint that refuses is one line naming it and what to check, exit 2', async () => {
    const url = await refusingUrl();
    const flags = ['--endpoint', url, '--bucket', 'b', '--queue-url', `${url}/000000000000/q`];
    for (const args of [['status', ...flags], ['sync', 'data', ...flags], ['retry', ...flags]]) {
      const result = await cli(args, { cwd });
      assert.equal(result.code, 2, args.join(' '));
      assert.equal(result.stderr, `cloudfetch: cannot reach the S3/SQS endpoint ${url} (connection refused): is it running (\`cloudfetch dev\`, LocalStack)? check --endpoint or AWS_ENDPOINT_URL\n`);
    }

    // A local cloud whose emulator is gone (its process alive: this one).
    const elsewhere = await mkdtemp(join(tmpdir(), 'cloudfetch-gone-'));
    try {
      await mkdir(join(elsewhere, '.cloudfetch'));
      await writeFile(join(elsewhere, '.cloudfetch', 'dev.json'), JSON.stringify({ ...connection, endpoint: url, pid: process.pid }));
      const result = await cli(['status', '--dev'], { cwd: elsewhere });
      assert.equal(result.code, 2);
      assert.equal(result.stderr, `cloudfetch: cannot reach the local cloud at ${url} (connection refused): is \`cloudfetch dev\` still running in this folder?\n`);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  test('network errors from AWS name the region and what to check', () => {
    const where = { where: { region: 'ap-east-1' } };
    const dns = Object.assign(new Error('getaddrinfo EAI_AGAIN cloudformation.ap-east-1.amazonaws.com'), { code: 'EAI_AGAIN', hostname: 'cloudformation.ap-east-1.amazonaws.com' });
    assert.equal(awsUsageError(dns, where).message, 'cannot reach AWS in region ap-east-1 (DNS lookup failed): check your network, proxy, or --region');
    const unknownHost = Object.assign(new Error('getaddrinfo ENOTFOUND s3.amazonaws.com'), { code: 'ENOTFOUND', hostname: 's3.amazonaws.com' });
    assert.equal(awsUsageError(unknownHost).message, 'cannot reach AWS at s3.amazonaws.com (host not found): check your network, proxy, or --region');
    const timeout = Object.assign(new Error('Socket timed out without establishing a connection within 15000 ms'), { name: 'TimeoutError' });
    assert.equal(awsUsageError(timeout, where).message, 'cannot reach AWS in region ap-east-1 (timed out): check your network, proxy, or --region');
    const reset = new Error('read failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
    assert.equal(awsUsageError(reset, where).message, 'cannot reach AWS in region ap-east-1 (connection reset): check your network, proxy, or --region');
    const certificate = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    assert.equal(
      awsUsageError(certificate, where).message,
      'cannot reach AWS in region ap-east-1 (certificate not accepted: SELF_SIGNED_CERT_IN_CHAIN): a proxy may be intercepting TLS: set NODE_EXTRA_CA_CERTS to its CA certificate',
    );
    // Tried on IPv6 and IPv4: an AggregateError of both refusals.
    const both = new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:4566'), { code: 'ECONNREFUSED' })], '');
    assert.equal(awsUsageError(both, { where: { endpoint: 'http://localhost:4566' } }).message, 'cannot reach the S3/SQS endpoint http://localhost:4566 (connection refused): is it running (`cloudfetch dev`, LocalStack)? check --endpoint or AWS_ENDPOINT_URL');
    const other = new Error('something else');
    assert.equal(awsUsageError(other, where), other);
  });

  test('next steps repeat the target flags given', () => {
    const args = targetArgs({ stack: 'cf2', outputs: 'out.json', region: 'ap-east-1', profile: "kaggle's", endpoint: 'http://127.0.0.1:4566' });
    assert.equal(command({ args }, 'sync <dir>'), "`cloudfetch sync <dir> --stack cf2 --outputs out.json --region ap-east-1 --profile 'kaggle'\\''s' --endpoint http://127.0.0.1:4566`");
    assert.equal(command({ args: targetArgs({ dev: true }) }, 'status --watch'), '`cloudfetch status --watch --dev`');
    assert.equal(command({ args: targetArgs({ bucket: 'b', queueUrl: 'https://sqs.ap-east-1.amazonaws.com/1/q', dlqUrl: 'https://sqs.ap-east-1.amazonaws.com/1/d' }) }, 'retry'),
      '`cloudfetch retry --bucket b --queue-url https://sqs.ap-east-1.amazonaws.com/1/q --dlq-url https://sqs.ap-east-1.amazonaws.com/1/d`');
  });

  test('submit --dry-run checks and counts, uploads nothing', async () => {
    const lines = ['id,url', ...IMAGES.map((i) => `d${i},${origin.url}/img/d${i}.jpg`)];
    await writeFile(join(cwd, 'dry.csv'), lines.join('\n') + '\n');
    const result = await run('submit', 'dry.csv', '--dry-run', '--json');
    assert.equal(result.code, 0, result.stderr);
    const { size } = await stat(join(cwd, 'dry.csv'));
    assert.deepEqual(JSON.parse(result.stdout), { dryRun: true, split: 'dry', manifest: 'manifests/dry.csv', bucket: connection.bucket, bytes: size, entries: 30 });
    assert.match(result.stderr, new RegExp(`^Would upload \\S+ \\S+ \\(30 entries\\) to s3://${connection.bucket}/manifests/dry.csv, split "dry". Dry run: nothing uploaded.$`, 'm'));
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: connection.bucket, Key: 'manifests/dry.csv' })), { name: 'NotFound' });
    await assert.rejects(s3.send(new HeadObjectCommand({ Bucket: connection.bucket, Key: 'status/dry.json' })), { name: 'NotFound' });
  });

  test('submit --json prints the split; its next steps keep --dev', async () => {
    const lines = ['id,url', ...IMAGES.map((i) => `g${i},${origin.url}${i % 5 === 0 ? '/status/404' : `/img/g${i}.jpg?size=${1000 + (i % 3) * 500}`}`)];
    await writeFile(join(cwd, 'good.csv'), lines.join('\n') + '\n');
    const result = await run('submit', 'good.csv', '--json');
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.deepEqual(
      { split: status.split, manifest: status.manifest, state: status.state, entries: status.entries, queued: status.queued, invalid: status.invalid },
      { split: 'good', manifest: 'manifests/good.csv', state: 'queued', entries: 30, queued: 30, invalid: 0 },
    );
    assert.match(result.stderr, /^Follow with `cloudfetch status --watch --dev`, then `cloudfetch sync <dir> --dev`\.$/m);

    const watched = await run('status', '--watch', '--interval', '1');
    assert.equal(watched.code, 0, watched.stderr);
    assert.match(watched.stdout, /^Nothing left to fetch: `cloudfetch sync <dir> --dev` brings the images home\.$/m);
  });

  test('sync --dry-run counts files and bytes and writes nothing; after a sync it finds nothing to copy', async () => {
    const bytes = stored.reduce((sum, i) => sum + bytesOf(i), 0);
    const dry = await run('sync', 'data', '--split', 'good', '--dry-run', '--json');
    assert.equal(dry.code, 0, dry.stderr);
    const [plan] = JSON.parse(dry.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      { dryRun: plan!.dryRun, listed: plan!.listed, downloaded: plan!.downloaded, skipped: plan!.skipped, bytes: plan!.bytes },
      { dryRun: true, listed: 24, downloaded: 24, skipped: 0, bytes },
    );
    assert.deepEqual(plan!.counts, { entries: 30, fetched: 24, failed: 6, pending: 0, retrying: 0, bytes, byReason: { 'http-404': 6 } });
    assert.match(dry.stderr, /^good: would copy 24 files \(.+\), 0 already here; table .+good\.csv would list 24 stored, 6 failed, 0 pending\. Dry run: nothing written\.$/m);
    assert.equal(existsSync(join(cwd, 'data')), false, 'no folder, no file');

    assert.equal((await run('sync', 'data', '--split', 'good', '--quiet')).code, 0);
    const again = await run('sync', 'data', '--split', 'good', '--dry-run', '--json');
    const [second] = JSON.parse(again.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual([second!.downloaded, second!.skipped, second!.bytes], [0, 24, 0]);
  });

  test('failure keys with a reason this version does not know are not ours: counted nowhere, and report and status still print', async () => {
    // g5 and g10 failed with http-404; these keys are as new or newer, so they would be their latest reason.
    for (const [reason, id] of [['constructor', 'g5'], ['__proto__', 'g10'], ['http-999', 'g15']] as const) {
      await s3.send(new PutObjectCommand({ Bucket: connection.bucket, Key: `failures/good/${reason}/${id}.json`, Body: '{}' }));
    }
    const report = await run('report', '--split', 'good', '--json', '--html', 'report.html');
    assert.equal(report.code, 0, report.stderr);
    const [r] = JSON.parse(report.stdout) as Array<{ counts: { failed: number; byReason: unknown }; examples: Record<string, unknown[]> }>;
    assert.equal(r!.counts.failed, 6);
    assert.deepEqual(r!.counts.byReason, { 'http-404': 6 });
    assert.deepEqual(Object.keys(r!.examples), ['http-404']);
    assert.doesNotMatch(await readFile(join(cwd, 'report.html'), 'utf8'), /constructor|__proto__|http-999/);
    const status = await run('status', '--split', 'good', '--counts');
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^ {2}now: 24 stored, 6 failed \(http-404 6\), /m);
  });

  test('retry --dry-run counts the dead-letter queue and the failures it would send, and sends nothing', async () => {
    const job = { split: 'parked', id: '1', urls: [`${origin.url}/img/parked.jpg`], labels: [], key: 'parked/1.jpg', position: 1 };
    await sqs.send(new SendMessageCommand({ QueueUrl: connection.dlqUrl, MessageBody: encodeJob(job), ...jobIds(job, 4) }));
    const [jobsBefore, dlqBefore] = [await depths(connection.queueUrl), await depths(connection.dlqUrl)];
    const hits = origin.hits('/status/404');

    const result = await run('retry', '--reasons', 'http-404', '--dry-run', '--json');
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { fromDeadLetter: 1, resent: 6, alreadyStored: 0, dryRun: true });
    const human = await run('retry', '--reasons', 'http-404', '--dry-run');
    assert.equal(human.stderr, 'Would send back 1 job from the dead-letter queue and 6 recorded failures. Dry run: nothing sent.\n');

    assert.deepEqual(await depths(connection.queueUrl), jobsBefore);
    assert.deepEqual(await depths(connection.dlqUrl), dlqBefore);
    assert.deepEqual(dlqBefore, [1, 0, 0]);
    assert.equal(origin.hits('/status/404'), hits);
  });

  test('an unknown retry reason is refused in one line listing the reasons it takes', async () => {
    const result = await run('retry', '--reasons', 'http-404,http-999');
    assert.equal(result.code, 2);
    const valid = Object.keys(FAILURE_REASONS).filter((r) => r !== 'no-url' && r !== 'bad-url' && r !== 'unqueueable');
    assert.equal(result.stderr, `cloudfetch: unknown reason "http-999": --reasons takes ${valid.join(', ')}\n`);
  });

  test('a message that is not a job is dropped with one log line, and no Powertools warning follows', async () => {
    const { MessageId } = await sqs.send(new SendMessageCommand({ QueueUrl: connection.queueUrl, MessageBody: 'this is not a job', MessageGroupId: 'poison', MessageDeduplicationId: 'poison' }));
    await devSays(new RegExp(`"message is not a job: dropped".*${MessageId}`));
    // The handler has returned (and published, or not) once the local cloud logs the invocation.
    await devSays(/ 1 records: done in \d+ ms/, devLog.search(new RegExp(MessageId!)));
    assert.doesNotMatch(devLog, /No application metrics to publish/);
  });

  test('while images never answer, the dev cloud is fetching them', async () => {
    const lines = ['id,url', ...Array.from({ length: 6 }, (_, i) => `h${i},${origin.url}/stall-headers/h${i}`)];
    await writeFile(join(cwd, 'hang.csv'), lines.join('\n') + '\n');
    assert.equal((await run('submit', 'hang.csv')).code, 0);
    await until(() => Array.from({ length: 6 }, (_, i) => origin.hits(`/stall-headers/h${i}`)).some((n) => n > 0), 'a fetch of a hanging image');
  });

  test('Ctrl-C stops dev at once: one line on what it waits for, exit 130; no Powertools warning in its log', { timeout: 10_000 }, async () => {
    dev.kill('SIGINT');
    const result = await devDone;
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stderr, /^Stopping the local cloud: polling stopped, waiting up to 5 s for \d+ running fetch invocations? \(Ctrl-C again to quit at once\)…$/m);
    assert.match(result.stderr, /^Left \d+ invocations? unfinished: the embedded emulator keeps nothing\.$/m);
    assert.equal(existsSync(join(cwd, '.cloudfetch', 'dev.json')), false);
    assert.doesNotMatch(devLog, /No application metrics to publish/);
  });
});
