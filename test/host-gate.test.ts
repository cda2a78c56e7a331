// The per-origin gate on a clock moved by hand: caps, AIMD, pacing, Retry-After, bans and pauses
// shared through a fleet's HostPauses. No real time passes.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostGate, type Clock, type Entry, type Grant, type HostGateOptions, type HostPauses, type PauseReason } from '../engine/host-gate.ts';
import type { RateLimitInfo } from '../engine/fetch/rate-limit.ts';

/** A clock whose timers fire only when a test moves it. */
class FakeClock implements Clock {
  t = 1_000_000;
  #timers: Array<{ at: number; fn: () => void }> = [];
  now = (): number => this.t;
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn };
    this.#timers.push(timer);
    return () => {
      const at = this.#timers.indexOf(timer);
      if (at >= 0) this.#timers.splice(at, 1);
    };
  }
  /** Moves time on by `ms`, firing each timer at its time. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = this.#timers.filter((x) => x.at <= end).sort((x, y) => x.at - y.at)[0];
      if (!due) break;
      this.#timers.splice(this.#timers.indexOf(due), 1);
      this.t = Math.max(this.t, due.at);
      due.fn();
      await settled();
    }
    this.t = end;
    await settled();
  }
}

/** Lets resolved promises run their continuations. */
const settled = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const A = 'http://127.0.0.1:8001';
const B = 'http://127.0.0.1:8002';
const FOREVER = Number.MAX_SAFE_INTEGER;

function gate(options: Partial<HostGateOptions> = {}): { gate: HostGate; clock: FakeClock } {
  const clock = new FakeClock();
  return { gate: new HostGate({ hostConcurrency: 8, clock, ...options }), clock };
}

/** `count` requests for `origin`, each recorded when granted. */
function ask(g: HostGate, origin: string, count: number, patientUntil = FOREVER): { granted: Grant[]; entries: Array<Promise<Entry>> } {
  const granted: Grant[] = [];
  const entries = Array.from({ length: count }, () =>
    g.acquire(origin, patientUntil).then((entry) => {
      if (entry.ok) granted.push(entry.grant);
      return entry;
    }),
  );
  return { granted, entries };
}

/** Answers every granted request `ok`, round after round, until `rounds` have passed. */
async function answerRounds(granted: Grant[], rounds: number, answer: (grant: Grant) => void = (g) => g.done('ok')): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    await settled();
    for (const grant of granted.splice(0)) answer(grant);
  }
  await settled();
}

/** Answers rounds until `count` are in flight at `origin` (a ramp grows one request a round above the level answered). */
async function rampTo(g: HostGate, origin: string, granted: Grant[], count: number): Promise<void> {
  for (let round = 0; round < 40 && g.state(origin)!.inFlight < count; round++) await answerRounds(granted, 1);
  assert.equal(g.state(origin)!.inFlight, count);
}

