// Object requests to one bucket without the SDK's middleware: signed with SigV4 (header signing,
// written here: the S3Client's region, credentials provider and endpoint rules) and sent over one
// undici pool with keep-alive, retried as the SDK's standard mode retries. For the calls made once
// per image (the fetch function's HeadObject and PutObject), where the SDK's middleware stack cost
// more CPU than the request itself, and its signer ~0.12 ms per request (bench/fetch-function.ts).

import { createHmac, createSecretKey, hash, type KeyObject } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { Agent, type Dispatcher } from 'undici';

/** An answer other than the one asked for, or no answer: the status (none for a network error) and S3's error code. */
export class S3RequestError extends Error {
  override name = 'S3RequestError';
  readonly status: number | undefined;
  /** S3's <Code> (`SlowDown`, `AccessDenied`…), or for a body-less answer (HEAD) the status's name. */
  readonly code: string | undefined;
  readonly attempts: number;
  constructor(message: string, o: { status?: number; code?: string; attempts: number; cause?: unknown }) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.status = o.status;
    this.code = o.code;
    this.attempts = o.attempts;
  }
}

/** What one request brings back: the status and headers; the body only when asked for (errors read it). */
export interface SignedAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface SignedRequest {
  method: 'HEAD' | 'PUT';
  key: string;
  /** Lower-case names, values of printable ASCII; all of them are signed. */
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** SHA-256 of the body, hex: the payload is signed with it (S3 checks it). Without it, UNSIGNED-PAYLOAD. */
  sha256?: string;
  /** Statuses that are answers, not errors (404 for a HEAD, 412 for a conditional PUT). */
  expect: readonly number[];
  signal?: AbortSignal;
}

interface ResolvedEndpoint {
  url: URL;
  properties?: { authSchemes?: Array<{ name?: string; signingName?: string; signingRegion?: string }> };
}

// The parts of S3Client.config used here (resolved configuration, typed loosely by the SDK).
interface S3Config {
  region: () => Promise<string>;
  credentials: () => Promise<Credentials>;
  endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string } | { url: URL }>;
  /** AWS_ENDPOINT_URL(_S3) or the shared config's endpoint, before a first command has turned it into `endpoint`. */
  serviceConfiguredEndpoint?: () => Promise<string | undefined>;
  ignoreConfiguredEndpointUrls?: boolean;
  endpointProvider: (params: Record<string, unknown>, context: Record<string, unknown>) => ResolvedEndpoint;
  useFipsEndpoint: () => Promise<boolean>;
  useDualstackEndpoint: () => Promise<boolean>;
  maxAttempts?: () => Promise<number>;
  forcePathStyle?: boolean;
}

interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/**
 * SigV4 header signing of S3 requests (no query string, the path already encoded as sent, which S3
 * signs without encoding it again). Every header given is signed; the credentials are asked of the
 * provider each time (the SDK's memoizes them and fetches new ones before they expire), a session
 * token goes in x-amz-security-token. The day's signing key is kept.
 */
export class RequestSigner {
  readonly #credentials: () => Promise<Credentials>;
  readonly region: string;
  readonly service: string;
  #key: { secret: string; day: string; key: KeyObject } | undefined;
  // x-amz-date changes once a second: its text is made once a second, not per request.
  #stamp: { second: number; date: string } | undefined;

  constructor(credentials: () => Promise<Credentials>, region: string, service: string) {
    this.#credentials = credentials;
    this.region = region;
    this.service = service;
  }

