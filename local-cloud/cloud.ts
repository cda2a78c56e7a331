// The local cloud: the stack's bucket, jobs queue and dead-letter queue (FIFO, as the stack's) on an S3/SQS emulator, the
// environment the stack gives each function, and its two event sources (s3-notifications.ts,
// sqs-poller.ts) driving the very handler modules Lambda runs. Only the event sources are
// emulated; S3 and SQS are the emulator's own. One local cloud per process at a time: the
// handlers read their settings from process.env.

import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, SetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { FIFO_SUFFIX } from '../aws/fifo.ts';
import { DEAD_LETTER_RETENTION_SECONDS, functionEnvironment, JOBS_RETENTION_SECONDS, visibilityTimeoutSeconds, type FunctionId, type Settings } from '../aws/settings.ts';
import { printable } from '../engine/printable.ts';
import { Activity } from './activity.ts';
import { awsClientConfig, endpointQueueUrl, type Emulator } from './emulator.ts';
import { startManifestNotifications, type ManifestNotifications } from './s3-notifications.ts';
import { startSqsSource, type SqsSource, type SqsSourceStats } from './sqs-poller.ts';

export type ManifestHandler = (event: S3Event, context: Context) => Promise<unknown>;
export type FetchHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/**
 * A handler, or how to load its module. A module is loaded at start, one function at a time, with
 * that function's environment in process.env, as Lambda's runtime loads it: Powertools reads the
 * service name when the module loads. The fetch function's module is loaded once per invocation
 * that may run at once (`instance` 0, 1, …, each a module instance of its own): Lambda runs one
 * invocation per container at a time, each with its own clients, connection pools and per-host
 * limits, and a fleet of 20 is 20 of them, not one shared.
 */
export type HandlerOrModule<H> = H | { load: (instance: number) => Promise<H> };

export interface LocalCloudOptions {
  settings: Settings;
  emulator: Emulator;
  /** Default `<stackName>-local`, lower-cased. Created if missing. */
  bucket?: string;
  /** Default `<stackName>-jobs`; the DLQ is `<queueName>-dlq`. Both FIFO (`.fifo` added). Created if missing, updated if not. */
  queueName?: string;
  handlers: { manifest: HandlerOrModule<ManifestHandler>; fetch: HandlerOrModule<FetchHandler> };
  /** Extra environment for the handlers, after the stack's, e.g. ALLOW_PRIVATE_NETWORK=true for a loopback origin. */
  env?: Record<string, string>;
  /** One line per invocation and per failure. Default: stderr. */
  log?: (line: string) => void;
  /** The jobs queue's visibility timeout. Default visibilityTimeoutSeconds(settings); lower it for quick redelivery in development. */
  visibilityTimeoutSeconds?: number;
  /** Fetch invocations at once (the stack's is settings.fetchMaxConcurrency). Default min(settings.fetchMaxConcurrency, 4). */
  fetchConcurrency?: number;
  /** Long-poll length of each ReceiveMessage of the SQS mapping. Default 1 s. */
  waitTimeSeconds?: number;
  /** Between two listings of manifests/. Default 1000 ms. */
  manifestPollIntervalMs?: number;
  /** Waits before the two asynchronous retries of a failed manifest invocation. Default [1000, 2000] ms. */
  manifestRetryDelaysMs?: readonly number[];
  /** Invoke for manifests already in the bucket at start. Default false. */
  processExistingManifests?: boolean;
  /**
   * stop() lets the SQS long polls end (up to waitTimeSeconds) instead of aborting them, and makes
   * what they took visible again. Default: true for an external emulator, which outlives this
   * cloud; false for an embedded one (fauxqs would hide a message from an aborted poll for a
   * visibility timeout, which matters only while it keeps running).
   */
  drainOnStop?: boolean;
}

export interface LocalCloudStats {
  manifest: { invocations: number; errors: number; retries: number; gaveUp: number };
  fetch: SqsSourceStats;
}