describe('allowance (AIMD)', () => {
  test('starts at one request and grows one request a round above the level answered, until the cap, never past it', async () => {
    const { gate: g } = gate({ hostConcurrency: 6 });
    const { granted } = ask(g, A, 200);
    await settled();
    assert.equal(g.state(A)!.inFlight, 1);
    const seen: number[] = [];
    for (let round = 0; round < 12; round++) {
      seen.push(g.state(A)!.inFlight);
      for (const grant of granted.splice(0)) grant.done('ok');
      await settled();
    }
    // Not doubling: a round of answers would send several requests at once above any level answered.
    assert.deepEqual(seen.slice(0, 7), [1, 2, 3, 4, 5, 6, 6]);
    assert.ok(seen.every((n) => n <= 6), `over the cap: ${seen}`);
    assert.equal(g.state(A)!.limit, 6);
  });

  test('a 429 halves the allowance and what it came at is remembered: growth stops just below it', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 16 });
    const { granted } = ask(g, A, 1000);
    // Up to 8 in flight, and the 8th answers 429: the origin allows 7.
    await rampTo(g, A, granted, 8);
    granted.pop()!.done('throttled');
    assert.equal(g.state(A)!.limit, 4);
    for (const grant of granted.splice(0)) grant.done('ok');
    assert.equal(g.state(A)!.pauseReason, 'throttled', 'a 429 without Retry-After pauses the origin briefly');
    await clock.advance(1_000);
    await answerRounds(granted, 40);
    assert.equal(g.state(A)!.limit, 7, 'grown back to one under the level of the 429, not past it');
    assert.equal(g.state(A)!.inFlight, 7);
    // After a long quiet while the level is tried again: one request more, then another after a while more.
    await clock.advance(598_000);
    await answerRounds(granted, 20);
    assert.equal(g.state(A)!.limit, 7, 'not tried again within 10 minutes');
    await clock.advance(1_000);
    await answerRounds(granted, 20);
    assert.equal(g.state(A)!.limit, 8);
    await clock.advance(900_000);
    await answerRounds(granted, 20);
    assert.equal(g.state(A)!.limit, 9);
  });

  test('at a level and a pace answered before, one 429 may be the origin still counting a finished request; a second soon after lowers the ceiling', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 4 });
    const { granted } = ask(g, A, 1000);
    await answerRounds(granted, 8);
    assert.equal(g.state(A)!.inFlight, 4);
    const throttleOne = async (): Promise<void> => {
      // A quiet second first: the round with the 429 starts at a slower pace than answered before.
      await clock.advance(1_000);
      for (const grant of granted.splice(0)) grant.done('ok');
      await settled();
      const [first, ...rest] = granted.splice(0);
      first!.done('throttled');
      for (const grant of rest) grant.done('ok');
      await clock.advance(1_000);
      await answerRounds(granted, 10);
    };
    await throttleOne();
    assert.equal(g.state(A)!.limit, 4, 'grown back to where it was');
    await throttleOne();
    assert.equal(g.state(A)!.limit, 3);
  });

  test('at a level answered before, a 429 at a pace never answered is the pace: starts are spaced at once, the ceiling kept', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 4 });
    const { granted } = ask(g, A, 1000);
    // Up to 4 in flight, a round every 250 ms: about 16 starts a second answered.
    for (let round = 0; round < 12; round++) {
      await answerRounds(granted, 1);
      await clock.advance(250);
    }
    assert.equal(g.state(A)!.limit, 4);
    // Then faster, and a 429 at 3 in flight: the pace of the last second was too fast.
    await answerRounds(granted, 4);
    const round = granted.splice(0);
    round[0]!.done('throttled', 1_000);
    for (const grant of round.slice(1)) grant.done('ok');
    const spacing = g.state(A)!.spacingMs;
    // Slower than the last second's 25 starts, less the refused one, by 30% (they were not spaced); not as slow as the 16 a second answered before.
    assert.ok(Math.abs(spacing - 1000 / (0.7 * 24)) < 1e-9, `${spacing} ms between starts`);
    await clock.advance(1_000);
    for (let n = 0; n < 40; n++) {
      await answerRounds(granted, 1);
      await clock.advance(spacing);
    }
    assert.equal(g.state(A)!.limit, 4, 'the number in flight was not what the origin refused');
  });

  test('a Retry-After longer than the quiet time before a probe is an outage: the origin waits it out, nothing is learnt', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 4 });
    const { granted } = ask(g, A, 1000);
    await answerRounds(granted, 8);
    assert.equal(g.state(A)!.inFlight, 4);
    const [first, ...rest] = granted.splice(0);
    first!.done('throttled', 300_000);
    for (const grant of rest) grant.done('ok');
    assert.equal(g.state(A)!.pauseReason, 'retry-after');
    assert.equal(g.state(A)!.inFlight, 0, 'nothing starts during the wait');
    await clock.advance(300_000);
    await answerRounds(granted, 12);
    assert.deepEqual([g.state(A)!.limit, g.state(A)!.spacingMs], [4, 0]);
  });

  test('a 503 and a refused connection halve it too, once per round of requests', async () => {
    const { gate: g } = gate({ hostConcurrency: 8 });
    const { granted } = ask(g, A, 1000);
    for (let round = 0; round < 20 && g.state(A)!.limit < 8; round++) await answerRounds(granted, 1);
    await answerRounds(granted, 1);
    const round = granted.splice(0);
    assert.equal(round.length, 8);
    // Three 503s from requests started in the same round: one halving, not three.
    round[0]!.done('overloaded');
    round[1]!.done('overloaded');
    round[2]!.done('overloaded');
    assert.equal(g.state(A)!.limit, 4);
    for (const grant of round.slice(3)) grant.done('ok');
    await settled();
    assert.equal(g.state(A)!.limit, 5, 'four answers at four in flight: one more');
    const next = granted.splice(0);
    next[0]!.done('refused');
    assert.equal(g.state(A)!.limit, 3, 'halved, rounded up');
    assert.equal(g.state(A)!.pausedUntil, 0, 'neither pauses the origin without Retry-After');
    for (const grant of next.slice(1)) grant.done('ok');
  });

  test('at one request at a time, a 429 spaces the starts out; answers shrink the spacing back, not under what the 429 taught', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 1 });
    const { granted } = ask(g, A, 1000);
    // Ten starts within the second, each answered at once; the tenth is a 429.
    for (let n = 0; n < 9; n++) {
      await settled();
      granted.shift()!.done('ok');
      await clock.advance(100);
    }
    await settled();
    granted.shift()!.done('throttled', 500);
    assert.equal(g.state(A)!.pauseReason, 'retry-after');
    // 10 starts in the last second: the spacing doubles from 1000/10 ms, and at least 1000/(0.7 × 9) (not spaced before).
    assert.equal(g.state(A)!.spacingMs, 200);
    await clock.advance(500);
    const starts: number[] = [];
    for (let n = 0; n < 300; n++) {
      await settled();
      if (granted.length > 0) {
        starts.push(clock.t);
        granted.shift()!.done('ok');
      }
      await clock.advance(10);
    }
    const gaps = starts.slice(1).map((t, n) => t - starts[n]!);
    assert.ok(gaps.every((gap) => gap >= 1000 / (0.7 * 9) - 10), `starts closer than learnt: ${gaps}`);
    assert.ok(gaps[0]! >= 190 && gaps.at(-1)! < gaps[0]!, `the spacing shrinks: ${gaps}`);
    assert.ok(Math.abs(g.state(A)!.spacingMs - 1000 / (0.7 * 9)) < 1e-9, 'down to the learnt pace');
  });

  test('never more than the cap per origin, nor than the overall limit, whatever the order of answers', async () => {
    const { gate: g } = gate({ hostConcurrency: 3, concurrency: 4 });
    const a = ask(g, A, 300);
    const b = ask(g, B, 300);
    let maxA = 0;
    let maxTotal = 0;
    let seed = 7;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let step = 0; step < 400; step++) {
      await settled();
      const stateA = g.state(A)!.inFlight;
      maxA = Math.max(maxA, stateA, g.state(B)!.inFlight);
      maxTotal = Math.max(maxTotal, stateA + g.state(B)!.inFlight);
      const pool = [...a.granted, ...b.granted];
      if (pool.length === 0) break;
      const pick = pool[Math.floor(random() * pool.length)]!;
      for (const list of [a.granted, b.granted]) if (list.includes(pick)) list.splice(list.indexOf(pick), 1);
      pick.done('ok');
    }
    assert.equal(maxA, 3);
    assert.equal(maxTotal, 4);
    // Both origins were served: a slot freed overall goes to the origin that waited for one.
    assert.ok(g.state(A)!.waiting < 300 && g.state(B)!.waiting < 300);
  });
});

