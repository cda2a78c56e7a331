// Reads the bucket's index table (RFC 4180, as engine/index-table.ts writes it) row by row without
// csv-parse: its per-record machinery cost ~50-70 us a row (~0.1 s of a 2,000-object sync's CPU),
// this a few. The table is the bucket's, so untrusted: a malformed one stops with one line.

import { StringDecoder } from 'node:string_decoder';

export class IndexCsvError extends Error {
  override name = 'IndexCsvError';
}

const QUOTE = 34;
const COMMA = 44;
const LF = 10;
const CR = 13;
// An index row is a few hundred bytes (a URL of up to a few KB): a longer "record" is not one.
const MAX_RECORD_CHARS = 1 << 20;

/** The table's rows as objects keyed by its header's columns. */
export async function* indexCsvRows(body: AsyncIterable<Buffer | string>, name: string): AsyncGenerator<Record<string, string>> {
  const decoder = new StringDecoder('utf8');
  let text = '';
  let header: string[] | undefined;
  let record = 0;
  const row = (fields: string[]): Record<string, string> | undefined => {
    record++;
    // A blank line is no row (csv-parse's skip of empty lines).
    if (fields.length === 1 && fields[0] === '') return undefined;
    if (!header) {
      header = fields;
      return undefined;
    }
    if (fields.length !== header.length) throw new IndexCsvError(`${name}: record ${record} has ${fields.length} fields, the header ${header.length}`);
    const out: Record<string, string> = {};
    for (let i = 0; i < fields.length; i++) out[header[i]!] = fields[i]!;
    return out;
  };
  const fail = (why: string): never => {
    throw new IndexCsvError(`${name}: record ${record + 1}: ${why}`);
  };
  for await (const chunk of body) {
    text += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let at = 0;
    for (let parsed; at < text.length && (parsed = parseRecord(text, at, false, fail));) {
      at = parsed.next;
      const out = row(parsed.fields);
      if (out) yield out;
    }
    text = text.slice(at);
    if (text.length > MAX_RECORD_CHARS) fail(`longer than ${MAX_RECORD_CHARS} characters`);
  }
  text += decoder.end();
  for (let at = 0, parsed; at < text.length && (parsed = parseRecord(text, at, true, fail));) {
    at = parsed.next;
    const out = row(parsed.fields);
    if (out) yield out;
  }
}

/** The record starting at `at`, or undefined when the text ends before it does (and more may come). */
function parseRecord(text: string, at: number, final: boolean, fail: (why: string) => never): { fields: string[]; next: number } | undefined {
  const fields: string[] = [];
  let i = at;
  const n = text.length;
  for (;;) {
    if (text.charCodeAt(i) === QUOTE) {
      let value = '';
      let from = i + 1;
      for (;;) {
        const q = text.indexOf('"', from);
        if (q < 0) return final ? fail('a quoted field without its closing quote') : undefined;
        value += text.slice(from, q);
        // The text may end between a quote and the quote that doubles it.
        if (q + 1 >= n && !final) return undefined;
        if (text.charCodeAt(q + 1) === QUOTE) {
          value += '"';
          from = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
    } else {
      let end = i;
      for (; end < n; end++) {
        const c = text.charCodeAt(end);
        if (c === COMMA || c === LF || c === CR) break;
        if (c === QUOTE) fail('a quote inside an unquoted field');
      }
      if (end >= n && !final) return undefined;
      fields.push(text.slice(i, end));
      i = end;
    }
    // After a field: a comma, the record's end, or the text's.
    if (i >= n) return final ? { fields, next: n } : undefined;
    const c = text.charCodeAt(i);
    if (c === COMMA) {
      i++;
      continue;
    }
    if (c === LF) return { fields, next: i + 1 };
    if (c === CR) {
      if (i + 1 >= n && !final) return undefined;
      return { fields, next: text.charCodeAt(i + 1) === LF ? i + 2 : i + 1 };
    }
    fail('a character after a closing quote');
  }
}
