// The fetch function's own cost per image, in the local cloud: its handler (aws/lambda/fetch.ts) in a
// process of its own, as one warm Lambda container runs it (one invocation at a time, batches of the
// stack's fetchBatchSize from a FIFO queue, its groups by host slot), against the S3 emulator and the
// loopback origin, each in a process of their own. Reported per image: CPU ms of the function's
// process (what Lambda's share of a vCPU must carry) and GB-s (invocation time × the function's memory,
// what Lambda bills), after the first invocation (cold start, shown apart). --before TREE runs the
// handler of another checkout too (a git worktree of an older commit), alternating: before and after
// in the same run. Every run is checked: no record failed, every image stored under images/.
//
//   node bench/fetch-function.ts [--images 2000] [--latency 50] [--runs 3] [--before TREE]

import { CreateBucketCommand, paginateListObjectsV2, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { cdkJsonSettings, functionEnvironment } from '../aws/settings.ts';
import { PREFIX } from '../aws/bucket.ts';
import type { Job } from '../engine/job.ts';
import { awsClientConfig, connectEndpoint } from '../local-cloud/emulator.ts';
import { lambdaContext } from '../local-cloud/cloud.ts';
import { killRunning, startServer, table, type ServerProcess } from './measure.ts';

const ROOT = resolve(import.meta.dirname, '..');
const REGION = 'us-east-1';

interface DriverResult {
  images: number;
  invocations: number;
  failedRecords: number;
  coldMs: number;
  coldCpuMs: number;
  warmMs: number;
  warmCpuMs: number;
  memoryMb: number;
  /** TCP connections the function's process opened to S3 (the emulator) and to the origin, warm invocations only. */
  s3Connections: number;
  originConnections: number;
}

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '2000' },
    latency: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
    before: { type: 'string' },
    // Internal: this process is the function (see driver()).
    driver: { type: 'string' },
  },
});

const sizeOf = (i: number): number => 20 * 1024 + ((i * 7919) % (20 * 1024));

