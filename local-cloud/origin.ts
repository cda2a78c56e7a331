// An image origin on loopback that misbehaves on request, like the real web: used by the tests,
// the benchmarks and the demo. Every image it serves is sampleImage(name, format, size), so a test
// can compare stored bytes with what the origin sent.
//
// Routes (<name> may carry an extension: .jpg/.jpeg .png .gif .webp .bmp .tif/.tiff .avif picks the
// format; without a known one the format is jpeg and the whole segment is the name):
//
//   /img/<name>.<ext>                      200, sampleImage(name, format) with its Content-Type.
//       ?size=N                            the image padded (or cut) to exactly N bytes
//       ?type=text/html | ?type=none       a wrong Content-Type | no Content-Type
//       ?gzip=1                            body gzip-compressed, Content-Encoding: gzip
//                                          (size/type/gzip work on every route that ends in an image)
//   /status/<code>                         that status with a small HTML body
//   /flaky/<name>.<ext>?fail=N&code=C      status C (default 503) the first N times (counted per
//                                          path+query), then the image
//   /ratelimit/<name>.<ext>?fail=N&after=S 429 with Retry-After: S the first N times, then the image
//   /reset-before/<name>[?fail=N]          TCP reset before any answer (always, or the first N times)
//   /reset-during/<name>.<ext>[?fail=N]    headers with the full Content-Length and half the body,
//                                          then a TCP reset (always, or the first N times)
//   /truncated/<name>.<ext>                full Content-Length, half the body, then a clean FIN
//   /stall-headers/<name>                  never answers; the socket stays open until close()
//   /trickle/<name>.<ext>?ms=M&chunk=K     the image K bytes (default 16) every M ms (default 100)
//   /html/<name>                           200, Content-Type image/jpeg, an HTML hotlink page
//   /empty/<name>                          200, Content-Type image/jpeg, empty body
//   /large/<name>?bytes=N[&chunked=1]      a valid JPEG of exactly N bytes (default 10 MiB), streamed;
//                                          Content-Length set unless chunked=1
//   /redirect/<n>/<name>.<ext>             302 chain of n hops ending at /img/<name>.<ext> (query kept)
//   /loop/<name>                           302 to itself
//   /redirect-to?location=URL[&status=S]   S (default 302) to any Location, e.g. a private address
//   /delay/<ms>/<name>.<ext>               the image after an extra delay of ms
//   anything else                          404
//
// Every answer (faults included) comes after the origin's latencyMs. HTTP keep-alive is on
// (node's default); close() also destroys open and stalled sockets, so a test never hangs on it.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32, gzipSync } from 'node:zlib';
import { contentTypeOf } from '../engine/fetch/image.ts';

export type SampleFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'bmp' | 'tiff' | 'avif';


const EXTENSIONS: Record<string, SampleFormat> = {
  jpg: 'jpeg',
  jpeg: 'jpeg',
  png: 'png',
  gif: 'gif',
  webp: 'webp',
  bmp: 'bmp',
  tif: 'tiff',
  tiff: 'tiff',
  avif: 'avif',
};

// ---------------------------------------------------------------------------------------------
// Sample images. Each is a small valid image of its format (8x8 JPEG/PNG/WebP/AVIF made with
// cjpeg/cwebp/avifenc or by hand here, 1x1 GIF/TIFF, 2x2 BMP) carrying the name, so two names
// never share bytes. Padding goes where decoders skip it (JPEG COM segments, a private PNG chunk,
// an unknown WebP chunk, an AVIF free box) or after the image data (GIF, BMP, TIFF).

