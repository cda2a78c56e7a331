// Lists a bucket prefix for sync without the SDK: ListObjectsV2 signed with SigV4
// (aws/signed-request.ts) over an undici pool of its own, its XML read by a small scanner of the
// few elements sync needs. The SDK's deserialiser spent ~0.1 ms of CPU per listed key (its XML
// parser and schema walk: ~0.2 s of a 2,000-object sync's ~2.6 s); this one a few microseconds.
// The listing is the bucket's, so untrusted: a page it cannot read stops with one line.

import type { S3Client } from '@aws-sdk/client-s3';
import { Agent, buildConnector } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';
import { bucketSigner, encodeKeySegment, type RequestSigner } from '../signed-request.ts';
import type { ListedObject, ListedPage } from '../listing.ts';
import { ObjectReadError, WARM_KEY, retryPauseMs } from './object-reader.ts';
import { earlyConnector } from './early-connections.ts';

// When the client says nothing of its own (the SDK's defaults: 3 tries, no socket time-out).
const DEFAULT_ATTEMPTS = 3;
const DEFAULT_STALL_MS = 60_000;
// A page of 1,000 keys is ~300 KB; a server sending more is not answering a listing.
const MAX_PAGE_BYTES = 32 * 1024 * 1024;

interface Client {
  base: URL;
  signer: RequestSigner;
  // Its own connections: a page never waits behind the downloads' bodies.
  agent: Agent;
  attempts: number;
}

/** The client's tries and socket time-out (cli/target.ts's clientSettings), so a page is given up on as the SDK would. */
async function clientLimits(s3: S3Client): Promise<{ attempts: number; stallMs: number }> {
  const attempts = await s3.config.maxAttempts().catch(() => DEFAULT_ATTEMPTS);
  const handler = s3.config.requestHandler as { configProvider?: Promise<{ socketTimeout?: number; requestTimeout?: number }> };
  const settings = await handler.configProvider?.catch(() => undefined);
  const stallMs = settings?.socketTimeout ?? settings?.requestTimeout ?? DEFAULT_STALL_MS;
  return { attempts: Math.max(1, attempts), stallMs: stallMs > 0 ? stallMs : DEFAULT_STALL_MS };
}

export class BucketLister {
  #client: Promise<Client>;

