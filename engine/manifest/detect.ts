// Which reader a manifest needs: by its name's extension, else by sniffing its first bytes.

import { ManifestError, SUPPORTED_SHAPES } from './errors.ts';
import { formatExtensionOf } from './source.ts';

export type ManifestFormat = 'imaterialist' | 'jsonl' | 'csv' | 'tsv' | 'urls';

export const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\/\S+$/i;

/** The format of a manifest named `name` whose content starts with `head`. */
export function detectFormat(name: string, head: Buffer): ManifestFormat {
  const text = head.toString('utf8').replace(/^\uFEFF/, '');
  switch (formatExtensionOf(name)) {
    case 'json':
      return looksLikeJsonLines(text) ? 'jsonl' : 'imaterialist';
    case 'jsonl':
    case 'ndjson':
      return 'jsonl';
    case 'csv':
      return firstLine(text).includes('\t') ? 'tsv' : 'csv';
    case 'tsv':
      return 'tsv';
    case 'txt':
      return 'urls';
  }
  const start = text.trimStart();
  if (start === '') return 'urls';
  if (start.startsWith('{')) return looksLikeJsonLines(text) ? 'jsonl' : 'imaterialist';
  if (start.startsWith('[')) return 'imaterialist';
  const lines = text.split('\n').map((line) => line.trim());
  const firstData = lines.find((line) => line !== '' && !line.startsWith('#'));
  if (firstData !== undefined && URL_LIKE.test(firstData)) return 'urls';
  const header = firstLine(text);
  if (header.includes('\t')) return 'tsv';
  if (header.includes(',')) return 'csv';
  throw new ManifestError(name, 'top level', `unknown manifest shape: ${SUPPORTED_SHAPES}`);
}

/**
 * The offset of the first byte that cannot be UTF-8 text (a NUL, or an invalid sequence), or -1.
 * When `head` is only the start of the content, a sequence cut off at its end is not held against it.
 */
export function binaryOffset(head: Buffer, complete: boolean): number {
  for (let i = 0; i < head.length; ) {
    const b = head[i]!;
    if (b === 0) return i;
    if (b < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes after the lead, and the range of the first of them (no overlong forms,
    // no surrogates, nothing past U+10FFFF).
    let more = 0;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) more = 1;
    else if (b >= 0xe0 && b <= 0xef) [more, low, high] = [2, b === 0xe0 ? 0xa0 : 0x80, b === 0xed ? 0x9f : 0xbf];
    else if (b >= 0xf0 && b <= 0xf4) [more, low, high] = [3, b === 0xf0 ? 0x90 : 0x80, b === 0xf4 ? 0x8f : 0xbf];
    else return i;
    for (let k = 1; k <= more; k++) {
      if (i + k >= head.length) return complete ? i : -1;
      const c = head[i + k]!;
      if (c < (k === 1 ? low : 0x80) || c > (k === 1 ? high : 0xbf)) return i;
    }
    i += more + 1;
  }
  return -1;
}

/** A complete JSON object on the first line, and the next line starts another one. */
function looksLikeJsonLines(text: string): boolean {
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length && lines[i]!.trim() === '') i++;
  // The last piece may be cut off by the head's size limit: it is not a complete line.
  if (i >= lines.length - 1) return false;
  const first = lines[i]!.trim();
  if (!first.startsWith('{')) return false;
  try {
    const value: unknown = JSON.parse(first);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  } catch {
    return false;
  }
  i++;
  while (i < lines.length && lines[i]!.trim() === '') i++;
  return i < lines.length && lines[i]!.trimStart().startsWith('{');
}

function firstLine(text: string): string {
  const end = text.indexOf('\n');
  return end < 0 ? text : text.slice(0, end);
}
