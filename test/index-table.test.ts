import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'csv-parse/sync';
import { INDEX_COLUMNS, INDEX_HEADER, TableFile, csvField, formatIndexRow, indexRow, type IndexRow } from '../engine/index-table.ts';
import { homeRow } from '../aws/home/sync.ts';
import { plannedRow } from '../aws/lambda/split.ts';

test('the header names the columns a user loads in pandas', () => {
  assert.equal(INDEX_HEADER, 'image_id,label,url,path,status,bytes,format,width,height,original_bytes,reason,http_status,attempts,detail,sha256,duplicate_of\n');
});

test('fields are quoted per RFC 4180 and keep their exact value, control characters included', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('line\nbreak'), '"line\nbreak"');
  assert.equal(csvField('tab\there'), '"tab\there"');
  assert.equal(csvField(' padded'), '" padded"');
  assert.equal(csvField(undefined), '');
  assert.equal(csvField(0), '0');
});

test('an id with control characters reads back exact, and two ids differing in one stay two', () => {
  const ids = ['a\nb', 'a\rb', 'a\r\nb', 'a\tb', 'a\u0000b', `all${Array.from({ length: 32 }, (_, c) => String.fromCharCode(c)).join('')}`, ' a,"b" '];
  const table = INDEX_HEADER + ids.map((id) => formatIndexRow({ image_id: id, label: '', url: '', path: '', status: 'queued' })).join('');
  const rows = parse(table, { columns: true }) as Array<Record<string, string>>;
  assert.deepEqual(rows.map((r) => r.image_id), ids);
});

test('rows: fetched with path, failed without, multi-label joined by spaces', () => {
  assert.equal(
    formatIndexRow(indexRow({ position: 1, id: '7', labels: ['95', '66'], urls: ['http://h/a.jpg'], key: 'train/7.jpg',
      outcome: { status: 'fetched', url: 'http://h/a.jpg', bytes: 1234, format: 'jpeg', httpStatus: 200, attempts: 1, sha256: 'ab12' } })),
    '7,95 66,http://h/a.jpg,train/7.jpg,fetched,1234,jpeg,,,,,200,1,,ab12,\n',
  );
  assert.equal(
    formatIndexRow(indexRow({ position: 2, id: '8', labels: ['3'], urls: ['http://h/b.jpg'], key: 'train/8.jpg',
      outcome: { status: 'failed', url: 'http://h/b.jpg', bytes: 0, reason: 'http-404', detail: 'HTTP 404', httpStatus: 404, attempts: 1 } })),
    '8,3,http://h/b.jpg,,failed,0,,,,,http-404,404,1,HTTP 404,,\n',
  );
});

test('a row is written column by column as INDEX_COLUMNS names them: a new column is that one edit', () => {
  // Built in reverse order: only the names place the values.
  const row = Object.fromEntries([...INDEX_COLUMNS].reverse().map((column) => [column, `<${column}>`])) as unknown as IndexRow;
  assert.equal(formatIndexRow(row), INDEX_COLUMNS.map((column) => `<${column}>`).join(',') + '\n');
  assert.equal(INDEX_HEADER, INDEX_COLUMNS.join(',') + '\n');
});

test('run, the cloud split and sync write the same columns in the same order', () => {
  const read = (row: IndexRow): Record<string, string> => {
    const [record, ...more] = parse(INDEX_HEADER + formatIndexRow(row), { columns: true }) as Array<Record<string, string>>;
    assert.equal(more.length, 0);
    return record!;
  };
  const same = { image_id: '7', label: '95 66', url: 'http://h/a.jpg', path: 'train/7.jpg' };
  const empty = Object.fromEntries(INDEX_COLUMNS.map((column) => [column, '']));
  const run = read(indexRow({ position: 1, id: '7', labels: ['95', '66'], urls: ['http://h/a.jpg'], key: 'train/7.jpg',
    outcome: { status: 'fetched', url: 'http://h/a.jpg', bytes: 1234, format: 'jpeg', httpStatus: 200, attempts: 2, sha256: 'ab12' } }));
  const split = read(plannedRow({ split: 'train', id: '7', urls: ['http://h/a.jpg'], labels: ['95', '66'], key: 'train/7.jpg', position: 1 }, 'queued'));
  const sync = read(homeRow({ image_id: '7', label: '95 66', url: 'http://h/a.jpg', path: 'train/7.jpg', status: 'fetched', bytes: 1234, reason: '',
    format: 'jpeg', httpStatus: 200, attempts: 2, sha256: 'ab12' }, (key) => key));
  assert.deepEqual(run, { ...empty, ...same, status: 'fetched', bytes: '1234', format: 'jpeg', http_status: '200', attempts: '2', sha256: 'ab12' });
  assert.deepEqual(split, { ...empty, ...same, status: 'queued' });
  assert.deepEqual(sync, run);
  const pending = read(homeRow({ image_id: '8', label: '3', url: 'http://h/b.jpg', path: '', status: 'pending', bytes: 0, reason: 'timeout' }, (key) => `moved/${key}`));
  assert.deepEqual(pending, { ...empty, image_id: '8', label: '3', url: 'http://h/b.jpg', status: 'pending', reason: 'timeout' });
});

test('a table file is whole or absent: commit renames it into place, abandon keeps the last one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-table-'));
  try {
    const file = join(dir, 'train.csv');
    const rows: IndexRow[] = Array.from({ length: 4000 }, (_, i) => ({ image_id: String(i), label: 'l', url: `http://h/${i}.jpg`, path: `train/${i}.jpg`, status: 'queued' }));
    const whole = INDEX_HEADER + rows.map(formatIndexRow).join('');
    assert.ok(whole.length > 3 * 65_536, 'written in several pieces');
    const first = new TableFile(file);
    for (const row of rows) if (!first.write(row)) await first.drained();
    assert.equal(existsSync(file), false, 'nothing at the final name before the commit');
    await first.commit();
    assert.equal(await readFile(file, 'utf8'), whole);

    const second = new TableFile(file);
    second.write(rows[0]!);
    await second.abandon();
    assert.equal(await readFile(file, 'utf8'), whole);
    assert.deepEqual(await readdir(dir), ['train.csv']);

    const nowhere = new TableFile(join(dir, 'missing', 'train.csv'));
    nowhere.write(rows[0]!);
    await assert.rejects(nowhere.commit(), { code: 'ENOENT' });
    assert.deepEqual(await readdir(dir), ['train.csv']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
