// What `run` remembers per entry lives in compact structures or on disk: the ids seen (exact,
// even when hashes collide) and the index rows held behind a straggler (back in manifest order).

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { formatIndexRow, INDEX_HEADER, indexRow, OrderedTable, TableFile, type IndexRecord } from '../engine/index-table.ts';
import type { ManifestEntry } from '../engine/job.ts';
import { planJobs, type PlanStats } from '../engine/plan.ts';
import { runPool } from '../engine/pool.ts';
import { SeenIds } from '../engine/seen-ids.ts';
import type { Store } from '../engine/store.ts';

const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-run-memory-'));
after(() => rm(dir, { recursive: true, force: true }));

describe('SeenIds', () => {
  test('every hash colliding: still exact, ids read back from the spill file, which close() removes', () => {
    const spillFile = join(dir, 'ids-collide');
    const seen = new SeenIds({ spillFile, hash: () => 7 });
    // Over 64 KiB of id text, so most comparisons read the file rather than the in-memory tail.
    const ids = Array.from({ length: 1000 }, (_, i) => `id-${i}-${'x'.repeat(60 + (i % 40))}`);
    for (const id of ids) assert.equal(seen.add(id), true, id);
    for (const id of ids.filter((_, i) => i % 97 === 0)) assert.equal(seen.add(id), false, id);
    // Same hash, a prefix of a stored id, and one longer: not duplicates.
    assert.equal(seen.add('id-1'), true);
    assert.equal(seen.add(`${ids[999]}x`), true);
    assert.equal(seen.add('id-1'), false);
    assert.equal(seen.size, 1002);
    assert.ok(existsSync(spillFile));
    seen.close();
    assert.equal(existsSync(spillFile), false);
  });

  test('integer ids use the bitmap; "007" is not 7; a large id stays a duplicate after the bitmap grows over it', () => {
    const seen = new SeenIds();
    assert.equal(seen.add('7'), true);
    assert.equal(seen.add('007'), true);
    assert.equal(seen.add('7'), false);
    assert.equal(seen.add('007'), false);
    assert.equal(seen.add('20000000'), true); // beyond the bitmap's reach while few ids are seen
    for (let id = 8; id < 60_000; id++) seen.add(String(id)); // the bitmap may now reach 20,000,000
    assert.equal(seen.add('20000000'), false);
    assert.equal(seen.add('20000001'), true);
    assert.equal(seen.add('9007199254740993'), true); // not a safe integer: kept as text
    assert.equal(seen.add('9007199254740993'), false);
    assert.equal(seen.add('id with\nline break'), true);
    assert.equal(seen.add('id with\nline break'), false);
    assert.equal(seen.size, 2 + 1 + (60_000 - 8) + 1 + 1 + 1);
  });

  test('planJobs counts duplicates with it', async () => {
    const entries = async function* (): AsyncGenerator<ManifestEntry> {
      for (const [position, id] of ['a', 'b', 'a', '1', '01', '1'].entries()) yield { position: position + 1, id, urls: [`https://x.test/${id}.jpg`], labels: [] };
    };
    const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
    const ids: string[] = [];
    for await (const plan of planJobs(entries(), 'train', 'flat', stats, new SeenIds({ hash: () => 1 }))) ids.push('job' in plan ? plan.job.id : plan.record.id);
    assert.deepEqual(ids, ['a', 'b', '1', '01']);
    assert.deepEqual(stats.firstDuplicates, [{ id: 'a', position: 3 }, { id: '1', position: 6 }]);
  });
});

function record(position: number): IndexRecord {
  const id = String(position);
  return { position, id, labels: ['3'], urls: [`https://x.test/${id}.jpg`], key: `train/${id}.jpg`, outcome: { status: 'skipped', url: `https://x.test/${id}.jpg`, bytes: position, attempts: 0 } };
}

const expectedTable = (count: number): string => INDEX_HEADER + Array.from({ length: count }, (_, i) => formatIndexRow(indexRow(record(i + 1)))).join('');

describe('OrderedTable', () => {
  test('rows arriving in any order come out in sequence order, through sorted runs on disk; the runs are removed', async () => {
    const spill = await mkdtemp(join(dir, 'spill-'));
    const file = join(dir, 'shuffled.csv');
    const table = new OrderedTable(new TableFile(file), spill, 2000);
    // Sequence 0 last: everything waits behind it.
    const order = Array.from({ length: 500 }, (_, i) => (i * 263) % 500).filter((s) => s !== 0).concat([0]);
    for (const sequence of order) table.put(sequence, indexRow(record(sequence + 1)));
    assert.ok(table.runs > 5, `${table.runs} runs`);
    assert.ok((await readdir(spill)).length > 5);
    await table.commit();
    assert.equal(await readFile(file, 'utf8'), expectedTable(500));
    assert.deepEqual(await readdir(spill), []);
  });

  test('abandon() removes the runs and the partial table', async () => {
    const spill = await mkdtemp(join(dir, 'spill-'));
    const file = join(dir, 'abandoned.csv');
    const table = new OrderedTable(new TableFile(file), spill, 500);
    for (let sequence = 1; sequence < 100; sequence++) table.put(sequence, indexRow(record(sequence + 1)));
    assert.ok(table.runs > 0);
    await table.abandon();
    assert.deepEqual(await readdir(spill), []);
    assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('abandoned')), []);
  });

  test('a straggler in the pool: the index is still in manifest order', async () => {
    const count = 400;
    let reported = 0;
    let release!: () => void;
    const straggling = new Promise<void>((resolve) => (release = resolve));
    // Entry 1's existence check waits until every other entry has been reported.
    const store: Store = {
      async head(key) {
        if (key === 'train/1.jpg') await straggling;
        return { bytes: Number(key.slice(6, -4)) };
      },
      put: () => Promise.reject(new Error('nothing is fetched')),
      replace: () => Promise.reject(new Error('nothing is fetched')),
      names: async () => new Set(),
    };
    const entries = async function* (): AsyncGenerator<ManifestEntry> {
      for (let position = 1; position <= count; position++) yield { position, id: String(position), urls: [`https://x.test/${position}.jpg`], labels: ['3'] };
    };
    const spill = await mkdtemp(join(dir, 'spill-'));
    const file = join(dir, 'straggler.csv');
    const table = new OrderedTable(new TableFile(file), spill, 3000);
    const stats: PlanStats = { duplicates: 0, firstDuplicates: [] };
    const fetcher = { fetchImage: () => Promise.reject(new Error('nothing is fetched')) };
    await runPool(planJobs(entries(), 'train', 'flat', stats), store, fetcher, { concurrency: 8 }, (rec, sequence) => {
      table.put(sequence, indexRow(rec));
      if (++reported === count - 1) release();
    });
    assert.ok(table.runs > 0, 'rows behind the straggler went to disk');
    await table.commit();
    assert.equal(await readFile(file, 'utf8'), expectedTable(count));
    assert.deepEqual(await readdir(spill), []);
  });
});
