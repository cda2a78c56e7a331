// Manifest function benchmark: the real handler (aws/lambda/manifest.ts) splits a generated
// iMaterialist Furniture manifest of N entries that sits in the emulated bucket, as Lambda would
// run it after the upload. Reports entries/s, wall time, peak RSS of the handler's process, peak
// RSS of the emulator's process, and every S3 and SQS request the handler made, per phase.
//
//   npm run bench:manifest -- [--entries 1000000[,…]] [--shape furniture] [--manifest FILE]
//                             [--heap-mb M] [--json] [--keep]
//
// Three processes, so that what is measured holds only the handler:
//   this one      generates the manifest (bench/gen-manifest.ts, a child), uploads it in parts
//                 (lib-storage Upload), creates the bucket and queues, checks the outcome
//   emulator      bench/emulator-server.ts: fauxqs, all objects and messages in its memory
//   handler       this file again with --child, under /usr/bin/time -v: the stack's environment,
//                 an S3 ObjectCreated event, a Lambda context, one invocation of the handler
// A run counts only when the queue then holds exactly the jobs the handler reports, one per
// distinct image (all of them for a generated manifest), and index/<split>.csv has a row for each.

import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { Upload } from '@aws-sdk/lib-storage';
import { INDEX_HEADER } from '../engine/index-table.ts';
import { splitNameOf } from '../engine/manifest/index.ts';
import { GNU_TIME, parseGnuTime, startServer } from './measure.ts';
import { DEFAULT_SETTINGS, functionEnvironment, visibilityTimeoutSeconds } from '../aws/settings.ts';

const ROOT = resolve(import.meta.dirname, '..');
const SELF = join(ROOT, 'bench', 'manifest.ts');
const GEN = join(ROOT, 'bench', 'gen-manifest.ts');
const EMULATOR_SERVER = join(ROOT, 'bench', 'emulator-server.ts');
const REGION = 'us-east-1';
const BUCKET = 'cloudfetch-bench';
const QUEUE = 'cloudfetch-bench-jobs';
const MANIFEST_FN = { name: `${DEFAULT_SETTINGS.stackName}-manifest`, memoryMb: DEFAULT_SETTINGS.manifestMemoryMb, timeoutSeconds: DEFAULT_SETTINGS.manifestTimeoutSeconds };
/** Parts of the manifest upload: under fauxqs's 11 MiB request limit. */
const PART_BYTES = 8 * 1024 * 1024;

