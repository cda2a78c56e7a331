// Fetches one image (trying its mirror URLs in order) with undici: guard, per-image deadline,
// retries of transient failures only, byte-level validation. Knows nothing of where bytes go.

import { hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { GuardError, checkUrl, dnsLookup, guardInterceptor, type GuardOptions } from './guard.ts';
import { SNIFF_BYTES, contentTypeOf, detectImageFormat, type ImageFormat } from './image.ts';
import { isTransient, type FailureReason } from '../outcome.ts';
import { HostGate, type Answer, type Entry, type HostPauses, type PauseReason } from '../host-gate.ts';
import { parseFetchUrl } from './url.ts';
import { DEFAULT_FETCHER_OPTIONS, DEFAULT_USER_AGENT } from './defaults.ts';
import { hasRateLimitHeaders, parseRateLimit, type RateLimitInfo } from './rate-limit.ts';

export { DEFAULT_FETCHER_OPTIONS, DEFAULT_USER_AGENT };

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

export type FetchResult =
  | { ok: true; url: string; body: Buffer; format: ImageFormat; contentType: string; attempts: number; httpStatus: number; sha256: string }
  | { ok: false; url: string; reason: FailureReason; detail: string; attempts: number; httpStatus?: number; retryAfterMs?: number; sha256?: string; hostPausedUntil?: number };

type Failed = Extract<FetchResult, { ok: false }>;

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
  /** When the time runs out (ms epoch), as of the last resume. */
  #endsAt: number;
  /** When the clock stopped (ms epoch); 0: running. */
  #pausedAt = 0;
  /**
   * One timer per image, not one per wait: a pause only notes the time, and a timer that fires
   * early (the deadline moved on by the waits meanwhile) is set again for what is left. Waiting at
   * the gate is most images' lot when jobs outnumber connections, and a clearTimeout and a
   * setTimeout per wait cost more than the check.
   */
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number, parent?: AbortSignal) {
    this.#endsAt = Date.now() + ms;
    if (parent?.aborted) this.#controller.abort(parent.reason);
    else if (parent) {
      this.#siblings = siblingsOn(parent);
      this.#siblings.add(this);
    }
    this.#arm(ms);
  }

  /** The request under way, aborted with the deadline (no abort listener per request). */
  exchange: Exchange | null = null;

  abort(reason: unknown): void {
    this.#controller.abort(reason);
    this.exchange?.abort(reason instanceof Error ? reason : new Error(String(reason)));
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  pause(): void {
    if (this.#pausedAt === 0) this.#pausedAt = Date.now();
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
    if (this.#pausedAt <= 0) return; // running, or ended
    this.#endsAt += Date.now() - this.#pausedAt;
    this.#pausedAt = 0;
    if (this.#timer === undefined) this.#arm(this.#endsAt - Date.now());
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, ms));
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    if (this.#pausedAt !== 0) return; // set again on resume
    const left = this.#endsAt - Date.now();
    if (left > 0) this.#arm(left);
    else this.abort(new DOMException('the deadline passed', 'TimeoutError'));
  }

  /** Ends the deadline: no timer left, no longer aborted with the caller's signal. */
  end(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pausedAt = -1; // nothing to set again
    this.#siblings?.delete(this);
  }
}

const REDIRECT_STATUSES = new Set([300, 301, 302, 303, 307, 308]);

/** An error page is read to its end up to this size (the connection stays reusable), else dropped. */
const ERROR_PAGE_BYTES = 64 * 1024;

/**
 * One request at undici's dispatch level: the body's chunks are collected as they come, checked
 * on the way (size limit, the first bytes an image's), with no response stream, async iterator or
 * abort listener per request. The fetcher awaits settled(): headers in hand while it waits for
 * room (the socket paused meanwhile), or the end, or an error.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #maxBytes: number;
  /** Pause at the headers until proceed(): the caller waits for room to hold the body. */
  #holdAtHeaders: boolean;
  #controller: Dispatcher.DispatchController | null = null;
  #done = false;
  #wake: (() => void) | null = null;
  #sniffed = false;
  /** Reading an error page: counted and dropped. */
  #draining = false;
  waitingForRoom = false;
  /** A redirect's Location, to follow (the fetcher follows redirects itself: see #attempt). */
  location: string | null = null;
  statusCode = 0;
  headers: IncomingHttpHeaders = {};
  readonly chunks: Buffer[] = [];
  received = 0;
  error: Error | null = null;

  constructor(maxBytes: number, holdAtHeaders: boolean) {
    this.#maxBytes = maxBytes;
    this.#holdAtHeaders = holdAtHeaders;
  }

  /** Resolves when the exchange ends (error included) or waits for room; never rejects. */
  settled(): Promise<void> {
    if (this.#done || this.waitingForRoom) return Promise.resolve();
    return new Promise((resolve) => (this.#wake = resolve));
  }

  proceed(): void {
    this.waitingForRoom = false;
    this.#controller?.resume();
  }

  abort(reason: Error): void {
    if (this.#done) return;
    this.#finish(reason);
    this.#controller?.abort(reason);
  }

  #finish(error: Error | null): void {
    if (this.#done) return;
    this.#done = true;
    this.waitingForRoom = false;
    // A failed error page still says what the origin answered: its status decides.
    this.error = this.#draining ? null : error;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // Aborted while it waited for a connection: stop before anything is sent.
    if (this.#done) controller.abort(this.error ?? new Error('aborted'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (this.#done) return;
    this.statusCode = statusCode;
    this.headers = headers;
    if (statusCode < 200 || statusCode >= 300) {
      const location = REDIRECT_STATUSES.has(statusCode) ? headers.location : undefined;
      this.location = (Array.isArray(location) ? location[0] : location) ?? null;
      this.#draining = true;
      return;
    }
    const declared = Number(headers['content-length']);
    if (!headers['content-encoding'] && Number.isFinite(declared) && declared > this.#maxBytes) {
      this.abort(new Failure('too-large', `Content-Length ${declared} exceeds ${this.#maxBytes} bytes`, statusCode));
      return;
    }
    if (this.#holdAtHeaders) {
      // Unread meanwhile, the body pauses the socket (undici's body timeout waits while paused).
      this.#holdAtHeaders = false;
      controller.pause();
      this.waitingForRoom = true;
      const wake = this.#wake;
      this.#wake = null;
      wake?.();
    }
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#done) return;
    this.received += chunk.length;
    if (this.#draining) {
      if (this.received > ERROR_PAGE_BYTES) this.abort(new Error('error page dropped'));
      return;
    }
    if (this.received > this.#maxBytes) {
      this.abort(new Failure('too-large', `body exceeds ${this.#maxBytes} bytes`, this.statusCode));
      return;
    }
    this.chunks.push(chunk);
    if (!this.#sniffed && this.received >= SNIFF_BYTES) {
      this.#sniffed = true;
      // Stop downloading an HTML page or other non-image as soon as its first bytes show it.
      const head = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks);
      if (!detectImageFormat(head)) this.abort(new Failure('not-image', describeNonImage(head, this.headers['content-type']), this.statusCode));
    }
  }

  onResponseEnd(): void {
    this.#finish(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    this.#finish(error);
  }
}

/** `rateLimit`: what the answer's headers state of its origin's limit, for the gate (only when said, by the gated origin itself). */
type Attempt =
  | { ok: true; body: Buffer; format: ImageFormat; httpStatus: number; sha256: string; rateLimit?: RateLimitInfo | undefined }
  | { ok: false; reason: FailureReason; detail: string; httpStatus?: number; retryAfterMs?: number; rateLimit?: RateLimitInfo | undefined };

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
  /**
   * Origins whose URL passed checkUrl (its verdict depends on the scheme and host alone), each with
   * the URL the dispatcher is given: a URL object, so the DNS interceptor does not parse it again
   * for every request, and the same one each time, so the guard knows it by identity.
   */
  #allowed = new Map<string, URL>();

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
    // compose() wraps from the first to the last, so the last is outermost: every request (each
    // redirect hop is one, see #attempt) is resolved by the DNS cache and then checked by the
    // guard, which sees the IP it connects to. Redirects are followed here rather than by undici's
    // interceptor, which parses a URL and builds a handler for every response, redirected or not;
    // each Location passes checkUrl() (#admit) before it is dispatched, so the guard needs no
    // handler of its own per request to refuse other schemes.
    this.#dispatcher = this.#agent.compose(
      guardInterceptor(o.guard, false),
      interceptors.dns({ maxTTL: 60_000, lookup: dnsLookup }),
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
    // The wait for room is not the origin's time: the image's deadline stops meanwhile.
    const paused: Room | undefined = room && ((bytes, waitSignal) => deadline.outside(() => room(bytes, waitSignal)));
    const patientUntil = Date.now() + this.options.hostWaitMs;
    // The mirrors' loop is here, not in an async function of its own: one frame and promise less per image.
    try {
      let attempts = 0;
      let failures: string[] | null = null;
      let last: Failed | null = null;
      for (const text of urls) {
        const url = parseFetchUrl(text);
        let result: FetchResult;
        if (!url) result = { ok: false, url: text, reason: 'bad-url', detail: 'not an http(s) URL', attempts };
        else {
          result = await this.#fetchUrl(url, deadline, attempts, paused, patientUntil);
          attempts = result.attempts;
          if (result.ok || deadline.signal.aborted) return result;
        }
        if (last) (failures ??= [last.reason]).push(result.reason);
        last = result;
      }
      if (!last) return { ok: false, url: '', reason: 'no-url', detail: 'the entry has no URL', attempts };
      if (failures) last = { ...last, detail: `${last.detail}; mirrors: ${failures.join(', ')}` };
      return last;
    } finally {
      deadline.end();
    }
  }

  async #fetchUrl(url: URL, deadline: Deadline, attemptsBefore: number, room: Room | undefined, patientUntil: number): Promise<FetchResult> {
    const signal = deadline.signal;
    const origin = url.origin;
    const target = this.#admit(url, origin);
    if (target instanceof GuardError) return { ok: false, url: url.href, reason: target.reason, detail: target.message, attempts: attemptsBefore };
    let attempts = attemptsBefore;
    for (let retry = 0; ; ) {
      // A slot free now is taken at once; otherwise the wait (the origin's turn, pace and pauses)
      // is not the request's time.
      const free = signal.aborted ? null : this.#gate.tryAcquire(origin);
      let entry: Entry;
      if (free) entry = { ok: true, grant: free };
      else {
        // outside(), spelt out: no closure and no promise of its own for each image that waits.
        deadline.pause();
        try {
          entry = await this.#gate.acquire(origin, patientUntil, signal);
        } catch (error) {
          return { ok: false, url: url.href, attempts, ...classifyError(error, 'headers', 0, signal) };
        } finally {
          deadline.resume();
        }
      }
      if (!entry.ok) return pausedFailure(url.href, attempts, entry.until, entry.reason);
      attempts++;
      let result: Attempt;
      try {
        result = await this.#attempt(url, target, deadline, room);
      } catch (error) {
        // Not .catch(): a closure and a promise more per image.
        result = { ok: false, ...classifyError(error, 'headers', 0, signal) };
      }
      if (result.ok) {
        entry.grant.done('ok', undefined, result.rateLimit);
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
      entry.grant.done(answerOf(result), result.retryAfterMs, result.rateLimit);
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

  /** The URL the dispatcher is given for `url`'s origin, once checkUrl let it pass; else the refusal. */
  #admit(url: URL, origin = url.origin): URL | GuardError {
    let target = this.#allowed.get(origin);
    if (!target) {
      const refused = checkUrl(url, this.options.guard);
      if (refused) return refused;
      if (this.#allowed.size >= 10_000) this.#allowed.clear();
      target = new URL(origin);
      this.#allowed.set(origin, target);
    }
    return target;
  }

  /** One request for `url`, and its redirects (each hop checked, at most maxRedirects, no loops). */
  async #attempt(url: URL, origin: URL, deadline: Deadline, room: Room | undefined): Promise<Attempt> {
    const signal = deadline.signal;
    let visited: string[] | null = null; // made at the first redirect
    for (let hop = url, hopOrigin = origin; ; ) {
      const exchange = new Exchange(this.options.maxBytes, room !== undefined);
      deadline.exchange = exchange;
      try {
        this.#dispatcher.dispatch({ origin: hopOrigin, path: `${hop.pathname}${hop.search}`, method: 'GET', headers: this.#headers }, exchange);
        await exchange.settled();
        if (exchange.waitingForRoom) {
          const declared = Number(exchange.headers['content-length']);
          try {
            await room!(!exchange.headers['content-encoding'] && Number.isFinite(declared) ? declared : undefined, signal);
          } catch (error) {
            exchange.abort(error instanceof Error ? error : new Error(String(error)));
            throw error;
          }
          exchange.proceed();
          await exchange.settled();
        }
      } finally {
        deadline.exchange = null;
      }
      const { statusCode, headers, error, location } = exchange;
      // A redirect's target may be another origin: its limit is not the gated origin's.
      const rateLimit = hopOrigin === origin && hasRateLimitHeaders(headers) ? parseRateLimit(headers) : undefined;
      if (error instanceof Failure) {
        return { ok: false, reason: error.reason, detail: error.message, ...(error.httpStatus ? { httpStatus: error.httpStatus } : {}), rateLimit };
      }
      if (location !== null && signal.aborted) return { ok: false, ...classifyError(error ?? signal.reason, 'headers', 0, signal) };
      const next = location === null ? null : URL.parse(location, hop);
      if (next !== null) {
        (visited ??= []).push(hop.href);
        if (visited.length > this.options.maxRedirects) return { ok: false, reason: 'redirect-loop', detail: `more than ${this.options.maxRedirects} redirects`, httpStatus: statusCode };
        if (visited.includes(next.href)) return { ok: false, reason: 'redirect-loop', detail: `redirect loop: back to a URL already visited`, httpStatus: statusCode };
        const admitted = this.#admit(next);
        if (admitted instanceof GuardError) return { ok: false, reason: admitted.reason, detail: admitted.message };
        [hop, hopOrigin] = [next, admitted];
        continue;
      }
      if (statusCode !== 0 && (statusCode < 200 || statusCode >= 300)) {
        // The error page was read to its end (up to 64 KiB, so the connection stays reusable) or dropped.
        const retryAfterMs = statusCode === 429 || statusCode === 503 ? parseRetryAfter(headers['retry-after']) : undefined;
        return { ok: false, ...statusFailure(statusCode), httpStatus: statusCode, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}), rateLimit };
      }
      if (error) return { ok: false, ...classifyError(error, statusCode === 0 ? 'headers' : 'body', exchange.received, signal), rateLimit };
      const { chunks, received } = exchange;
      if (received === 0) return { ok: false, reason: 'empty', detail: 'the body was empty', httpStatus: statusCode, rateLimit };
      // A body that came in one chunk is kept as it is: no copy.
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      const format = detectImageFormat(bytes);
      if (!format) return { ok: false, reason: 'not-image', detail: describeNonImage(bytes, headers['content-type']), httpStatus: statusCode, rateLimit };
      // One-shot over the whole body: no Hash object and no update per chunk (the body is in hand anyway).
      return { ok: true, body: bytes, format, httpStatus: statusCode, sha256: hash('sha256', bytes, 'hex'), rateLimit };
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
