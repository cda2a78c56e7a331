// The stack's settings: CDK context (cdk.json, or `cdk deploy -c key=value`) with defaults.
// Shared by the CDK app, the functions' environment, the local cloud and the commands, so all run
// with the same numbers. No CDK imports.

import { readFile } from 'node:fs/promises';
import { budgetBytes, fetchReservation, RUNTIME_HEADROOM_MB } from '../engine/byte-budget.ts';
import type { Layout } from '../engine/keys.ts';
import { DEFAULT_IMAGE_OPTIONS, MAX_RESIZE, OUTPUT_FORMATS, RESIZE_MODES, type OutputFormat, type ResizeMode } from '../engine/resize.ts';

export interface Settings {
  stackName: string;
  /** Most fetch function instances at once: protects origin sites and a new account's quota. */
  fetchMaxConcurrency: number;
  /** SQS messages (images) handed to one fetch invocation: at most 10, as Lambda reads a FIFO queue. */
  fetchBatchSize: number;
  fetchMemoryMb: number;
  fetchTimeoutSeconds: number;
  /** Overall deadline for one image inside the fetch function. */
  imageTimeoutSeconds: number;
  /** Jobs of one origin in flight at once across every fetch function: its message groups (aws/fifo.ts), and each fetcher's cap per origin (engine/host-gate.ts). */
  hostConcurrency: number;
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
  /** Largest side after resizing in the fetch function, in pixels; 0: no resizing (engine/resize.ts). */
  resize: number;
  resizeMode: ResizeMode;
  /** Stored format; not `keep`, the keys end in its extension (decided at split time). */
  imageFormat: OutputFormat;
  quality: number;
  /** Keep the fetched bytes under originals/ beside each image stored resized. */
  keepOriginals: boolean;
  /** Distinct URLs of one host with the same bytes that make them a placeholder; 0: no check. */
  placeholderThreshold: number;
}

export const DEFAULT_SETTINGS: Settings = {
  stackName: 'cloudfetch',
  fetchMaxConcurrency: 20,
  fetchBatchSize: 10,
  fetchMemoryMb: 512,
  fetchTimeoutSeconds: 120,
  imageTimeoutSeconds: 30,
  hostConcurrency: 4,
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
  resize: 0,
  resizeMode: DEFAULT_IMAGE_OPTIONS.mode,
  imageFormat: DEFAULT_IMAGE_OPTIONS.format,
  quality: DEFAULT_IMAGE_OPTIONS.quality,
  keepOriginals: false,
  placeholderThreshold: 3,
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
  fetchBatchSize: int(1, 10),
  fetchMemoryMb: int(256, 10240),
  fetchTimeoutSeconds: int(30, 900),
  imageTimeoutSeconds: int(5, 600),
  hostConcurrency: int(1, 256),
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
  resize: int(0, MAX_RESIZE),
  resizeMode: oneOf(RESIZE_MODES),
  imageFormat: oneOf(OUTPUT_FORMATS),
  quality: int(1, 100),
  keepOriginals: bool,
  placeholderThreshold: (key, value) => {
    // 1 would make every image a placeholder: one URL alone shares its bytes with no other.
    if (value === 0 || value === '0') return 0;
    return int(2, 1_000_000)(key, value);
  },
};

/** Reads every setting through `context(key)` (e.g. node.tryGetContext), checking each value. */
export function readSettings(context: (key: string) => unknown): Settings {
  const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const [key, check] of Object.entries(CHECKS)) {
    const value = context(CONTEXT_PREFIX + key);
    if (value !== undefined) settings[key] = check(key, value);
  }
  const s = settings as unknown as Settings;
  if (s.resizeMode !== 'keep' && s.resize === 0) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}resizeMode ${s.resizeMode} needs ${CONTEXT_PREFIX}resize (the side of the square, in pixels)`);
  }
  if (s.imageTimeoutSeconds + 10 > s.fetchTimeoutSeconds) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}imageTimeoutSeconds (${s.imageTimeoutSeconds}) must leave at least 10 s of ${CONTEXT_PREFIX}fetchTimeoutSeconds (${s.fetchTimeoutSeconds})`);
  }
  // The fetch function must hold at least one image of maxBytes (engine/byte-budget.ts).
  if (fetchReservation(s.maxBytes) > budgetBytes(s.fetchMemoryMb)) {
    throw new SettingsError(`context ${CONTEXT_PREFIX}maxBytes (${s.maxBytes}) does not fit in ${CONTEXT_PREFIX}fetchMemoryMb (${s.fetchMemoryMb}): an image needs ${Math.ceil(fetchReservation(s.maxBytes) / MiB)} MiB while fetched, ${CONTEXT_PREFIX}fetchMemoryMb less the runtime's ${RUNTIME_HEADROOM_MB} MiB leaves ${budgetBytes(s.fetchMemoryMb) / MiB} MiB`);
  }
  return s;
}

const MiB = 1024 * 1024;

/** Whether the fetch function decodes images: resizing or a stored format is asked for. */
export function shapesImages(s: Settings): boolean {
  return s.resize > 0 || s.imageFormat !== 'keep';
}

/** The stack's two functions, and the service name each logs and emits metrics under (Powertools). */
export const FUNCTION_SERVICES = {
  manifest: 'cloudfetch-manifest',
  fetch: 'cloudfetch-fetch',
  pack: 'cloudfetch-pack',
} as const;
export type FunctionId = keyof typeof FUNCTION_SERVICES;

/**
 * The pack function (invoked directly by `cloudfetch pack`): a shard of 256 MB streams through in
 * a few minutes, the longest timeout lets one invocation pack several, and the memory buys network
 * (Lambda's grows with it) while the function holds only 16 images and two 8 MiB upload parts.
 */
export const PACK_FUNCTION = { memoryMb: 1024, timeoutSeconds: 900 } as const;

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
    HOST_CONCURRENCY: String(s.hostConcurrency),
    SKIP_EXISTING_AT_SPLIT: String(s.skipExistingAtSplit),
    PLACEHOLDER_THRESHOLD: String(s.placeholderThreshold),
    ...(fn === 'fetch' ? { RETRY_DELAY_SECONDS: String(s.retryDelaySeconds), MAX_RECEIVE_COUNT: String(s.maxReceiveCount) } : {}),
    // Keys follow a stored format chosen up front (the manifest function); the fetch function shapes.
    ...(s.imageFormat !== 'keep' ? { IMAGE_FORMAT: s.imageFormat } : {}),
    ...(fn === 'fetch' ? imageEnvironment(s) : {}),
    ...(s.userAgent ? { USER_AGENT: s.userAgent } : {}),
    ...(s.referer ? { REFERER: s.referer } : {}),
    POWERTOOLS_SERVICE_NAME: FUNCTION_SERVICES[fn],
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
  };
}

/** The fetch function's resizing settings, only when it resizes or re-encodes (aws/lambda/config.ts imageOptions). */
function imageEnvironment(s: Settings): Record<string, string> {
  if (!shapesImages(s)) return {};
  return {
    ...(s.resize > 0 ? { RESIZE: String(s.resize), RESIZE_MODE: s.resizeMode } : {}),
    QUALITY: String(s.quality),
    ...(s.keepOriginals ? { KEEP_ORIGINALS: 'true' } : {}),
  };
}

/** The stack's settings as `cdk deploy` would use them: this project's cdk.json context over the defaults. */
export async function cdkJsonSettings(): Promise<Settings> {
  const cdk = JSON.parse(await readFile(new URL('../cdk.json', import.meta.url), 'utf8')) as { context?: Record<string, unknown> };
  return readSettings((key) => cdk.context?.[key]);
}
