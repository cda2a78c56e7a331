// Images whose bytes (SHA-256) other entries share. A host answering many distinct URLs with the
// same bytes serves a placeholder ("photo unavailable"): those entries fail `placeholder` and their
// bytes are not kept. Other shared bytes are duplicates, kept and named in `duplicate_of`. `run`
// and `sync` decide here from the same facts (each image's SHA-256 and the URL that answered), so
// their tables agree.

import { createReadStream } from 'node:fs';
import type { IndexRow, TableFile } from './index-table.ts';
import type { FetchResult } from './fetch/fetcher.ts';
import type { ImageFetcher } from './worker.ts';

/** Distinct URLs of one host with the same bytes that make them a placeholder; 0 turns the check off. */
export const DEFAULT_PLACEHOLDER_THRESHOLD = 3;

function placeholderDetail(others: number): string {
  return `the same bytes as ${others} other ${others === 1 ? 'entry' : 'entries'} of this host: a placeholder, not kept`;
}

export function originOf(url: string): string {
  return URL.parse(url)?.origin ?? url;
}

interface HostGroup {
  /** Distinct URLs, kept only up to the threshold: past it the verdict cannot change. */
  urls: Set<string>;
  entries: number;
}

/**
 * The images with each of some digests, per host: only digests known to repeat are given to it,
 * so it holds a few objects per repeated image, never one per entry.
 */
export class SameBytes {
  readonly threshold: number;
  /**
   * Per digest, the URL of its only entry so far, or its entries per host once it repeats: most
   * digests are seen once, and cost one map entry (no URL parse, no objects) until they repeat.
   */
  readonly #groups = new Map<string, Map<string, HostGroup> | string>();

  constructor(threshold: number) {
    this.threshold = threshold;
  }

  /** Holds `digests` groups. */
  get digests(): number {
    return this.#groups.size;
  }

  /** One entry whose image (stored, or refused as a placeholder) had these bytes, from this URL. */
  add(sha256: string, url: string): void {
    const seen = this.#groups.get(sha256);
    if (seen === undefined) {
      this.#groups.set(sha256, url);
      return;
    }
    let hosts: Map<string, HostGroup>;
    if (typeof seen === 'string') {
      hosts = new Map([[originOf(seen), { urls: new Set([seen]), entries: 1 }]]);
      this.#groups.set(sha256, hosts);
    } else hosts = seen;
    const origin = originOf(url);
    let group = hosts.get(origin);
    if (!group) hosts.set(origin, (group = { urls: new Set(), entries: 0 }));
    group.entries++;
    if (group.urls.size < Math.max(1, this.threshold)) group.urls.add(url);
  }

  /** A placeholder's detail when these bytes from this URL's host are one, else null. */
  placeholder(sha256: string, url: string): string | null {
    if (this.threshold === 0) return null;
    const seen = this.#groups.get(sha256);
    if (seen === undefined) return null;
    if (typeof seen === 'string') {
      // One entry: a placeholder only when one URL is enough (threshold 1) and it is this host's.
      if (this.threshold > 1 || originOf(seen) !== originOf(url)) return null;
      return placeholderDetail(0);
    }
    const group = seen.get(originOf(url));
    if (!group || group.urls.size < this.threshold) return null;
    return placeholderDetail(group.entries - 1);
  }

  /** Whether more than one entry had these bytes (on any hosts). */
  repeated(sha256: string): boolean {
    const hosts = this.#groups.get(sha256);
    if (hosts === undefined || typeof hosts === 'string') return false;
    let entries = 0;
    for (const group of hosts.values()) entries += group.entries;
    return entries > 1;
  }

  clear(): void {
    this.#groups.clear();
  }
}

/**
 * `duplicate_of`: called in manifest order for each kept image whose bytes repeat, the first id
 * with those bytes ('' for that first one itself).
 */
export class FirstWithBytes {
  readonly #first = new Map<string, string>();

  duplicateOf(sha256: string, id: string): string {
    const first = this.#first.get(sha256);
    if (first !== undefined) return first;
    this.#first.set(sha256, id);
    return '';
  }
}

/**
 * What shared bytes make of one entry, in manifest order: a placeholder (its detail), a duplicate
 * (the first id with its bytes), or nothing. `kept`: stored (or already there); `refused`: failed
 * as a placeholder already (refused before its write). Other failures have no bytes to judge.
 */
