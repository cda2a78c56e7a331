// The pool's scheduling: a host whose images wait (paused, or at its limit) holds a bounded number
// of workers, its later jobs parked while the other hosts' jobs go on; parking is bounded too, and
// every entry still ends as one record with its own sequence number.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchResult } from '../engine/fetch/fetcher.ts';
import type { IndexRecord } from '../engine/index-table.ts';
import type { ManifestEntry } from '../engine/job.ts';
import { planJobs, type PlanStats } from '../engine/plan.ts';
import { runPool } from '../engine/pool.ts';
import type { Store } from '../engine/store.ts';

const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1, 0xff, 0xd9]);

function memoryStore(): Store & { objects: Map<string, Uint8Array> } {
  const objects = new Map<string, Uint8Array>();
  return {
    objects,
    head: async (key) => (objects.has(key) ? { bytes: objects.get(key)!.length } : null),
    async put(key, body) {
      if (objects.has(key)) return false;
      objects.set(key, body);
      return true;
    },
    async replace(key, body) {
      objects.set(key, body);
    },
    names: async () => new Set(),
  };
}

/** Images of `held.test` wait until the test releases them, as at a paused host; the others come at once. */
function holdingFetcher(): { fetchImage: (urls: readonly string[]) => Promise<FetchResult>; waiting: () => number; release: () => void; onHold: (f: () => void) => void } {
  let released = false;
  let waiters: Array<() => void> = [];
  let onHold = (): void => {};
  return {
    async fetchImage(urls) {
      const url = urls[0]!;
      if (!released && url.startsWith('https://held.test/')) {
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          onHold();
        });
      }
      return { ok: true, url, body: Buffer.concat([JPEG, Buffer.from(url)]), format: 'jpeg', contentType: 'image/jpeg', attempts: 1, httpStatus: 200, sha256: '' };
    },
    waiting: () => waiters.length,
    release() {
      released = true;
      for (const resolve of waiters.splice(0)) resolve();
      waiters = [];
    },
    onHold: (f) => (onHold = f),
  };
}

const stats = (): PlanStats => ({ duplicates: 0, firstDuplicates: [] });

/** Every entry once, its record under its own sequence number, its bytes stored. */
function assertAccounted(records: Map<number, IndexRecord>, count: number, store: ReturnType<typeof memoryStore>): void {
  assert.equal(records.size, count);
  for (let sequence = 0; sequence < count; sequence++) {
    const record = records.get(sequence);
    assert.ok(record, `sequence ${sequence} has no record`);
    assert.equal(record.position, sequence + 1);
    assert.equal(record.outcome.status, 'fetched', `${record.id}: ${record.outcome.status}`);
    assert.deepEqual(store.objects.get(record.key!), Buffer.concat([JPEG, Buffer.from(record.urls[0]!)]));
  }
}

test("a held host's images take at most perOrigin workers; the other hosts' images all complete meanwhile", async () => {
  // Every other entry is at the held host, from the first on: with nothing parked, its images would take every worker.
  const count = 400;
  const entries = async function* (): AsyncGenerator<ManifestEntry> {
    for (let position = 1; position <= count; position++) {
      const host = position % 2 === 1 ? 'held.test' : `h${position % 7}.test`;
      yield { position, id: String(position), urls: [`https://${host}/${position}.jpg`], labels: [] };
    }
  };
  const store = memoryStore();
  const fetcher = holdingFetcher();
  const concurrency = 8;
  const perOrigin = 2;
  const records = new Map<number, IndexRecord>();
  const others = count / 2;
  let othersDone = 0;
  let resolveOthers!: () => void;
  let stuck!: (error: Error) => void;
  const othersComplete = new Promise<void>((resolve, reject) => ([resolveOthers, stuck] = [resolve, reject]));
  fetcher.onHold(() => {
    if (fetcher.waiting() > perOrigin) stuck(new Error(`${fetcher.waiting()} workers wait for the held host (at most ${perOrigin} may)`));
  });
  const pool = runPool(planJobs(entries(), 'train', 'flat', stats()), store, fetcher, { concurrency, perOrigin }, (record, sequence) => {
    assert.ok(!records.has(sequence), `sequence ${sequence} twice`);
    records.set(sequence, record);
    if (!record.urls[0]!.startsWith('https://held.test/') && ++othersDone === others) resolveOthers();
  });
  await othersComplete;
  assert.equal(fetcher.waiting(), perOrigin);
  assert.equal(records.size, others, 'no image of the held host completed while it was held');
  fetcher.release();
  await pool;
  assertAccounted(records, count, store);
});

test('parked jobs are bounded: the plan is read no further than the parked limit ahead of what is under way', async () => {
  const count = 100;
  const parked = 10;
  const concurrency = 4;
  const perOrigin = 2;
  let read = 0;
  let completed = 0;
  let mostAhead = 0;
  const entries = async function* (): AsyncGenerator<ManifestEntry> {
    for (let position = 1; position <= count; position++) {
      read++;
      mostAhead = Math.max(mostAhead, read - completed);
      yield { position, id: String(position), urls: [`https://held.test/${position}.jpg`], labels: [] };
    }
  };
  const store = memoryStore();
  const fetcher = holdingFetcher();
  let bothHeld!: () => void;
  const held = new Promise<void>((resolve) => (bothHeld = resolve));
  fetcher.onHold(() => {
    if (fetcher.waiting() === perOrigin) bothHeld();
  });
  const records = new Map<number, IndexRecord>();
  const pool = runPool(planJobs(entries(), 'train', 'flat', stats()), store, fetcher, { concurrency, perOrigin, parked }, (record, sequence) => {
    records.set(sequence, record);
    completed++;
  });
  await held;
  // Let every worker read what it may (no timer: the plan and the store answer at once).
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(fetcher.waiting(), perOrigin);
  assert.ok(read >= perOrigin + parked, `read ${read}: the workers stopped before parking ${parked}`);
  fetcher.release();
  await pool;
  // Under way, parked, and one read in progress per worker at most.
  assert.ok(mostAhead <= perOrigin + parked + concurrency, `read ${mostAhead} entries ahead of the completed ones`);
  assertAccounted(records, count, store);
});