/** What the --child process writes to BENCH_RESULT_FILE. */
interface ChildResult {
  ok: boolean;
  error?: string;
  statuses?: unknown[];
  handlerMs: number;
  /** process.resourceUsage().maxRSS, bytes. */
  maxRssBytes: number;
  /** Highest values seen by a 100 ms sampler of process.memoryUsage(), bytes. */
  peak: { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  requests: RequestLog[];
}

/** One SDK send() of the handler: command, start and end (ms since the invocation began), attempts. */
interface RequestLog {
  command: string;
  key?: string;
  start: number;
  end: number;
  attempts: number;
  ok: boolean;
}

// ---------------------------------------------------------------------------------------------
// The handler's process

async function child(): Promise<void> {
  const env = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`--child needs ${name}`);
    return value;
  };
  const resultFile = env('BENCH_RESULT_FILE');
  const key = env('BENCH_MANIFEST_KEY');
  const size = Number(env('BENCH_MANIFEST_SIZE'));
  const eTag = env('BENCH_MANIFEST_ETAG');

  const peak = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  const sample = (): void => {
    const m = process.memoryUsage();
    for (const name of Object.keys(peak) as Array<keyof typeof peak>) peak[name] = Math.max(peak[name], m[name]);
  };
  const sampler = setInterval(sample, 100);

  // Every request the handler's clients make, counted at send(): the handler builds its own
  // clients, so the prototypes are wrapped (attempts include the SDK's own retries).
  const requests: RequestLog[] = [];
  let t0 = performance.now();
  for (const Client of [S3Client, SQSClient] as Array<{ prototype: { send: (...args: never[]) => Promise<unknown> } }>) {
    const original = Client.prototype.send;
    Client.prototype.send = async function (this: unknown, ...args: never[]) {
      const command = args[0] as { constructor: { name: string }; input?: { Key?: string } };
      const entry: RequestLog = { command: command.constructor.name.replace(/Command$/, ''), start: performance.now() - t0, end: 0, attempts: 1, ok: false };
      if (command.input?.Key) entry.key = command.input.Key;
      requests.push(entry);
      try {
        const output = (await original.apply(this, args)) as { $metadata?: { attempts?: number } };
        entry.ok = true;
        entry.attempts = output?.$metadata?.attempts ?? 1;
        return output;
      } catch (error) {
        entry.attempts = (error as { $metadata?: { attempts?: number } })?.$metadata?.attempts ?? 1;
        throw error;
      } finally {
        entry.end = performance.now() - t0;
      }
    } as typeof original;
  }

  const { handler } = await import('../aws/lambda/manifest.ts');
  const { lambdaContext } = await import('../local-cloud/cloud.ts');
  const { s3ObjectCreatedEvent } = await import('../local-cloud/s3-notifications.ts');
  const event = s3ObjectCreatedEvent(env('BUCKET_NAME'), env('AWS_REGION'), { key, size, eTag });
  const context = lambdaContext(MANIFEST_FN, env('AWS_REGION'));

  const result: ChildResult = { ok: false, handlerMs: 0, maxRssBytes: 0, peak, requests };
  t0 = performance.now();
  try {
    result.statuses = await handler(event, context);
    result.ok = true;
  } catch (error) {
    result.error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
  result.handlerMs = performance.now() - t0;
  clearInterval(sampler);
  sample();
  result.maxRssBytes = process.resourceUsage().maxRSS * 1024;
  await writeFile(resultFile, JSON.stringify(result));
  // The handler's clients keep sockets alive: Lambda would freeze the process here.
  process.exit(result.ok ? 0 : 1);
}

// ---------------------------------------------------------------------------------------------
// The driver

const USAGE = `usage: node bench/manifest.ts [options]
  --entries N[,N…]   manifest entries; several sizes run one after the other, each with a fresh
                     emulator (default 1000000)
  --shape S          furniture | fashion | csv | jsonl, as bench/gen-manifest.ts (default furniture)
  --manifest FILE    split this manifest instead of generating one (--entries is then ignored)
  --heap-mb M        run the handler with --max-old-space-size=M (e.g. 900: a 1 GB function's heap)
  --json             print the results as JSON on stdout (the table goes to stderr)
  --keep             keep the work folder (manifest, timing files) and say where it is`;

function fail(message: string): never {
  process.stderr.write(`bench:manifest: ${message}\n${USAGE}\n`);
  process.exit(2);
}

interface RunResult {
  entries: number;
  manifestBytes: number;
  shape: string;
  /** Handler invocation, from event to returned status. */
  handlerSeconds: number;
  /** The handler's whole process: Node start, module loading, invocation. */
  processSeconds: number;
  entriesPerSecond: number;
  handlerPeakRssBytes: number;
  handlerCpuSeconds: number;
  heapPeak: ChildResult['peak'];
  heapLimitMb: number | null;
  emulatorRssBeforeBytes: number;
  emulatorPeakRssBytes: number;
  emulatorCpuSeconds: number;
  status: Record<string, unknown>;
  queueDepth: number;
  indexRows: number;
  indexBytes: number;
  phases: { name: string; seconds: number }[];
  requests: Record<string, { calls: number; attempts: number; failed: number }>;
  checks: string[];
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        entries: { type: 'string', default: '1000000' },
        shape: { type: 'string', default: 'furniture' },
        manifest: { type: 'string' },
        'heap-mb': { type: 'string' },
        json: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const sizes = values.entries.split(',').map(Number);
  if (!values.manifest && sizes.some((n) => !Number.isSafeInteger(n) || n <= 0)) fail('--entries takes positive whole numbers, comma-separated');
  const heapMb = values['heap-mb'] === undefined ? null : Number(values['heap-mb']);
  if (heapMb !== null && !(Number.isSafeInteger(heapMb) && heapMb > 0)) fail('--heap-mb takes a whole number of MiB');
  if (!['furniture', 'fashion', 'csv', 'jsonl'].includes(values.shape)) fail('--shape must be furniture, fashion, csv or jsonl');

