// Fetched bytes → stored bytes: resize (keep aspect, centre crop or pad to a square), re-encode,
// EXIF orientation applied, with libvips through sharp. A decode, so it also finds images that
// cannot be decoded (a byte check only sees the header). sharp is loaded on first use: `run`
// without these options never loads it.

import { createHash } from 'node:crypto';
import type { Sharp } from 'sharp';
import type { ImageFormat } from './fetch/image.ts';
import type { FailureReason } from './outcome.ts';

export type ResizeMode = 'keep' | 'crop' | 'pad';
export const RESIZE_MODES: readonly ResizeMode[] = ['keep', 'crop', 'pad'];
export type OutputFormat = 'keep' | 'jpeg' | 'webp';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['keep', 'jpeg', 'webp'];

export interface ImageOptions {
  /** Largest side after resizing, in pixels; null: no resizing. Never upscales. */
  resize: number | null;
  mode: ResizeMode;
  format: OutputFormat;
  /** 1–100, for JPEG, WebP and AVIF. */
  quality: number;
}

export const DEFAULT_IMAGE_OPTIONS: ImageOptions = { resize: null, mode: 'keep', format: 'keep', quality: 90 };
export const MAX_RESIZE = 16_384;

/** Whether images are decoded at all: only when something is to change. */
export function shapes(o: ImageOptions): boolean {
  return o.resize !== null || o.format !== 'keep';
}

/** The key extension of a stored format chosen up front (keys are decided before any fetch); null: from the URL. */
export function storedExtension(format: OutputFormat): string | null {
  return format === 'keep' ? null : format === 'jpeg' ? 'jpg' : 'webp';
}

/** sharp's own limit (0x3FFF²), checked from the header first so the answer can say the size. */
const MAX_PIXELS = 0x3fff * 0x3fff;

export type Shaped =
  | {
      ok: true;
      body: Buffer;
      format: ImageFormat;
      width: number;
      height: number;
      /** false: the fetched bytes are stored untouched. */
      changed: boolean;
      sha256: string;
    }
  | { ok: false; reason: Extract<FailureReason, 'undecodable' | 'too-large'>; detail: string };

type SharpFactory = typeof import('sharp').default;
let loaded: Promise<SharpFactory> | undefined;

async function loadSharp(): Promise<SharpFactory> {
  loaded ??= import('sharp').then((m) => {
    // No cache of decoded images between calls: every image is new, and memory stays predictable
    // inside a 512 MB function.
    m.default.cache(false);
    return m.default;
  });
  return loaded;
}

/**
 * Shapes one fetched image. `format` is what the fetcher detected, `sha256` its hash (returned as
 * is when the bytes are stored untouched). Never throws for a bad image: it fails `undecodable`.
 */
