// Reads many small objects fast: GETs signed with SigV4 (aws/signed-request.ts: the S3Client's
// credentials and endpoint rules) and sent over one undici pool with keep-alive. A body cut
// midway is resumed from where it broke off (Range, If-Match), and reads can share a rate limit.
// The SDK's GetObject spends about 0.5 ms of CPU per call in its middleware; for a sync of a
// million 30 KB images that, not the network, was the limit (see bench/sync.ts).

import type { S3Client } from '@aws-sdk/client-s3';
import { Agent } from 'undici';
import { bucketSigner, encodeKeySegment, type RequestSigner } from '../signed-request.ts';

/** The start of a body whose transfer was cut: the next attempt asks only for the rest. */
export interface PartialBody {
  chunks: Buffer[];
  bytes: number;
  /** The object's ETag: the rest is asked for only if it is still the same object (If-Match). */
  etag: string;
}

export interface ReadOptions {
  signal?: AbortSignal;
  /** What an earlier, cut attempt received (ObjectReadError.partial). */
  partial?: PartialBody;
  /** Told of every chunk read; a promise returned holds the next read back (a shared rate: --bwlimit). */
  throttle?: (bytes: number, signal?: AbortSignal) => Promise<void> | undefined;
  /** Only bytes [start, end) of the object (sync --packed's shard ranges): a 206 for them, nothing else, is an answer. */
  range?: { start: number; end: number };
}

export { retryPauseMs } from './retry-pause.ts';

/** What warm() asks for: outside every prefix of the bucket's contract (aws/bucket.ts), so never one of its objects. */
export const WARM_KEY = '.cloudfetch-warm';