  const work = await mkdtemp(join(tmpdir(), 'cloudfetch-bench-manifest-'));
  const say = (line: string): boolean => process.stderr.write(line + '\n');
  const results: RunResult[] = [];
  let failed = false;
  try {
    for (const entries of values.manifest ? [0] : sizes) {
      const ext = { furniture: 'json', fashion: 'json', csv: 'csv', jsonl: 'jsonl' }[values.shape]!;
      let file = values.manifest ? resolve(values.manifest) : join(work, `train.${ext}`);
      if (!values.manifest) {
        say(`generating a ${entries}-entry ${values.shape} manifest…`);
        await run(process.execPath, [GEN, '--entries', String(entries), '--shape', values.shape, '--out', file]);
      }
      try {
        const result = await runOnce({ file, shape: values.manifest ? 'given' : values.shape, expected: values.manifest ? null : entries, heapMb, work, say });
        results.push(result);
        say(describe(result));
        if (result.checks.length > 0) failed = true;
      } finally {
        if (!values.manifest && !values.keep) await rm(file, { force: true });
      }
      file = '';
    }
  } catch (error) {
    failed = true;
    say(`bench:manifest: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    if (values.keep) say(`work folder kept: ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
  if (results.length > 1) say(scaling(results));
  if (values.json) process.stdout.write(JSON.stringify({ machine: machine(), results }, null, 2) + '\n');
  process.exitCode = failed ? 1 : 0;
}

interface RunOptions {
  file: string;
  shape: string;
  /** Entries the generated manifest has, all distinct and valid; null for a given manifest. */
  expected: number | null;
  heapMb: number | null;
  work: string;
  say: (line: string) => void;
}

async function runOnce(o: RunOptions): Promise<RunResult> {
  const emulator = await startServer(EMULATOR_SERVER);
  const config = {
    endpoint: emulator.url,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    forcePathStyle: true,
  };
  const s3 = new S3Client(config);
  const sqs = new SQSClient(config);
  try {
    // The stack's bucket and queues, as the local cloud makes them.
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    // FIFO, as the stack's jobs queue and its DLQ (infra/constructs/queues.ts).
    const dlqUrl = onEndpoint((await sqs.send(new CreateQueueCommand({ QueueName: `${QUEUE}-dlq.fifo`, Attributes: { FifoQueue: 'true' } }))).QueueUrl!, emulator.url);
    const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
    const queueUrl = onEndpoint((await sqs.send(new CreateQueueCommand({
      QueueName: `${QUEUE}.fifo`,
      Attributes: {
        FifoQueue: 'true',
        VisibilityTimeout: String(visibilityTimeoutSeconds(DEFAULT_SETTINGS)),
        MessageRetentionPeriod: String(14 * 24 * 3600),
        ReceiveMessageWaitTimeSeconds: '20',
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: DEFAULT_SETTINGS.maxReceiveCount }),
      },
    }))).QueueUrl!, emulator.url);

    const key = `manifests/${o.file.split('/').pop()}`;
    const split = splitNameOf(key);
    const { size } = await stat(o.file);
    o.say(`uploading ${key} (${mb(size)}) in ${Math.ceil(size / PART_BYTES)} parts…`);
    const upload = new Upload({
      client: s3,
      params: { Bucket: BUCKET, Key: key, Body: createReadStream(o.file, { highWaterMark: 1 << 20 }) },
      partSize: PART_BYTES,
      queueSize: 2,
    });
    const uploaded = await upload.done();
    const eTag = uploaded.ETag ?? '""';

    const emulatorRssBefore = procStatus(emulator.pid, 'VmRSS');
    const emulatorCpuBefore = procCpuSeconds(emulator.pid);
    const resultFile = join(o.work, 'child-result.json');
    const timeFile = join(o.work, 'child-time.txt');
    await rm(resultFile, { force: true });

    const handlerEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      TMPDIR: o.work,
      // What the stack sets on the manifest function…
      ...functionEnvironment(DEFAULT_SETTINGS, 'manifest', { bucket: BUCKET, jobsQueueUrl: queueUrl }),
      POWERTOOLS_METRICS_DISABLED: 'true',
      POWERTOOLS_LOG_LEVEL: 'WARN',
      // …and what points its SDK clients at the emulator, as the local cloud does.
      AWS_REGION: REGION,
      AWS_DEFAULT_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL: emulator.url,
      AWS_ENDPOINT_URL_S3: emulator.url,
      AWS_ENDPOINT_URL_SQS: emulator.url,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(MANIFEST_FN.memoryMb),
      BENCH_RESULT_FILE: resultFile,
      BENCH_MANIFEST_KEY: key,
      BENCH_MANIFEST_SIZE: String(size),
      BENCH_MANIFEST_ETAG: eTag,
    };
    const nodeArgs = [...(o.heapMb ? [`--max-old-space-size=${o.heapMb}`] : []), SELF, '--child'];
    o.say(`invoking the manifest handler (${o.expected ?? '?'} entries)…`);
    const started = performance.now();
    const exit = await run(GNU_TIME, ['-v', '-o', timeFile, process.execPath, ...nodeArgs], handlerEnv, true);
    const processSeconds = (performance.now() - started) / 1000;
    const emulatorCpu = procCpuSeconds(emulator.pid) - emulatorCpuBefore;
    const emulatorPeak = procStatus(emulator.pid, 'VmHWM');
    const time = parseGnuTime(await readFile(timeFile, 'utf8'));
    let childResult: ChildResult;
    try {
      childResult = JSON.parse(await readFile(resultFile, 'utf8')) as ChildResult;
    } catch {
      throw new Error(`the handler process wrote no result (exit ${exit.code}${exit.signal ? `, ${exit.signal}` : ''}):\n${exit.output.slice(-4000)}`);
    }
    if (!childResult.ok) throw new Error(`the handler threw: ${childResult.error}\n${exit.output.slice(-4000)}`);

