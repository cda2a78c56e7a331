// What the functions read from their environment (set by the stack, or by the local cloud, from
// functionEnvironment in aws/settings.ts); unset, a setting takes the stack's default.

import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { FetcherOptions } from '../../engine/fetch/fetcher.ts';
import { LAYOUTS, type Layout } from '../../engine/keys.ts';
import { DEFAULT_SETTINGS } from '../settings.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new ConfigError(`environment variable ${name} is not set`);
  return value;
}

function integer(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`environment variable ${name} must be a positive whole number, not "${text}"`);
  return n;
}

export function bucketName(): string {
  return required('BUCKET_NAME');
}

export function jobsQueueUrl(): string {
  return required('JOBS_QUEUE_URL');
}

export function layout(): Layout {
  const value = process.env.LAYOUT ?? DEFAULT_SETTINGS.layout;
  if (!(LAYOUTS as readonly string[]).includes(value)) throw new ConfigError(`environment variable LAYOUT must be one of ${LAYOUTS.join(', ')}`);
  return value as Layout;
}

export function skipExistingAtSplit(): boolean {
  const value = process.env.SKIP_EXISTING_AT_SPLIT;
  return value ? value !== 'false' : DEFAULT_SETTINGS.skipExistingAtSplit;
}

/** The first wait before a transiently failed job is handed out again (see redelivery.ts). */
export function retryDelaySeconds(): number {
  return integer('RETRY_DELAY_SECONDS', DEFAULT_SETTINGS.retryDelaySeconds);
}

/** Fetcher settings; ALLOW_PRIVATE_NETWORK is set only by the local cloud, for its loopback origin. */
export function fetcherOptions(): Partial<FetcherOptions> {
  return {
    perHost: integer('PER_HOST', DEFAULT_SETTINGS.perHost),
    timeoutMs: integer('IMAGE_TIMEOUT_SECONDS', DEFAULT_SETTINGS.imageTimeoutSeconds) * 1000,
    maxBytes: integer('MAX_BYTES', DEFAULT_SETTINGS.maxBytes),
    ...(process.env.USER_AGENT ? { userAgent: process.env.USER_AGENT } : {}),
    ...(process.env.REFERER ? { referer: process.env.REFERER } : {}),
    guard: { allowPrivateNetwork: process.env.ALLOW_PRIVATE_NETWORK === 'true' },
  };
}

// An endpoint override (AWS_ENDPOINT_URL, honoured by the SDK itself) means an emulator, which
// wants path-style bucket addressing.
const emulated = (): boolean => Boolean(process.env.AWS_ENDPOINT_URL || process.env.AWS_ENDPOINT_URL_S3);

export function s3Client(): S3Client {
  return new S3Client({ forcePathStyle: emulated(), maxAttempts: 5 });
}

export function sqsClient(): SQSClient {
  // Queue URLs name the queue, the client's endpoint (the region's, or AWS_ENDPOINT_URL) is where
  // requests go: emulators hand out URLs on host names that need not resolve.
  return new SQSClient({ maxAttempts: 5, useQueueUrlAsEndpoint: false });
}

/**
 * What a handler builds once per container (clients, connection pools), rebuilt only when the
 * environment it was built from changes: that happens in the local cloud, never in Lambda.
 */
export function perEnvironment<T>(build: () => T, dispose?: (old: T) => void): () => T {
  let signature: string | undefined;
  let value: T | undefined;
  return () => {
    const now = [process.env.AWS_ENDPOINT_URL, process.env.BUCKET_NAME, process.env.JOBS_QUEUE_URL].join('\n');
    if (value === undefined || now !== signature) {
      if (value !== undefined) dispose?.(value);
      value = build();
      signature = now;
    }
    return value;
  };
}
