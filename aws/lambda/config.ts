// What the functions read from their environment (set by the stack, or by the local cloud, from
// functionEnvironment in aws/settings.ts); unset, a setting takes the stack's default.

import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { FetcherOptions } from '../../engine/fetch/fetcher.ts';
import { LAYOUTS, type Layout } from '../../engine/keys.ts';
import { DEFAULT_IMAGE_OPTIONS, OUTPUT_FORMATS, RESIZE_MODES, shapes, storedExtension, type ImageOptions } from '../../engine/resize.ts';
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

/** Message groups per origin of the FIFO jobs queue (aws/fifo.ts), and the fetcher's cap per origin. */
export function hostConcurrency(): number {
  return integer('HOST_CONCURRENCY', DEFAULT_SETTINGS.hostConcurrency);
}

/** Receives before the jobs queue parks a job in the DLQ: a straggler's share grows to the whole image deadline on the last (straggler.ts). */
export function maxReceiveCount(): number {
  return integer('MAX_RECEIVE_COUNT', DEFAULT_SETTINGS.maxReceiveCount);
}

/** Distinct URLs of one host with the same bytes that make them a placeholder; 0: no check. */
export function placeholderThreshold(): number {
  const text = process.env.PLACEHOLDER_THRESHOLD;
  return text === '0' ? 0 : integer('PLACEHOLDER_THRESHOLD', DEFAULT_SETTINGS.placeholderThreshold);
}

/** How the fetch function shapes images (engine/resize.ts), or null when it stores them as fetched. */
export function imageOptions(): ImageOptions | null {
  const options: ImageOptions = {
    resize: process.env.RESIZE ? integer('RESIZE', 0) : null,
    mode: choice('RESIZE_MODE', RESIZE_MODES, DEFAULT_IMAGE_OPTIONS.mode),
    format: choice('IMAGE_FORMAT', OUTPUT_FORMATS, DEFAULT_IMAGE_OPTIONS.format),
    quality: integer('QUALITY', DEFAULT_IMAGE_OPTIONS.quality),
  };
  return shapes(options) ? options : null;
}

/** The key extension a stored format chosen up front gives every image (the manifest function decides keys). */
export function keyExtension(): string | null {
  return storedExtension(choice('IMAGE_FORMAT', OUTPUT_FORMATS, DEFAULT_IMAGE_OPTIONS.format));
}

export function keepOriginals(): boolean {
  return process.env.KEEP_ORIGINALS === 'true';
}

function choice<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const value = process.env[name] || fallback;
  if (!(choices as readonly string[]).includes(value)) throw new ConfigError(`environment variable ${name} must be one of ${choices.join(', ')}`);
  return value as T;
}

/** The first wait before a transiently failed job is handed out again (see redelivery.ts). */
export function retryDelaySeconds(): number {
  return integer('RETRY_DELAY_SECONDS', DEFAULT_SETTINGS.retryDelaySeconds);
}

/** Fetcher settings; ALLOW_PRIVATE_NETWORK is set only by the local cloud, for its loopback origin. */
export function fetcherOptions(): Partial<FetcherOptions> {
  const imageTimeoutMs = integer('IMAGE_TIMEOUT_SECONDS', DEFAULT_SETTINGS.imageTimeoutSeconds) * 1000;
  return {
    hostConcurrency: hostConcurrency(),
    timeoutMs: imageTimeoutMs,
    // A pause longer than an image's deadline is not waited out here: the job is handed out again after it.
    hostWaitMs: imageTimeoutMs,
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