    // The outcome, checked: a run that enqueued nothing must not report a rate.
    const checks: string[] = [];
    const status = (childResult.statuses?.[0] ?? {}) as Record<string, unknown>;
    const num = (name: string): number => Number(status[name] ?? NaN);
    if (status.state !== 'queued') checks.push(`status is ${JSON.stringify(status.state)}: ${String(status.error ?? '')}`);
    const entries = num('entries');
    const queued = num('queued');
    const distinct = entries - num('duplicates');
    if (!(queued > 0)) checks.push('nothing was queued');
    if (o.expected !== null && (entries !== o.expected || queued !== o.expected)) {
      checks.push(`a generated manifest of ${o.expected} distinct valid entries gave entries=${entries}, queued=${queued}`);
    }
    if (queued + num('alreadyStored') + num('invalid') !== distinct) checks.push(`queued + alreadyStored + invalid ≠ distinct entries (${distinct})`);
    const attributes = (await sqs.send(new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }))).Attributes ?? {};
    const queueDepth = Number(attributes.ApproximateNumberOfMessages ?? 0) + Number(attributes.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(attributes.ApproximateNumberOfMessagesDelayed ?? 0);
    if (queueDepth !== queued) checks.push(`the queue holds ${queueDepth} messages, the handler reports ${queued} queued`);
    const index = await countLines(s3, BUCKET, `index/${split}.csv`);
    if (index.header !== INDEX_HEADER.trimEnd()) checks.push(`index/${split}.csv starts with ${JSON.stringify(index.header.slice(0, 80))}`);
    if (index.lines - 1 !== distinct) checks.push(`index/${split}.csv has ${index.lines - 1} rows, expected ${distinct}`);

    const requests: RunResult['requests'] = {};
    for (const r of childResult.requests) {
      const name = r.command === 'PutObject' && r.key ? `PutObject ${r.key.split('/')[0]}/` : r.command;
      const c = (requests[name] ??= { calls: 0, attempts: 0, failed: 0 });
      c.calls++;
      c.attempts += r.attempts;
      if (!r.ok) c.failed++;
    }
    const sends = requests.SendMessageBatch?.calls ?? 0;
    if (sends !== Math.ceil(queued / 10)) checks.push(`${sends} SendMessageBatch calls for ${queued} jobs (expected ${Math.ceil(queued / 10)})`);
    for (const [name, c] of Object.entries(requests)) if (c.failed > 0) checks.push(`${c.failed} ${name} requests failed`);

    return {
      entries,
      manifestBytes: size,
      shape: o.shape,
      handlerSeconds: childResult.handlerMs / 1000,
      processSeconds,
      entriesPerSecond: checks.length === 0 ? entries / (childResult.handlerMs / 1000) : 0,
      handlerPeakRssBytes: time.peakRssBytes ?? childResult.maxRssBytes,
      handlerCpuSeconds: time.cpuSeconds ?? NaN,
      heapPeak: childResult.peak,
      heapLimitMb: o.heapMb,
      emulatorRssBeforeBytes: emulatorRssBefore,
      emulatorPeakRssBytes: emulatorPeak,
      emulatorCpuSeconds: emulatorCpu,
      status,
      queueDepth,
      indexRows: index.lines - 1,
      indexBytes: index.bytes,
      phases: phasesOf(childResult),
      requests,
      checks,
    };
  } finally {
    s3.destroy();
    sqs.destroy();
    await emulator.stop();
  }
}

