// CSV and TSV with a header line (RFC 4180 quoting): columns found by their usual names or given.

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parse } from 'csv-parse';
import type { ManifestEntry } from '../job.ts';
import { plural } from '../summary.ts';
import { ManifestError } from './errors.ts';
import type { FormatReader } from './reader.ts';
import { contentChunks, type ManifestSource } from './source.ts';

const ID_COLUMNS = ['id', 'image_id', 'imageid', 'image', 'name', 'key'];
const URL_COLUMNS = ['url', 'urls', 'image_url', 'link'];
const LABEL_COLUMNS = ['label', 'labels', 'label_id', 'labelid', 'landmark_id', 'class', 'category'];

/** A field this long means a quote was left open, not a real value. */
const MAX_RECORD_BYTES = 1 << 20;

export interface ColumnOptions {
  idColumn?: string;
  urlColumn?: string;
  labelColumn?: string;
}

interface Columns {
  id: number;
  url: number;
  label: number;
}

export function csvReader(source: ManifestSource, delimiter: ',' | '\t', options: ColumnOptions): FormatReader {
  const { name } = source;
  const pass = async function* (): AsyncGenerator<ManifestEntry> {
    const parser = parse({
      delimiter,
      bom: true,
      relax_quotes: true,
      skip_empty_lines: true,
      info: true,
      max_record_size: MAX_RECORD_BYTES,
    });
    // Errors (the source's too) reach the loop below: pipeline destroys the parser with them.
    pipeline(Readable.from(contentChunks(source)), parser).catch(() => {});
    let columns: Columns | undefined;
    let lastLine = 0;
    try {
      for await (const row of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
        const { record } = row;
        // The parser counts lines up to the record's end; a quoted field may span several.
        lastLine = row.info.lines;
        let line = lastLine;
        for (const field of record) for (let i = field.indexOf('\n'); i >= 0; i = field.indexOf('\n', i + 1)) line--;
        if (columns === undefined) {
          columns = findColumns(name, record, delimiter, options);
          continue;
        }
        let id = String(line);
        if (columns.id >= 0) {
          id = record[columns.id]!.trim();
          if (id === '') throw new ManifestError(name, `line ${line}`, `line ${line} has an empty id (column ${columns.id + 1})`);
        }
        const url = record[columns.url]!.trim();
        const label = columns.label >= 0 ? record[columns.label]!.trim() : '';
        yield { position: line, id, urls: url === '' ? [] : [url], labels: label === '' ? [] : [label] };
      }
    } catch (error) {
      throw translate(name, error, lastLine);
    }
    if (columns === undefined) throw new ManifestError(name, 'line 1', 'the manifest is empty: a CSV/TSV manifest needs a header line');
  };
  return {
    needsScan: false,
    async scan() {
      let entries = 0;
      for await (const _ of pass()) entries++;
      return entries;
    },
    entries: pass,
  };
}

function findColumns(name: string, header: string[], delimiter: string, options: ColumnOptions): Columns {
  const names = header.map((column) => column.trim());
  const lower = names.map((column) => column.toLowerCase());
  const shown = `"${names.join(delimiter === '\t' ? '\\t' : ',')}"`;
  const find = (given: string | undefined, usual: readonly string[], what: string, flag: string): number => {
    if (given !== undefined) {
      let index = names.indexOf(given.trim());
      if (index < 0) index = lower.indexOf(given.trim().toLowerCase());
      if (index < 0) throw new ManifestError(name, 'line 1', `line 1: no column "${given}" (the ${what} column given with ${flag}) in the header ${shown}`);
      return index;
    }
    for (const candidate of usual) {
      const index = lower.indexOf(candidate);
      if (index >= 0) return index;
    }
    return -1;
  };
  const url = find(options.urlColumn, URL_COLUMNS, 'URL', '--url-column');
  if (url < 0) {
    throw new ManifestError(
      name,
      'line 1',
      `line 1: no URL column in the header ${shown}: expected one of ${URL_COLUMNS.join(', ')}, or name it with --url-column`,
    );
  }
  return {
    id: find(options.idColumn, ID_COLUMNS, 'id', '--id-column'),
    url,
    label: find(options.labelColumn, LABEL_COLUMNS, 'label', '--label-column'),
  };
}

function translate(name: string, error: unknown, lastLine: number): unknown {
  if (error instanceof ManifestError || !(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !(code.startsWith('CSV_') || code === 'INVALID_OPENING_QUOTE')) return error;
  const lines = (error as { lines?: unknown }).lines;
  const line = typeof lines === 'number' ? lines : Number(/line (\d+)/.exec(error.message)?.[1] ?? NaN);
  const where = Number.isFinite(line) ? `line ${line}` : 'somewhere';
  switch (code) {
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH': {
      const counts = /expect (\d+), got (\d+)/.exec(error.message);
      const detail = counts ? `${counts[2]} ${plural(Number(counts[2]), 'field')} where the header has ${counts[1]}` : 'a different number of fields than the header';
      return new ManifestError(name, where, `${where} has ${detail}`);
    }
    case 'CSV_QUOTE_NOT_CLOSED':
    case 'CSV_MAX_RECORD_SIZE': {
      // The parser reports where it gave up; the open quote is in the record after the last good one.
      const start = `line ${lastLine + 1}`;
      return new ManifestError(name, start, `${start}: a quoted field is never closed`);
    }
    default:
      return new ManifestError(name, where, `${where}: ${error.message.replace(/\s+/g, ' ')}`);
  }
}
