// sync's download ramp on a hand-moved clock: the rate each window is what the test says a link
// gives at the ramp's level, so every decision is checked without a network or wall time.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DownloadRamp } from '../aws/home/download-ramp.ts';
import { DEFAULT_SYNC_CONCURRENCY, RAMP_MOST, rampBounds } from '../aws/home/sync.ts';

const KIB30 = 30 * 1024;

/** Runs `windows` windows of 1 s; `link` says the bytes a window brings at a level (and its errors). Returns the level after each. */
function drive(ramp: DownloadRamp, windows: number, link: (level: number, window: number) => { bytes: number; errors?: number }): number[] {
  let now = 0;
  ramp.tick(now);
  const levels: number[] = [];
  for (let w = 0; w < windows; w++) {
    const { bytes, errors = 0 } = link(ramp.level, w);
    ramp.received(bytes);
    for (let b = 0; b < Math.floor(bytes / KIB30); b++) ramp.body(KIB30);
    for (let e = 0; e < errors; e++) ramp.error();
    now += 1000;
    levels.push(ramp.tick(now));
  }
  return levels;
}

/** A link whose rate is the downloads' round trips up to `capacity` bytes a window: each download brings 3 bodies a window. */
const latencyBound = (capacity: number) => (level: number) => ({ bytes: Math.min(capacity, level * 3 * KIB30) });

test('grows by half a step while each step raises the rate by a fifth, up to its most', () => {
  const ramp = new DownloadRamp({ start: 64, most: 256 });
  // A link far faster than 256 downloads fill: every step pays.
  const levels = drive(ramp, 12, latencyBound(Infinity));
  // warming twice, measuring (step), settling, judging (step), …; the last step, capped, needs less.
  assert.deepEqual(levels, [64, 64, 96, 96, 144, 144, 216, 216, 256, 256, 256, 256]);
  assert.ok(levels.every((l) => l <= 256));
});

test('a step that did not raise the rate is taken back, and tried again only after a long while', () => {
  // Full at about 64 downloads' worth: 96 bring nothing more.
  const ramp = new DownloadRamp({ start: 64, most: 256 });
  const levels = drive(ramp, 40, latencyBound(64 * 3 * KIB30));
  assert.deepEqual(levels.slice(0, 5), [64, 64, 96, 96, 64]);
  // Held at 64 for 30 windows, then probed once more, and taken back again.
  assert.deepEqual(levels.slice(5, 35), Array(30).fill(64));
  assert.deepEqual(levels.slice(35), [96, 96, 64, 64, 64]);
  assert.equal(levels.at(-1), 64);
});

test('a step that raised the rate by less than a fifth is taken back: the swings of a full link', () => {
  for (const more of [1.05, 1.15]) {
    const ramp = new DownloadRamp({ start: 64, most: 256 });
    // 96 downloads bring 5% (15%) more than 64.
    const levels = drive(ramp, 6, (level) => ({ bytes: level > 64 ? 64 * 3 * KIB30 * more : 64 * 3 * KIB30 }));
    assert.deepEqual(levels, [64, 64, 96, 96, 64, 64]);
  }
});

test('no verdict while nothing comes: the first bytes are a few round trips away', () => {
  const ramp = new DownloadRamp({ start: 64, most: 256 });
  const levels = drive(ramp, 6, (level, w) => ({ bytes: w < 3 ? 0 : level * 3 * KIB30 }));
  // Three empty windows, then warming (w3, w4), measuring and a step (w5).
  assert.deepEqual(levels, [64, 64, 64, 64, 64, 96]);
});

test('backs off by a quarter when transient errors rise, never below its least, and grows again', () => {
  const ramp = new DownloadRamp({ start: 64, most: 256 });
  // Errors in 3 windows: 64 → 48 → 36 → 27; then clean and faster with every download.
  const levels = drive(ramp, 8, (level, w) => ({ bytes: level * 3 * KIB30, errors: w < 3 ? 20 : 0 }));
  assert.deepEqual(levels.slice(0, 3), [48, 36, 27]);
  assert.deepEqual(levels.slice(3), [27, 27, 41, 41, 62]);
  // A few errors among many bodies are the link's 1% loss, not a reason to back off.
  const calm = new DownloadRamp({ start: 64, most: 256 });
  assert.deepEqual(drive(calm, 3, (level) => ({ bytes: level * 3 * KIB30, errors: 4 })), [64, 64, 96]);
  const floor = new DownloadRamp({ start: 10, most: 10, least: 8 });
  assert.deepEqual(drive(floor, 3, () => ({ bytes: 1000, errors: 50 })), [8, 8, 8]);
});

test('an explicit -c is never exceeded: pinned, the ramp only backs off below it and comes back to it', () => {
  assert.deepEqual(rampBounds({ concurrency: 16 }), { start: 16, most: 16 });
  assert.deepEqual(rampBounds({ concurrency: 500 }), { start: 500, most: 500 });
  assert.deepEqual(rampBounds({}), { start: DEFAULT_SYNC_CONCURRENCY, most: RAMP_MOST });
  // A shared rate (--bwlimit) is not raised by more downloads: the default is not grown.
  assert.deepEqual(rampBounds({ bandwidth: {} }), { start: DEFAULT_SYNC_CONCURRENCY, most: DEFAULT_SYNC_CONCURRENCY });
  const pinned = new DownloadRamp(rampBounds({ concurrency: 16 }));
  // A link that rewards every download, and errors for a while.
  const levels = drive(pinned, 60, (level, w) => ({ bytes: level * 3 * KIB30, errors: w >= 10 && w < 12 ? 40 : 0 }));
  assert.ok(levels.every((l) => l <= 16), `never above 16: ${levels}`);
  assert.deepEqual(levels.slice(9, 13), [16, 12, 9, 9]);
  assert.equal(levels.at(-1), 16, 'back at the pin once the errors stopped');
});

test('large bodies: no step past the bytes held at once', () => {
  const ramp = new DownloadRamp({ start: 64, most: 256, maxBytesInFlight: 256 * 1024 * 1024 });
  let now = 0;
  ramp.tick(now);
  for (let w = 0; w < 6; w++) {
    // 5 MiB bodies: 64 of them hold 320 MiB already.
    ramp.received(64 * 5 * 1024 * 1024 * (w + 1));
    ramp.body(5 * 1024 * 1024);
    assert.equal(ramp.tick((now += 1000)), 64);
  }
});
