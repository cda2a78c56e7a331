// Fetches one image (trying its mirror URLs in order) with undici: guard, per-image deadline,
// retries of transient failures only, byte-level validation. Knows nothing of where bytes go.

import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { GuardError, checkUrl, dnsLookup, guardInterceptor, type GuardOptions } from './guard.ts';
import { SNIFF_BYTES, contentTypeOf, detectImageFormat, type ImageFormat } from './image.ts';
import { isTransient, type FailureReason } from '../outcome.ts';
import { HostGate, type Answer, type Entry, type HostPauses, type PauseReason } from '../host-gate.ts';
import { parseFetchUrl } from './url.ts';

export const DEFAULT_USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36';

export interface FetcherOptions {
  /** Requests at once to one origin at most (fewer when it pushes back: engine/host-gate.ts), and the size of its pool. */
  hostConcurrency: number;
  /** Requests at once over all origins (run's --concurrency); unset: the caller bounds them. */
  concurrency?: number;
  /** Longest one image waits for its origin's pause (Retry-After, a ban) before it fails; its turn and the pause do not count against timeoutMs. */
  hostWaitMs: number;
  /** Pauses shared with the other fetchers of a fleet. */
  hostPauses?: HostPauses;
  /** Overall deadline for one image, all mirrors and retries included. */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** Longest wait for response headers, and longest silence within a body. */
  idleTimeoutMs: number;
  /** Further attempts of one URL after a transient failure. */
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  maxBytes: number;
  maxRedirects: number;
  userAgent: string;
  referer?: string;
  guard: GuardOptions;
}

export const DEFAULT_FETCHER_OPTIONS: FetcherOptions = {
  // What a browser opens to one host over HTTP/1.1: a site built for browsers expects that much
  // from one client, and more looks like a bot.
  hostConcurrency: 6,
  hostWaitMs: 10 * 60_000,
  timeoutMs: 60_000,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 20_000,
  retries: 3,
  retryBaseMs: 500,
  retryMaxMs: 20_000,
  maxBytes: 50 * 1024 * 1024,
  maxRedirects: 5,
  userAgent: DEFAULT_USER_AGENT,
  guard: {},
};

export type FetchResult =
  | { ok: true; url: string; body: Buffer; format: ImageFormat; contentType: string; attempts: number; httpStatus: number; sha256: string }
  | { ok: false; url: string; reason: FailureReason; detail: string; attempts: number; httpStatus?: number; retryAfterMs?: number; sha256?: string; hostPausedUntil?: number };

/**
 * Waits until a body of `bytes` (its Content-Length; undefined when unknown or compressed) may be
 * buffered, e.g. within a memory budget; rejects when `signal` aborts first.
 */
export type Room = (bytes: number | undefined, signal: AbortSignal) => Promise<void>;

/**
 * Deadlines under way per caller's signal, aborted by one listener on it: a listener per image
 * would cost a walk over all the others' on each add and remove (EventTarget keeps a list), and
 * a run has up to 4 × --concurrency images on one signal.
 */
const underWay = new WeakMap<AbortSignal, Set<Deadline>>();

function siblingsOn(parent: AbortSignal): Set<Deadline> {
  let deadlines = underWay.get(parent);
  if (!deadlines) {
    const live = new Set<Deadline>();
    parent.addEventListener('abort', () => {
      for (const deadline of live) deadline.abort(parent.reason);
    }, { once: true });
    underWay.set(parent, live);
    deadlines = live;
  }
  return deadlines;
}

/**
 * The time one image may take, stopped while it waits for room; its signal also aborts with the
 * caller's (cheaper per image than AbortSignal.any's composite signal).
 */