describe('pauses', () => {
  test('Retry-After pauses the whole origin; the impatient are told at once, the others go after it', async () => {
    const { gate: g, clock } = gate();
    const first = ask(g, A, 1);
    await settled();
    first.granted[0]!.done('throttled', 3_000);
    const patient = ask(g, A, 2);
    const impatient = await g.acquire(A, clock.t + 1_000);
    assert.deepEqual(impatient, { ok: false, until: clock.t + 3_000, reason: 'retry-after' });
    const other = ask(g, B, 1);
    await clock.advance(2_999);
    assert.equal(patient.granted.length, 0, 'granted during the pause');
    assert.equal(other.granted.length, 1, 'another origin is not paused');
    await clock.advance(1);
    assert.equal(patient.granted.length, 1);
  });

  test('a ban: 403s in a row after the origin had answered pause it 30 s, then 60 s; its requests wait instead of failing', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 6 });
    const { granted } = ask(g, A, 1000);
    await rampTo(g, A, granted, 6);
    await answerRounds(granted, 1);
    const round = granted.splice(0);
    assert.equal(round.length, 6);
    const verdicts = round.slice(0, 5).map((grant) => grant.forbidden());
    assert.deepEqual(await Promise.all(verdicts), [true, true, true, true, true]);
    const state = g.state(A)!;
    assert.equal(state.bans, 1);
    assert.equal(state.pauseReason, 'ban');
    assert.equal(state.pausedUntil, clock.t + 30_000);
    // 403s to requests started before the ban (the sixth, and those started while the first 403s
    // waited for a verdict) are part of it, not other bans.
    assert.equal(granted.length, 4);
    assert.deepEqual(await Promise.all([round[5]!, ...granted.splice(0)].map((grant) => grant.forbidden())), [true, true, true, true, true]);
    assert.equal(g.state(A)!.bans, 1);
    assert.equal(g.state(A)!.inFlight, 0, 'nothing is sent during the pause');
    await clock.advance(30_000);
    await settled();
    assert.equal(g.state(A)!.inFlight, 1, 'after the pause one request tries the origin');
    // Still banned: one request at a time, each 403 waiting for the next, until five in a row.
    const verdicts2: Array<Promise<boolean>> = [];
    for (let n = 0; n < 5; n++) {
      assert.equal(granted.length, 1);
      verdicts2.push(granted.shift()!.forbidden());
      await settled();
    }
    assert.deepEqual(await Promise.all(verdicts2), [true, true, true, true, true]);
    assert.equal(g.state(A)!.bans, 2);
    assert.equal(g.state(A)!.pausedUntil, clock.t + 60_000);
    await clock.advance(60_000);
    await settled();
    granted.shift()!.done('ok');
    await settled();
    assert.equal(g.state(A)!.pauseReason, 'ban');
    assert.ok(g.state(A)!.pausedUntil <= clock.t, 'the ban is over');
    assert.equal(g.state(A)!.inFlight, 2, 'and the allowance grows again');
  });

  test('a 403 of its own is not a ban: refused from the start, alone, or followed by an answer', async () => {
    const { gate: g } = gate();
    // An origin that never answered otherwise: no ban, no wait.
    const never = ask(g, A, 1);
    await settled();
    assert.equal(await never.granted[0]!.forbidden(), false);
    // Alone at an origin that had answered: nothing else can tell, so it is the image's own.
    const alone = ask(g, B, 2);
    await settled();
    alone.granted.shift()!.done('ok');
    await settled();
    assert.equal(await alone.granted.shift()!.forbidden(), false);
    // Others under way: the verdict waits for an answer to a request started after the 403.
    const many = ask(g, B, 6);
    await answerRounds(many.granted, 1);
    await settled();
    const [forbidden, before, ...rest] = many.granted.splice(0);
    let verdict: boolean | undefined;
    void forbidden!.forbidden().then((v) => (verdict = v));
    before!.done('ok'); // started before the 403 came: says nothing
    await settled();
    assert.equal(verdict, undefined);
    await settled();
    const after = many.granted.shift() ?? rest.shift()!;
    after.done('ok');
    for (const grant of [...rest, ...many.granted]) grant.done('ok');
    await settled();
    assert.equal(verdict, false);
    assert.equal(g.state(B)!.bans, 0);
  });
});

