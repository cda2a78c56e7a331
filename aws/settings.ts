// The stack's settings: CDK context (cdk.json, or `cdk deploy -c key=value`) with defaults.
// Shared by the CDK app, the functions' environment, the local cloud and the commands, so all run
// with the same numbers. No CDK imports.

import { readFile } from 'node:fs/promises';
import { budgetBytes, fetchReservation, RUNTIME_HEADROOM_MB } from '../engine/byte-budget.ts';
import type { Layout } from '../engine/keys.ts';

export interface Settings {
  stackName: string;
  /** Most fetch function instances at once: protects origin sites and a new account's quota. */
  fetchMaxConcurrency: number;
  /** SQS messages (images) handed to one fetch invocation. */
  fetchBatchSize: number;
  fetchBatchWindowSeconds: number;
  fetchMemoryMb: number;
  fetchTimeoutSeconds: number;
  /** Overall deadline for one image inside the fetch function. */
  imageTimeoutSeconds: number;
  /** Connections to one host from one fetch instance. */
  perHost: number;
  manifestMemoryMb: number;
  manifestTimeoutSeconds: number;
  /** Empty: a current desktop browser's User-Agent. */
  userAgent: string;
  referer: string;
  maxBytes: number;
  layout: Layout;
  /** `retain` keeps the bucket when the stack is deleted; `destroy` empties and deletes it. */
  removalPolicy: 'retain' | 'destroy';
  /** At split time, list images/<split>/ once and enqueue only what is missing. */
  skipExistingAtSplit: boolean;
  /** Receives before a job is parked in the dead-letter queue. */
  maxReceiveCount: number;
  /** Wait before a job that failed for a transient reason is handed out again; ×3 per delivery. */
  retryDelaySeconds: number;
  /** E-mail address subscribed to the alarm topic; empty: no subscription. */
  alarmEmail: string;
}

export const DEFAULT_SETTINGS: Settings = {
  stackName: 'cloudfetch',
  fetchMaxConcurrency: 20,
  fetchBatchSize: 20,
  fetchBatchWindowSeconds: 5,
  fetchMemoryMb: 512,
  fetchTimeoutSeconds: 120,
  imageTimeoutSeconds: 30,
  perHost: 8,
  manifestMemoryMb: 1024,
  manifestTimeoutSeconds: 900,
  userAgent: '',
  referer: '',
  maxBytes: 50 * 1024 * 1024,
  layout: 'flat',
  removalPolicy: 'retain',
  skipExistingAtSplit: true,
  maxReceiveCount: 5,
  retryDelaySeconds: 5,
  alarmEmail: '',
};

/** SQS redelivers a message only after its visibility timeout: keep it ≥ 6× the function timeout. */
export function visibilityTimeoutSeconds(s: Settings): number {
  return 6 * s.fetchTimeoutSeconds;
}

export class SettingsError extends Error {
  override name = 'SettingsError';
}

const CONTEXT_PREFIX = 'cloudfetch:';

type Check = (key: string, value: unknown) => unknown;

const int = (min: number, max: number): Check => (key, value) => {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return n;
};
const text: Check = (key, value) => {
  if (typeof value !== 'string') throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must be text, not ${JSON.stringify(value)}`);
  return value;
};
const oneOf = (choices: readonly string[]): Check => (key, value) => {
  if (typeof value !== 'string' || !choices.includes(value)) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must be one of ${choices.join(', ')}, not ${JSON.stringify(value)}`);
  }
  return value;
};
const bool: Check = (key, value) => {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must be true or false, not ${JSON.stringify(value)}`);
};
const stackName: Check = (key, value) => {
  if (typeof value !== 'string' || !/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(value)) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must start with a letter and hold only letters, digits and hyphens`);
  }
  return value;
};

