// The words and figures `run` prints: the progress line fitted to the terminal, sizes in 1024s,
// counts with the right noun.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressLine, type ProgressState } from '../cli/progress.ts';
import { byteSize } from '../cli/values.ts';
import { formatBytes, formatSummary, plural, type Summary } from '../engine/summary.ts';

const STATE: ProgressState = {
  done: 123_456, total: 1_000_000, fetched: 120_000, skipped: 2_000, failed: 1_456, bytes: 3.4 * 1024 ** 3, rate: 1092.4, eta: 800,
};

test('the progress line fits the terminal: the bar shrinks first, then the size, then the counts; rate and ETA stay', () => {
  const wide = progressLine(STATE, 200);
  assert.equal(wide, ` ${'█'.repeat(3)}${'░'.repeat(21)} 12% 123456/1000000 | fetched 120000  skipped 2000  failed 1456 | 3.4 GiB | 1092/s | ETA 13m20s`);
  assert.equal(progressLine(STATE, 120), ` ${'█'.repeat(3)}${'░'.repeat(20)} 12% 123456/1000000 | fetched 120000  skipped 2000  failed 1456 | 3.4 GiB | 1092/s | ETA 13m20s`);
  assert.equal(progressLine(STATE, 100), ' 12% 123456/1000000 | fetched 120000  skipped 2000  failed 1456 | 3.4 GiB | 1092/s | ETA 13m20s');
  assert.equal(progressLine(STATE, 90), ' 12% 123456/1000000 | fetched 120000  skipped 2000  failed 1456 | 1092/s | ETA 13m20s');
  assert.equal(progressLine(STATE, 70), ` ${'█'.repeat(3)}${'░'.repeat(21)} 12% 123456/1000000 | 1092/s | ETA 13m20s`);
  assert.equal(progressLine(STATE, 30), ' 12% 1092/s | ETA 13m20s');
  for (const columns of [30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 200]) {
    const line = progressLine(STATE, columns);
    assert.ok(line.length < columns, `${columns} columns: ${line.length} characters`);
    assert.match(line, / 1092\/s \| ETA 13m20s$/, `${columns} columns`);
  }
});

test('the progress line at the start and at the end', () => {
  assert.equal(progressLine({ ...STATE, done: 0, fetched: 0, skipped: 0, failed: 0, bytes: 0, rate: 0, eta: Infinity }, 200), ` ${'░'.repeat(24)} 0% 0/1000000 | fetched 0  skipped 0  failed 0 | 0 B | 0/s | ETA -`);
  assert.equal(progressLine({ ...STATE, done: 10, total: 10, eta: 0 }, 70), ` ${'█'.repeat(24)} 100% 10/10 | 1092/s | ETA 0.0s`);
});

test('sizes are counted in 1024s and labelled KiB, MiB, GiB; --max-bytes reads MB and MiB alike', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(50 * 1024 ** 2), '50.0 MiB');
  assert.equal(formatBytes(3.4 * 1024 ** 3), '3.4 GiB');
  const parse = byteSize('--max-bytes');
  for (const text of ['50MB', '50MiB', '50mib', '50 M', '50m']) assert.equal(parse(text), 50 * 1024 ** 2, text);
  for (const text of ['512KB', '512KiB', '512k']) assert.equal(parse(text), 512 * 1024, text);
  assert.equal(parse('1GiB'), 1024 ** 3);
  assert.equal(parse('1048576'), 1048576);
  assert.throws(() => parse('50MiBs'), /--max-bytes takes a size such as 50MiB, 512KiB or 1048576, not "50MiBs"/);
});

test('one entry, two entries: counts get the right noun', () => {
  assert.equal(plural(1, 'entry', 'entries'), 'entry');
  assert.equal(plural(0, 'entry', 'entries'), 'entries');
  assert.equal(plural(2, 'image'), 'images');
  const one: Summary = {
    split: 's', entries: 1, fetched: 1, skipped: 0, failed: 0, duplicates: 0, bytes: 2048, seconds: 0.5,
    failuresByReason: {}, failuresByHost: [], interrupted: false,
  };
  assert.deepEqual(formatSummary(one).split('\n').slice(0, 2), ['Done: split s, 1 entry in 0.5s (2 images/s)', '  fetched  1  (2.0 KiB)']);
});
