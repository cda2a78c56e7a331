// Which deployment a command talks to: the local cloud (--dev), flags, `cdk deploy
// --outputs-file cdk-outputs.json`, or the stack's outputs from CloudFormation; and SDK clients
// tuned for a slow, lossy link across the border (keep-alive, timeouts, retries).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { connect } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { cdkJsonSettings } from '../aws/settings.ts';
import { UsageError } from './errors.ts';
import { takeEarly } from '../aws/home/early-connections.ts';

export interface TargetFlags {
  dev?: boolean;
  bucket?: string;
  queueUrl?: string;
  dlqUrl?: string;
  stack?: string;
  outputs?: string;
  region?: string;
  profile?: string;
  endpoint?: string;
}

export interface Target {
  bucket: string;
  queueUrl?: string;
  dlqUrl?: string;
  /** The fetch function, for a direct invocation (`plan`), and where Lambda is reached when not at the region's endpoint (the local cloud's). */
  fetchFunction?: string;
  lambdaEndpoint?: string;
  /** The pack function (`cloudfetch pack`), invoked the same way. */
  packFunction?: string;
  s3: S3Client;
  sqs: SQSClient;
  /** Where the names came from, for messages. */
  source: string;
  /** What is reached, for messages about network errors. */
  where: Where;
  /** The target flags the user gave, as command-line words: next-step hints repeat them. */
  args: readonly string[];
  close(): void;
}

/** The endpoint (a local cloud's when `dev`), or AWS in a region. */
export interface Where {
  endpoint?: string;
  region?: string;
  dev?: boolean;
}