const JPEG_8X8 = Buffer.from(
  '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAIAAgDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAL/xAAYEAEAAwEAAAAAAAAAAAAAAAAABAUiMf/EABQBAQAAAAAAAAAAAAAAAAAAAAT/xAAcEQABAwUAAAAAAAAAAAAAAAADAAEEAhETITH/2gAMAwEAAhEDEQA/ALnVPcgDDPXbqXMkkyPtf//Z',
  'base64',
);
const WEBP_8X8 = Buffer.from('UklGRjYAAABXRUJQVlA4TCkAAAAvB8ABAJkyRPQ/NhHR/wCRts3w1N2/nqErEAsm8yeLqHvwYgJW1gL9BwA=', 'base64');
const AVIF_8X8 = Buffer.from(
  'AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUEAAADybWV0YQAAAAAAAAAoaGRscgAAAAAAAAAAcGljdAAAAAAAAAAAAAAAAGxpYmF2aWYAAAAADnBpdG0AAAAAAAEAAAAeaWxvYwAAAABEAAABAAEAAAABAAABGgAAACIAAAAoaWluZgAAAAAAAQAAABppbmZlAgAAAAABAABhdjAxQ29sb3IAAAAAamlwcnAAAABLaXBjbwAAABRpc3BlAAAAAAAAAAgAAAAIAAAAEHBpeGkAAAAAAwgICAAAAAxhdjFDgSAAAAAAABNjb2xybmNseAABAA0ABoAAAAAXaXBtYQAAAAAAAAABAAEEAQKDBAAAACptZGF0EgAKCDgIv2EBDQaQMhQWQAYYYYQAPPYM6BUJKEFVB5qW1g==',
  'base64',
);

const FILL_TEXT = 'cloudfetch sample padding ';
const MAX_SEGMENT_DATA = 65533; // a JPEG segment's length field counts itself: 65535 - 2
const FILLER = Buffer.alloc(MAX_SEGMENT_DATA, FILL_TEXT);

function filler(bytes: number): Buffer {
  return bytes <= FILLER.length ? FILLER.subarray(0, bytes) : Buffer.alloc(bytes, FILL_TEXT);
}

function label(name: string, extra = 0): Buffer {
  // Capped so that it always fits one JPEG COM segment with a few spare bytes.
  const text = Buffer.from(`cloudfetch sample image: ${name}`).subarray(0, 60_000);
  return extra > 0 ? Buffer.concat([text, Buffer.alloc(extra, ' ')]) : text;
}

function colours(name: string): Buffer {
  return createHash('sha256').update(name).digest();
}

/** A JPEG as three parts, so /large/ can stream a padded one without holding it whole. */
interface JpegParts {
  head: Buffer;
  paddingBytes: number;
  tail: Buffer;
}

function jpegParts(name: string, padding: number): JpegParts {
  // SOI and the JFIF APP0 segment stay first; the name and padding follow as COM segments.
  const app0End = 4 + JPEG_8X8.readUInt16BE(4);
  const small = padding > 0 && padding < 4; // too small for a segment of its own
  const text = label(name, small ? padding : 0);
  const com = Buffer.alloc(4);
  com.writeUInt16BE(0xfffe, 0);
  com.writeUInt16BE(text.length + 2, 2);
  return {
    head: Buffer.concat([JPEG_8X8.subarray(0, app0End), com, text]),
    paddingBytes: small ? 0 : padding,
    tail: JPEG_8X8.subarray(app0End),
  };
}

/** COM segments totalling exactly `total` bytes (0 or at least 4), yielded in pieces of <= 64 KiB. */
function* jpegPadding(total: number): Generator<Buffer> {
  let left = total;
  while (left > 0) {
    let segment = Math.min(left, MAX_SEGMENT_DATA + 4);
    if (left - segment > 0 && left - segment < 4) segment = left - 4;
    const header = Buffer.alloc(4);
    header.writeUInt16BE(0xfffe, 0);
    header.writeUInt16BE(segment - 2, 2);
    yield header;
    yield FILLER.subarray(0, segment - 4);
    left -= segment;
  }
}

