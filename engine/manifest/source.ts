// Where manifest bytes come from (a file here, an S3 object in the cloud), gunzipped when the
// content says so: gzip is recognised by its magic bytes, whatever the name.

import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ManifestError } from './errors.ts';

export interface ManifestSource {
  /** File name or S3 key: used to detect the format and in messages. */
  name: string;
  /** A fresh stream of the raw bytes (maybe gzip) from the start; may be called several times. */
  open(): Promise<Readable>;
}

/** A manifest on the local disk. open() rejects at once when the file cannot be opened. */
export function fileSource(path: string): ManifestSource {
  return {
    name: path,
    async open() {
      const handle = await open(path, 'r');
      return handle.createReadStream({ highWaterMark: 1 << 16 });
    },
  };
}

const GZIP_MAGIC = [0x1f, 0x8b] as const;

/**
 * The manifest's content as byte chunks, gunzipped when it starts with the gzip magic bytes.
 * Stopping the iteration early closes the underlying stream.
 */
export async function* contentChunks(source: ManifestSource): AsyncGenerator<Buffer> {
  const raw = await source.open();
  const iterator: AsyncIterator<unknown> = raw[Symbol.asyncIterator]();
  try {
    // Enough bytes to see the magic number (a first chunk of one byte is legal).
    let head: Buffer = Buffer.alloc(0);
    let done = false;
    while (head.length < GZIP_MAGIC.length) {
      const next = await iterator.next();
      if (next.done) {
        done = true;
        break;
      }
      head = head.length === 0 ? toBuffer(next.value) : Buffer.concat([head, toBuffer(next.value)]);
    }
    if (head[0] !== GZIP_MAGIC[0] || head[1] !== GZIP_MAGIC[1]) {
      if (head.length > 0) yield head;
      if (done) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield toBuffer(next.value);
      }
    }
    const compressed = async function* (): AsyncGenerator<Buffer> {
      yield head;
      if (done) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield toBuffer(next.value);
      }
    };
    const gunzip = createGunzip();
    // Errors reach the loop below: pipeline destroys the gunzip stream with them.
    const piping = pipeline(Readable.from(compressed()), gunzip);
    piping.catch(() => {});
    try {
      for await (const chunk of gunzip) yield chunk as Buffer;
    } catch (error) {
      if (isZlibError(error)) {
        throw new ManifestError(source.name, 'gzip data', `the gzip data is damaged or cut short (${(error as Error).message})`);
      }
      throw error;
    }
  } finally {
    raw.destroy();
  }
}

export const HEAD_BYTES = 1 << 16;

/** Up to `limit` bytes from the start of the content (gunzipped), for format detection. */
export async function readHead(source: ManifestSource, limit = HEAD_BYTES): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of contentChunks(source)) {
    parts.push(chunk);
    length += chunk.length;
    if (length >= limit) break;
  }
  const all = Buffer.concat(parts);
  return all.length > limit ? all.subarray(0, limit) : all;
}

/** The split a manifest describes, from its name: 'x/train.json.gz' → 'train'. */
export function splitNameOf(name: string): string {
  let base = basename(name.replaceAll('\\', '/'));
  if (base.toLowerCase().endsWith('.gz')) base = base.slice(0, -3);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}

/** The name's format extension, lowercased, ignoring a final `.gz`: 'a/B.CSV.gz' → 'csv'. */
export function formatExtensionOf(name: string): string {
  let base = basename(name.replaceAll('\\', '/')).toLowerCase();
  if (base.endsWith('.gz')) base = base.slice(0, -3);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1) : '';
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('a manifest source must yield bytes');
}

function isZlibError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}