  constructor(s3: S3Client, bucket: string) {
    this.#client = Promise.all([bucketSigner(s3, bucket), clientLimits(s3)]).then(([{ base, signer }, { attempts, stallMs }]) => ({
      base, signer, attempts,
      // The first pages go out on the connections the command opened as it started, if any.
      agent: new Agent({ connect: earlyConnector(buildConnector({ timeout: 15_000 }), 15_000), maxResponseSize: MAX_PAGE_BYTES, headersTimeout: stallMs, bodyTimeout: stallMs, keepAliveTimeout: 30_000 }),
    }));
    this.#client.catch(() => {}); // awaited by every page
  }

  /** One page of up to `maxKeys` (at most 1,000) keys under `prefix`: from the start, or at a continuation token. */
  async page(prefix: string, o: { signal?: AbortSignal; token?: string; maxKeys?: number } = {}): Promise<ListedPage> {
    const client = await this.#client;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#page(client, prefix, o);
      } catch (error) {
        if (!(error instanceof ObjectReadError) || !error.transient || attempt >= client.attempts || o.signal?.aborted) throw error;
        await sleep(retryPauseMs(attempt), undefined, o.signal ? { signal: o.signal } : {});
      }
    }
  }

  /**
   * Opens `connections` connections now (a signed GET of one byte of WARM_KEY on each, its answer
   * dropped), so that the requests sent once the splits' names are known (the first page, the
   * records and failure listings) do not wait for a handshake: a round trip of a long link.
   */
  async warm(connections: number): Promise<void> {
    const { base, signer, agent } = await this.#client;
    const path = `${base.pathname}${encodeKeySegment(WARM_KEY)}`;
    const open = async (): Promise<void> => {
      const headers = await signer.sign('GET', path, { host: base.host, range: 'bytes=0-0', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
      const answer = await agent.request({ origin: base.origin, path, method: 'GET', headers });
      await answer.body.dump();
    };
    await Promise.allSettled(Array.from({ length: connections }, open));
  }

  async *pages(prefix: string, o: { signal?: AbortSignal } = {}): AsyncGenerator<ListedObject[]> {
    let token: string | undefined;
    do {
      const page = await this.page(prefix, { ...o, ...(token ? { token } : {}) });
      yield page.objects;
      token = page.next;
    } while (token);
  }

  async #page({ base, signer, agent }: Client, prefix: string, o: { signal?: AbortSignal; token?: string; maxKeys?: number }): Promise<ListedPage> {
    // The canonical query: names in order, names and values RFC 3986-encoded (SigV4 signs it so).
    const query: Array<[string, string]> = [];
    if (o.token) query.push(['continuation-token', o.token]);
    query.push(['list-type', '2']);
    if (o.maxKeys) query.push(['max-keys', String(o.maxKeys)]);
    query.push(['prefix', prefix]);
    const path = `${base.pathname}?${query.map(([name, value]) => `${name}=${encodeKeySegment(value)}`).join('&')}`;
    const headers = await signer.sign('GET', path, { host: base.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    let text: string;
    let status: number;
    try {
      const answer = await agent.request({ origin: base.origin, path, method: 'GET', headers, ...(o.signal ? { signal: o.signal } : {}) });
      status = answer.statusCode;
      text = await answer.body.text();
    } catch (error) {
      throw new ObjectReadError(`listing ${prefix}: ${(error as Error).message}`, undefined, error);
    }
    if (status !== 200) {
      const code = /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(text)?.[1];
      const error = new ObjectReadError(`listing ${prefix}: HTTP ${status}${code ? ` ${code}` : ''}`, status);
      // Named by S3's code, as the SDK names its errors (NoSuchBucket, AccessDenied: cli/target.ts's advice).
      if (code) error.name = code;
      throw error;
    }
    return parseListing(text, prefix);
  }

  async close(): Promise<void> {
    const client = await this.#client.catch(() => undefined);
    await client?.agent.close();
  }
}

export class ListingError extends Error {
  override name = 'ListingError';
}

/**
 * A ListObjectsV2 answer's keys (folder markers, keys ending in `/`, left out), sizes, ETags and
 * times, and its continuation token. Throws ListingError for an answer that is not one.
 */
export function parseListing(xml: string, prefix: string): ListedPage {
  const bad = (what: string): never => {
    throw new ListingError(`listing ${prefix}: the bucket's answer is not a listing (${what})`);
  };
  const root = xml.indexOf('<ListBucketResult');
  if (root < 0) bad('no ListBucketResult');
  const objects: ListedObject[] = [];
  let at = root;
  for (;;) {
    const start = xml.indexOf('<Contents>', at);
    if (start < 0) break;
    const end = xml.indexOf('</Contents>', start);
    if (end < 0) bad('a Contents element without its end');
    const key = element(xml, 'Key', start, end);
    if (key === undefined || key === '') bad('an object without a key');
    const sizeText = element(xml, 'Size', start, end)?.trim();
    if (sizeText === undefined || !/^\d{1,15}$/.test(sizeText)) bad(`the size of ${JSON.stringify(key)} is not a number`);
    at = end + 11;
    if (key!.endsWith('/')) continue;
    const modified = element(xml, 'LastModified', start, end);
    const time = modified === undefined ? 0 : Date.parse(modified);
    objects.push({ key: key!, size: Number(sizeText), lastModified: Number.isFinite(time) ? time : 0, etag: element(xml, 'ETag', start, end) ?? '' });
  }
  const truncated = element(xml, 'IsTruncated', root, xml.length)?.trim() === 'true';
  // Only the top level's token: the Contents are done with, so the first one after them, or before.
  const next = truncated ? element(xml, 'NextContinuationToken', root, xml.length) : undefined;
  if (truncated && !next) bad('truncated without a continuation token');
  return { objects, ...(next ? { next } : {}) };
}

/** The decoded text of the first <name>…</name> within [from, to), if there is one. */
function element(xml: string, name: string, from: number, to: number): string | undefined {
  const open = xml.indexOf(`<${name}>`, from);
  if (open < 0 || open >= to) return undefined;
  const start = open + name.length + 2;
  const end = xml.indexOf(`</${name}>`, start);
  if (end < 0 || end > to) throw new ListingError(`a listing's <${name}> has no end`);
  const raw = xml.slice(start, end);
  return raw.includes('&') ? decodeEntities(raw) : raw;
}

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** XML's five named entities and character references; any other "&" is not XML. */
function decodeEntities(text: string): string {
  return text.replace(/&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|([A-Za-z]{1,8}));|&/g, (whole, hex?: string, decimal?: string, name?: string) => {
    if (name !== undefined) {
      const named = NAMED[name];
      if (named === undefined) throw new ListingError(`a listing holds an unknown entity ${whole}`);
      return named;
    }
    if (hex === undefined && decimal === undefined) throw new ListingError('a listing holds a stray "&"');
    const code = hex !== undefined ? parseInt(hex, 16) : Number(decimal);
    if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) throw new ListingError(`a listing holds an invalid character reference ${whole}`);
    return String.fromCodePoint(code);
  });
}