export interface ClientConfig {
  region?: string;
  profile?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const OUTPUTS_FILE = 'cdk-outputs.json';

/**
 * A request whose connection is silent this long (before its answer or in the middle of a body the
 * SDK reads, a listing page say) is cut, and the SDK tries it again. The SDK's requestTimeout alone
 * only warns: a listing stalled on a lossy link waited for ever. The downloads' reader cuts at 60 s
 * (object-reader.ts); a link that drops for tens of seconds comes back within this.
 */
export const STALL_MS = 30_000;

/** The SDK's settings for a slow, lossy link; `stallMs` and `maxAttempts` shorter only in tests. */
export function clientSettings(config: ClientConfig, o: { sockets: number; stallMs?: number; maxAttempts?: number }) {
  return {
    ...(config.region ? { region: config.region } : {}),
    ...(config.profile ? { profile: config.profile } : {}),
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    ...(config.credentials ? { credentials: config.credentials } : {}),
    // A lossy, high-latency link: more attempts with backoff, and no request hangs for ever.
    maxAttempts: o.maxAttempts ?? 8,
    requestHandler: {
      connectionTimeout: 15_000,
      requestTimeout: 120_000,
      socketTimeout: o.stallMs ?? STALL_MS,
      httpAgent: new EarlyHttpAgent({ keepAlive: true, maxSockets: o.sockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: o.sockets }),
    },
  };
}

/** An http agent whose first connections are those the command opened as it started (aws/home/early-connections.ts), if any. */
class EarlyHttpAgent extends HttpAgent {
  override createConnection(...args: Parameters<HttpAgent['createConnection']>): ReturnType<HttpAgent['createConnection']> {
    const [options] = args;
    const host = options.hostname ?? options.host;
    return (host ? takeEarly(host, Number(options.port ?? 80)) : undefined) ?? super.createConnection(...args);
  }
}

function clients(config: ClientConfig, sockets: number): { s3: S3Client; sqs: SQSClient } {
  const common = clientSettings(config, { sockets });
  return { s3: new S3Client({ ...common, forcePathStyle: Boolean(config.endpoint) }), sqs: new SQSClient(common) };
}

async function target(
  names: { bucket: string; queueUrl?: string; dlqUrl?: string; fetchFunction?: string; lambdaEndpoint?: string; packFunction?: string },
  config: ClientConfig,
  o: { source: string; args: readonly string[]; dev?: boolean; sockets: number; reachable?: Promise<void> },
): Promise<Target> {
  const { s3, sqs } = clients(config, o.sockets);
  if (o.reachable) {
    // The reachability check runs beside the first requests (a round trip of a long link sooner);
    // if it fails, every request fails at once with its line, not after the SDK's attempts.
    const unreachable = o.reachable.then(() => new Promise<never>(() => {}));
    unreachable.catch(() => {});
    // Once it passed, requests go as they are (a race with a promise that never settles would keep
    // every request's reaction for good: a leak in `status --watch`).
    let passed = false;
    o.reachable.then(() => (passed = true), () => {});
    // Inside the SDK's retries (deserialize): a failed check is not retried.
    const step = { step: 'deserialize', name: 'cloudfetchReachable' } as const;
    s3.middlewareStack.add((next) => (args) => (passed ? next(args) : Promise.race([next(args), unreachable])), step);
    sqs.middlewareStack.add((next) => (args) => (passed ? next(args) : Promise.race([next(args), unreachable])), step);
  }
  const region = config.region ?? (await s3.config.region().catch(() => undefined));
  // Without a region every command fails before its first request: an endpoint that cannot be
  // reached is the first thing to say.
  if (!region) await o.reachable;
  return {
    ...names,
    s3,
    sqs,
    source: o.source,
    where: { ...(config.endpoint ? { endpoint: config.endpoint } : {}), ...(region ? { region } : {}), ...(o.dev ? { dev: true } : {}) },
    args: o.args,
    close() {
      s3.destroy();
      sqs.destroy();
    },
  };
}

type Outputs = Record<string, string>;

function namesFrom(outputs: Outputs): { bucket: string; queueUrl?: string; dlqUrl?: string; fetchFunction?: string; packFunction?: string } | null {
  if (!outputs.BucketName) return null;
  return {
    bucket: outputs.BucketName, ...(outputs.QueueUrl ? { queueUrl: outputs.QueueUrl } : {}), ...(outputs.DlqUrl ? { dlqUrl: outputs.DlqUrl } : {}),
    ...(outputs.FetchFunctionName ? { fetchFunction: outputs.FetchFunctionName } : {}),
    ...(outputs.PackFunctionName ? { packFunction: outputs.PackFunctionName } : {}),
  };
}

/** The region a queue URL names (https://sqs.<region>.amazonaws.com/...), if any. */
function regionOfQueue(url: string | undefined): string | undefined {
  return url ? /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(url)?.[1] : undefined;
}

/** The target flags as the user gave them, quoted for a shell where needed. */
export function targetArgs(flags: TargetFlags): string[] {
  const args: string[] = [];
  if (flags.dev) args.push('--dev');
  const valued: Array<[keyof TargetFlags, string]> = [
    ['bucket', '--bucket'], ['queueUrl', '--queue-url'], ['dlqUrl', '--dlq-url'], ['stack', '--stack'],
    ['outputs', '--outputs'], ['region', '--region'], ['profile', '--profile'], ['endpoint', '--endpoint'],
  ];
  for (const [key, flag] of valued) {
    const value = flags[key];
    if (typeof value === 'string') args.push(flag, /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`);
  }
  return args;
}

/** A next step to suggest, with the user's target flags: `cloudfetch sync <dir> --dev`. */
export function command(t: { args: readonly string[] }, what: string): string {
  return `\`cloudfetch ${[what, ...t.args].join(' ')}\``;
}

/**
 * A refused or unknown endpoint fails at once here, instead of after the SDK's attempts with
 * backoff (meant for a lossy link, not for an emulator that is not running).
 */
export async function checkReachable(where: Where & { endpoint: string }, timeoutMs = 15_000): Promise<void> {
  const url = URL.parse(where.endpoint);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`the endpoint must be an http(s) URL such as http://127.0.0.1:4566, not ${JSON.stringify(where.endpoint)}`);
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(Object.assign(new Error(`connect ETIMEDOUT ${url.host}`), { code: 'ETIMEDOUT' }));
    });
    socket.once('error', reject);
  }).catch((error: unknown) => {
    throw awsUsageError(error, { where });
  });
}

