// The shared byte rate of sync --bwlimit, on a clock of the test's own: what it grants by any
// moment stays within burst + rate × time, concurrent takers included, and it does not hold back
// more than the rate requires.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket, type Clock } from '../engine/token-bucket.ts';

/** A clock that only moves when a taker sleeps: to the end of that sleep. */
function virtualClock(): Clock & { readonly time: number } {
  let time = 0;
  return {
    get time() {
      return time;
    },
    now: () => time,
    sleep: async (ms) => {
      time = Math.max(time, time + ms);
    },
  };
}

test('granted bytes stay within burst + rate × time, and the rate is reached', async () => {
  const clock = virtualClock();
  const rate = 1024 * 1024; // 1 MiB/s
  const bucket = new TokenBucket(rate, { burst: 64 * 1024, clock });
  const grants: Array<{ at: number; total: number }> = [];
  let total = 0;
  // 8 MiB in 16 KiB reads, as a body arrives.
  for (let i = 0; i < 512; i++) {
    await bucket.take(16 * 1024);
    total += 16 * 1024;
    grants.push({ at: clock.time, total });
  }
  assert.equal(bucket.granted, 8 * 1024 * 1024);
  for (const g of grants) assert.ok(g.total <= bucket.burst + (rate * g.at) / 1000 + 1e-6, `${g.total} bytes by ${g.at} ms`);
  // 8 MiB at 1 MiB/s, less the first burst: 7.94 s, not more.
  const seconds = clock.time / 1000;
  assert.ok(seconds >= (8 * 1024 * 1024 - bucket.burst) / rate - 1e-9 && seconds <= 8, `${seconds} s`);
});

test('concurrent takers are served in order and share the rate', async () => {
  let time = 0;
  const wakeups: number[] = [];
  // Sleeps end in the order their deadlines come; the clock jumps to each.
  const clock: Clock = { now: () => time, sleep: (ms) => { const at = time + ms; wakeups.push(at); return Promise.resolve().then(() => { time = Math.max(time, at); }); } };
  const bucket = new TokenBucket(100_000, { burst: 10_000, clock });
  const order: number[] = [];
  await Promise.all(Array.from({ length: 10 }, (_, i) => bucket.take(10_000).then(() => order.push(i))));
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  // The first 10 KB pass at once (the burst); each further 10 KB 100 ms later.
  assert.deepEqual(wakeups, [100, 200, 300, 400, 500, 600, 700, 800, 900]);
});

test('an idle spell refills the burst, and no more than it', async () => {
  const clock = virtualClock();
  const bucket = new TokenBucket(1000, { burst: 500, clock });
  await bucket.take(500);
  assert.equal(clock.time, 0, 'the burst passes at once');
  await bucket.take(500);
  assert.equal(clock.time, 500);
  await clock.sleep(10_000); // idle for 10 s
  const before = clock.time;
  await bucket.take(500);
  assert.equal(clock.time, before, 'a full burst again');
  await bucket.take(1000);
  assert.equal(clock.time, before + 1000, 'but not ten seconds of savings');
});

test('a rate of 0 is refused', () => {
  assert.throws(() => new TokenBucket(0), RangeError);
});
