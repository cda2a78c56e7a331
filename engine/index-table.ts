// The index table: one CSV row per distinct manifest entry, the file a user loads in pandas.

import { createWriteStream, type WriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
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
  'image_id', 'label', 'url', 'path', 'status', 'bytes', 'format', 'reason', 'http_status', 'attempts', 'detail', 'sha256',
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
  const text = String(value);
  return /[",\u0000-\u001f\u007f]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The row as a CSV line, its fields in INDEX_COLUMNS order. */
export function formatIndexRow(row: IndexRow): string {
  return INDEX_COLUMNS.map((column) => csvField(row[column])).join(',') + '\n';
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
    this.#pending += formatIndexRow(row);
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