/** The function's side: loads TREE's handler with the function's environment, invokes it batch after batch. */
async function driver(tree: string): Promise<void> {
  const origin = process.env.BENCH_ORIGIN!;
  const images = Number(process.env.BENCH_IMAGES);
  const batchSize = Number(process.env.BENCH_BATCH);
  const hostConcurrency = Number(process.env.BENCH_HOST_CONCURRENCY);
  const memoryMb = Number(process.env.BENCH_MEMORY_MB);
  const timeoutSeconds = Number(process.env.BENCH_TIMEOUT_S);
  const module = (path: string): string => pathToFileURL(join(tree, path)).href;
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const { handler } = (await import(module('aws/lambda/fetch.ts'))) as { handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> };
  const { encodeJob } = (await import(module('aws/job-message.ts'))) as { encodeJob: (job: Job) => string };
  const { messageGroupId } = (await import(module('aws/fifo.ts'))) as { messageGroupId: (job: Job, hostConcurrency: number) => string };
  const record = (job: Job): SQSRecord => ({
    messageId: `m-${job.id}`,
    receiptHandle: `r-${job.id}`,
    body: encodeJob(job),
    attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(Date.now()), SenderId: 'bench', ApproximateFirstReceiveTimestamp: String(Date.now()), MessageGroupId: messageGroupId(job, hostConcurrency), MessageDeduplicationId: `d-${job.id}` },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:${REGION}:000000000000:bench-jobs.fifo`,
    awsRegion: REGION,
  });
  const result: DriverResult = { images, invocations: 0, failedRecords: 0, coldMs: 0, coldCpuMs: 0, warmMs: 0, warmCpuMs: 0, memoryMb, s3Connections: 0, originConnections: 0 };
  // Every client socket (the SDK's and undici's alike), told apart by the port it connects to.
  const originPort = Number(new URL(origin).port);
  subscribe('net.client.socket', (message) => {
    const socket = (message as { socket: Socket }).socket;
    if (result.invocations === 0) return;
    socket.once('connect', () => {
      if (socket.remotePort === originPort) result.originConnections++;
      else result.s3Connections++;
    });
  });
  for (let first = 1; first <= images; first += batchSize) {
    const jobs: Job[] = [];
    for (let i = first; i < first + batchSize && i <= images; i++) {
      jobs.push({ split: 'bench', id: String(i), urls: [`${origin}/img/ff-${i}.jpg?size=${sizeOf(i)}`], labels: [], key: `bench/${i}.jpg`, position: i });
    }
    const cpu = process.cpuUsage();
    const t = performance.now();
    const answer = await handler({ Records: jobs.map(record) }, lambdaContext({ name: 'bench-fetch', memoryMb, timeoutSeconds }, REGION));
    const ms = performance.now() - t;
    const cpuMs = cpuMsSince(cpu);
    result.invocations++;
    result.failedRecords += answer.batchItemFailures.length;
    if (first === 1) {
      // Loading the module counts for the cold start, as Lambda's init does.
      result.coldMs = performance.now() - started;
      result.coldCpuMs = cpuMsSince(cpu0);
    } else {
      result.warmMs += ms;
      result.warmCpuMs += cpuMs;
    }
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // The handler's container keeps its clients and connections, as Lambda's does: end here.
  process.exit(0);
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const { user, system } = process.cpuUsage(start);
  return (user + system) / 1000;
}

/** Runs the function's process for `tree` against a fresh bucket; checks every image was stored. */
async function runFunction(tree: string, bucket: string, env: Record<string, string>, s3: S3Client): Promise<DriverResult> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'fetch-function.ts'), '--driver', tree], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  if (code !== 0) throw new Error(`the function's process (${tree}) exited with ${code}: ${err.trim().split('\n').slice(-3).join(' / ')}`);
  const result = JSON.parse(out.trim().split('\n').at(-1)!) as DriverResult;
  let stored = 0;
  for await (const page of paginateListObjectsV2({ client: s3 }, { Bucket: bucket, Prefix: PREFIX.images })) stored += page.KeyCount ?? 0;
  if (result.failedRecords > 0 || stored !== result.images) throw new Error(`${tree}: ${result.failedRecords} records failed, ${stored} of ${result.images} images stored`);
  return result;
}

async function main(): Promise<void> {
  const images = Number(values.images);
  const latency = Number(values.latency);
  const runs = Number(values.runs);
  if (!Number.isSafeInteger(images) || images < 20 || !(latency >= 0) || !Number.isSafeInteger(runs) || runs < 1) {
    process.stderr.write('bench:fetch-function: --images takes a whole number of at least 20, --latency milliseconds, --runs a whole number\n');
    process.exit(2);
  }
  const servers: ServerProcess[] = [];
  const s3Clients: S3Client[] = [];
  try {
    const origin = await startServer(join(ROOT, 'bench', 'origin-server.ts'), ['--latency', String(latency)]);
    servers.push(origin);
    const emulatorServer = await startServer(join(ROOT, 'bench', 'emulator-server.ts'));
    servers.push(emulatorServer);
    const emulator = connectEndpoint(emulatorServer.url);
    const s3 = new S3Client(awsClientConfig(emulator));
    s3Clients.push(s3);
    const settings = await cdkJsonSettings();
    const trees: Array<[string, string]> = [...(values.before ? [['before', resolve(values.before)] as [string, string]] : []), ['this tree', ROOT]];
    process.stdout.write(`The fetch function, ${images} images of 20–40 KiB per run from an origin answering in ${latency} ms, batches of ${settings.fetchBatchSize}, ${settings.fetchMemoryMb} MB, ${runs} runs of each, alternating\n`);
    const seen = new Map<string, DriverResult[]>(trees.map(([name]) => [name, []]));
    for (let run = 0; run < runs; run++) {
      for (const [name, tree] of trees) {
        const bucket = `bench-fetch-${run}-${name === 'before' ? 'b' : 'a'}-${Date.now()}`;
        const env: Record<string, string> = {
          ...functionEnvironment(settings, 'fetch', { bucket, jobsQueueUrl: `${emulator.endpoint}/000000000000/bench-jobs.fifo` }),
          AWS_REGION: emulator.region,
          AWS_DEFAULT_REGION: emulator.region,
          ...(emulator.credentials ? { AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey } : {}),
          AWS_ENDPOINT_URL: emulator.endpoint,
          AWS_ENDPOINT_URL_S3: emulator.endpoint,
          AWS_ENDPOINT_URL_SQS: emulator.endpoint,
          AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'false',
          ALLOW_PRIVATE_NETWORK: 'true',
          POWERTOOLS_METRICS_DISABLED: 'true',
          POWERTOOLS_LOG_LEVEL: 'WARN',
          BENCH_ORIGIN: origin.url,
          BENCH_IMAGES: String(images),
          BENCH_BATCH: String(settings.fetchBatchSize),
          BENCH_HOST_CONCURRENCY: String(settings.hostConcurrency),
          BENCH_MEMORY_MB: String(settings.fetchMemoryMb),
          BENCH_TIMEOUT_S: String(settings.fetchTimeoutSeconds),
        };
        const result = await runFunction(tree, bucket, env, s3);
        seen.get(name)!.push(result);
        const warm = result.images - Math.min(result.images, settings.fetchBatchSize);
        process.stderr.write(`  ${name}: ${(result.warmCpuMs / warm).toFixed(2)} CPU ms and ${((result.warmMs / 1000) * (result.memoryMb / 1024) / warm).toFixed(4)} GB-s per image; cold start ${result.coldCpuMs.toFixed(0)} CPU ms in ${result.coldMs.toFixed(0)} ms; warm: ${result.s3Connections} connections to S3, ${result.originConnections} to the origin\n`);
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const rows = [['handler', 'CPU ms / image (median)', 'range', 'GB-s / image (median)', 'range', 'ms / invocation', 'cold start CPU ms']];
    for (const [name, results] of seen) {
      const warm = (r: DriverResult): number => r.images - Math.min(r.images, settings.fetchBatchSize);
      const cpu = results.map((r) => r.warmCpuMs / warm(r));
      const gbs = results.map((r) => ((r.warmMs / 1000) * (r.memoryMb / 1024)) / warm(r));
      const perInvocation = results.map((r) => r.warmMs / (r.invocations - 1));
      rows.push([name, median(cpu).toFixed(2), `${Math.min(...cpu).toFixed(2)}–${Math.max(...cpu).toFixed(2)}`, median(gbs).toFixed(4), `${Math.min(...gbs).toFixed(4)}–${Math.max(...gbs).toFixed(4)}`, median(perInvocation).toFixed(0), median(results.map((r) => r.coldCpuMs)).toFixed(0)]);
    }
    process.stdout.write(table(rows) + '\n');
  } finally {
    for (const s3 of s3Clients) s3.destroy();
    killRunning();
    await Promise.all(servers.map((s) => s.stop()));
  }
}

if (values.driver) await driver(resolve(values.driver));
else await main();