export function judge(
  same: SameBytes,
  first: FirstWithBytes,
  entry: { id: string; url: string; sha256: string | undefined; kept: boolean; refused: boolean },
): { placeholder: string } | { duplicateOf: string } | null {
  const { sha256 } = entry;
  if (!sha256 || !(entry.kept || entry.refused)) return null;
  const placeholder = same.placeholder(sha256, entry.url);
  if (placeholder !== null) return { placeholder };
  if (!entry.kept || !same.repeated(sha256)) return null;
  const duplicateOf = first.duplicateOf(sha256, entry.id);
  return duplicateOf === '' ? null : { duplicateOf };
}

/** The row of an entry whose bytes are a placeholder: failed, nothing stored, the bytes' SHA-256 kept to say which. */
export function placeholderRow(row: IndexRow, detail: string): IndexRow {
  return { ...row, path: '', status: 'failed', bytes: 0, format: undefined, width: undefined, height: undefined, original_bytes: undefined, reason: 'placeholder', detail, duplicate_of: undefined };
}

const CHUNK = 1 << 16;

/**
 * The first 64 bits of the digest of every image a run meets, with its row's sequence number: 12
 * bytes per image in typed arrays (nothing per entry in JS objects, issue #11). At the end, the
 * prefixes are sorted once to find those that occur more than once, and the rows that hold them.
 */
export class DigestPrefixes {
  readonly #prefixes: BigUint64Array[] = [];
  readonly #sequences: Uint32Array[] = [];
  #used = CHUNK;
  size = 0;

  add(sha256: string, sequence: number): void {
    if (this.#used === CHUNK) {
      this.#prefixes.push(new BigUint64Array(CHUNK));
      this.#sequences.push(new Uint32Array(CHUNK));
      this.#used = 0;
    }
    this.#prefixes.at(-1)![this.#used] = prefixOf(sha256);
    this.#sequences.at(-1)![this.#used++] = sequence;
    this.size++;
  }

  /** The prefixes seen twice or more, and the sequence numbers of their rows, ascending. */
  repeating(): { prefixes: Set<bigint>; sequences: Uint32Array } {
    const all = new BigUint64Array(this.size);
    this.#prefixes.forEach((chunk, c) => all.set(chunk.subarray(0, Math.min(CHUNK, this.size - c * CHUNK)), c * CHUNK));
    all.sort();
    const prefixes = new Set<bigint>();
    for (let i = 1; i < all.length; i++) if (all[i] === all[i - 1]) prefixes.add(all[i]!);
    const sequences: number[] = [];
    if (prefixes.size > 0) {
      this.#prefixes.forEach((chunk, c) => {
        const used = Math.min(CHUNK, this.size - c * CHUNK);
        for (let i = 0; i < used; i++) if (prefixes.has(chunk[i]!)) sequences.push(this.#sequences[c]![i]!);
      });
    }
    return { prefixes, sequences: Uint32Array.from(sequences).sort() };
  }
}

export function prefixOf(sha256: string): bigint {
  return BigInt.asUintN(64, BigInt(`0x${sha256.slice(0, 16) || '0'}`));
}

/**
 * A fetcher that refuses an image as a placeholder once `watch` has seen its bytes from enough
 * distinct URLs of its host, before the bytes are stored. `watch` forgets everything past
 * `capacity` digests (a refusal saves a write; the exact verdict is made after the run, and by sync).
 */
export function refusingPlaceholders(fetcher: ImageFetcher, watch: SameBytes, capacity = 50_000): ImageFetcher {
  const judged = (result: FetchResult): FetchResult => {
    if (!result.ok || watch.threshold === 0) return result;
    if (watch.digests >= capacity) watch.clear();
    watch.add(result.sha256, result.url);
    const detail = watch.placeholder(result.sha256, result.url);
    if (detail === null) return result;
    return { ok: false, url: result.url, reason: 'placeholder', detail, attempts: result.attempts, httpStatus: result.httpStatus, sha256: result.sha256 };
  };
  // One closure for all images, not an async function's frame and promise per image.
  return { fetchImage: (urls, signal) => fetcher.fetchImage(urls, signal).then(judged) };
}

export interface SettledRow {
  before: IndexRow;
  after: IndexRow;
}

/**
 * The index a run wrote (`written`: a header, then row n for sequence n), settled into `into`:
 * rows of a host's placeholder fail (`onChange` removes their files) and kept images whose bytes
 * repeat name the first id with them. Only the rows `repeating` names are parsed, in two passes
 * (the first counts each digest's URLs per host: a verdict can depend on rows further down); every
 * other row is copied as it is.
 */