function* jpegChunks(name: string, padding: number): Generator<Buffer> {
  const parts = jpegParts(name, padding);
  yield parts.head;
  yield* jpegPadding(parts.paddingBytes);
  yield parts.tail;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

/** zlib stream of stored (uncompressed) blocks: the same bytes with any zlib version. */
function zlibStored(data: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([0x78, 0x01])];
  for (let at = 0; at < data.length || at === 0; at += 65535) {
    const block = data.subarray(at, at + 65535);
    const last = at + 65535 >= data.length;
    const head = Buffer.alloc(5);
    head[0] = last ? 1 : 0;
    head.writeUInt16LE(block.length, 1);
    head.writeUInt16LE(~block.length & 0xffff, 3);
    parts.push(head, block);
    if (last) break;
  }
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE(((b << 16) | a) >>> 0, 0);
  parts.push(adler);
  return Buffer.concat(parts);
}

function png(name: string, padding: number): Buffer {
  const side = 8;
  const c = colours(name);
  const raw = Buffer.alloc(side * (1 + side * 3));
  for (let y = 0; y < side; y++) {
    const row = y * (1 + side * 3); // filter byte 0 (none)
    for (let x = 0; x < side; x++) {
      raw[row + 1 + x * 3] = (c[0]! + x * 16) & 0xff;
      raw[row + 2 + x * 3] = (c[1]! + y * 16) & 0xff;
      raw[row + 3 + x * 3] = c[2]!;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const small = padding > 0 && padding < 12; // too small for a chunk of its own
  const text = Buffer.concat([Buffer.from('Comment\0', 'latin1'), label(name, small ? padding : 0)]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('tEXt', text),
    pngChunk('IDAT', zlibStored(raw)),
    // cfPd: ancillary, private, safe-to-copy; decoders skip it.
    ...(padding >= 12 ? [pngChunk('cfPd', filler(padding - 12))] : []),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function gif(name: string, padding: number): Buffer {
  const c = colours(name);
  const text = label(name);
  const comment: Buffer[] = [Buffer.from([0x21, 0xfe])];
  for (let at = 0; at < text.length; at += 255) {
    const block = text.subarray(at, at + 255);
    comment.push(Buffer.from([block.length]), block);
  }
  comment.push(Buffer.from([0]));
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    Buffer.from([1, 0, 1, 0, 0x80, 0, 0]), // 1x1, global colour table of 2 entries
    Buffer.from([c[0]!, c[1]!, c[2]!, 0, 0, 0]),
    ...comment,
    Buffer.from([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]), // image descriptor
    Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]), // LZW: clear, index 0, end
    Buffer.from([0x3b]),
    filler(padding),
  ]);
}

function bmp(name: string, padding: number): Buffer {
  const c = colours(name);
  const rowBytes = 8; // 2 pixels x 3 bytes, padded to 4
  const pixels = Buffer.alloc(rowBytes * 2);
  for (let i = 0; i < 4; i++) {
    const at = Math.floor(i / 2) * rowBytes + (i % 2) * 3;
    pixels[at] = c[3 * i]!; // BGR
    pixels[at + 1] = c[3 * i + 1]!;
    pixels[at + 2] = c[3 * i + 2]!;
  }
  const trailer = Buffer.concat([label(name), filler(padding)]);
  const header = Buffer.alloc(54);
  header.write('BM', 0, 'latin1');
  header.writeUInt32LE(54 + pixels.length + trailer.length, 2);
  header.writeUInt32LE(54, 10); // pixel data offset
  header.writeUInt32LE(40, 14); // BITMAPINFOHEADER
  header.writeInt32LE(2, 18);
  header.writeInt32LE(2, 22);
  header.writeUInt16LE(1, 26); // planes
  header.writeUInt16LE(24, 28); // bits per pixel
  header.writeUInt32LE(pixels.length, 34);
  header.writeInt32LE(2835, 38); // 72 dpi
  header.writeInt32LE(2835, 42);
  return Buffer.concat([header, pixels, trailer]);
}

