// The fleet's host notes as one container keeps them (aws/lambda/host-pauses.ts), over a bucket
// whose answers the test holds and releases: how soon another function's pause reaches a busy
// container, and that a container's own writes are neither lost to each other nor to a read.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { HOST_NOTE_STALE_MS, HOST_NOTE_TTL_MS, S3HostPauses } from '../aws/lambda/host-pauses.ts';
import type { HostNote } from '../aws/bucket.ts';

/** A bucket of notes; requests answered at once, or held until release() while `holding`. */
class FakeBucket {
  readonly objects = new Map<string, string>();
  gets = 0;
  puts = 0;
  putsAtOnce = 0;
  mostPutsAtOnce = 0;
  holding = false;
  #held: Array<() => void> = [];
  #pending = new Set<Promise<unknown>>();

  readonly client = {
    send: (command: unknown): Promise<unknown> => {
      const done = this.#answer(command);
      this.#pending.add(done);
      void done.finally(() => this.#pending.delete(done)).catch(() => {});
      return done;
    },
  } as unknown as S3Client;

  async #answer(command: unknown): Promise<unknown> {
    if (command instanceof GetObjectCommand) {
      this.gets++;
      // What the bucket holds when the request arrives, answered when released.
      const text = this.objects.get(command.input.Key!);
      await this.#turn();
      if (text === undefined) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: { transformToString: async () => text } };
    }
    if (command instanceof PutObjectCommand) {
      this.puts++;
      this.mostPutsAtOnce = Math.max(this.mostPutsAtOnce, ++this.putsAtOnce);
      try {
        await this.#turn();
        this.objects.set(command.input.Key!, String(command.input.Body));
      } finally {
        this.putsAtOnce--;
      }
      return {};
    }
    throw new Error(`unexpected command ${String(command)}`);
  }

  #turn(): Promise<void> {
    return this.holding ? new Promise((resolve) => this.#held.push(resolve)) : Promise.resolve();
  }

  /** Answers the held requests, the last sent first (as two writes in flight may land), until none is left. */
  async release(): Promise<void> {
    // Everything the code under test sends without waiting on the bucket is sent by now (no I/O in
    // this bucket: only promise jobs, all run before the next turn of the event loop).
    await new Promise((resolve) => setImmediate(resolve));
    this.holding = false;
    while (this.#held.length > 0 || this.#pending.size > 0) {
      for (const answer of this.#held.splice(0).reverse()) answer();
      await Promise.allSettled([...this.#pending]);
    }
  }

  /** Waits for every request sent so far (and those they lead to). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  note(): HostNote {
    assert.equal(this.objects.size, 1);
    return JSON.parse([...this.objects.values()][0]!) as HostNote;
  }
}

const host = 'https://limited.example';

describe('host notes in a container', () => {
  it('another function\'s pause reaches a busy container a TTL after its last read, read in the background', async () => {
    assert.ok(HOST_NOTE_TTL_MS <= 1_000 && HOST_NOTE_STALE_MS > HOST_NOTE_TTL_MS);
    const bucket = new FakeBucket();
    let now = Date.UTC(2026, 0, 1);
    const clock = { now: () => now, share: 1 };
    const [mine, theirs] = [new S3HostPauses(bucket.client, 'b', clock), new S3HostPauses(bucket.client, 'b', clock)];
    assert.equal(await mine.get(host), 0, 'no note: not paused');
    assert.equal(bucket.gets, 1);
    const until = now + 60_000;
    await theirs.set(host, until, 'retry-after');
    await theirs.learnt(host, 4);
    now += HOST_NOTE_TTL_MS / 2;
    assert.equal(await mine.get(host), 0, 'within the TTL: what was read');
    assert.equal(bucket.gets, 1 + 1, 'no read of mine within the TTL (one of theirs, before their write)');
    now += HOST_NOTE_TTL_MS;
    // Past the TTL: the answer is still what was read (nothing waits on the bucket), and a read is under way.
    bucket.holding = true;
    assert.equal(await mine.get(host), 0);
    assert.equal(bucket.gets, 3, 'read again in the background');
    await bucket.release();
    assert.equal(await mine.get(host), until, 'the pause, a TTL after the last read');
    assert.equal(await mine.pace(host), 4, 'and the pace');
    assert.equal(bucket.gets, 3);
  });

  it('waits for the read when what it knows is older than the stale limit', async () => {
    const bucket = new FakeBucket();
    let now = Date.UTC(2026, 0, 2);
    const clock = { now: () => now, share: 1 };
    const [mine, theirs] = [new S3HostPauses(bucket.client, 'b', clock), new S3HostPauses(bucket.client, 'b', clock)];
    assert.equal(await mine.get(host), 0);
    await theirs.set(host, now + 60_000, 'ban');
    now += HOST_NOTE_STALE_MS;
    assert.equal(await mine.get(host), now - HOST_NOTE_STALE_MS + 60_000);
  });

  it('a stated quota is kept by the fleet together: a start a window left per function that may send there, evenly spaced shares within it', async () => {
    const bucket = new FakeBucket();
    const now = Date.UTC(2026, 0, 5);
    // Two groups per origin: two functions at once, each half of the fleet's pace.
    const [mine, theirs] = [new S3HostPauses(bucket.client, 'b', { now: () => now, share: 0.5 }), new S3HostPauses(bucket.client, 'b', { now: () => now, share: 0.5 })];
    for (const [quota, fleet] of [[20, 18], [7, 5], [5, 3], [4, 1]] as const) {
      bucket.objects.clear();
      const origin = `${host}/${quota}`;
      await mine.stated(origin, quota, 1_000);
      assert.equal(bucket.note().pace, fleet, `quota ${quota}`);
      const each = await mine.pace(origin);
      assert.equal(each, fleet / 2);
      // Two functions, each evenly spaced at its share, fit floor(share) + 1 starts into a second: within the quota.
      assert.ok(2 * (Math.floor(each) + 1) <= quota, `quota ${quota}: ${each} each`);
    }
    bucket.objects.clear();
    await theirs.stated(`${host}/60`, 600, 60_000);
    assert.equal(bucket.note().pace, 540 / 60);
  });

  it('a pace and a pause written in a row: one PUT at a time, the note keeps both', async () => {
    const bucket = new FakeBucket();
    const now = Date.UTC(2026, 0, 3);
    const mine = new S3HostPauses(bucket.client, 'b', { now: () => now, share: 1 });
    assert.equal(await mine.get(host), 0);
    // A 429: the gate reports the pace it learnt, then pauses the origin, without waiting for either.
    bucket.holding = true;
    const writes = [mine.learnt(host, 3), mine.set(host, now + 2_000, 'retry-after')];
    await bucket.release();
    await Promise.all(writes);
    assert.equal(bucket.mostPutsAtOnce, 1, 'never two PUTs of one note at once');
    const note = bucket.note();
    assert.deepEqual([note.pace, note.pausedUntil, note.reason], [3, now + 2_000, 'retry-after']);
  });

  it('a pause set while a read is under way is not lost to that read\'s older answer', async () => {
    const bucket = new FakeBucket();
    let now = Date.UTC(2026, 0, 4);
    const mine = new S3HostPauses(bucket.client, 'b', { now: () => now, share: 1 });
    assert.equal(await mine.get(host), 0);
    now += HOST_NOTE_TTL_MS + 1;
    bucket.holding = true;
    assert.equal(await mine.get(host), 0, 'a read in the background, held');
    const setting = mine.set(host, now + 30_000, 'ban');
    await bucket.release();
    await setting;
    await bucket.settled();
    assert.equal(await mine.get(host), now + 30_000);
    assert.equal(bucket.note().pausedUntil, now + 30_000);
  });
});