export interface LocalCloud {
  bucket: string;
  /** On the emulator's own origin, so an SDK client configured by AWS_ENDPOINT_URL reaches it. */
  queueUrl: string;
  queueArn: string;
  dlqUrl: string;
  dlqArn: string;
  settings: Settings;
  emulator: Emulator;
  /**
   * Each function's environment: the stack's, then what points it at the emulator. Until stop(),
   * process.env holds what both share and the manifest function's JOBS_QUEUE_URL; what differs
   * (the service name) only while that function's module loads.
   */
  env: Readonly<Record<FunctionId, Readonly<Record<string, string>>>>;
  /** Invokes the manifest function for a key just uploaded, without waiting for the next poll. */
  notifyObjectCreated(key: string): Promise<boolean>;
  /**
   * Resolves once nothing is left to do: no new manifest, no manifest invocation running or
   * waiting to retry, no fetch invocation, and the jobs queue holds no message (visible, in
   * flight or delayed), twice in a row with nothing happening in between. Rejects if stopped.
   */
  idle(): Promise<void>;
  stats(): LocalCloudStats;
  /** Invocations running now (manifest: also those waiting for a retry). */
  running(): { manifest: number; fetch: number };
  /**
   * Stops both event sources, waits for running invocations (at most `graceMs`; those still
   * running are left to finish on their own, unheard), closes its clients, restores process.env.
   * Resolves with how many invocations were left running.
   */
  stop(o?: { graceMs?: number }): Promise<{ abandoned: number }>;
}

export interface FunctionSpec {
  name: string;
  memoryMb: number;
  timeoutSeconds: number;
}

