import assert from 'node:assert/strict';
import { test } from 'node:test';
import { INDEX_HEADER, csvField, indexRow } from '../engine/index-table.ts';

test('the header names the columns a user loads in pandas', () => {
  assert.equal(INDEX_HEADER, 'image_id,label,url,path,status,bytes,format,reason,http_status,attempts,detail\n');
});

test('fields are quoted per RFC 4180 and never span lines', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('line\nbreak'), 'line break');
  assert.equal(csvField(' padded'), '" padded"');
  assert.equal(csvField(undefined), '');
  assert.equal(csvField(0), '0');
});

test('rows: fetched with path, failed without, multi-label joined by spaces', () => {
  assert.equal(
    indexRow({ position: 1, id: '7', labels: ['95', '66'], urls: ['http://h/a.jpg'], key: 'train/7.jpg',
      outcome: { status: 'fetched', url: 'http://h/a.jpg', bytes: 1234, format: 'jpeg', httpStatus: 200, attempts: 1 } }),
    '7,95 66,http://h/a.jpg,train/7.jpg,fetched,1234,jpeg,,200,1,\n',
  );
  assert.equal(
    indexRow({ position: 2, id: '8', labels: ['3'], urls: ['http://h/b.jpg'], key: 'train/8.jpg',
      outcome: { status: 'failed', url: 'http://h/b.jpg', bytes: 0, reason: 'http-404', detail: 'HTTP 404', httpStatus: 404, attempts: 1 } }),
    '8,3,http://h/b.jpg,,failed,0,,http-404,404,1,HTTP 404\n',
  );
});
