// The index table: one CSV row per distinct manifest entry, the file a user loads in pandas.

import { closeSync, createWriteStream, openSync, readSync, writeFileSync, type WriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { Outcome, Status } from './outcome.ts';

/** What the index says of one distinct manifest entry. */
export interface IndexRecord {
  position: number;
  id: string;
  labels: string[];
  urls: string[];
  /** Store key; null when the entry could not be planned (no usable URL). */
  key: string | null;
  outcome: Outcome;
}

export const INDEX_COLUMNS = [
  'image_id', 'label', 'url', 'path', 'status', 'bytes', 'format', 'width', 'height', 'original_bytes', 'reason', 'http_status', 'attempts', 'detail', 'sha256', 'duplicate_of',
] as const;

export type IndexColumn = (typeof INDEX_COLUMNS)[number];

/**
 * The status column; each writer uses some of these words:
 * - `run`: fetched, skipped (already on disk), failed;
 * - the cloud split, at submit: queued (a job was sent), skipped (already in the bucket), failed
 *   (no usable URL);
 * - `sync`, from the bucket: fetched, failed, pending (still queued, in flight, or being retried).
 */
export type IndexStatus = Status | 'queued' | 'pending';

/** Every writer knows these; the other columns describe a fetch and stay empty until there was one. */
type Identity = 'image_id' | 'label' | 'url' | 'path';

/** One row of the table, by column name: a new column in INDEX_COLUMNS is a new (optional) field here. */
export type IndexRow = { [C in Extract<IndexColumn, Identity>]: string } & { status: IndexStatus } & {
  [C in Exclude<IndexColumn, Identity | 'status'>]?: string | number | undefined;
};

export const INDEX_HEADER = INDEX_COLUMNS.join(',') + '\n';

/**
 * RFC 4180 quoting of the exact value: line breaks and other control characters stay, inside
 * quotes (a CSV reader gives them back), so an id read from the table is the id fetched.
 */
export function csvField(value: string | number | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'number') return String(value);
  return NEEDS_QUOTES.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** A quote, comma or control character, or white space at either end (what trim() would drop). */
const NEEDS_QUOTES = /[",\u0000-\u001f\u007f]|^\s|\s$/;

/** The row as a CSV line, its fields in INDEX_COLUMNS order. A loop: it runs once per entry. */
export function formatIndexRow(row: IndexRow): string {
  let line = csvField(row[INDEX_COLUMNS[0]]);
  for (let i = 1; i < INDEX_COLUMNS.length; i++) line += ',' + csvField(row[INDEX_COLUMNS[i]!]);
  return line + '\n';
}

/** The row of a fetch's outcome. Multi-label entries join their labels with a space: `df.label.str.split()` gives the list back. */
export function indexRow(record: IndexRecord): IndexRow {
  const { outcome, key } = record;
  const stored = outcome.status !== 'failed' && key !== null;
  return {
    image_id: record.id,
    label: record.labels.join(' '),
    url: outcome.url || record.urls[0] || '',
    path: stored ? key : '',
    status: outcome.status,
    bytes: outcome.bytes,
    format: outcome.format,
    width: outcome.width,
    height: outcome.height,
    original_bytes: outcome.originalBytes,
    reason: outcome.reason,
    http_status: outcome.httpStatus,
    attempts: outcome.attempts,
    detail: outcome.detail,
    sha256: outcome.sha256,
  };
}

/**
 * A table being written to `<file>.<pid>.part`, in 64 KiB pieces (a write per row would cost a
 * thread-pool round trip each). commit() renames it into place and abandon() removes it: the file
 * is always a whole table, the last complete one until the next is.
 */
export class TableFile {
  readonly file: string;
  readonly #partial: string;
  readonly #out: WriteStream;
  #pending = INDEX_HEADER;

  constructor(file: string) {
    this.file = file;
    this.#partial = `${file}.${process.pid}.part`;
    this.#out = createWriteStream(this.#partial);
    // Reported by commit() (finished() rethrows it), or dropped by abandon().
    this.#out.on('error', () => {});
  }

  /** Adds a row. false: the disk is behind, and a caller that can wait should await drained(). */
  write(row: IndexRow): boolean {
    return this.writeLine(formatIndexRow(row));
  }

  /** Adds a row already formatted by formatIndexRow(). */
  writeLine(line: string): boolean {
    this.#pending += line;
    if (this.#pending.length < 65_536) return true;
    const more = this.#out.write(this.#pending);
    this.#pending = '';
    return more;
  }

  async drained(): Promise<void> {
    if (this.#out.writableNeedDrain && !this.#out.destroyed) await once(this.#out, 'drain');
  }

  async commit(): Promise<void> {
    this.#out.end(this.#pending);
    this.#pending = '';
    try {
      await finished(this.#out);
    } catch (error) {
      await this.abandon();
      throw error;
    }
    await rename(this.#partial, this.file);
  }

  async abandon(): Promise<void> {
    this.#out.destroy();
    // Closed first: a file still being opened would otherwise appear after the removal.
    if (!this.#out.closed) await once(this.#out, 'close');
    await rm(this.#partial, { force: true });
  }
}

/** Rows held back behind a gap before they go to a sorted run on disk. */
const HELD_BYTES = 4 << 20;

/**
 * Rows that arrive out of order (as images complete), written to the table in sequence order
 * 0, 1, 2, … In order they go straight through; rows behind a straggler wait in memory, and
 * when those pass HELD_BYTES they go to disk as a run sorted by sequence, in `spillDir`. From
 * the first run on, every later row waits too, and commit() merges the runs into the table.
 * So memory stays bounded however long a straggler holds back the rest.
 */
export class OrderedTable {
  readonly #table: TableFile;
  readonly #spillDir: string;
  readonly #heldBytesLimit: number;
  #next = 0;
  #held = new Map<number, string>();
  #heldBytes = 0;
  readonly #runs: string[] = [];

  constructor(table: TableFile, spillDir: string, heldBytesLimit = HELD_BYTES) {
    this.#table = table;
    this.#spillDir = spillDir;
    this.#heldBytesLimit = heldBytesLimit;
  }

  /** Sorted runs written so far (tests). */
  get runs(): number {
    return this.#runs.length;
  }

  put(sequence: number, row: IndexRow): void {
    const line = formatIndexRow(row);
    if (sequence === this.#next && this.#runs.length === 0) {
      this.#table.writeLine(line);
      for (let ready = this.#held.get(++this.#next); ready !== undefined; ready = this.#held.get(++this.#next)) {
        this.#held.delete(this.#next);
        this.#heldBytes -= ready.length;
        this.#table.writeLine(ready);
      }
      return;
    }
    this.#held.set(sequence, line);
    this.#heldBytes += line.length;
    if (this.#heldBytes > this.#heldBytesLimit) this.#spill();
  }

  /** The held rows as one run: [sequence, 4 bytes LE][byte length, 4 bytes LE][UTF-8 row]… */
  #spill(): void {
    const sequences = [...this.#held.keys()].sort((a, b) => a - b);
    const parts: Buffer[] = [];
    for (const sequence of sequences) {
      const row = Buffer.from(this.#held.get(sequence)!, 'utf8');
      const header = Buffer.allocUnsafe(8);
      header.writeUInt32LE(sequence, 0);
      header.writeUInt32LE(row.length, 4);
      parts.push(header, row);
    }
    const file = join(this.#spillDir, `rows-${this.#runs.length}`);
    writeFileSync(file, Buffer.concat(parts), { flag: 'wx' });
    this.#runs.push(file);
    this.#held.clear();
    this.#heldBytes = 0;
  }

  /** Writes what waits (merging the runs), commits the table and removes the runs. */
  async commit(): Promise<void> {
    try {
      if (this.#runs.length > 0) {
        this.#spill();
        await this.#merge();
      }
    } catch (error) {
      await this.abandon();
      throw error;
    }
    await this.#removeRuns();
    await this.#table.commit();
  }

  async abandon(): Promise<void> {
    this.#held.clear();
    await this.#removeRuns();
    await this.#table.abandon();
  }

  async #merge(): Promise<void> {
    const readers = this.#runs.map((file) => new RunReader(file));
    try {
      for (;;) {
        let least: RunReader | null = null;
        for (const reader of readers) if (reader.sequence >= 0 && (least === null || reader.sequence < least.sequence)) least = reader;
        if (least === null) return;
        if (!this.#table.writeLine(least.row)) await this.#table.drained();
        least.advance();
      }
    } finally {
      for (const reader of readers) reader.close();
    }
  }

  async #removeRuns(): Promise<void> {
    await Promise.all(this.#runs.map((file) => rm(file, { force: true })));
    this.#runs.length = 0;
  }
}

/** Reads one sorted run record by record, 64 KiB at a time. */
class RunReader {
  readonly #fd: number;
  #buffer = Buffer.alloc(1 << 16);
  #start = 0;
  #end = 0;
  #position = 0;
  /** The current record's sequence; -1 at the end. */
  sequence = -1;
  row = '';

  constructor(file: string) {
    this.#fd = openSync(file, 'r');
    this.advance();
  }

  advance(): void {
    if (!this.#fill(8)) {
      this.sequence = -1;
      return;
    }
    const sequence = this.#buffer.readUInt32LE(this.#start);
    const length = this.#buffer.readUInt32LE(this.#start + 4);
    if (!this.#fill(8 + length)) throw new Error('index spill run ends inside a row');
    this.sequence = sequence;
    this.row = this.#buffer.toString('utf8', this.#start + 8, this.#start + 8 + length);
    this.#start += 8 + length;
  }

  /** At least `bytes` unread bytes in the buffer; false at the end of the file. */
  #fill(bytes: number): boolean {
    if (this.#end - this.#start >= bytes) return true;
    if (this.#buffer.length < bytes) {
      const grown = Buffer.alloc(Math.max(bytes, this.#buffer.length * 2));
      this.#buffer.copy(grown, 0, this.#start, this.#end);
      this.#buffer = grown;
    } else {
      this.#buffer.copy(this.#buffer, 0, this.#start, this.#end);
    }
    this.#end -= this.#start;
    this.#start = 0;
    while (this.#end < bytes) {
      const n = readSync(this.#fd, this.#buffer, this.#end, this.#buffer.length - this.#end, this.#position);
      if (n === 0) return false;
      this.#end += n;
      this.#position += n;
    }
    return true;
  }

  close(): void {
    closeSync(this.#fd);
  }
}