/**
 * The invocation's phases, from its requests: detection (first GetObject), the scan (second
 * GetObject, up to the listing), the listing, the entries pass with the SendMessageBatch calls
 * (third GetObject to the last batch answered), the index upload, the final status.
 */
function phasesOf(result: ChildResult): { name: string; seconds: number }[] {
  const r = result.requests;
  const gets = r.filter((x) => x.command === 'GetObject');
  const list = r.filter((x) => x.command === 'ListObjectsV2');
  const sends = r.filter((x) => x.command === 'SendMessageBatch');
  const index = r.filter((x) => x.key?.startsWith('index/'));
  const lastPut = r.filter((x) => x.command === 'PutObject').at(-1);
  if (gets.length < 3 || sends.length === 0 || index.length === 0 || !lastPut) return [];
  const scanStart = gets[1]!.start;
  const scanEnd = list[0]?.start ?? gets[2]!.start;
  const lastSend = Math.max(...sends.map((s) => s.end));
  const phases = [
    { name: 'status + format detection', seconds: scanStart },
    { name: 'scan (read 1: validate, collect labels)', seconds: scanEnd - scanStart },
    { name: `listing images/ (${list.length} ListObjectsV2)`, seconds: list.length ? Math.max(...list.map((x) => x.end)) - list[0]!.start : 0 },
    { name: `entries (read 2) + ${sends.length} SendMessageBatch`, seconds: lastSend - gets[2]!.start },
    { name: `index CSV upload (${index.length} requests)`, seconds: Math.max(...index.map((x) => x.end)) - index[0]!.start },
    { name: 'final status PutObject', seconds: lastPut.end - lastPut.start },
  ];
  return phases.map((p) => ({ name: p.name, seconds: p.seconds / 1000 }));
}

// ---------------------------------------------------------------------------------------------
// Report

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
const mib = (bytes: number): string => `${Math.round(bytes / 1048576)} MiB`;

