// Which deployment a command talks to: the local cloud (--dev), flags, `cdk deploy
// --outputs-file cdk-outputs.json`, or the stack's outputs from CloudFormation; and SDK clients
// tuned for a slow, lossy link across the border (keep-alive, timeouts, retries).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { cdkSettings } from './cdk-settings.ts';
import { UsageError } from './errors.ts';

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
  s3: S3Client;
  sqs: SQSClient;
  /** Where the names came from, for messages. */
  source: string;
  close(): void;
}

interface ClientConfig {
  region?: string;
  profile?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

const OUTPUTS_FILE = 'cdk-outputs.json';

function clients(config: ClientConfig, sockets: number): { s3: S3Client; sqs: SQSClient } {
  const common = {
    ...(config.region ? { region: config.region } : {}),
    ...(config.profile ? { profile: config.profile } : {}),
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    ...(config.credentials ? { credentials: config.credentials } : {}),
    // A lossy, high-latency link: more attempts with backoff, and no request hangs for ever.
    maxAttempts: 8,
    requestHandler: {
      connectionTimeout: 15_000,
      requestTimeout: 120_000,
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: sockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: sockets }),
    },
  };
  return { s3: new S3Client({ ...common, forcePathStyle: Boolean(config.endpoint) }), sqs: new SQSClient(common) };
}

function target(names: { bucket: string; queueUrl?: string; dlqUrl?: string }, config: ClientConfig, source: string, sockets: number): Target {
  const { s3, sqs } = clients(config, sockets);
  return {
    ...names,
    s3,
    sqs,
    source,
    close() {
      s3.destroy();
      sqs.destroy();
    },
  };
}

type Outputs = Record<string, string>;

function namesFrom(outputs: Outputs): { bucket: string; queueUrl?: string; dlqUrl?: string } | null {
  if (!outputs.BucketName) return null;
  return { bucket: outputs.BucketName, ...(outputs.QueueUrl ? { queueUrl: outputs.QueueUrl } : {}), ...(outputs.DlqUrl ? { dlqUrl: outputs.DlqUrl } : {}) };
}

/** The region a queue URL names (https://sqs.<region>.amazonaws.com/...), if any. */
function regionOfQueue(url: string | undefined): string | undefined {
  return url ? /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(url)?.[1] : undefined;
}

export async function resolveTarget(flags: TargetFlags, sockets = 64): Promise<Target> {
  const endpoint = flags.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const base: ClientConfig = {
    ...(flags.region ? { region: flags.region } : {}),
    ...(flags.profile ? { profile: flags.profile } : {}),
    ...(endpoint ? { endpoint } : {}),
  };
  if (flags.dev) {
    // dev.ts brings the emulator (fauxqs, Fastify): loaded only for --dev.
    const { readDevConnection } = await import('./dev.ts');
    const dev = await readDevConnection();
    return target(dev, { endpoint: dev.endpoint, region: dev.region, credentials: dev.credentials }, `the local cloud at ${dev.endpoint}`, sockets);
  }
  if (flags.bucket) {
    const names = { bucket: flags.bucket, ...(flags.queueUrl ? { queueUrl: flags.queueUrl } : {}), ...(flags.dlqUrl ? { dlqUrl: flags.dlqUrl } : {}) };
    return target(names, { ...base, ...(base.region ? {} : { region: regionOfQueue(flags.queueUrl) }) }, `bucket ${flags.bucket}`, sockets);
  }
  const stackName = flags.stack ?? (await cdkSettings().catch(() => null))?.stackName ?? 'cloudfetch';
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
    return target(names, { ...base, ...(base.region ? {} : { region: regionOfQueue(names.queueUrl) }) }, outputsFile, sockets);
  }
  const { CloudFormationClient, DescribeStacksCommand } = await import('@aws-sdk/client-cloudformation');
  const cloudformation = new CloudFormationClient({ ...base, maxAttempts: 5 });
  try {
    const answer = await cloudformation.send(new DescribeStacksCommand({ StackName: stackName }));
    const outputs: Outputs = Object.fromEntries((answer.Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
    const names = namesFrom(outputs);
    if (!names) throw new UsageError(`stack ${stackName} has no BucketName output: is it a cloudfetch stack?`);
    return target(names, base, `stack ${stackName}`, sockets);
  } catch (error) {
    throw awsUsageError(error, stackName);
  } finally {
    cloudformation.destroy();
  }
}

/** The AWS errors a user fixes with configuration, as one line saying what to do. */
export function awsUsageError(error: unknown, stackName = 'cloudfetch'): Error {
  if (error instanceof UsageError) return error;
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