test('an origin that refuses many images of its own needs a longer streak before it is taken to ban us', async () => {
  const { gate: g } = gate({ hostConcurrency: 1 });
  const { granted } = ask(g, A, 200);
  // Half its images are 403 (S3 answers so for a missing key): alternate, 41 answers.
  const own: Array<Promise<boolean>> = [];
  for (let n = 0; n <= 40; n++) {
    await settled();
    const grant = granted.shift()!;
    if (n % 2 === 0) grant.done('ok');
    else own.push(grant.forbidden());
  }
  assert.deepEqual(await Promise.all(own), Array(20).fill(false));
  // Five 403s in a row are no ban there, nor ten (by chance about once in a thousand streaks):
  // it takes a streak that chance makes once in 10,000.
  const streak: Array<Promise<boolean>> = [];
  while (g.state(A)!.bans === 0 && streak.length < 30) {
    await settled();
    streak.push(granted.shift()!.forbidden());
  }
  assert.equal(streak.length, 13);
  assert.deepEqual(await Promise.all(streak), Array(13).fill(true));
  assert.equal(g.state(A)!.bans, 1);
});

describe('pauses shared by a fleet (HostPauses)', () => {
  class FakePauses implements HostPauses {
    readonly map = new Map<string, { until: number; reason: PauseReason }>();
    async get(origin: string): Promise<number> {
      return this.map.get(origin)?.until ?? 0;
    }
    async set(origin: string, untilMs: number, reason: PauseReason): Promise<void> {
      this.map.set(origin, { until: untilMs, reason });
    }
  }

  test("one function's Retry-After and ban pause the origin for the others", async () => {
    const pauses = new FakePauses();
    const clock = new FakeClock();
    const one = new HostGate({ hostConcurrency: 8, clock, pauses });
    const two = new HostGate({ hostConcurrency: 8, clock, pauses });
    const first = ask(one, A, 1);
    await settled();
    first.granted[0]!.done('throttled', 5_000);
    await settled();
    assert.deepEqual(pauses.map.get(A), { until: clock.t + 5_000, reason: 'retry-after' });
    // The other function: told at once when it cannot wait that long, made to wait when it can.
    assert.deepEqual(await two.acquire(A, clock.t + 1_000), { ok: false, until: clock.t + 5_000, reason: 'fleet' });
    const waiting = ask(two, A, 1, clock.t + 10_000);
    await clock.advance(4_999);
    assert.equal(waiting.granted.length, 0);
    await clock.advance(1);
    assert.equal(waiting.granted.length, 1);
    waiting.granted[0]!.done('ok');

    // A ban seen by the second function reaches the fleet as such.
    const more = ask(two, B, 20);
    await answerRounds(more.granted, 3);
    for (let round = 0; round < 5 && !pauses.map.has(B); round++) {
      for (const grant of more.granted.splice(0)) void grant.forbidden();
      await settled();
    }
    assert.equal(pauses.map.get(B)?.reason, 'ban');
    assert.equal(pauses.map.get(B)?.until, clock.t + 30_000);
  });

  test('a pace one function learnt from a 429 is kept by the others at their share, before any 429 of their own', async () => {
    // The fleet's pace as aws/lambda/host-pauses.ts keeps it: written as the pace this member learnt, read as its share of it.
    const share = 0.5;
    const fleet = new Map<string, number>();
    const pauses: HostPauses = {
      get: async () => 0,
      set: async () => {},
      pace: async (origin) => (fleet.get(origin) ?? 0) * share,
      learnt: async (origin, perSecond) => void fleet.set(origin, Math.min(fleet.get(origin) ?? Infinity, perSecond)),
    };
    const clock = new FakeClock();
    const one = new HostGate({ hostConcurrency: 1, clock, pauses });
    const two = new HostGate({ hostConcurrency: 1, clock, pauses });
    const first = ask(one, A, 20);
    // Ten starts 100 ms apart; the tenth is refused: 9 a second were too many for this member.
    for (let n = 0; n < 9; n++) {
      await settled();
      first.granted.shift()!.done('ok');
      await clock.advance(100);
    }
    await settled();
    first.granted.shift()!.done('throttled', 1_000);
    await settled();
    assert.ok(Math.abs(fleet.get(A)! - 0.7 * 9) < 1e-9, `the fleet's pace: ${fleet.get(A)} a second`);
    // The other member, which never met a 429 there, spaces its starts at its share from its first request on.
    const second = ask(two, A, 1);
    await settled();
    second.granted[0]!.done('ok');
    assert.ok(Math.abs(two.state(A)!.spacingMs - 1000 / (0.7 * 9 * share)) < 1e-9, `${two.state(A)!.spacingMs} ms between starts`);
  });

  test('a fleet store that fails is ignored: the local gate still works', async () => {
    const clock = new FakeClock();
    const broken: HostPauses = { get: () => Promise.reject(new Error('S3 down')), set: () => Promise.reject(new Error('S3 down')) };
    const g = new HostGate({ hostConcurrency: 2, clock, pauses: broken });
    const entry = await g.acquire(A, FOREVER);
    assert.ok(entry.ok);
    entry.grant.done('throttled', 1_000);
    assert.equal(g.state(A)!.pauseReason, 'retry-after');
  });
});