// Not RFC 5322: enough to catch a typo or a missing value; SNS sends a confirmation link anyway.
const email: Check = (key, value) => {
  if (typeof value !== 'string' || (value !== '' && !/^[^\s@]+@[^\s@]+\.[^\s@.]+$/.test(value))) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}${key} must be an e-mail address (or empty for none), not ${JSON.stringify(value)}`);
  }
  return value;
};

const CHECKS: Record<keyof Settings, Check> = {
  stackName,
  fetchMaxConcurrency: int(2, 1000),
  fetchBatchSize: int(1, 100),
  fetchBatchWindowSeconds: int(0, 300),
  fetchMemoryMb: int(256, 10240),
  fetchTimeoutSeconds: int(30, 900),
  imageTimeoutSeconds: int(5, 600),
  perHost: int(1, 256),
  manifestMemoryMb: int(512, 10240),
  manifestTimeoutSeconds: int(60, 900),
  userAgent: text,
  referer: text,
  maxBytes: int(1024, 1024 * 1024 * 1024),
  layout: oneOf(['flat', 'by-label']),
  removalPolicy: oneOf(['retain', 'destroy']),
  skipExistingAtSplit: bool,
  maxReceiveCount: int(1, 1000),
  retryDelaySeconds: int(1, 900),
  alarmEmail: email,
};

/** Reads every setting through `context(key)` (e.g. node.tryGetContext), checking each value. */
export function readSettings(context: (key: string) => unknown): Settings {
  const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const [key, check] of Object.entries(CHECKS)) {
    const value = context(CONTEXT_PREFIX + key);
    if (value !== undefined) settings[key] = check(key, value);
  }
  const s = settings as unknown as Settings;
  if (s.imageTimeoutSeconds + 10 > s.fetchTimeoutSeconds) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}imageTimeoutSeconds (${s.imageTimeoutSeconds}) must leave at least 10 s of ${CONTEXT_PREFIX}fetchTimeoutSeconds (${s.fetchTimeoutSeconds})`);
  }
  // Lambda refuses batches over 10 from a standard queue without a batching window.
  if (s.fetchBatchSize > 10 && s.fetchBatchWindowSeconds < 1) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}fetchBatchSize ${s.fetchBatchSize} needs ${CONTEXT_PREFIX}fetchBatchWindowSeconds of at least 1 (Lambda allows batches over 10 only with a batching window)`);
  }
  // The fetch function must hold at least one image of maxBytes (engine/byte-budget.ts).
  if (fetchReservation(s.maxBytes) > budgetBytes(s.fetchMemoryMb)) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}maxBytes (${s.maxBytes}) does not fit in ${CONTEXT_PREFIX}fetchMemoryMb (${s.fetchMemoryMb}): an image needs ${Math.ceil(fetchReservation(s.maxBytes) / MiB)} MiB while fetched, ${CONTEXT_PREFIX}fetchMemoryMb less the runtime's ${RUNTIME_HEADROOM_MB} MiB leaves ${budgetBytes(s.fetchMemoryMb) / MiB} MiB`);
  }
  return s;
}

const MiB = 1024 * 1024;

/** The stack's two functions, and the service name each logs and emits metrics under (Powertools). */
export const FUNCTION_SERVICES = {
  manifest: 'cloudfetch-manifest',
  fetch: 'cloudfetch-fetch',
} as const;
export type FunctionId = keyof typeof FUNCTION_SERVICES;

/** The CloudWatch namespace of the functions' metrics (the dashboard reads it). */
export const METRICS_NAMESPACE = 'cloudfetch';

/** How long the functions' log groups keep their lines. */
export const LOG_RETENTION_DAYS = 30;

/** The jobs queue keeps a job a week: a million images drain in about 3 days even at 2 fetch functions and 10 s a batch. */
export const JOBS_RETENTION_SECONDS = 7 * 24 * 60 * 60;

/**
 * Dead letters (failed jobs, failed manifest events) are kept for SQS's longest. SQS counts a
 * message's age from its first enqueue, so the DLQ must outlive the jobs queue: a job that dies on
 * its last day there still has a week in the DLQ.
 */
export const DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 60 * 60;

/**
 * A function's whole environment as the stack sets it (aws/lambda/config.ts reads it), given where
 * the bucket and the jobs queue are: names in the stack, emulator ones in the local cloud. Only the
 * manifest function sends jobs, so only it is told the queue.
 */
export function functionEnvironment(s: Settings, fn: FunctionId, at: { bucket: string; jobsQueueUrl: string }): Record<string, string> {
  return {
    BUCKET_NAME: at.bucket,
    ...(fn === 'manifest' ? { JOBS_QUEUE_URL: at.jobsQueueUrl } : {}),
    LAYOUT: s.layout,
    MAX_BYTES: String(s.maxBytes),
    IMAGE_TIMEOUT_SECONDS: String(s.imageTimeoutSeconds),
    PER_HOST: String(s.perHost),
    SKIP_EXISTING_AT_SPLIT: String(s.skipExistingAtSplit),
    ...(fn === 'fetch' ? { RETRY_DELAY_SECONDS: String(s.retryDelaySeconds) } : {}),
    ...(s.userAgent ? { USER_AGENT: s.userAgent } : {}),
    ...(s.referer ? { REFERER: s.referer } : {}),
    POWERTOOLS_SERVICE_NAME: FUNCTION_SERVICES[fn],
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
  };
}

/** The stack's settings as `cdk deploy` would use them: this project's cdk.json context over the defaults. */
export async function cdkJsonSettings(): Promise<Settings> {
  const cdk = JSON.parse(await readFile(new URL('../cdk.json', import.meta.url), 'utf8')) as { context?: Record<string, unknown> };
  return readSettings((key) => cdk.context?.[key]);
}
