// Line formats read line by line: JSON Lines (one object a line) and plain URL lists.

import type { ManifestEntry } from '../job.ts';
import { ManifestError } from './errors.ts';
import { isObject, ItemProblem, itemId, itemLabels, itemUrls, type ItemKeys } from './item.ts';
import type { FormatReader } from './reader.ts';
import { contentChunks, type ManifestSource } from './source.ts';

/** A line longer than this is not a manifest line (a one-line JSON document read as lines, say). */
const MAX_LINE_BYTES = 16 << 20;

/** Splits byte chunks into lines (LF or CRLF), numbered from 1, without a leading BOM. */
export class LineSplitter {
  line = 0;
  private readonly name: string;
  private rest: Buffer[] = [];
  private restLength = 0;

  constructor(name: string) {
    this.name = name;
  }

  push(chunk: Buffer, onLine: (text: string, line: number) => void): void {
    let start = 0;
    let newline = chunk.indexOf(10);
    if (newline >= 0 && this.restLength > 0) {
      this.rest.push(chunk.subarray(0, newline));
      this.emit(Buffer.concat(this.rest), 0, this.restLength + newline, onLine);
      this.rest = [];
      this.restLength = 0;
      start = newline + 1;
      newline = chunk.indexOf(10, start);
    }
    while (newline >= 0) {
      this.emit(chunk, start, newline, onLine);
      start = newline + 1;
      newline = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      this.restLength += chunk.length - start;
      if (this.restLength > MAX_LINE_BYTES) {
        throw new ManifestError(this.name, `line ${this.line + 1}`, `line ${this.line + 1} is longer than ${MAX_LINE_BYTES >> 20} MB: not a line-by-line manifest`);
      }
      // Copy: the chunk's memory should not stay alive for a short tail.
      this.rest.push(Buffer.from(chunk.subarray(start)));
    }
  }

  end(onLine: (text: string, line: number) => void): void {
    if (this.restLength > 0) this.emit(Buffer.concat(this.rest), 0, this.restLength, onLine);
    this.rest = [];
    this.restLength = 0;
  }

  private emit(buffer: Buffer, start: number, end: number, onLine: (text: string, line: number) => void): void {
    const line = ++this.line;
    if (end > start && buffer[end - 1] === 13) end--;
    let text = buffer.toString('utf8', start, end);
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    onLine(text, line);
  }
}

/** A line-by-line reader: scan and entries both run `parse` over every line. */
function lineReader(source: ManifestSource, parse: (text: string, line: number) => ManifestEntry | undefined): FormatReader {
  const pass = async function* (): AsyncGenerator<ManifestEntry[]> {
    const splitter = new LineSplitter(source.name);
    const batch: ManifestEntry[] = [];
    const onLine = (text: string, line: number): void => {
      const entry = parse(text, line);
      if (entry !== undefined) batch.push(entry);
    };
    for await (const chunk of contentChunks(source)) {
      splitter.push(chunk, onLine);
      yield batch;
      batch.length = 0;
    }
    splitter.end(onLine);
    yield batch;
  };
  return {
    needsScan: false,
    async scan() {
      let entries = 0;
      for await (const batch of pass()) entries += batch.length;
      return entries;
    },
    async *entries() {
      for await (const batch of pass()) yield* batch;
    },
  };
}

const JSONL_ID_KEYS = ['id', 'image_id', 'imageId'] as const;

/** JSON Lines: one item object a line, blank lines skipped. */
export function jsonLinesReader(source: ManifestSource, keys: ItemKeys): FormatReader {
  const { name } = source;
  const lineKeys: ItemKeys = keys.id.length > 1 ? { ...keys, id: JSONL_ID_KEYS } : keys;
  return lineReader(source, (text, line) => {
    if (text.trim() === '') return undefined;
    const where = `line ${line}`;
    let item: unknown;
    try {
      item = parseJsonLine(text);
    } catch (error) {
      throw new ManifestError(name, where, `${where} is not valid JSON (${(error as Error).message})`);
    }
    if (!isObject(item)) throw new ManifestError(name, where, `${where} is not a JSON object`);
    const id = itemId(item, lineKeys);
    if (id instanceof ItemProblem) throw new ManifestError(name, where, `${where} ${id.text}`);
    const urls = itemUrls(item, lineKeys);
    if (urls instanceof ItemProblem) throw new ManifestError(name, where, `${where} ${urls.text}`);
    const labels = itemLabels(item, lineKeys);
    if (labels instanceof ItemProblem) throw new ManifestError(name, where, `${where} ${labels.text}`);
    return { position: line, id, urls, labels };
  });
}

const LONG_INTEGER = /[0-9]{16}/;

/** JSON.parse, keeping integers beyond 2^53 as their text so long numeric ids keep every digit. */
function parseJsonLine(text: string): unknown {
  if (!LONG_INTEGER.test(text)) return JSON.parse(text);
  return JSON.parse(text, (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?[0-9]+$/.test(context.source)
      ? context.source
      : value,
  );
}

/** A plain list of URLs: one a line, blank and `#` comment lines skipped; the id is the line number. */
export function urlListReader(source: ManifestSource): FormatReader {
  return lineReader(source, (text, line) => {
    const url = text.trim();
    if (url === '' || url.startsWith('#')) return undefined;
    return { position: line, id: String(line), urls: [url], labels: [] };
  });
}