function tiff(name: string, padding: number): Buffer {
  const description = Buffer.concat([label(name), Buffer.from([0])]);
  const SHORT = 3;
  const LONG = 4;
  const entries = 13;
  const ifdEnd = 8 + 2 + entries * 12 + 4;
  const xres = ifdEnd;
  const yres = xres + 8;
  const pixel = yres + 8;
  const text = pixel + 1;
  const head = Buffer.alloc(text);
  head.write('II', 0, 'latin1');
  head.writeUInt16LE(42, 2);
  head.writeUInt32LE(8, 4);
  head.writeUInt16LE(entries, 8);
  const tags: Array<[tag: number, type: number, count: number, value: number]> = [
    [256, SHORT, 1, 1], // ImageWidth
    [257, SHORT, 1, 1], // ImageLength
    [258, SHORT, 1, 8], // BitsPerSample
    [259, SHORT, 1, 1], // Compression: none
    [262, SHORT, 1, 1], // PhotometricInterpretation: BlackIsZero
    [270, 2, description.length, text], // ImageDescription (ASCII)
    [273, LONG, 1, pixel], // StripOffsets
    [277, SHORT, 1, 1], // SamplesPerPixel
    [278, SHORT, 1, 1], // RowsPerStrip
    [279, LONG, 1, 1], // StripByteCounts
    [282, 5, 1, xres], // XResolution (RATIONAL)
    [283, 5, 1, yres], // YResolution
    [296, SHORT, 1, 2], // ResolutionUnit: inch
  ];
  tags.forEach(([tag, type, count, value], i) => {
    const at = 10 + i * 12;
    head.writeUInt16LE(tag, at);
    head.writeUInt16LE(type, at + 2);
    head.writeUInt32LE(count, at + 4);
    if (type === SHORT) head.writeUInt16LE(value, at + 8);
    else head.writeUInt32LE(value, at + 8);
  });
  head.writeUInt32LE(0, 10 + entries * 12); // no next IFD
  head.writeUInt32LE(72, xres);
  head.writeUInt32LE(1, xres + 4);
  head.writeUInt32LE(72, yres);
  head.writeUInt32LE(1, yres + 4);
  head[pixel] = colours(name)[0]!;
  return Buffer.concat([head, description, filler(padding)]);
}

function riffChunk(type: string, data: Buffer, padByte = data.length % 2 === 1): Buffer {
  const head = Buffer.alloc(8);
  head.write(type, 0, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, padByte ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function webp(name: string, padding: number): Buffer {
  // Extended format (VP8X) so that an unknown chunk carrying the name is allowed after the image.
  const vp8l = WEBP_8X8.subarray(12); // the VP8L chunk of the simple-format file
  const vp8x = Buffer.alloc(10);
  vp8x.writeUIntLE(8 - 1, 4, 3); // canvas width - 1
  vp8x.writeUIntLE(8 - 1, 7, 3); // canvas height - 1
  const text = label(name);
  const natural = text.length + (text.length % 2);
  // RIFF chunks have even sizes, so an odd total leaves the final chunk without its pad byte:
  // dwebp still decodes it, strict muxers (webpmux) refuse it.
  const data = Buffer.concat([text, filler(natural - text.length + padding)]);
  const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), riffChunk('VP8X', vp8x), vp8l, riffChunk('CFnm', data, false)]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'latin1');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

function avif(name: string, padding: number): Buffer {
  const data = Buffer.concat([label(name), filler(padding)]);
  const box = Buffer.alloc(8);
  box.writeUInt32BE(8 + data.length, 0);
  box.write('free', 4, 'latin1');
  return Buffer.concat([AVIF_8X8, box, data]);
}

const BUILDERS: Record<SampleFormat, (name: string, padding: number) => Buffer> = {
  jpeg: (name, padding) => Buffer.concat([...jpegChunks(name, padding)]),
  png,
  gif,
  webp,
  bmp,
  tiff,
  avif,
};