class Deadline {
  readonly #controller = new AbortController();
  readonly #siblings: Set<Deadline> | undefined;
  #left: number;
  #since = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number, parent?: AbortSignal) {
    this.#left = ms;
    if (parent?.aborted) this.#controller.abort(parent.reason);
    else if (parent) {
      this.#siblings = siblingsOn(parent);
      this.#siblings.add(this);
    }
    this.resume();
  }

  abort(reason: unknown): void {
    this.#controller.abort(reason);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  pause(): void {
    this.clear();
    this.#left -= Date.now() - this.#since;
  }

  /** Waits for `work` with the clock stopped: time spent waiting is not the image's. */
  async outside<T>(work: () => Promise<T>): Promise<T> {
    this.pause();
    try {
      return await work();
    } finally {
      this.resume();
    }
  }

  resume(): void {
    this.#since = Date.now();
    this.#timer = setTimeout(() => this.#controller.abort(new DOMException('the deadline passed', 'TimeoutError')), Math.max(0, this.#left));
    this.#timer.unref();
  }

  clear(): void {
    clearTimeout(this.#timer);
  }

  /** Ends the deadline: no timer left, no longer aborted with the caller's signal. */
  end(): void {
    this.clear();
    this.#siblings?.delete(this);
  }
}

type Attempt =
  | { ok: true; body: Buffer; format: ImageFormat; httpStatus: number; sha256: string }
  | { ok: false; reason: FailureReason; detail: string; httpStatus?: number; retryAfterMs?: number };

class Failure extends Error {
  readonly reason: FailureReason;
  readonly httpStatus: number | undefined;
  constructor(reason: FailureReason, detail: string, httpStatus?: number) {
    super(detail);
    this.reason = reason;
    this.httpStatus = httpStatus;
  }
}

export class Fetcher {
  readonly options: FetcherOptions;
  #agent: Agent;
  #dispatcher: Dispatcher;
  #gate: HostGate;
  #headers: Record<string, string>;
  /** Origins whose URL passed checkUrl: its verdict depends on the scheme and host alone. */
  #allowed = new Set<string>();