/** The Context Lambda passes a handler, for one invocation that starts now. */
export function lambdaContext(fn: FunctionSpec, region: string, accountId = '000000000000'): Context {
  const deadline = Date.now() + fn.timeoutSeconds * 1000;
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  const unsupported = (what: string) => () => {
    throw new Error(`context.${what}() is not supported: return (or throw) from the async handler`);
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:${accountId}:function:${fn.name}`,
    memoryLimitInMB: String(fn.memoryMb),
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported('done'),
    fail: unsupported('fail'),
    succeed: unsupported('succeed'),
  };
}

/** Bucket and queue names derived from the stack name, within S3's and SQS's limits. */
function defaultNames(stackName: string): { bucket: string; queueName: string } {
  const base = stackName.slice(0, 50);
  return { bucket: `${base.toLowerCase()}-local`, queueName: `${base}-jobs` };
}

/** The stack's FIFO attributes (infra/constructs/queues.ts). */
const FIFO_ATTRIBUTES = { FifoQueue: 'true', ContentBasedDeduplication: 'false', DeduplicationScope: 'messageGroup', FifoThroughputLimit: 'perMessageGroupId' };

async function ensureQueue(sqs: SQSClient, emulator: Emulator, name: string, attributes: Record<string, string>): Promise<{ url: string; arn: string }> {
  let url: string | undefined;
  try {
    url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { ...FIFO_ATTRIBUTES, ...attributes } }))).QueueUrl;
  } catch (error) {
    // A queue left by an earlier run with other attributes (e.g. another visibility timeout).
    if (!(error instanceof Error) || !/QueueNameExists|QueueAlreadyExists/.test(error.name)) throw error;
    url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
    // FifoQueue is fixed at creation.
    if (url) await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: attributes }));
  }
  if (!url) throw new Error(`the emulator returned no URL for queue ${name}`);
  url = endpointQueueUrl(emulator, url);
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
  if (!arn) throw new Error(`the emulator returned no ARN for queue ${name}`);
  return { url, arn };
}

/** Both functions' variables in one process: each one's own, except those they give different values (unset). */
function sharedEnv(envs: Record<FunctionId, Record<string, string>>): Record<string, string | undefined> {
  const shared: Record<string, string | undefined> = { ...envs.fetch, ...envs.manifest };
  for (const [key, value] of Object.entries(envs.fetch)) if (key in envs.manifest && envs.manifest[key] !== value) shared[key] = undefined;
  return shared;
}

/** Loads a handler module with exactly its function's environment (nothing else runs at start). */
async function loadHandler<H extends (event: never, context: Context) => Promise<unknown>>(
  h: HandlerOrModule<H>,
  own: Record<string, string>,
  shared: Record<string, string | undefined>,
  instance = 0,
): Promise<H> {
  if (typeof h === 'function') return h;
  const restore = applyEnv({ ...Object.fromEntries(Object.keys(shared).map((key) => [key, undefined])), ...own });
  try {
    return await h.load(instance);
  } finally {
    restore();
  }
}

/** Sets process.env to `values` (deleting keys mapped to undefined); returns what restores it. */
function applyEnv(values: Record<string, string | undefined>): () => void {
  const previous = new Map<string, string | undefined>();
  for (const [key, value] of Object.entries(values)) {
    previous.set(key, process.env[key]);
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  return () => {
    for (const [key, value] of previous) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

export async function startLocalCloud(options: LocalCloudOptions): Promise<LocalCloud> {
  const { settings, emulator, handlers } = options;
  const write = options.log ?? ((line: string) => process.stderr.write(`local cloud: ${line}\n`));
  // A stopped cloud says nothing more, even about invocations it left running.
  let silent = false;
  // Lines quote keys and error messages from the bucket and the functions: escaped for the terminal.
  const log = (line: string): void => {
    if (!silent) write(printable(line, 2000));
  };
  const names = defaultNames(settings.stackName);
  const bucket = options.bucket ?? names.bucket;
  const queueName = options.queueName ?? names.queueName;
  const region = emulator.region;
  const config = awsClientConfig(emulator);
  const s3 = new S3Client(config);
  const sqs = new SQSClient(config);
  let restoreEnv = () => {};
  let manifests: ManifestNotifications | undefined;
  let jobs: SqsSource | undefined;

  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: unknown) => {
      if (!(error instanceof Error) || error.name !== 'BucketAlreadyOwnedByYou') throw error;
    });
    const dlq = await ensureQueue(sqs, emulator, `${queueName}-dlq${FIFO_SUFFIX}`, { MessageRetentionPeriod: String(DEAD_LETTER_RETENTION_SECONDS) });
    const queue = await ensureQueue(sqs, emulator, `${queueName}${FIFO_SUFFIX}`, {
      VisibilityTimeout: String(options.visibilityTimeoutSeconds ?? visibilityTimeoutSeconds(settings)),
      MessageRetentionPeriod: String(JOBS_RETENTION_SECONDS),
      ReceiveMessageWaitTimeSeconds: '20',
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: settings.maxReceiveCount }),
    });

    // What points the functions' SDK clients at the emulator, after what the stack sets.
    const emulated: Record<string, string> = {
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      // Without credentials of its own, the emulator is signed for as the user configured it.
      ...(emulator.credentials ? { AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey } : {}),
      // The SDK (v3) reads AWS_ENDPOINT_URL for every client; the per-service variables win over it
      // and the "ignore" switch disables both, so all four are pinned.
      AWS_ENDPOINT_URL: emulator.endpoint,
      AWS_ENDPOINT_URL_S3: emulator.endpoint,
      AWS_ENDPOINT_URL_SQS: emulator.endpoint,
      AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'false',
      ...options.env,
    };
    const at = { bucket, jobsQueueUrl: queue.url };
    const env = {
      manifest: { ...functionEnvironment(settings, 'manifest', at), ...emulated },
      fetch: { ...functionEnvironment(settings, 'fetch', at), ...emulated },
      pack: { ...functionEnvironment(settings, 'pack', at), ...emulated },
    };
    const shared = sharedEnv(env);
    // A session token from the developer's shell must not travel with the emulator's keys.
    restoreEnv = applyEnv({ ...shared, ...(emulator.credentials ? { AWS_SESSION_TOKEN: undefined } : {}) });
    const fetchConcurrency = Math.max(1, options.fetchConcurrency ?? Math.min(settings.fetchMaxConcurrency, 4));
    const fetchHandlers: FetchHandler[] = [];
    for (let i = 0; i < fetchConcurrency; i++) fetchHandlers.push(await loadHandler(handlers.fetch, env.fetch, shared, i));
    const handle = { manifest: await loadHandler(handlers.manifest, env.manifest, shared), fetch: fetchHandlers };

    const functions = {
      manifest: { name: `${settings.stackName}-manifest`, memoryMb: settings.manifestMemoryMb, timeoutSeconds: settings.manifestTimeoutSeconds },
      fetch: { name: `${settings.stackName}-fetch`, memoryMb: settings.fetchMemoryMb, timeoutSeconds: settings.fetchTimeoutSeconds },
    };

    /** One invocation; one that outlives its function's timeout counts as failed, as Lambda would stop it. */
    async function invoke<E, R>(fn: FunctionSpec, handler: (event: E, context: Context) => Promise<R>, event: E, what: string): Promise<R> {
      const context = lambdaContext(fn, region);
      const started = performance.now();
      const result = await handler(event, context);
      const ms = Math.round(performance.now() - started);
      if (ms > fn.timeoutSeconds * 1000) throw new Error(`${fn.name} ran ${ms} ms, past its ${fn.timeoutSeconds} s timeout: Lambda would have stopped it (Task timed out)`);
      log(`${fn.name} ${context.awsRequestId} ${what}: done in ${ms} ms`);
      return result;
    }

    const activity = new Activity();
    manifests = await startManifestNotifications({
      s3,
      bucket,
      region,
      invoke: (event) => invoke(functions.manifest, handle.manifest, event, `s3://${bucket}/${event.Records[0]?.s3.object.key}`),
      pollIntervalMs: options.manifestPollIntervalMs,
      retryDelaysMs: options.manifestRetryDelaysMs,
      processExisting: options.processExistingManifests,
      activity,
      log,
    });
    jobs = startSqsSource({
      sqs,
      queueUrl: queue.url,
      queueArn: queue.arn,
      region,
      // Each poller is one container: its invocations run one at a time on its own module instance.
      invoke: (event, poller) => invoke(functions.fetch, handle.fetch[poller]!, event, `${event.Records.length} records`),
      batchSize: settings.fetchBatchSize,
      concurrency: fetchConcurrency,
      maxReceiveCount: settings.maxReceiveCount,
      dlqUrl: dlq.url,
      waitTimeSeconds: options.waitTimeSeconds,
      onStop: (options.drainOnStop ?? emulator.kind === 'external') ? 'drain' : 'abort',
      activity,
      log,
    });

    const manifestSource = manifests;
    const jobSource = jobs;
    let stopped: Promise<{ abandoned: number }> | undefined;

    async function queueDepth(): Promise<number> {
      const { Attributes: a = {} } = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: queue.url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
        }),
      );
      return Number(a.ApproximateNumberOfMessages ?? 0) + Number(a.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a.ApproximateNumberOfMessagesDelayed ?? 0);
    }

    return {
      bucket,
      queueUrl: queue.url,
      queueArn: queue.arn,
      dlqUrl: dlq.url,
      dlqArn: dlq.arn,
      settings,
      emulator,
      env,
      notifyObjectCreated: (key) => manifestSource.notifyObjectCreated(key),
      async idle() {
        let emptyAt = -1;
        for (;;) {
          if (stopped) throw new Error('the local cloud was stopped');
          // Registered before looking, so activity during the look still wakes us.
          const wake = activity.next();
          const progress = activity.progress;
          const found = await manifestSource.scan();
          const busy = found > 0 || manifestSource.inFlight > 0 || jobSource.inFlight > 0 || (await queueDepth()) > 0;
          if (!busy && activity.progress === progress) {
            if (emptyAt === progress) return;
            emptyAt = progress;
            continue;
          }
          emptyAt = -1;
          // The pollers tick at least every waitTimeSeconds, so this never waits long for nothing.
          await wake;
        }
      },
      stats: () => ({ manifest: manifestSource.stats(), fetch: jobSource.stats() }),
      running: () => ({ manifest: manifestSource.inFlight, fetch: jobSource.inFlight }),
      stop(o = {}) {
        stopped ??= (async () => {
          const left = await Promise.all([manifestSource.stop(o.graceMs), jobSource.stop(o.graceMs)]);
          silent = true;
          activity.tick();
          s3.destroy();
          sqs.destroy();
          restoreEnv();
          return { abandoned: left[0] + left[1] };
        })();
        return stopped;
      },
    };
  } catch (error) {
    await Promise.allSettled([manifests?.stop(), jobs?.stop()]);
    s3.destroy();
    sqs.destroy();
    restoreEnv();
    throw error;
  }
}