/**
 * Deterministic image bytes for a name, starting with the format's real magic bytes. With `size`
 * the result is exactly that long: padded where decoders skip data, or cut short (and then no
 * longer a whole image) when `size` is below the image's natural size.
 */
export function sampleImage(name: string, format: SampleFormat = 'jpeg', size?: number): Buffer {
  const build = BUILDERS[format];
  const natural = build(name, 0);
  if (size === undefined || size === natural.length) return natural;
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid sample image size ${size}`);
  if (size < natural.length) return Buffer.from(natural.subarray(0, size));
  return build(name, size - natural.length);
}

/** The natural (unpadded) length of sampleImage(name, format). */
function naturalLength(name: string, format: SampleFormat): number {
  return BUILDERS[format](name, 0).length;
}

/**
 * Paths for entry i of a sample manifest: mostly good images, and the failures a student meets
 * (1 in 20 each: 404, 403, a 503 that passes on retry, an HTML page, a reset that passes on
 * retry, a 410 whose mirror works). The demo and the cost benchmark use this mix.
 */
export function sampleMixPaths(i: number): string[] {
  const name = `item${i}`;
  switch (i % 20) {
    case 3: return ['/status/404'];
    case 7: return ['/status/403'];
    case 11: return [`/flaky/${name}.jpg?fail=1&code=503`];
    case 13: return [`/html/${name}`];
    case 17: return [`/reset-before/${name}?fail=1`];
    case 19: return ['/status/410', `/img/${name}.png`];
    default: return [`/img/${name}.${i % 5 === 0 ? 'png' : 'jpg'}?size=${20_000 + (i % 7) * 3000}`];
  }
}

// ---------------------------------------------------------------------------------------------
// The origin.

export interface Origin {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  /** Requests received for a path as sent (without its query, not percent-decoded), faults included. */
  hits(path: string): number;
  totalRequests(): number;
  /** Forgets hit counts and the flaky/ratelimit/reset failure counters. */
  reset(): void;
  /** Stops listening and destroys every socket, stalled ones included. */
  close(): Promise<void>;
}

export interface OriginOptions {
  /** Delay before every answer, in milliseconds (default 0). */
  latencyMs?: number;
}

const DEFAULT_LARGE_BYTES = 10 * 1024 * 1024;

function imageName(segment: string): { name: string; format: SampleFormat } {
  const decoded = safeDecode(segment);
  const dot = decoded.lastIndexOf('.');
  const format = dot > 0 ? EXTENSIONS[decoded.slice(dot + 1).toLowerCase()] : undefined;
  return format ? { name: decoded.slice(0, dot), format } : { name: decoded, format: 'jpeg' };
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function intParam(query: URLSearchParams, key: string, fallback: number): number {
  const value = query.get(key);
  if (value === null || !/^\d+$/.test(value)) return fallback;
  return Number(value);
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  410: 'Gone',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

const HOTLINK_PAGE =
  '<!DOCTYPE html>\n<html><head><title>Access denied</title></head>' +
  '<body><h1>Hotlinking not permitted</h1><p>Please visit our website to view this image.</p></body></html>\n';

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const latencyMs = Math.max(0, opts.latencyMs ?? 0);
  const closing = new AbortController();
  const sockets = new Set<Socket>();
  const hitCounts = new Map<string, number>();
  const failCounts = new Map<string, number>();
  let total = 0;

  /** How many times this exact path+query has been asked for the N-times-failure routes. */
  function attempt(key: string): number {
    const n = (failCounts.get(key) ?? 0) + 1;
    failCounts.set(key, n);
    return n;
  }

  function sendHtml(res: ServerResponse, status: number, title: string): void {
    const body = Buffer.from(`<!DOCTYPE html>\n<html><head><title>${title}</title></head><body><h1>${title}</h1></body></html>\n`);
    const noBody = status === 204 || status === 304 || status < 200;
    res.writeHead(status, noBody ? {} : { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length });
    res.end(noBody ? undefined : body);
  }

  function imageHeaders(format: SampleFormat, query: URLSearchParams): Record<string, string> {
    const type = query.get('type');
    if (type === 'none') return {};
    return { 'content-type': type ?? contentTypeOf(format) };
  }

  function imageBytes(name: string, format: SampleFormat, query: URLSearchParams): Buffer {
    const size = query.get('size');
    return sampleImage(name, format, size !== null && /^\d+$/.test(size) ? Number(size) : undefined);
  }

  function sendImage(res: ServerResponse, name: string, format: SampleFormat, query: URLSearchParams): void {
    let body = imageBytes(name, format, query);
    const headers = imageHeaders(format, query);
    if (query.get('gzip') === '1') {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(body);
  }

  function redirect(res: ServerResponse, location: string, status = 302): void {
    res.writeHead(status, { location, 'content-type': 'text/html; charset=utf-8', 'content-length': 0 });
    res.end();
  }

  /** Resolves true when the chunk is written; false when the client or the origin went away. */
  async function write(res: ServerResponse, chunk: Buffer, gone: AbortSignal): Promise<boolean> {
    if (gone.aborted || res.destroyed) return false;
    if (res.write(chunk)) return true;
    try {
      await once(res, 'drain', { signal: gone });
      return true;
    } catch {
      return false;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse, gone: AbortSignal): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://origin.invalid');
    const query = url.searchParams;
    const [route = '', ...rest] = url.pathname.split('/').slice(1);
    const last = rest.at(-1) ?? '';

    if (latencyMs > 0) await sleep(latencyMs, undefined, { signal: gone });

    switch (route) {
      case 'img': {
        if (rest.length !== 1 || last === '') break;
        const { name, format } = imageName(last);
        sendImage(res, name, format, query);
        return;
      }
      case 'status': {
        const code = Number(last);
        if (rest.length !== 1 || !Number.isInteger(code) || code < 200 || code > 599) break;
        sendHtml(res, code, `${code} ${STATUS_TEXT[code] ?? 'Status'}`);
        return;
      }
      case 'flaky':
      case 'ratelimit': {
        if (rest.length !== 1 || last === '') break;
        const { name, format } = imageName(last);
        if (attempt(req.url ?? '') <= intParam(query, 'fail', 1)) {
          if (route === 'ratelimit') {
            res.setHeader('retry-after', String(intParam(query, 'after', 1)));
            sendHtml(res, 429, '429 Too Many Requests');
          } else {
            const code = intParam(query, 'code', 503);
            sendHtml(res, code, `${code} ${STATUS_TEXT[code] ?? 'Error'}`);
          }
          return;
        }
        sendImage(res, name, format, query);
        return;
      }
      case 'reset-before':
      case 'reset-during': {
        if (rest.length !== 1 || last === '') break;
        const { name, format } = imageName(last);
        const fail = query.has('fail') ? attempt(req.url ?? '') <= intParam(query, 'fail', 1) : true;
        if (!fail) {
          sendImage(res, name, format, query);
          return;
        }
        if (route === 'reset-before') {
          req.socket.resetAndDestroy();
          return;
        }
        const body = imageBytes(name, format, query);
        res.writeHead(200, { ...imageHeaders(format, query), 'content-length': body.length });
        // Reset only once the half body has left, so the client sees headers and some body.
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => {
          setTimeout(() => {
            if (!req.socket.destroyed) req.socket.resetAndDestroy();
          }, 0).unref();
        });
        return;
      }
      case 'truncated': {
        if (rest.length !== 1 || last === '') break;
        const { name, format } = imageName(last);
        const body = imageBytes(name, format, query);
        res.writeHead(200, { ...imageHeaders(format, query), 'content-length': body.length });
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        req.socket.end(); // a clean FIN, with the announced length never reached
        return;
      }
      case 'stall-headers': {
        if (rest.length !== 1) break;
        return; // the socket stays open, unanswered, until the client or close() ends it
      }
      case 'trickle': {
        if (rest.length !== 1 || last === '') break;
        const { name, format } = imageName(last);
        const body = imageBytes(name, format, query);
        const ms = intParam(query, 'ms', 100);
        const chunk = Math.max(1, intParam(query, 'chunk', 16));
        res.writeHead(200, { ...imageHeaders(format, query), 'content-length': body.length });
        res.flushHeaders();
        for (let at = 0; at < body.length; at += chunk) {
          if (at > 0) await sleep(ms, undefined, { signal: gone });
          if (!(await write(res, body.subarray(at, at + chunk), gone))) return;
        }
        res.end();
        return;
      }
      case 'html': {
        if (rest.length !== 1) break;
        const body = Buffer.from(HOTLINK_PAGE);
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length });
        res.end(body);
        return;
      }
      case 'empty': {
        if (rest.length !== 1) break;
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': 0 });
        res.end();
        return;
      }
      case 'large': {
        if (rest.length !== 1 || last === '') break;
        const name = safeDecode(last);
        const bytes = intParam(query, 'bytes', DEFAULT_LARGE_BYTES);
        const chunked = query.get('chunked') === '1';
        const headers: Record<string, string> = { 'content-type': 'image/jpeg' };
        if (!chunked) headers['content-length'] = String(bytes);
        res.writeHead(200, headers);
        const natural = naturalLength(name, 'jpeg');
        const chunks = bytes > natural ? jpegChunks(name, bytes - natural) : [sampleImage(name, 'jpeg', bytes)];
        for (const piece of chunks) {
          if (!(await write(res, piece, gone))) return;
        }
        res.end();
        return;
      }
      case 'redirect': {
        const hops = Number(rest[0]);
        if (rest.length !== 2 || !Number.isInteger(hops) || hops < 0 || last === '') break;
        if (hops === 0) {
          const { name, format } = imageName(last);
          sendImage(res, name, format, query);
          return;
        }
        redirect(res, `${hops === 1 ? '/img' : `/redirect/${hops - 1}`}/${last}${url.search}`);
        return;
      }
      case 'loop': {
        if (rest.length !== 1) break;
        redirect(res, `${url.pathname}${url.search}`);
        return;
      }
      case 'redirect-to': {
        const location = query.get('location');
        if (rest.length !== 0 || location === null) break;
        const status = intParam(query, 'status', 302);
        redirect(res, location, status >= 300 && status < 400 ? status : 302);
        return;
      }
      case 'delay': {
        const ms = Number(rest[0]);
        if (rest.length !== 2 || !Number.isInteger(ms) || ms < 0 || last === '') break;
        await sleep(ms, undefined, { signal: gone });
        const { name, format } = imageName(last);
        sendImage(res, name, format, query);
        return;
      }
    }
    sendHtml(res, 404, '404 Not Found');
  }

  const server = createServer((req, res) => {
    total++;
    const path = (req.url ?? '/').split('?')[0]!;
    hitCounts.set(path, (hitCounts.get(path) ?? 0) + 1);
    // Stop a slow answer when the client goes away or the origin closes.
    const left = new AbortController();
    res.once('close', () => left.abort());
    res.on('error', () => {});
    const gone = AbortSignal.any([left.signal, closing.signal]);
    handle(req, res, gone).catch((error: unknown) => {
      if (gone.aborted) return; // timers cancelled by a departing client or close()
      if (!res.headersSent) sendHtml(res, 500, '500 Internal Server Error');
      else res.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => {}); // resets are this origin's business; nothing to report
    socket.once('close', () => sockets.delete(socket));
  });

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | null = null;

  return {
    url: `http://127.0.0.1:${port}`,
    hits: (path) => hitCounts.get(path) ?? 0,
    totalRequests: () => total,
    reset() {
      hitCounts.clear();
      failCounts.clear();
      total = 0;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        closing.abort();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closed;
    },
  };
}