export async function settleSameBytes(
  written: string,
  into: TableFile,
  repeating: { prefixes: Set<bigint>; sequences: Uint32Array },
  threshold: number,
  onChange: (change: SettledRow) => Promise<void>,
): Promise<void> {
  const groups = new SameBytes(threshold);
  const entry = (row: IndexRow & { sha256: string }) => ({ id: row.image_id, url: row.url, sha256: row.sha256, kept: row.status !== 'failed', refused: row.reason === 'placeholder' });
  for await (const part of tableParts(written, repeating)) {
    if (typeof part === 'string' || part.row === null) continue;
    const e = entry(part.row);
    if (e.kept || e.refused) groups.add(part.row.sha256, part.row.url);
  }
  const first = new FirstWithBytes();
  for await (const part of tableParts(written, repeating)) {
    const verdict = typeof part === 'string' || part.row === null ? null : judge(groups, first, entry(part.row));
    if (verdict === null) {
      if (!into.writeLine(typeof part === 'string' ? part : part.line)) await into.drained();
      continue;
    }
    const row = (part as { row: IndexRow }).row;
    const settled = 'placeholder' in verdict ? placeholderRow(row, verdict.placeholder) : { ...row, duplicate_of: verdict.duplicateOf };
    await onChange({ before: row, after: settled });
    if (!into.write(settled)) await into.drained();
  }
}

type Candidate = IndexRow & { sha256: string };

/**
 * The table as written (its header left out: `into` writes its own), in order: runs of rows to
 * copy as they are (text), and each row `repeating` names, parsed when it holds one of its
 * prefixes. Rows are found with indexOf on the bytes: a row ends at a line break outside quotes
 * (csvField quotes every field that holds a quote or a line break), so only candidates are decoded.
 */
async function* tableParts(file: string, repeating: { prefixes: Set<bigint>; sequences: Uint32Array }): AsyncGenerator<string | { line: string; row: Candidate | null }> {
  let columns: string[] | null = null;
  let sequence = -1; // the header is row -1
  let next = 0;
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const bytes = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
    let copyFrom = 0; // start of the rows not yet handed on
    let rowStart = 0;
    let at = 0;
    // The carried unfinished row is scanned again from its start, outside quotes.
    let quoted = false;
    let quote = bytes.indexOf(34);
    for (;;) {
      const lineEnd = bytes.indexOf(10, at);
      if (lineEnd < 0) break;
      for (; quote >= 0 && quote < lineEnd; quote = bytes.indexOf(34, quote + 1)) quoted = !quoted;
      at = lineEnd + 1;
      if (quoted) continue; // a line break inside a quoted field
      if (sequence === -1) {
        columns = bytes.toString('utf8', rowStart, lineEnd).split(',');
        copyFrom = at;
      } else {
        while (next < repeating.sequences.length && repeating.sequences[next]! < sequence) next++;
        if (repeating.sequences[next] === sequence) {
          if (rowStart > copyFrom) yield bytes.toString('utf8', copyFrom, rowStart);
          const line = bytes.toString('utf8', rowStart, at);
          yield { line, row: candidate(columns!, line, repeating.prefixes) };
          copyFrom = at;
        }
      }
      sequence++;
      rowStart = at;
    }
    if (rowStart > copyFrom) yield bytes.toString('utf8', copyFrom, rowStart);
    carry = bytes.subarray(rowStart);
  }
  if (carry.length > 0) throw new Error(`${file}: the table ends inside a row`);
}

function candidate(columns: string[], line: string, prefixes: Set<bigint>): Candidate | null {
  const fields = parseLine(line);
  const row = Object.fromEntries(columns.map((column, i) => [column, fields[i] ?? ''])) as unknown as IndexRow;
  return typeof row.sha256 === 'string' && row.sha256 !== '' && prefixes.has(prefixOf(row.sha256)) ? (row as Candidate) : null;
}

/** One row as csvField wrote it: fields quoted when they hold a quote, comma or control character, "" for a quote. */
function parseLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line.charCodeAt(i) === 34) {
      let value = '';
      i++;
      for (;;) {
        const quote = line.indexOf('"', i);
        value += line.slice(i, quote);
        i = quote + 1;
        if (line.charCodeAt(i) !== 34) break;
        value += '"';
        i++;
      }
      fields.push(value);
    } else {
      let end = i;
      while (end < line.length && line.charCodeAt(end) !== 44 && line.charCodeAt(end) !== 10) end++;
      fields.push(line.slice(i, end));
      i = end;
    }
    if (i >= line.length || line.charCodeAt(i) !== 44) return fields;
    i++;
  }
}
