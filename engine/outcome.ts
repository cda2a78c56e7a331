// What became of one image, and the closed list of reasons a fetch can fail.
// Whether a reason is worth another try is decided here and nowhere else.

export const FAILURE_REASONS = {
  'no-url': 'the entry has no URL',
  'bad-url': 'the URL is not a valid http(s) URL',
  'blocked-address': 'the host is a private, loopback, link-local or metadata address',
  'blocked-scheme': 'a redirect led to a scheme other than http or https',
  'redirect-loop': 'too many redirects, or a redirect loop',
  dns: 'the host name does not resolve',
  'connection-refused': 'the host refused the connection',
  'connection-reset': 'the connection was reset or closed early',
  tls: 'the TLS handshake failed',
  timeout: 'no answer within the time limit',
  'http-403': 'HTTP 403 Forbidden (often hotlink or bot protection)',
  'http-404': 'HTTP 404 Not Found',
  'http-410': 'HTTP 410 Gone',
  'http-4xx': 'another HTTP 4xx answer',
  'http-5xx': 'HTTP 5xx server error',
  'http-other': 'an unexpected HTTP status',
  'rate-limited': 'HTTP 429 Too Many Requests',
  truncated: 'the body ended before its announced length',
  empty: 'the body was empty',
  'too-large': 'the body is larger than the size limit',
  'not-image': 'the body is not an image (often an HTML page)',
  undecodable: 'an image by its first bytes that cannot be decoded (truncated or corrupt), found when resizing',
  network: 'another network error',
  unqueueable: 'SQS will not take its job message (over the size limit, or refused)',
  placeholder: 'the same bytes as other URLs of its host: a "photo unavailable" image, not kept',
} as const;

export type FailureReason = keyof typeof FAILURE_REASONS;

const TRANSIENT: ReadonlySet<FailureReason> = new Set<FailureReason>([
  'dns',
  'connection-refused',
  'connection-reset',
  'timeout',
  'http-5xx',
  'rate-limited',
  'truncated',
  'network',
]);

/** Transient failures are retried (and, in the cloud, redelivered by SQS); permanent ones are not. */
export function isTransient(reason: FailureReason): boolean {
  return TRANSIENT.has(reason);
}

export function isFailureReason(value: string): value is FailureReason {
  return Object.hasOwn(FAILURE_REASONS, value);
}

/** Stored by this run. */
export interface Fetched {
  status: 'fetched';
  /** The URL that answered. */
  url: string;
  bytes: number;
  /** Detected image format, e.g. `jpeg`. */
  format: string;
  httpStatus?: number;
  attempts: number;
  /** SHA-256 of the stored bytes, hex. */
  sha256: string;
  /** Stored size in pixels, when the image was decoded (resizing or re-encoding on). */
  width?: number;
  height?: number;
  /** Size of the fetched bytes; `bytes` is the stored size, smaller when resized. */
  originalBytes?: number;
  // Absent on purpose: a row reads every column of any outcome.
  reason?: never;
  detail?: never;
}

/**
 * Already stored: found before fetching (attempts 0), or fetched and then found written by
 * another delivery, in which case what the fetch learned is kept.
 */
export interface Skipped {
  status: 'skipped';
  url: string;
  bytes: number;
  attempts: number;
  format?: string;
  httpStatus?: number;
  sha256?: string;
  width?: number;
  height?: number;
  originalBytes?: number;
  reason?: never;
  detail?: never;
}

export interface Failed {
  status: 'failed';
  /** The last URL tried ('' when the entry has none). */
  url: string;
  reason: FailureReason;
  /** Short human detail, e.g. `HTTP 503 after 4 attempts`. */
  detail: string;
  /** HTTP status of the last answer, when there was one. */
  httpStatus?: number;
  /** How long the host asked us to wait (Retry-After on a 429 or 503), when it did. */
  retryAfterMs?: number;
  /** Not tried (again) because its origin is paused until then (ms epoch): a Retry-After or a ban, here or seen by the fleet. */
  hostPausedUntil?: number;
  attempts: number;
  bytes: number;
  format?: never;
  width?: never;
  height?: never;
  originalBytes?: never;
  /** For a placeholder: SHA-256 of the bytes its host served (not kept), so its twins can be found. */
  sha256?: string;
}

/** What became of one image. */
export type Outcome = Fetched | Skipped | Failed;

export type Status = Outcome['status'];