  constructor(options: Partial<FetcherOptions> = {}) {
    this.options = { ...DEFAULT_FETCHER_OPTIONS, ...options };
    const o = this.options;
    this.#gate = new HostGate({ hostConcurrency: o.hostConcurrency, ...(o.concurrency ? { concurrency: o.concurrency } : {}), ...(o.hostPauses ? { pauses: o.hostPauses } : {}) });
    this.#agent = new Agent({
      connections: o.hostConcurrency,
      connect: { timeout: o.connectTimeoutMs },
      headersTimeout: o.idleTimeoutMs,
      bodyTimeout: o.idleTimeoutMs,
      keepAliveTimeout: 30_000,
    });
    // compose() wraps from the first to the last, so the last is outermost: every redirect hop
    // is resolved by the DNS cache and then checked by the guard, which sees the IP it connects to.
    this.#dispatcher = this.#agent.compose(
      guardInterceptor(o.guard),
      interceptors.dns({ maxTTL: 60_000, lookup: dnsLookup }),
      interceptors.redirect({ maxRedirections: o.maxRedirects, throwOnMaxRedirect: true }),
      interceptors.decompress({ maxSize: o.maxBytes }),
    );
    this.#headers = {
      'user-agent': o.userAgent,
      accept: 'image/avif,image/webp,image/apng,image/*,*/*;q=0.8',
      'accept-encoding': 'gzip, deflate, br',
      'accept-language': 'en-US,en;q=0.9',
      ...(o.referer ? { referer: o.referer } : {}),
    };
  }

  /**
   * Tries each URL in order until one yields an image; never throws for a failed fetch. `room`, when
   * given, is awaited before each body is read (see Room).
   */
  async fetchImage(urls: readonly string[], signal?: AbortSignal, room?: Room): Promise<FetchResult> {
    const deadline = new Deadline(this.options.timeoutMs, signal);
    try {
      // The wait for room is not the origin's time: the image's deadline stops meanwhile.
      const paused: Room | undefined = room && ((bytes, waitSignal) => deadline.outside(() => room(bytes, waitSignal)));
      return await this.#fetchUrls(urls, deadline, paused, Date.now() + this.options.hostWaitMs);
    } finally {
      deadline.end();
    }
  }

  async #fetchUrls(urls: readonly string[], deadline: Deadline, room: Room | undefined, patientUntil: number): Promise<FetchResult> {
    let attempts = 0;
    const failures: string[] = [];
    let last: FetchResult | null = null;
    for (const text of urls) {
      const url = parseFetchUrl(text);
      if (!url) {
        last = { ok: false, url: text, reason: 'bad-url', detail: 'not an http(s) URL', attempts };
        failures.push(`bad-url`);
        continue;
      }
      const result = await this.#fetchUrl(url, deadline, attempts, room, patientUntil);
      attempts = result.attempts;
      if (result.ok || deadline.signal.aborted) return result;
      last = result;
      failures.push(result.reason);
    }
    if (!last) return { ok: false, url: '', reason: 'no-url', detail: 'the entry has no URL', attempts };
    if (failures.length > 1 && !last.ok) last = { ...last, detail: `${last.detail}; mirrors: ${failures.join(', ')}` };
    return last;
  }

  async #fetchUrl(url: URL, deadline: Deadline, attemptsBefore: number, room: Room | undefined, patientUntil: number): Promise<FetchResult> {
    const signal = deadline.signal;
    const origin = url.origin;
    if (!this.#allowed.has(origin)) {
      const refused = checkUrl(url, this.options.guard);
      if (refused) return { ok: false, url: url.href, reason: refused.reason, detail: refused.message, attempts: attemptsBefore };
      if (this.#allowed.size >= 10_000) this.#allowed.clear();
      this.#allowed.add(origin);
    }
    let attempts = attemptsBefore;
    for (let retry = 0; ; ) {
      let entry: Entry;
      try {
        // The origin's turn, pace and pauses are not the request's time.
        entry = await deadline.outside(() => this.#gate.acquire(origin, patientUntil, signal));
      } catch (error) {
        return { ok: false, url: url.href, attempts, ...classifyError(error, 'headers', 0, signal) };
      }
      if (!entry.ok) return pausedFailure(url.href, attempts, entry.until, entry.reason);
      attempts++;
      const result = await this.#attempt(url, origin, signal, room).catch((error: unknown): Attempt => ({ ok: false, ...classifyError(error, 'headers', 0, signal) }));
      if (result.ok) {
        entry.grant.done('ok');
        const { body, format, httpStatus, sha256 } = result;
        return { ok: true, url: url.href, body, format, contentType: contentTypeOf(format), attempts, httpStatus, sha256 };
      }
      const failed = {
        ok: false as const, url: url.href, reason: result.reason, detail: result.detail, attempts,
        ...(result.httpStatus ? { httpStatus: result.httpStatus } : {}),
        ...(result.retryAfterMs !== undefined ? { retryAfterMs: result.retryAfterMs } : {}),
      };
      if (result.reason === 'http-403') {
        // After the origin had answered, 403s to everything are a ban: wait it out at the gate.
        const { grant } = entry;
        const banned = await deadline.outside(() => grant.forbidden(signal)).catch(() => false);
        if (banned && !signal.aborted) continue;
        return failed;
      }
      entry.grant.done(answerOf(result), result.retryAfterMs);
      if (!isTransient(result.reason) || retry >= this.options.retries || signal.aborted) return failed;
      retry++;
      // A 429's wait is its origin's pause, at the gate.
      if (result.reason === 'rate-limited') continue;
      const backoff = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** (retry - 1));
      // "Equal jitter": at least half the backoff, so hosts get a real pause, spread to avoid bursts.
      const wait = backoff / 2 + Math.random() * (backoff / 2);
      try {
        await sleep(wait, undefined, { signal });
      } catch {
        return { ...failed, reason: 'timeout', detail: `deadline passed while waiting to retry after ${result.reason}` };
      }
    }
  }

  async #attempt(url: URL, origin: string, signal: AbortSignal, room: Room | undefined): Promise<Attempt> {
    let phase: 'headers' | 'body' = 'headers';
    let received = 0;
    try {
      const response = await this.#dispatcher.request({
        origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: this.#headers,
        signal,
      });
      const { statusCode, headers, body } = response;
      if (statusCode < 200 || statusCode >= 300) {
        // Read a small error page to the end so the connection stays reusable; drop a big one.
        await body.dump({ limit: 64 * 1024 }).catch(() => {});
        const retryAfterMs = statusCode === 429 || statusCode === 503 ? parseRetryAfter(headers['retry-after']) : undefined;
        return { ok: false, ...statusFailure(statusCode), httpStatus: statusCode, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
      }
      const declared = Number(headers['content-length']);
      if (!headers['content-encoding'] && Number.isFinite(declared) && declared > this.options.maxBytes) {
        discard(body);
        throw new Failure('too-large', `Content-Length ${declared} exceeds ${this.options.maxBytes} bytes`, statusCode);
      }
      // Unread meanwhile, the body pauses the socket (undici's body timeout waits while paused).
      await room?.(!headers['content-encoding'] && Number.isFinite(declared) ? declared : undefined, signal).catch((error: unknown) => {
        discard(body);
        throw error;
      });
      phase = 'body';
      const chunks: Buffer[] = [];
      // Hashed as it streams in: the stored bytes are never read a second time.
      const hash = createHash('sha256');
      let sniffed = false;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received > this.options.maxBytes) {
          discard(body);
          throw new Failure('too-large', `body exceeds ${this.options.maxBytes} bytes`, statusCode);
        }
        chunks.push(chunk);
        hash.update(chunk);
        if (!sniffed && received >= SNIFF_BYTES) {
          sniffed = true;
          // Stop downloading an HTML page or other non-image as soon as its first bytes show it.
          const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
          if (!detectImageFormat(head)) {
            discard(body);
            throw new Failure('not-image', describeNonImage(head, headers['content-type']), statusCode);
          }
        }
      }
      if (received === 0) throw new Failure('empty', 'the body was empty', statusCode);
      // A body that came in one chunk is kept as it is: no copy.
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      const format = detectImageFormat(bytes);
      if (!format) throw new Failure('not-image', describeNonImage(bytes, headers['content-type']), statusCode);
      return { ok: true, body: bytes, format, httpStatus: statusCode, sha256: hash.digest('hex') };
    } catch (error) {
      if (error instanceof Failure) {
        return { ok: false, reason: error.reason, detail: error.message, ...(error.httpStatus ? { httpStatus: error.httpStatus } : {}) };
      }
      return { ok: false, ...classifyError(error, phase, received, signal) };
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** Ends every connection at once, in-flight requests included (for an interrupted run). */
  async destroy(): Promise<void> {
    await this.#agent.destroy();
  }
}