export async function resolveTarget(flags: TargetFlags, sockets = 64): Promise<Target> {
  const endpoint = flags.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const args = targetArgs(flags);
  const base: ClientConfig = {
    ...(flags.region ? { region: flags.region } : {}),
    ...(flags.profile ? { profile: flags.profile } : {}),
    ...(endpoint ? { endpoint } : {}),
  };
  if (flags.dev) {
    // dev.ts brings the emulator (fauxqs, Fastify): loaded only for --dev.
    const { readDevConnection } = await import('./dev.ts');
    const dev = await readDevConnection();
    await checkReachable({ endpoint: dev.endpoint, dev: true });
    return target(dev, { endpoint: dev.endpoint, region: dev.region, credentials: dev.credentials }, { source: `the local cloud at ${dev.endpoint}`, args, dev: true, sockets });
  }
  const reachable = endpoint ? checkReachable({ endpoint }) : undefined;
  reachable?.catch(() => {}); // awaited below, or raced by every request (target())
  if (flags.bucket) {
    const names = { bucket: flags.bucket, ...(flags.queueUrl ? { queueUrl: flags.queueUrl } : {}), ...(flags.dlqUrl ? { dlqUrl: flags.dlqUrl } : {}) };
    return target(names, { ...base, ...(base.region ? {} : { region: regionOfQueue(flags.queueUrl) }) }, { source: `bucket ${flags.bucket}`, args, sockets, ...(reachable ? { reachable } : {}) });
  }
  await reachable;
  const stackName = flags.stack ?? (await cdkJsonSettings().catch(() => null))?.stackName ?? 'cloudfetch';
  const outputsFile = flags.outputs ?? OUTPUTS_FILE;
  if (flags.outputs || existsSync(outputsFile)) {
    let all: Record<string, Outputs>;
    try {
      all = JSON.parse(await readFile(outputsFile, 'utf8')) as Record<string, Outputs>;
    } catch (error) {
      throw new UsageError(`cannot read ${outputsFile}: ${(error as Error).message}`);
    }
    const names = namesFrom(all[stackName] ?? {}) ?? Object.values(all).map(namesFrom).find((n) => n !== null);
    if (!names) throw new UsageError(`${outputsFile} has no BucketName output for stack ${stackName}: deploy with \`npx cdk deploy --outputs-file ${OUTPUTS_FILE}\``);
    return target(names, { ...base, ...(base.region ? {} : { region: regionOfQueue(names.queueUrl) }) }, { source: outputsFile, args, sockets });
  }
  const { CloudFormationClient, DescribeStacksCommand } = await import('@aws-sdk/client-cloudformation');
  const cloudformation = new CloudFormationClient({ ...base, maxAttempts: 5 });
  try {
    const answer = await cloudformation.send(new DescribeStacksCommand({ StackName: stackName }));
    const outputs: Outputs = Object.fromEntries((answer.Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
    const names = namesFrom(outputs);
    if (!names) throw new UsageError(`stack ${stackName} has no BucketName output: is it a cloudfetch stack?`);
    return await target(names, base, { source: `stack ${stackName}`, args, sockets });
  } catch (error) {
    const region = base.region ?? (await cloudformation.config.region().catch(() => undefined));
    throw awsUsageError(error, { stackName, where: { ...(endpoint ? { endpoint } : {}), ...(region ? { region } : {}) } });
  } finally {
    cloudformation.destroy();
  }
}

// Node's and the SDK's codes for an endpoint that cannot be reached, in a few words.
const NETWORK_CAUSES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  ETIMEDOUT: 'timed out',
  ESOCKETTIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'timed out',
  UND_ERR_HEADERS_TIMEOUT: 'timed out',
  UND_ERR_BODY_TIMEOUT: 'timed out',
  ECONNRESET: 'connection reset',
  ECONNABORTED: 'connection reset',
  EPIPE: 'connection reset',
  UND_ERR_SOCKET: 'connection reset',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network unreachable',
  EHOSTUNREACH: 'host unreachable',
  EHOSTDOWN: 'host unreachable',
  EPROTO: 'TLS handshake failed',
};

/** Why a request never got an answer, when that is the trouble; null for any other error. */
export function networkCause(error: unknown): { cause: string; tls: boolean; host?: string } | null {
  // The error, its causes and an AggregateError's parts (a connection tried on IPv6 and IPv4).
  const seen = new Set<unknown>();
  const queue = [error];
  while (queue.length > 0 && seen.size < 20) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const { code, name, hostname, cause, errors } = e as { code?: unknown; name?: unknown; hostname?: unknown; cause?: unknown; errors?: unknown };
    const host = typeof hostname === 'string' ? { host: hostname } : {};
    if (typeof code === 'string') {
      if (/CERT/.test(code)) return { cause: `certificate not accepted: ${code}`, tls: true, ...host };
      if (code.startsWith('ERR_SSL_')) return { cause: 'TLS handshake failed', tls: true, ...host };
      const cause = NETWORK_CAUSES[code];
      if (cause) return { cause, tls: code === 'EPROTO', ...host };
    }
    if (name === 'TimeoutError') return { cause: 'timed out', tls: false };
    queue.push(cause, ...(Array.isArray(errors) ? errors : []));
  }
  return null;
}