  /**
   * `headers`: lower-case names, `host` and `x-amz-content-sha256` among them. Returns them with
   * x-amz-date, the session token and authorization added. A query string after `?` in `path` must
   * be canonical already (names sorted, names and values RFC 3986-encoded).
   */
  async sign(method: string, path: string, headers: Record<string, string>, now = new Date()): Promise<Record<string, string>> {
    const credentials = await this.#credentials();
    const date = this.#date(now);
    const day = date.slice(0, 8);
    const all: Record<string, string> = { ...headers, 'x-amz-date': date };
    if (credentials.sessionToken) all['x-amz-security-token'] = credentials.sessionToken;
    const names = Object.keys(all).sort();
    const q = path.indexOf('?');
    let canonical = q < 0 ? `${method}\n${path}\n\n` : `${method}\n${path.slice(0, q)}\n${path.slice(q + 1)}\n`;
    for (const name of names) canonical += `${name}:${all[name]!.trim().replace(/\s+/g, ' ')}\n`;
    const signedHeaders = names.join(';');
    canonical += `\n${signedHeaders}\n${all['x-amz-content-sha256']}`;
    const scope = `${day}/${this.region}/${this.service}/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${date}\n${scope}\n${hash('sha256', canonical, 'hex')}`;
    const signature = createHmac('sha256', this.#signingKey(credentials.secretAccessKey, day)).update(toSign).digest('hex');
    all.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return all;
  }

  /** 20261202T051107Z */
  #date(now: Date): string {
    const second = Math.floor(now.getTime() / 1000);
    if (this.#stamp?.second !== second) this.#stamp = { second, date: now.toISOString().replace(/[-:]|\.\d{3}/g, '') };
    return this.#stamp.date;
  }

  #signingKey(secret: string, day: string): KeyObject {
    if (this.#key?.secret === secret && this.#key.day === day) return this.#key.key;
    let key = createHmac('sha256', `AWS4${secret}`).update(day).digest();
    for (const part of [this.region, this.service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
    this.#key = { secret, day, key: createSecretKey(key) };
    return this.#key.key;
  }
}

/**
 * Where the bucket's objects are (virtual-hosted or path-style, as the client is configured: an
 * emulator wants path style) and a signer with the client's region and credentials provider.
 */
export async function bucketSigner(s3: S3Client, bucket: string): Promise<{ base: URL; signer: RequestSigner }> {
  const config = s3.config as unknown as S3Config;
  const region = await config.region();
  const custom = config.endpoint ? await config.endpoint()
    : !config.ignoreConfiguredEndpointUrls && config.serviceConfiguredEndpoint ? await config.serviceConfiguredEndpoint()
    : undefined;
  const endpoint = custom === undefined ? undefined
    : typeof custom === 'string' ? custom
    : 'url' in custom ? custom.url.href
    : `${custom.protocol}//${custom.hostname}${custom.port ? `:${custom.port}` : ''}${custom.path}`;
  const resolved = config.endpointProvider({
    Bucket: bucket,
    Region: region,
    UseFIPS: await config.useFipsEndpoint(),
    UseDualStack: await config.useDualstackEndpoint(),
    ForcePathStyle: config.forcePathStyle ?? false,
    Accelerate: false,
    ...(endpoint ? { Endpoint: endpoint } : {}),
  }, {});
  const scheme = resolved.properties?.authSchemes?.find((s) => s.name === 'sigv4');
  const signer = new RequestSigner(config.credentials, scheme?.signingRegion ?? region, scheme?.signingName ?? 's3');
  return { base: new URL(resolved.url.href.endsWith('/') ? resolved.url.href : `${resolved.url.href}/`), signer };
}

/** RFC 3986 encoding of one key segment, as S3 expects in a signed path. */
export function encodeKeySegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

// The SDK's standard retry mode: 500, 502, 503 (SlowDown), 504 and throttling answers, and requests
// that got no answer; up to maxAttempts tries, waits of full jitter under 100 ms × 2^n, at most 20 s.
const TRANSIENT_STATUS = new Set([500, 502, 503, 504]);
const THROTTLING_CODES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'TooManyRequestsException', 'RequestLimitExceeded', 'RequestTimeout', 'InternalError']);

export interface SignedClientOptions {
  /** Tries in all, the first included (the S3Client's maxAttempts by default). */
  maxAttempts?: number;
  /** Connections to the endpoint at most (the SDK's default is 50). */
  connections?: number;
  /** The wait before try n + 1 (tests); the standard mode's by default. */
  retryDelayMs?: (attempt: number) => number;
}

export class SignedObjectClient {
  readonly #base: URL;
  readonly #signer: RequestSigner;
  readonly #agent: Agent;
  readonly #maxAttempts: number;
  readonly #retryDelayMs: (attempt: number) => number;

  private constructor(base: URL, signer: RequestSigner, maxAttempts: number, o: SignedClientOptions) {
    this.#base = base;
    this.#signer = signer;
    this.#maxAttempts = Math.max(1, maxAttempts);
    this.#retryDelayMs = o.retryDelayMs ?? ((attempt) => Math.random() * Math.min(20_000, 100 * 2 ** attempt));
    this.#agent = new Agent({ connections: o.connections ?? 50, connect: { timeout: 15_000 }, headersTimeout: 60_000, bodyTimeout: 60_000, keepAliveTimeout: 30_000 });
  }