/** What a failed attempt says about its origin's load, for the gate. */
function answerOf(result: { reason: FailureReason; httpStatus?: number }): Answer {
  if (result.reason === 'rate-limited') return 'throttled';
  if (result.httpStatus === 503) return 'overloaded';
  if (result.reason === 'connection-refused') return 'refused';
  // Any other answer (a 404, a page that is not an image…) came within the origin's limits.
  if (result.httpStatus !== undefined && result.reason !== 'http-5xx') return 'ok';
  return 'failed';
}

/** An image not tried (again) because its origin stays paused past what it may wait. */
function pausedFailure(url: string, attempts: number, until: number, reason: PauseReason | 'fleet'): FetchResult {
  const at = new Date(until).toISOString();
  if (reason === 'ban') {
    return { ok: false, url, reason: 'http-403', detail: `its host banned us (403 to everything after it had answered); paused until ${at}`, attempts, httpStatus: 403, hostPausedUntil: until };
  }
  const why = reason === 'fleet' ? 'its host is paused for the whole fleet' : reason === 'retry-after' ? 'its host asked us to wait (Retry-After)' : 'its host is throttling us';
  return { ok: false, url, reason: 'rate-limited', detail: `${why} until ${at}`, attempts, retryAfterMs: Math.max(0, until - Date.now()), hostPausedUntil: until };
}

