// The index table reader of sync, status and report (aws/home/index-csv.ts): the rows csv-parse
// reads, whatever the chunks, and a table that is not one refused with one line.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'csv-parse/sync';
import { INDEX_HEADER, formatIndexRow } from '../engine/index-table.ts';
import { IndexCsvError, indexCsvRows } from '../aws/home/index-csv.ts';

async function rows(chunks: Array<string | Buffer>): Promise<Array<Record<string, string>>> {
  const out = [];
  for await (const row of indexCsvRows((async function* () {
    yield* chunks;
  })(), 'index/t.csv')) out.push(row);
  return out;
}

const ids = ['plain', 'a,b', 'say "hi"', 'two\nlines', 'cr\r\nlf', ' edge ', 'ü 😀', '"', '', 'tab\tin', 'x\ry'];
const table = INDEX_HEADER + ids.map((id, i) => formatIndexRow({ image_id: id, label: i % 2 ? '1 2' : '', url: `https://h.example/${i}.jpg`, path: id ? `t/${i}.jpg` : '', status: 'fetched', bytes: i, detail: i === 3 ? 'a "quoted", detail' : undefined })).join('');

test('the rows csv-parse reads, in one chunk or cut at every character, as text or as bytes', async () => {
  const expected = parse(table, { columns: true }) as Array<Record<string, string>>;
  assert.equal(expected.length, ids.length);
  assert.deepEqual(expected.map((r) => r.image_id), ids);
  assert.deepEqual(await rows([table]), expected);
  assert.deepEqual(await rows([...table]), expected);
  // Bytes cut inside a multi-byte character, and a table without its last line break.
  const bytes = Buffer.from(table.slice(0, -1));
  assert.deepEqual(await rows(Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))), expected);
  assert.deepEqual(await rows([table.replaceAll('\n', '\r\n').replace(/"cr\r\r\nlf"/, '"cr\r\nlf"')]), parse(table.replaceAll('\n', '\r\n').replace(/"cr\r\r\nlf"/, '"cr\r\nlf"'), { columns: true }));
  assert.deepEqual(await rows([INDEX_HEADER]), []);
  assert.deepEqual(await rows([]), []);
});

test('a table that is not one stops with one line naming the record', async () => {
  const refused = async (text: string, pattern: RegExp): Promise<void> => {
    await assert.rejects(rows([text]), (error: unknown) => error instanceof IndexCsvError && pattern.test(error.message) && !error.message.includes('\n'));
  };
  await refused('a,b\n1,2\n3\n', /^index\/t\.csv: record 3 has 1 fields, the header 2$/);
  await refused('a,b\n1,"2\n', /record 2: a quoted field without its closing quote/);
  await refused('a,b\n1,x"y\n', /record 2: a quote inside an unquoted field/);
  await refused('a,b\n1,"x"y\n', /record 2: a character after a closing quote/);
  await refused(`a,b\n1,"${'x'.repeat(1_100_000)}`, /record 2: longer than 1048576 characters/);
});