  /** A client of `bucket`'s objects with `s3`'s region, credentials, endpoint and maxAttempts. */
  static async open(s3: S3Client, bucket: string, o: SignedClientOptions = {}): Promise<SignedObjectClient> {
    const { base, signer } = await bucketSigner(s3, bucket);
    const configured = (s3.config as unknown as S3Config).maxAttempts;
    const maxAttempts = o.maxAttempts ?? (configured ? await configured() : 3);
    return new SignedObjectClient(base, signer, maxAttempts, o);
  }

  pathOf(key: string): string {
    return `${this.#base.pathname}${key.split('/').map(encodeKeySegment).join('/')}`;
  }

  /**
   * Sends the request, signed anew on every try; answers with a status in `expect` (or 2xx), else
   * throws S3RequestError once the tries are spent or the error is not transient.
   */
  async send(r: SignedRequest): Promise<SignedAnswer> {
    const path = this.pathOf(r.key);
    for (let attempt = 1; ; attempt++) {
      let failure: S3RequestError;
      try {
        const answer = await this.#once(path, r);
        if ((answer.statusCode >= 200 && answer.statusCode < 300) || r.expect.includes(answer.statusCode)) {
          await answer.body.dump();
          return { status: answer.statusCode, headers: answer.headers };
        }
        const text = r.method === 'HEAD' ? '' : await answer.body.text().catch(() => '');
        const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? undefined;
        const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
        failure = new S3RequestError(`${r.method} ${r.key}: HTTP ${answer.statusCode}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`, { status: answer.statusCode, ...(code ? { code } : {}), attempts: attempt });
      } catch (error) {
        if (r.signal?.aborted) throw error;
        failure = new S3RequestError(`${r.method} ${r.key}: ${(error as Error).message}`, { attempts: attempt, cause: error });
      }
      if (attempt >= this.#maxAttempts || !retriable(failure)) throw failure;
      await pause(this.#retryDelayMs(attempt - 1), r.signal);
    }
  }

  async #once(path: string, r: SignedRequest): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = {
      ...r.headers,
      host: this.#base.host,
      'x-amz-content-sha256': r.sha256 ?? 'UNSIGNED-PAYLOAD',
      ...(r.body ? { 'content-length': String(r.body.length) } : {}),
    };
    return this.#agent.request({
      origin: this.#base.origin,
      path,
      method: r.method,
      headers: await this.#signer.sign(r.method, path, headers),
      // undici closes the connection after every HEAD unless told not to (nodejs/undici#258, servers
      // that send a body anyway): S3 frames its answers, so the connection is kept.
      reset: false,
      ...(r.body ? { body: r.body } : {}),
      ...(r.signal ? { signal: r.signal } : {}),
    });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  destroy(): void {
    void this.#agent.destroy().catch(() => {});
  }
}

/** A SignedObjectClient opened on first use (building it reads the client's config, which is async), shared. */
export interface SignedObjects {
  get(): Promise<SignedObjectClient>;
  /** Closes its connections at once, opened or being opened. */
  destroy(): void;
}

export function signedObjectsOnce(s3: S3Client, bucket: string, o: SignedClientOptions = {}): SignedObjects {
  let opening: Promise<SignedObjectClient> | undefined;
  return {
    get: () => {
      // A failed opening (a region not set) is tried again by the next request, not kept.
      opening ??= SignedObjectClient.open(s3, bucket, o).catch((error: unknown) => {
        opening = undefined;
        throw error;
      });
      return opening;
    },
    destroy: () => {
      void opening?.then((client) => client.destroy(), () => {});
      opening = undefined;
    },
  };
}

/** Transient as the SDK's standard mode has it: no answer, a 5xx of the retried kind, 429, or a throttling code. */
function retriable(error: S3RequestError): boolean {
  if (error.status === undefined) return true;
  return TRANSIENT_STATUS.has(error.status) || error.status === 429 || (error.code !== undefined && THROTTLING_CODES.has(error.code));
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const done = (): void => {
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    const stop = (): void => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', stop, { once: true });
  });
}