function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

function statusFailure(status: number): { reason: FailureReason; detail: string } {
  const detail = `HTTP ${status}`;
  if (status === 403) return { reason: 'http-403', detail };
  if (status === 404) return { reason: 'http-404', detail };
  if (status === 410) return { reason: 'http-410', detail };
  if (status === 429) return { reason: 'rate-limited', detail };
  if (status >= 400 && status < 500) return { reason: 'http-4xx', detail };
  if (status >= 500 && status < 600) return { reason: 'http-5xx', detail };
  return { reason: 'http-other', detail: status >= 300 && status < 400 ? `${detail} without a usable Location` : detail };
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\s*\d+\s*$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function describeNonImage(bytes: Buffer, contentType: string | string[] | undefined): string {
  const type = Array.isArray(contentType) ? contentType[0] : contentType;
  const head = bytes.subarray(0, 64).toString('latin1').toLowerCase();
  const html = head.includes('<html') || head.includes('<!doctype') || head.trimStart().startsWith('<');
  return `${html ? 'an HTML page' : 'not an image'} (Content-Type ${type ?? 'missing'})`;
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NODATA', 'EAI_NONAME', 'EAI_FAIL']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNABORTED', 'UND_ERR_ABORTED']);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function errorCode(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return '';
}

function findGuardError(error: unknown): GuardError | null {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth++) {
    if (current instanceof GuardError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

/** Maps an undici / socket error to a failure reason: the one place this is decided. */
export function classifyError(
  error: unknown,
  phase: 'headers' | 'body',
  received: number,
  signal: AbortSignal,
): { reason: FailureReason; detail: string } {
  const guard = findGuardError(error);
  if (guard) return { reason: guard.reason, detail: guard.message };
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (signal.aborted || code === 'ABORT_ERR' || (error instanceof Error && error.name === 'AbortError')) {
    const why = signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? 'deadline for this image passed' : 'aborted';
    return { reason: 'timeout', detail: `${why}${phase === 'body' ? ` after ${received} bytes` : ''}` };
  }
  if (code === 'UND_ERR_REDIRECT_MAX' || /redirect loop/i.test(message)) return { reason: 'redirect-loop', detail: message };
  if (code === 'UND_ERR_INVALID_ARG' && /url/i.test(message)) return { reason: 'bad-url', detail: message };
  if (TIMEOUT_CODES.has(code)) return { reason: 'timeout', detail: `${code}${phase === 'body' ? ` after ${received} bytes` : ''}` };
  if (DNS_CODES.has(code)) return { reason: 'dns', detail: `${code}: ${message}` };
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return { reason: 'too-large', detail: 'decoded body exceeds the size limit' };
  if (code === 'ECONNREFUSED') return { reason: 'connection-refused', detail: message };
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return { reason: 'truncated', detail: `body ended after ${received} bytes` };
  if (RESET_CODES.has(code)) {
    return phase === 'body'
      ? { reason: 'truncated', detail: `connection closed after ${received} bytes (${code})` }
      : { reason: 'connection-reset', detail: `${code}: ${message}` };
  }
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED)/.test(code) || code === 'EPROTO') {
    return { reason: 'tls', detail: `${code}: ${message}` };
  }
  if (code.startsWith('Z_') || code === 'ERR_DECOMPRESSION') return { reason: 'truncated', detail: `bad compressed body: ${message}` };
  return { reason: 'network', detail: code ? `${code}: ${message}` : message };
}