test('a waiter whose signal aborts leaves the queue with its reason', async () => {
  const { gate: g } = gate({ hostConcurrency: 1 });
  const held = await g.acquire(A, FOREVER);
  const controller = new AbortController();
  const waiting = g.acquire(A, FOREVER, controller.signal);
  await settled();
  controller.abort(new Error('stop'));
  await assert.rejects(waiting, /stop/);
  assert.equal(g.state(A)!.waiting, 0);
  assert.ok(held.ok);
  held.grant.done('ok');
});

describe('limits learnt as the simulated web counts them (local-cloud/sim-web.ts)', () => {
  /**
   * A host allowing `max` at once (or, with `flaky`, answering 429 to the requests it names and
   * nothing else), served round after round `everyMs` apart, for `ms`: the grants' levels as the host
   * saw them, and the times of its 429s.
   */
  async function serve(g: HostGate, clock: FakeClock, ms: number, refuse: (level: number, nth: number) => boolean, everyMs = 100): Promise<number[]> {
    let open = 0;
    let nth = 0;
    const round: Array<{ grant: Grant; refused: boolean }> = [];
    const crossings: number[] = [];
    // Many waiting, as the pool's parked jobs: a round of answers may grant several at once.
    for (let n = 0; n < 20_000; n++) {
      void g.acquire(A, FOREVER).then((entry) => {
        assert.ok(entry.ok);
        open++;
        const refused = refuse(open, ++nth);
        if (refused) crossings.push(clock.t);
        round.push({ grant: entry.grant, refused });
      });
    }
    for (const end = clock.t + ms; clock.t < end; ) {
      await settled();
      for (const { grant, refused } of round.splice(0)) {
        open--;
        grant.done(refused ? 'throttled' : 'ok', refused ? 1_000 : undefined);
      }
      await clock.advance(everyMs);
    }
    return crossings;
  }

  test('a ramp crosses a limit nobody stated with one request, not with all a round of answers sends at once (same burst)', async () => {
    // Seen in bench/sim-web.ts (host 0, 4 at once): a round of answers sent requests at 5 and at 6
    // in flight within 9 ms, both refused, before the first 429 was read.
    const { gate: g, clock } = gate({ hostConcurrency: 8 });
    const crossings = await serve(g, clock, 50_000, (level) => level > 4);
    assert.equal(crossings.length, 1, `429s at ${crossings}`);
    assert.equal(g.state(A)!.limit, 4);
  });

  test('a learnt limit is tried again only after a long quiet while, and never again once that try is refused too (after a quiet minute)', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 8 });
    const crossings = await serve(g, clock, 60 * 60_000, (level) => level > 4, 1_000);
    const first = crossings[0]!;
    assert.deepEqual(
      crossings.map((t) => t - first >= 10 * 60_000),
      [false, true],
      `429s at ${crossings.map((t) => t - first)} ms after the first: one try after 10 minutes, refused, then none`,
    );
    assert.equal(g.state(A)!.limit, 4);
  });

  test('a flaky 429 at a level never answered does not cut the host for good: tried again, it grows back to the cap', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 6 });
    // The host has no limit; one 429, to the first request at 5 in flight.
    let flaked = false;
    const crossings = await serve(g, clock, 30 * 60_000, (level) => !flaked && level === 5 && (flaked = true), 1_000);
    assert.equal(crossings.length, 1);
    assert.equal(g.state(A)!.limit, 6);
    assert.equal(g.state(A)!.inFlight, 6);
  });

  test('a host counting whole seconds: its 429 at a level and a pace answered before is the pace when the pace is over half the fastest answered', async () => {
    // Seen in bench/sim-web.ts (host 8, 11 a second): 13 starts within one second of ours had been
    // answered (it straddled two of the host's), then a 429 came at 12. The old gate took it for a
    // moment's overlap, learnt nothing, and crossed again after each pause (7 times in 35 s).
    const { gate: g, clock } = gate({ hostConcurrency: 2 });
    const { granted } = ask(g, A, 1000);
    // Two at a time every 150 ms: 14 starts within a second, all answered.
    for (let round = 0; round < 10; round++) {
      await answerRounds(granted, 1);
      await clock.advance(150);
    }
    await answerRounds(granted, 1);
    await clock.advance(1_000);
    // Two at a time every 180 ms: 12 within the second, and the last one is refused.
    for (let round = 0; round < 6; round++) {
      await answerRounds(granted, 1);
      await clock.advance(180);
    }
    await settled();
    assert.equal(granted.length, 2);
    granted[0]!.done('ok');
    granted[1]!.done('throttled', 1_000);
    granted.splice(0);
    const spacing = g.state(A)!.spacingMs;
    // 11 in the second before it, unspaced: 30% under.
    assert.ok(Math.abs(spacing - 1000 / (0.7 * 11)) < 1e-9, `${spacing} ms between starts`);
    await clock.advance(1_000);
    const starts: number[] = [];
    for (let n = 0; n < 300; n++) {
      await settled();
      for (const grant of granted.splice(0)) {
        starts.push(clock.t);
        grant.done('ok');
      }
      await clock.advance(10);
    }
    const crowded = starts.filter((t) => starts.filter((u) => u > t - 1000 && u <= t).length > 11);
    assert.deepEqual(crowded, [], 'never again more than 11 starts within a second');
  });

  test('a request without an answer (a reset, a time-out) gives its slot back a moment later: the origin may still count it', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 2 });
    const { granted } = ask(g, A, 10);
    await answerRounds(granted, 3);
    assert.equal(g.state(A)!.inFlight, 2);
    granted.shift()!.done('failed');
    await settled();
    assert.equal(granted.length, 1, 'not replaced at the same moment');
    await clock.advance(99);
    assert.equal(granted.length, 1);
    await clock.advance(1);
    assert.equal(granted.length, 2, 'replaced 100 ms later');
    assert.equal(g.state(A)!.inFlight, 2);
    // An answer, even an error page, frees its slot at once.
    granted.shift()!.done('ok');
    await settled();
    assert.equal(granted.length, 2);
  });
});

