// Storage keys, decided from the manifest alone so that "already stored?" is one stat or HeadObject.

import type { ImageFormat } from './fetch/image.ts';

export type Layout = 'flat' | 'by-label';
export const LAYOUTS: readonly Layout[] = ['flat', 'by-label'];

const IMAGE_EXTENSIONS = new Map([
  ['jpg', 'jpg'], ['jpeg', 'jpg'], ['jpe', 'jpg'], ['png', 'png'], ['gif', 'gif'], ['webp', 'webp'],
  ['bmp', 'bmp'], ['tif', 'tiff'], ['tiff', 'tiff'], ['avif', 'avif'], ['heic', 'heic'],
]);

const MAX_SEGMENT = 200;
const SAFE = /^[A-Za-z0-9_\-][A-Za-z0-9._\-]*$/;

/**
 * Makes one path segment safe on every filesystem and in S3, reversibly: characters outside
 * [A-Za-z0-9._-] and a leading dot are percent-encoded, so distinct ids never collide.
 * Over-long results are cut and suffixed with a hash of the whole.
 */
export function safeSegment(text: string): string {
  if (text.length <= MAX_SEGMENT && SAFE.test(text)) return text;
  let out = '';
  for (const ch of text) {
    if (/^[A-Za-z0-9_\-]$/.test(ch) || (ch === '.' && out !== '')) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  if (out === '') return '%00';
  if (out.length > MAX_SEGMENT) out = `${out.slice(0, MAX_SEGMENT - 17)}~${fnv1a64(text)}`;
  return out;
}

function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}

/** The image extension a URL's path ends with, normalised (`jpeg` → `jpg`), or null. */
export function extensionOf(url: string): string | null {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return null;
  }
  return extensionOfPath(path);
}

/** extensionOf() for a URL already parsed: its pathname. */
export function extensionOfPath(pathname: string): string | null {
  const match = /\.([A-Za-z0-9]{2,5})$/.exec(pathname);
  return match ? (IMAGE_EXTENSIONS.get(match[1]!.toLowerCase()) ?? null) : null;
}

export const UNLABELED = '_unlabeled';

/**
 * `<split>/<id>.<ext>` or `<split>/<label>/<id>.<ext>`; the extension is `extension` when the stored
 * format is chosen up front (`--image-format jpeg` → jpg), else that of the first URL that has one, else jpg.
 */
export function imageKey(split: string, id: string, urls: readonly string[], labels: readonly string[], layout: Layout, extension?: string | null): string {
  let ext = extension ?? 'jpg';
  for (const url of extension ? [] : urls) {
    const found = extensionOf(url);
    if (found) {
      ext = found;
      break;
    }
  }
  const file = `${safeSegment(id)}.${ext}`;
  if (layout === 'flat') return `${safeSegment(split)}/${file}`;
  const label = labels.length === 0 ? UNLABELED : safeSegment(labels[0]!);
  return `${safeSegment(split)}/${label}/${file}`;
}

/** The key of a fetched original kept beside its resized copy: the same key with the original's extension. */
export function originalKey(key: string, format: ImageFormat): string {
  const ext = format === 'jpeg' ? 'jpg' : format;
  return `${key.slice(0, key.lastIndexOf('.'))}.${ext}`;
}