function describe(r: RunResult): string {
  const lines = [
    '',
    `manifest handler, ${r.entries} ${r.shape} entries (${mb(r.manifestBytes)})${r.heapLimitMb ? `, --max-old-space-size=${r.heapLimitMb}` : ''}`,
    r.checks.length === 0 ? `  checked: ${r.queueDepth} messages in the queue = ${r.status.queued} queued; index has ${r.indexRows} rows + header (${mb(r.indexBytes)})` : `  CHECK FAILED:\n    ${r.checks.join('\n    ')}`,
    `  entries/s         ${r.checks.length === 0 ? Math.round(r.entriesPerSecond) : 'n/a (checks failed)'}`,
    `  handler           ${r.handlerSeconds.toFixed(1)} s (process ${r.processSeconds.toFixed(1)} s; Lambda limit ${MANIFEST_FN.timeoutSeconds} s)`,
    `  handler peak RSS  ${mib(r.handlerPeakRssBytes)} (function memory ${MANIFEST_FN.memoryMb} MB); heap used ≤ ${mib(r.heapPeak.heapUsed)}, heap total ≤ ${mib(r.heapPeak.heapTotal)}, external ≤ ${mib(r.heapPeak.external)}`,
    `  handler CPU       ${r.handlerCpuSeconds.toFixed(1)} s`,
    `  emulator RSS      ${mib(r.emulatorRssBeforeBytes)} before the invocation, ${mib(r.emulatorPeakRssBytes)} peak; CPU ${r.emulatorCpuSeconds.toFixed(1)} s during it`,
    '  phases:',
    ...r.phases.map((p) => `    ${p.name.padEnd(44)} ${p.seconds.toFixed(2).padStart(8)} s`),
    '  requests by the handler (calls / attempts):',
    ...Object.entries(r.requests).map(([name, c]) => `    ${name.padEnd(44)} ${String(c.calls).padStart(8)} / ${c.attempts}`),
  ];
  return lines.join('\n');
}

function scaling(results: RunResult[]): string {
  const lines = ['', 'scaling:', '  entries    entries/s   handler s   handler RSS   emulator RSS'];
  for (const r of results) {
    lines.push(`  ${String(r.entries).padStart(7)}  ${String(Math.round(r.entriesPerSecond)).padStart(10)}  ${r.handlerSeconds.toFixed(1).padStart(10)}  ${mib(r.handlerPeakRssBytes).padStart(12)}  ${mib(r.emulatorPeakRssBytes).padStart(13)}`);
  }
  return lines.join('\n');
}

function machine(): Record<string, unknown> {
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
  return { node: process.version, cpu, cores: (readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm) ?? []).length };
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Runs a command to its end; rejects on a non-zero exit unless `tolerate`. */
function run(command: string, args: string[], env?: Record<string, string>, tolerate = false): Promise<{ code: number | null; signal: string | null; output: string }> {
  return new Promise((done, reject) => {
    const proc: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.length > 1 << 20) output = output.slice(-(1 << 19));
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', (chunk: Buffer) => {
      keep(chunk);
      process.stderr.write(chunk);
    });
    proc.once('error', reject);
    proc.once('close', (code, signal) => {
      if (code !== 0 && !tolerate) reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}:\n${output.slice(-4000)}`));
      else done({ code, signal, output });
    });
  });
}

/** A field of /proc/<pid>/status in bytes (VmRSS now, VmHWM the peak so far). */
function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return kb ? Number(kb) * 1024 : NaN;
}

/** User + system CPU seconds of a process so far, from /proc/<pid>/stat. */
function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after "(comm) ".
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A queue URL on the emulator's own origin (see endpointQueueUrl in local-cloud/emulator.ts). */
function onEndpoint(queueUrl: string, endpoint: string): string {
  return new URL(new URL(queueUrl).pathname, endpoint + '/').toString();
}

/** Lines (newlines) and bytes of an object, streamed; plus its first line. */
async function countLines(s3: S3Client, bucket: string, key: string): Promise<{ lines: number; bytes: number; header: string }> {
  const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  let lines = 0;
  let bytes = 0;
  let header = '';
  for await (const chunk of answer.Body as Readable) {
    const buffer = chunk as Buffer;
    if (bytes === 0) header = buffer.subarray(0, Math.max(0, buffer.indexOf(10))).toString();
    bytes += buffer.length;
    for (let i = buffer.indexOf(10); i >= 0; i = buffer.indexOf(10, i + 1)) lines++;
  }
  return { lines, bytes, header };
}

// Last, so that every declaration above is initialised.
if (process.argv.includes('--child')) await child();
else await main();