describe('tryAcquire: a slot at once, only when acquire() would not wait', () => {
  test('grants within the allowance and counts like acquire(); null at the allowance and past the overall limit', async () => {
    const { gate: g } = gate({ hostConcurrency: 4, concurrency: 3 });
    assert.equal(g.tryAcquire(A), null, 'an origin never seen goes through acquire()');
    const first = await g.acquire(A, FOREVER);
    assert.ok(first.ok);
    assert.equal(g.tryAcquire(A), null, 'the allowance starts at one');
    first.grant.done('ok'); // slow start: one more
    const fast = [g.tryAcquire(A), g.tryAcquire(A)];
    assert.ok(fast[0] && fast[1], 'room at the origin: granted at once');
    assert.equal(g.tryAcquire(A), null, 'the allowance (2) is reached');
    assert.equal(g.state(A)!.inFlight, 2);
    const queued = ask(g, A, 1);
    await settled();
    assert.equal(queued.granted.length, 0, 'acquire() counts the slots the fast path holds');
    const other = await g.acquire(B, FOREVER);
    assert.ok(other.ok);
    fast[1]!.done('ok');
    await settled();
    assert.equal(queued.granted.length, 1, 'a freed slot goes to the waiter first');
    assert.equal(g.tryAcquire(A), null, 'three in flight over all origins: the overall limit');
    for (const grant of [fast[0]!, queued.granted[0]!, other.grant]) grant.done('ok');
    assert.equal(g.state(A)!.inFlight + g.state(B)!.inFlight, 0);
  });

  test('null while the origin is paused and before its next start is due', async () => {
    const { gate: g, clock } = gate();
    const first = await g.acquire(A, FOREVER);
    assert.ok(first.ok);
    first.grant.done('throttled', 5_000);
    assert.equal(g.tryAcquire(A), null, 'paused by Retry-After');
    await clock.advance(5_000);
    const after = g.tryAcquire(A);
    assert.ok(after, 'the pause is over');
    assert.ok(g.state(A)!.spacingMs > 0);
    assert.equal(g.tryAcquire(A), null, 'a 429 at one at a time spaces the starts');
    after.done('ok');
  });
});