/** One line for an endpoint that cannot be reached: which one, why, and what to check. */
function unreachable(network: { cause: string; tls: boolean; host?: string }, where: Where): UsageError {
  const { cause, tls } = network;
  if (where.dev && where.endpoint) {
    return new UsageError(`cannot reach the local cloud at ${where.endpoint} (${cause}): is \`cloudfetch dev\` still running in this folder?`);
  }
  if (where.endpoint) {
    const check = tls ? 'check its certificate, and --endpoint' : 'is it running (`cloudfetch dev`, LocalStack)? check --endpoint or AWS_ENDPOINT_URL';
    return new UsageError(`cannot reach the S3/SQS endpoint ${where.endpoint} (${cause}): ${check}`);
  }
  const what = where.region ? `AWS in region ${where.region}` : `AWS${network.host ? ` at ${network.host}` : ''}`;
  const check = tls
    ? 'a proxy may be intercepting TLS: set NODE_EXTRA_CA_CERTS to its CA certificate'
    : 'check your network, proxy, or --region';
  return new UsageError(`cannot reach ${what} (${cause}): ${check}`);
}

/** The AWS and network errors a user fixes with configuration, as one line saying what to do. */
export function awsUsageError(error: unknown, o: { stackName?: string; where?: Where } = {}): Error {
  if (error instanceof UsageError) return error;
  const network = networkCause(error);
  if (network) return unreachable(network, o.where ?? {});
  const stackName = o.stackName ?? 'cloudfetch';
  const e = error as { name?: string; message?: string };
  const message = e.message ?? String(error);
  if (e.name === 'CredentialsProviderError' || /Could not load credentials|credential/i.test(message)) {
    return new UsageError('no AWS credentials found: run `aws configure` (or set AWS_PROFILE / pass --profile), or use --dev for the local cloud');
  }
  if (/Region is missing/i.test(message)) return new UsageError('no AWS region: pass --region or set AWS_REGION (the region you deployed to)');
  if (e.name === 'ValidationError' && /does not exist/.test(message)) {
    return new UsageError(`stack ${stackName} is not deployed in this region: run \`npx cdk deploy --outputs-file ${OUTPUTS_FILE}\`, or pass --region / --bucket`);
  }
  if (e.name === 'NoSuchBucket') return new UsageError(`the bucket does not exist: ${message}`);
  if (e.name === 'AccessDenied' || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch') {
    return new UsageError(`AWS refused the request (${e.name}): check the profile and region you deployed with`);
  }
  return error instanceof Error ? error : new Error(message);
}