export class ObjectReadError extends Error {
  override name = 'ObjectReadError';
  readonly status: number | undefined;
  /** The bytes received before the transfer broke off, when the object has an ETag to resume by. */
  readonly partial: PartialBody | undefined;
  constructor(message: string, status?: number, cause?: unknown, partial?: PartialBody) {
    // The cause keeps a network error's code, which the command line turns into advice.
    super(message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.partial = partial;
  }
  /** 5xx, 429 and throttling, and anything without an HTTP status (resets, time-outs). */
  get transient(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

export class ObjectReader {
  #base: URL;
  #signer: RequestSigner;
  #agent: Agent;
  /** Aborts warm()'s requests still open when the reader closes. */
  #warming = new AbortController();

  private constructor(base: URL, signer: RequestSigner, agent: Agent) {
    this.#base = base;
    this.#signer = signer;
    this.#agent = agent;
  }

  /** A reader of `bucket` with the client's region, credentials and endpoint. */
  static async open(s3: S3Client, bucket: string, connections: number, stallMs = 60_000): Promise<ObjectReader> {
    const { base, signer } = await bucketSigner(s3, bucket);
    const agent = new Agent({ connections, connect: { timeout: 15_000 }, headersTimeout: stallMs, bodyTimeout: stallMs, keepAliveTimeout: 30_000 });
    return new ObjectReader(base, signer, agent);
  }

  /**
   * Opens up to `connections` connections ahead of the downloads, while the listing and the fetch
   * records are read: a signed GET of one byte of a key that is none of the bucket's (WARM_KEY) on
   * each; its answer (a 404 or 403 of a few hundred bytes) does not matter. Not a HEAD: undici
   * closes a connection after a HEAD (a server might send a body after it), so the 64 HEADs this
   * sent before opened 64 connections that the downloads never used (traced on the lossy link:
   * every download on a new connection, a round trip and a slow start later).
   */
  async warm(connections: number, stop?: AbortSignal): Promise<void> {
    const path = this.#pathOf(WARM_KEY);
    const signal = stop ? AbortSignal.any([stop, this.#warming.signal]) : this.#warming.signal;
    const open = async (): Promise<void> => {
      const headers = await this.#signer.sign('GET', path, { host: this.#base.host, range: 'bytes=0-0', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
      const answer = await this.#agent.request({ origin: this.#base.origin, path, method: 'GET', headers, signal });
      await answer.body.dump();
    };
    await Promise.allSettled(Array.from({ length: connections }, open));
  }

  /** Where the object is read from. */
  urlOf(key: string): string {
    return `${this.#base.origin}${this.#pathOf(key)}`;
  }

  #pathOf(key: string): string {
    return `${this.#base.pathname}${key.split('/').map(encodeKeySegment).join('/')}`;
  }

  /**
   * The object's bytes; throws ObjectReadError for an answer other than 200 (or 206 to a resume).
   * With `partial`, asks only for the bytes after it (Range, If-Match its ETag) and joins them on;
   * an object that changed meanwhile (412) or a server that ignores Range (200) starts over.
   */
  async get(key: string, o: ReadOptions = {}): Promise<Buffer> {
    const path = this.#pathOf(key);
    const resume = o.partial && o.partial.bytes > 0 ? o.partial : undefined;
    // The first byte asked for: after what a cut attempt brought, within the range if one is asked.
    const from = (o.range?.start ?? 0) + (resume?.bytes ?? 0);
    const headers: Record<string, string> = { host: this.#base.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    if (resume || o.range) headers.range = `bytes=${from}-${o.range ? o.range.end - 1 : ''}`;
    if (resume?.etag) headers['if-match'] = resume.etag;
    const signed = await this.#signer.sign('GET', path, headers);
    let answer;
    try {
      answer = await this.#agent.request({ origin: this.#base.origin, path, method: 'GET', headers: signed, ...(o.signal ? { signal: o.signal } : {}) });
    } catch (error) {
      throw new ObjectReadError(`${key}: ${(error as Error).message}`, undefined, error, resume);
    }
    const ranged = answer.statusCode === 206 && contentRangeStart(answer.headers['content-range']) === from;
    const resumed = resume && ranged;
    if (resume && !resumed && (answer.statusCode === 412 || answer.statusCode === 206 || answer.statusCode === 416)) {
      // Changed since (412, or 416: shorter now), or not the range asked for: the whole object (or range) again.
      await answer.body.dump();
      return this.get(key, { ...o, partial: undefined });
    }
    if (o.range && !ranged && answer.statusCode < 300) {
      // A server that ignores Range would send the whole object (a shard of 256 MB) for every range.
      await answer.body.dump();
      throw new ObjectReadError(`${key}: asked for bytes ${from}-${o.range.end - 1}, answered HTTP ${answer.statusCode} without them`, answer.statusCode);
    }
    if (answer.statusCode !== 200 && !ranged) {
      const text = await answer.body.text().catch(() => '');
      const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
      throw new ObjectReadError(`${key}: HTTP ${answer.statusCode}${code ? ` ${code}` : ''}`, answer.statusCode, undefined, resume);
    }
    const etag = resumed ? resume.etag : headerText(answer.headers.etag);
    const chunks = resumed ? [...resume.chunks] : [];
    let bytes = resumed ? resume.bytes : 0;
    try {
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        const wait = o.throttle?.(chunk.length, o.signal);
        if (wait) await wait;
        chunks.push(chunk);
        bytes += chunk.length;
      }
    } catch (error) {
      // A range's bytes are kept without an ETag too: its reader asks for the rest as a range of its own.
      const partial = (etag || o.range) && bytes > 0 ? { chunks, bytes, etag: etag ?? '' } : undefined;
      throw new ObjectReadError(`${key}: ${(error as Error).message}`, undefined, error, partial);
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes);
  }

  async close(): Promise<void> {
    this.#warming.abort();
    await this.#agent.close();
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The first byte of a 206's `Content-Range: bytes S-E/T`. */
function contentRangeStart(value: string | string[] | undefined): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(headerText(value) ?? '');
  return match ? Number(match[1]) : undefined;
}