export async function shapeImage(bytes: Buffer, format: ImageFormat, sha256: string, o: ImageOptions): Promise<Shaped> {
  const sharp = await loadSharp();
  let width: number;
  let height: number;
  let oriented: boolean;
  let alpha: boolean;
  try {
    const header = await sharp(bytes).metadata();
    width = header.autoOrient.width;
    height = header.autoOrient.height;
    oriented = (header.orientation ?? 1) > 1;
    alpha = header.hasAlpha;
  } catch (error) {
    return undecodable(bytes, format, error);
  }
  if (width * height > MAX_PIXELS) return { ok: false, reason: 'too-large', detail: `${width}×${height} pixels: over the ${Math.round(MAX_PIXELS / 1e6)}-megapixel limit` };

  const target = o.resize === null ? null : square(o.mode, width, height, o.resize);
  const scaled = target !== null && (o.mode === 'keep' ? Math.max(width, height) > o.resize! : target !== width || target !== height);
  if (o.format === 'keep' && !scaled && !oriented) return { ok: true, body: bytes, format, width, height, changed: false, sha256 };

  const out: ImageFormat = o.format === 'keep' ? writable(format) : o.format;
  try {
    // failOn 'error': a truncated or corrupt body fails; libjpeg's mere warnings (extra bytes
    // after the image, say) do not, as browsers show those images.
    let pipeline: Sharp = sharp(bytes, { failOn: 'error' }).autoOrient();
    if (scaled) {
      const side = o.resize!;
      if (o.mode === 'keep') pipeline = pipeline.resize(side, side, { fit: 'inside', withoutEnlargement: true });
      else {
        // Transparent padding where the output keeps alpha; white where it cannot (JPEG).
        const background = { r: 255, g: 255, b: 255, alpha: alpha && out !== 'jpeg' ? 0 : 1 };
        pipeline = pipeline.resize(target!, target!, { fit: o.mode === 'crop' ? 'cover' : 'contain', position: 'centre', background });
      }
    }
    if (out === 'jpeg' && alpha) pipeline = pipeline.flatten({ background: '#ffffff' });
    const { data, info } = await encode(pipeline, out, o.quality).toBuffer({ resolveWithObject: true });
    return { ok: true, body: data, format: out, width: info.width, height: info.height, changed: true, sha256: createHash('sha256').update(data).digest('hex') };
  } catch (error) {
    return undecodable(bytes, format, error);
  }
}

/** The side of the square for crop (the short side) and pad (the long side), never above `resize`. */
function square(mode: ResizeMode, width: number, height: number, resize: number): number {
  if (mode === 'crop') return Math.min(resize, width, height);
  return Math.min(resize, Math.max(width, height));
}

/** The format an image is written back in under `--image-format keep`: its own when libvips writes it, else JPEG. */
function writable(format: ImageFormat): ImageFormat {
  return format === 'jpeg' || format === 'png' || format === 'webp' || format === 'gif' || format === 'tiff' || format === 'avif' ? format : 'jpeg';
}

function encode(pipeline: Sharp, format: ImageFormat, quality: number): Sharp {
  switch (format) {
    case 'png': return pipeline.png();
    case 'webp': return pipeline.webp({ quality });
    case 'gif': return pipeline.gif();
    case 'tiff': return pipeline.tiff({ quality });
    case 'avif': return pipeline.avif({ quality });
    default: return pipeline.jpeg({ quality });
  }
}

/**
 * The detail names the kind of damage, the same on one machine and in the cloud. A body cut short
 * is told from its bytes where the format ends with a marker: libvips's own words differ with how
 * the bytes arrive, and its error buffer is shared by concurrent decodes, so a message can come
 * back empty ("Input buffer has corrupt header:") or carry another image's words.
 */
function undecodable(bytes: Buffer, format: ImageFormat, error: unknown): Shaped {
  const message = error instanceof Error ? error.message : String(error);
  const kind = cutShort(bytes, format) || /premature end|truncat|bad seek|end of (file|data|stream)|out of data/i.test(message)
    ? 'the image data is cut short'
    : /unsupported image format/i.test(message)
      ? 'a format libvips cannot read here'
      : 'corrupt image data';
  return { ok: false, reason: 'undecodable', detail: `${format}: ${kind}` };
}

const JPEG_SOS = Buffer.from([0xff, 0xda]);
const JPEG_EOI = Buffer.from([0xff, 0xd9]);
const PNG_IEND = Buffer.from('IEND');

/**
 * Whether the bytes stop before the format's end marker (false for formats without one here).
 * JPEG: no end-of-image after the last scan (entropy-coded data stuffs every 0xFF, so 0xFFD9 there
 * is the real end; an EXIF thumbnail's own end comes before the scan). PNG: no IEND chunk.
 */
function cutShort(bytes: Buffer, format: ImageFormat): boolean {
  if (format === 'jpeg') {
    const scan = bytes.lastIndexOf(JPEG_SOS);
    return scan === -1 || bytes.indexOf(JPEG_EOI, scan) === -1;
  }
  if (format === 'png') return bytes.lastIndexOf(PNG_IEND) === -1;
  return false;
}