describe('limits the origin states (RateLimit, X-RateLimit-* fields)', () => {
  /** Starts granted within each of the next `seconds` seconds (of requests asked once per gate), every grant answered at once with `info`. */
  const asked = new WeakMap<HostGate, Grant[]>();
  async function startsPerSecond(g: HostGate, clock: FakeClock, info: RateLimitInfo | undefined, seconds: number, answer = (grant: Grant) => grant.done('ok', undefined, info)): Promise<number[]> {
    if (!asked.has(g)) asked.set(g, ask(g, A, 10_000).granted);
    const granted = asked.get(g)!;
    const counts: number[] = [];
    for (let s = 0; s < seconds; s++) {
      let count = 0;
      for (let ms = 0; ms < 1000; ms += 10) {
        await settled();
        count += granted.length;
        for (const grant of granted.splice(0)) answer(grant);
        await clock.advance(10);
      }
      counts.push(count);
    }
    return counts;
  }

  test('a stated quota over a window paces the origin under it, and a probe never goes past it', async () => {
    const { gate: g, clock } = gate({ probeAfterMs: 1_000 });
    const counts = await startsPerSecond(g, clock, { perSecond: 10 }, 4);
    // 10 a second, 10% under: spaced 111 ms (the first second also holds the one before the answer).
    assert.ok(counts.every((c) => c <= 10), `starts a second: ${counts}`);
    assert.ok(counts.slice(1).every((c) => c >= 8), `starts a second: ${counts}`);
    assert.ok(g.state(A)!.spacingMs >= 111);
    // A 429 anyway (the host's count is not ours) teaches a slower pace; its probes, a tenth faster
    // after 1, 2, 4, 8 s of quiet, stop at the stated one.
    let throttled = false;
    await startsPerSecond(g, clock, undefined, 1, (grant) => (throttled ? grant.done('ok') : ((throttled = true), grant.done('throttled'))));
    const spacings: number[] = [];
    for (let s = 0; s < 16; s++) {
      await startsPerSecond(g, clock, undefined, 1);
      spacings.push(Math.round(g.state(A)!.spacingMs));
    }
    assert.ok(spacings.every((ms) => ms >= 111), `spacings: ${spacings}`);
    assert.equal(spacings.at(-1), 111, `probed down to the stated pace: ${spacings}`);
  });

  test('what is left of the window bounds the starts until its reset, less ours sent since', async () => {
    const { gate: g, clock } = gate({ hostConcurrency: 3 });
    const { granted } = ask(g, A, 20);
    await rampTo(g, A, granted, 3);
    await answerRounds(granted, 1);
    const inFlight = granted.length;
    // The oldest of them says as many are left as were started after it, for 500 ms: they took them.
    granted.shift()!.done('ok', undefined, { remaining: inFlight - 1, resetMs: 500 });
    await settled();
    assert.equal(granted.length, inFlight - 1, 'nothing more started');
    assert.equal(g.state(A)!.pauseReason, 'retry-after');
    await clock.advance(499);
    assert.equal(granted.length, inFlight - 1);
    await clock.advance(1);
    assert.ok(granted.length > inFlight - 1, 'started again at the reset');
  });

  test('the last start a window has left pauses the origin until the reset', async () => {
    const { gate: g, clock } = gate();
    const { granted } = ask(g, A, 20);
    await settled();
    granted.shift()!.done('ok', undefined, { remaining: 2, resetMs: 800 });
    await settled();
    assert.equal(granted.length, 2);
    for (const grant of granted.splice(0)) grant.done('ok');
    await clock.advance(799);
    assert.equal(granted.length, 0, 'two left, two started');
    await clock.advance(1);
    assert.ok(granted.length > 0);
  });

  test('a quota without a window is paced over the longest reset stated, rounded up to a second', async () => {
    const { gate: g, clock } = gate();
    await startsPerSecond(g, clock, { limit: 5, remaining: 100, resetMs: 1_700 }, 1);
    // 5 in 2 s, 10% under: 444 ms apart.
    assert.ok(Math.abs(g.state(A)!.spacingMs - 1000 / (0.9 * 2.5)) < 1, `spacing ${g.state(A)!.spacingMs}`);
  });

  test('the stated pace is shared with the fleet as a learnt one, once', async () => {
    const learnt: number[] = [];
    const pauses: HostPauses = { get: async () => 0, set: async () => {}, pace: async () => 0, learnt: async (_origin, perSecond) => void learnt.push(perSecond) };
    const clock = new FakeClock();
    const g = new HostGate({ hostConcurrency: 8, clock, pauses });
    const { granted } = ask(g, A, 5);
    for (let round = 0; round < 5; round++) {
      await clock.advance(300);
      for (const grant of granted.splice(0)) grant.done('ok', undefined, { perSecond: 20 });
    }
    assert.deepEqual(learnt, [18]);
    // A fleet that keeps a stated quota itself is given the quota and its window instead.
    const stated: Array<[number, number]> = [];
    const fleet = new HostGate({ hostConcurrency: 8, clock, pauses: { ...pauses, stated: async (_origin, quota, windowMs) => void stated.push([quota, windowMs]) } });
    const more = ask(fleet, A, 1);
    await settled();
    more.granted[0]!.done('ok', undefined, { perSecond: 0.5, windowMs: 60_000 });
    assert.deepEqual(stated, [[30, 60_000]]);
    assert.deepEqual(learnt, [18]);
  });
});
