// Politeness per origin (scheme, host and port, as undici pools connections), for `run` and the
// fetch function alike. At most `hostConcurrency` requests at once to an origin, fewer when it
// pushes back: a 429, a 503 or a refused connection halves its allowance (AIMD; answers grow it
// back by one per allowance's worth), and when one at a time is still too fast the starts are
// spaced out (the spacing doubles, then shrinks step by step). What a 429 teaches is remembered
// (the number in flight, or the pace, it came at) and only tested again after a long quiet while
// (10 min), never once a test was refused too; above the most in flight ever answered one request
// goes at a time. So a limit is crossed once, not on every probe nor by a burst. Retry-After pauses
// the whole origin; so does a ban (403 to everything after it had answered), 30 s doubling, its
// images waiting meanwhile.
// A host that states its limit (RateLimit / X-RateLimit-* fields) is paced under it and not sent
// more than it says is left before its window resets, so it is never crossed to be learnt.
// HostPauses shares pauses across a fleet of fetch functions.

import { closeSync, openSync, writeSync } from 'node:fs';
import type { RateLimitInfo } from './fetch/rate-limit.ts';

/** Why an origin is paused. */
export type PauseReason = 'retry-after' | 'ban' | 'throttled';

/** Pauses shared by every fetcher of a fleet (the cloud keeps them in the bucket). */
export interface HostPauses {
  /** ms epoch until which the origin is paused, 0 if not */
  get(origin: string): Promise<number>;
  set(origin: string, untilMs: number, reason: PauseReason): Promise<void>;
  /** Requests a second this member may send the origin, from a pace another member learnt; 0: none known. */
  pace?(origin: string): Promise<number>;
  /** A pace this gate learnt from a 429 (its own requests a second, the margin kept), for the fleet to share. */
  learnt?(origin: string, perSecond: number): Promise<void>;
  /** A quota per window (ms) the origin stated, for the fleet to keep together (else shared as learnt). */
  stated?(origin: string, quota: number, windowMs: number): Promise<void>;
}

/** Time and timers: the system's, or a test's that it moves by hand. */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; returns what cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

export interface HostGateOptions {
  /** Requests at once to one origin, at most. */
  hostConcurrency: number;
  /** Requests at once over all origins; a slot is taken only once the origin is ready. */
  concurrency?: number;
  pauses?: HostPauses;
  clock?: Clock;
  /** The first ban's pause; each further ban of the origin doubles it. */
  banPauseMs?: number;
  /** The pause after a 429 without Retry-After. */
  throttlePauseMs?: number;
  /** 403s in a row (after the origin had answered) that make a ban. */
  banAfter?: number;
  /** Quiet time before a limit learnt from a 429 is tried again (10 min); doubles at each 429. */
  probeAfterMs?: number;
}

/** What the answer to a granted request says about its origin's load. */
export type Answer =
  | 'ok' // an answer within its limits (an image, a 404, …)
  | 'throttled' // 429
  | 'overloaded' // 503
  | 'refused' // connection refused
  | 'failed'; // nothing learnt (a reset, a time-out, another 5xx)

export interface Grant {
  /**
   * Frees the slot and adapts the origin to the answer; `retryAfterMs` pauses the whole origin;
   * `rateLimit`, the limit the answer's headers state, paces it.
   */
  done(answer: Answer, retryAfterMs?: number, rateLimit?: RateLimitInfo): void;
  /**
   * For a 403: frees the slot, and tells whether the origin is banning us (true: wait at the gate
   * and try again) or the 403 is this request's own (false). Waits for the origin's next answers
   * when they decide it, never when nothing else is under way there.
   */
  forbidden(signal?: AbortSignal): Promise<boolean>;
}

export type Entry = { ok: true; grant: Grant } | { ok: false; until: number; reason: PauseReason | 'fleet' };

export interface OriginState {
  inFlight: number;
  /** Requests at once the origin is allowed now. */
  limit: number;
  spacingMs: number;
  pausedUntil: number;
  pauseReason: PauseReason | 'fleet' | null;
  bans: number;
  waiting: number;
}

/**
 * CLOUDFETCH_GATE_TRACE=<file>: every grant, answer and lesson appended to the file, one line each
 * (ms epoch, origin, event, details), to set beside the simulated web's crossing times. Off by default.
 */
function traceTo(file: string | undefined): ((line: string) => void) | null {
  if (!file) return null;
  const fd = openSync(file, 'a');
  process.once('exit', () => closeSync(fd));
  return (line) => void writeSync(fd, `${line}\n`);
}
const trace = traceTo(process.env.CLOUDFETCH_GATE_TRACE);

const MAX_PROBE_AFTER_MS = 15 * 60_000;
/** A Retry-After this long is an outage or a quota, not a load to learn from. */
const OUTAGE_AFTER_MS = 60_000;
/** How late we may read an answer the origin already sent (a loaded machine reads late). */
const ANSWER_LAG_MS = 100;
const MAX_BAN_PAUSE_MS = 60 * 60_000;
/** Under a stated pace by this much: a host's windows and ours do not line up, and answers come late. */
const STATED_MARGIN = 0.9;
/** The longest wait for a stated window's reset (a quota stated for a day is waited out an hour at a time). */
const MAX_RESET_WAIT_MS = 60 * 60_000;

interface Waiter {
  patientUntil: number;
  resolve: (entry: Entry) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** What a grant remembers of its start. */
interface Start {
  at: number;
  /** Grants so far at this gate: orders starts even within one millisecond. */
  serial: number;
  /** Grants so far at this origin. */
  nth: number;
  /** In flight at the origin, this one included. */
  level: number;
  /**
   * The level the origin surely saw with it: `level`, less requests of ours that ended just after
   * it started (the origin may have counted them ended before it arrived, while we had not yet read
   * their answers). Only this much is proven by its answer.
   */
  held: number;
  /** Starts at the origin within the last second, this one included. */
  recent: number;
  /** Whether starts were being spaced (a pace learnt or a 429 at one at a time) when it started. */
  paced: boolean;
  /** Above what the origin had answered (see HostGate.#explores): one such request at a time. */
  exploring: boolean;
  epoch: number;
}

class Origin {
  readonly name: string;
  inFlight = 0;
  allowance = 1;
  /** Answers since the allowance last grew: one more request per allowance's worth. */
  credit = 0;
  /** In flight when a 429 came (a concurrency limit learnt); the allowance stays below it. */
  ceiling = Infinity;
  /** The most in flight (held), and the most starts within a second, that were answered within limits. */
  proven = 0;
  /** The most in flight (as we counted) that were answered within limits. */
  reached = 0;
  /** Requests in flight, and how many of them explore (see HostGate.#explores). */
  open = new Set<Start>();
  exploring = 0;
  provenRate = 0;
  /** Requests granted here so far, and the count at the last 429 at a proven level (-Infinity: none). */
  granted = 0;
  struck = -Infinity;
  spacingMs = 0;
  /** Spacing learnt from a 429 (a rate limit), below which the spacing does not shrink. */
  minSpacingMs = 0;
  spacingStep = 0;
  nextStart = 0;
  /** Spacing under the pace the origin stated (RateLimit fields): a probe never goes below it. 0: none stated. */
  statedSpacingMs = 0;
  /** The longest reset the origin stated: its window is at least that long (for a quota stated without one). */
  longestResetMs = 0;
  /** Starts the origin said are left before `quotaUntil` (ms epoch), less ours since; as of the grant `quotaNth`. */
  quotaLeft = 0;
  quotaUntil = 0;
  quotaNth = 0;
  /** Start times of the last second, oldest first from `startsHead` (a queue: no shift per grant). */
  starts: number[] = [];
  startsHead = 0;
  /** Decreases so far: answers to requests started before the last one do not decrease again. */
  epoch = 0;
  learntUntil = 0;
  probeAfterMs: number;
  /** Whether a learnt limit was tried again: a 429 since then confirms it for good. */
  probed = false;
  pausedUntil = 0;
  pauseReason: PauseReason | 'fleet' | null = null;
  /** Answers within limits, and 403s, so far: how often the origin refuses images of its own. */
  answers = 0;
  forbiddenAnswers = 0;
  streak = 0;
  /** The serial of the first request started after the streak's first 403. */
  streakFrom = 0;
  bans = 0;
  /** The epoch a ban began: 403s to requests started before it are that ban's. */
  bannedEpoch = 0;
  verdicts: Array<(banned: boolean) => void> = [];
  waiters: Waiter[] = [];
  cancelTimer: (() => void) | null = null;

  constructor(name: string, probeAfterMs: number) {
    this.name = name;
    this.probeAfterMs = probeAfterMs;
  }

  limit(cap: number): number {
    return Math.max(1, Math.min(cap, this.allowance, this.ceiling - 1));
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.waiters.length === 0 && this.verdicts.length === 0 && this.cancelTimer === null;
  }
}

export class HostGate {
  readonly #cap: number;
  readonly #concurrency: number;
  readonly #pauses: HostPauses | undefined;
  readonly #clock: Clock;
  readonly #banPauseMs: number;
  readonly #throttlePauseMs: number;
  readonly #banAfter: number;
  readonly #probeAfterMs: number;
  readonly #origins = new Map<string, Origin>();
  /** Origins with a request ready but no free slot overall, served in turn. */
  readonly #blocked = new Set<Origin>();
  #inFlight = 0;
  #serial = 0;

  constructor(options: HostGateOptions) {
    this.#cap = options.hostConcurrency;
    this.#concurrency = options.concurrency ?? Infinity;
    this.#pauses = options.pauses;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#banPauseMs = options.banPauseMs ?? 30_000;
    this.#throttlePauseMs = options.throttlePauseMs ?? 1_000;
    this.#banAfter = options.banAfter ?? 5;
    this.#probeAfterMs = options.probeAfterMs ?? 10 * 60_000;
  }

  /**
   * Waits for a request slot at `origin` (its turn, its allowance, its pace, no pause). A pause
   * lasting past `patientUntil` (ms epoch) ends the wait at once: the caller gives up or delays.
   * Rejects with the signal's reason when it aborts.
   */
  acquire(origin: string, patientUntil: number, signal?: AbortSignal): Promise<Entry> {
    const state = this.#origin(origin);
    if (this.#pauses) return this.#acquireShared(state, this.#pauses, patientUntil, signal);
    // Not an async function: a run's every waiting image would pay a second promise.
    if (signal?.aborted) return Promise.reject(signal.reason);
    return this.#wait(state, patientUntil, signal);
  }

  async #acquireShared(state: Origin, pauses: HostPauses, patientUntil: number, signal: AbortSignal | undefined): Promise<Entry> {
    // A fleet's pause and pace are advice: when they cannot be read, the local gate still holds.
    const [until, pace] = await Promise.all([pauses.get(state.name).catch(() => 0), pauses.pace?.(state.name).catch(() => 0) ?? 0]);
    if (until > state.pausedUntil) [state.pausedUntil, state.pauseReason] = [until, 'fleet'];
    if (pace > 0) this.#adopt(state, pace);
    signal?.throwIfAborted();
    return this.#wait(state, patientUntil, signal);
  }

  #wait(state: Origin, patientUntil: number, signal: AbortSignal | undefined): Promise<Entry> {
    return new Promise<Entry>((resolve, reject) => {
      const waiter: Waiter = {
        patientUntil,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = state.waiters.indexOf(waiter);
          if (at >= 0) state.waiters.splice(at, 1);
          reject(signal!.reason);
          this.#pump(state);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      state.waiters.push(waiter);
      this.#pump(state);
    });
  }

  /**
   * A slot at `origin` at once, when it has room now and nothing waits before this request (no
   * pause, its allowance and pace not reached, a slot free overall); else null, and the caller
   * waits with acquire(). Spares the common case a promise and an abort listener per request.
   * Never with a fleet's pauses: those are read asynchronously.
   */
  tryAcquire(origin: string): Grant | null {
    if (this.#pauses || this.#blocked.size > 0 || this.#inFlight >= this.#concurrency) return null;
    const state = this.#origins.get(origin);
    if (!state || state.waiters.length > 0 || state.inFlight >= state.limit(this.#cap)) return null;
    const now = this.#clock.now();
    // A learnt limit due for its probe is #pump's to adjust first.
    if (now < state.pausedUntil || now < state.nextStart || (state.learntUntil > 0 && now >= state.learntUntil)) return null;
    if (state.exploring > 0 && this.#explores(state)) return null;
    return this.#grant(state, now);
  }

  /** What the gate holds for an origin now (for tests and reports). */
  state(origin: string): OriginState | undefined {
    const s = this.#origins.get(origin);
    if (!s) return undefined;
    const { inFlight, spacingMs, pausedUntil, pauseReason, bans } = s;
    return { inFlight, limit: s.limit(this.#cap), spacingMs, pausedUntil, pauseReason, bans, waiting: s.waiters.length };
  }

  #origin(name: string): Origin {
    let state = this.#origins.get(name);
    if (!state) {
      state = new Origin(name, this.#probeAfterMs);
      this.#origins.set(name, state);
    }
    return state;
  }

  /** Grants what can be granted at `state` now, and sets a timer for what must wait. */
  #pump(state: Origin): void {
    state.cancelTimer?.();
    state.cancelTimer = null;
    const now = this.#clock.now();
    if (state.learntUntil > 0 && now >= state.learntUntil) {
      // Quiet long enough: probe one request more, or a tenth faster, than the learnt limits.
      trace?.(`${now} ${state.name} probe`);
      state.probed = true;
      state.ceiling++;
      state.minSpacingMs = state.minSpacingMs < 1 ? 0 : Math.max(state.statedSpacingMs, 0.9 * state.minSpacingMs);
      state.struck = -Infinity;
      state.learntUntil = state.ceiling === Infinity && state.minSpacingMs === 0 ? 0 : now + state.probeAfterMs;
    }
    while (state.waiters.length > 0) {
      if (now < state.pausedUntil) {
        for (const waiter of [...state.waiters]) {
          if (waiter.patientUntil >= state.pausedUntil) continue;
          state.waiters.splice(state.waiters.indexOf(waiter), 1);
          this.#settle(waiter, { ok: false, until: state.pausedUntil, reason: state.pauseReason ?? 'throttled' });
        }
        if (state.waiters.length > 0) this.#wake(state, state.pausedUntil - now);
        break;
      }
      if (state.inFlight >= state.limit(this.#cap)) break; // a release pumps again
      if (state.exploring > 0 && this.#explores(state)) break; // so does the explorer's
      if (now < state.nextStart) {
        this.#wake(state, state.nextStart - now);
        break;
      }
      if (this.#inFlight >= this.#concurrency) {
        this.#blocked.add(state);
        break;
      }
      this.#settle(state.waiters.shift()!, { ok: true, grant: this.#grant(state, now) });
    }
    // A 403 waiting for a verdict gets "its own" when nothing else can give one.
    if (state.verdicts.length > 0 && state.inFlight === 0 && state.waiters.length === 0) this.#resolveVerdicts(state, false);
    if (state.idle && this.#origins.size > 10_000 && now >= state.pausedUntil) this.#origins.delete(state.name);
  }

  #wake(state: Origin, ms: number): void {
    state.cancelTimer = this.#clock.after(ms, () => {
      state.cancelTimer = null;
      this.#pump(state);
    });
  }

  #settle(waiter: Waiter, entry: Entry): void {
    waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(entry);
  }

  /**
   * Whether a start now would put more in flight at the origin than it ever answered. Such a
   * request may cross a limit nobody stated, so it goes alone: the next waits for its answer, and
   * a limit is crossed by one request, not by all those a round of answers sends at once (a ramp
   * grows one request per round trip above the level answered, instead of doubling).
   */
  #explores(state: Origin): boolean {
    return state.inFlight >= state.reached;
  }

  #grant(state: Origin, now: number): Grant {
    const exploring = this.#explores(state);
    if (exploring) state.exploring++;
    state.inFlight++;
    this.#inFlight++;
    const starts = state.starts;
    let head = state.startsHead;
    while (head < starts.length && starts[head]! <= now - 1000) head++;
    if (head === starts.length) {
      starts.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > starts.length) {
      starts.copyWithin(0, head);
      starts.length -= head;
      head = 0;
    }
    state.startsHead = head;
    starts.push(now);
    state.nextStart = now + state.spacingMs;
    // The origin said how many are left in its window: the last of them pauses it until the reset.
    if (state.quotaUntil > now && --state.quotaLeft <= 0) this.#pause(state, state.quotaUntil, 'retry-after');
    const start: Start = { at: now, serial: this.#serial++, nth: ++state.granted, level: state.inFlight, held: state.inFlight, recent: starts.length - head, paced: state.spacingMs > 0, exploring, epoch: state.epoch };
    state.open.add(start);
    trace?.(`${now} ${state.name} grant nth=${start.nth} level=${start.level} recent=${start.recent} spacing=${state.spacingMs.toFixed(1)} min=${state.minSpacingMs.toFixed(1)} allowance=${state.allowance} ceiling=${state.ceiling}`);
    return new GateGrant(this, state, start);
  }

  /** Frees a grant's slot; false when it was freed already. */
  release(state: Origin, start: Start): boolean {
    if (!state.open.delete(start)) return false;
    if (start.exploring) state.exploring--;
    state.inFlight--;
    this.#inFlight--;
    const at = this.#clock.now();
    for (const other of state.open) if (at - other.at < ANSWER_LAG_MS && other.held > state.inFlight) other.held = state.inFlight;
    return true;
  }

  /** A grant's end with an answer (see Grant.done). */
  finish(state: Origin, start: Start, answer: Answer, retryAfterMs?: number, rateLimit?: RateLimitInfo): void {
    if (!this.release(state, start)) return;
    if (rateLimit) this.#stated(state, start, rateLimit);
    this.#answer(state, start, answer, retryAfterMs);
    this.#released(state);
  }

  /** Calls `fn` a moment later: an unanswered request's slot is given back once the origin saw it close. */
  later(fn: () => void): void {
    this.#clock.after(ANSWER_LAG_MS, fn);
  }

  /** A grant's 403 (see Grant.forbidden). */
  async forbiddenAnswer(state: Origin, start: Start, signal: AbortSignal | undefined): Promise<boolean> {
    if (!this.release(state, start)) return false;
    const verdict = this.#forbidden(state, start, signal);
    this.#released(state);
    return verdict;
  }

  /** A freed slot goes first to the origins that waited for one overall, then to this one. */
  #released(state: Origin): void {
    for (const other of this.#blocked) {
      if (this.#inFlight >= this.#concurrency) break;
      this.#blocked.delete(other);
      this.#pump(other);
    }
    this.#pump(state);
  }

  #answer(state: Origin, start: Start, answer: Answer, retryAfterMs: number | undefined): void {
    const now = this.#clock.now();
    if (answer !== 'ok') trace?.(`${now} ${state.name} answer ${answer} nth=${start.nth} sent=${start.at} level=${start.level} held=${start.held} recent=${start.recent} retryAfter=${retryAfterMs ?? '-'}`);
    if (answer === 'ok') {
      state.answers++;
      if (start.serial >= state.streakFrom) {
        state.streak = 0;
        this.#resolveVerdicts(state, false);
      }
      state.proven = Math.max(state.proven, start.held);
      state.reached = Math.max(state.reached, start.level);
      state.provenRate = Math.max(state.provenRate, start.recent);
      // Grown only when the allowance was in use, so an idle origin is not credited with a load it never took.
      // Until the origin first pushes back, one more per answer (as TCP's slow start, but see #explores).
      if ((state.waiters.length > 0 || state.inFlight + 1 >= state.limit(this.#cap)) && (++state.credit >= state.allowance || state.epoch === 0)) {
        state.credit = 0;
        // No further than one above the level answered: that is as far as one explorer goes (see #explores).
        state.allowance = Math.min(this.#cap, Math.max(1, state.ceiling - 1), state.reached + 1, state.allowance + 1);
      }
      if (state.spacingMs > state.minSpacingMs) state.spacingMs = Math.max(state.minSpacingMs, state.spacingMs - state.spacingStep);
      return;
    }
    if (answer === 'failed') return;
    // The first 429 of a burst teaches; the others of it (started before it was read) say the same again.
    const firstOfBurst = start.epoch === state.epoch;
    this.#decrease(state, start, answer === 'throttled');
    if (answer === 'throttled' && firstOfBurst && !(retryAfterMs !== undefined && retryAfterMs >= OUTAGE_AFTER_MS)) this.#learn(state, start, now);
    if (answer === 'throttled' || retryAfterMs !== undefined) {
      this.#pause(state, now + (retryAfterMs ?? this.#throttlePauseMs), retryAfterMs !== undefined ? 'retry-after' : 'throttled');
    }
  }

  /**
   * What a 429 teaches. At a level never answered, the number in flight is too many (a concurrency
   * limit, or a rate limit at that number). At a level answered before it is the pace: the starts
   * of the last second, less this one, were too many (so a rate limit is learnt at once, not by
   * halving down to one at a time, a 429 each step), even at a pace answered before: a host that
   * counts whole seconds (12:00:01 to 12:00:02) admits up to twice its limit within one second of
   * ours that straddles two of its own. At under half the fastest pace answered it cannot be such
   * a pace limit (the starts before this one, too many, would be fewer than that limit): then it
   * may be a moment's overlap (the origin still counting a request whose answer we have read, as
   * on a loaded machine that reads answers late), and only a second one within 200 requests
   * lowers the ceiling. A level counts as answered only as `held` (see Start).
   */
  #learn(state: Origin, start: Start, now: number): void {
    const answeredLevel = start.level <= state.proven;
    const atPace = (answeredLevel || start.level === 1) && 2 * (start.recent - 1) >= state.provenRate;
    if (!answeredLevel || (!atPace && start.nth - state.struck < 200)) {
      state.ceiling = Math.min(state.ceiling, start.level);
      state.struck = -Infinity;
    } else if (!atPace) state.struck = start.nth;
    if (atPace) {
      // Keep under the pace that was too fast: 10% when our starts were evenly spaced (the origin's
      // count of a second then is ours), 30% after unspaced ones (a ramp), whose second may straddle
      // two of the origin's and count the end of its last one too (seen: up to a third more, at a
      // limit of 9 to 18 a second; more would halve small hosts' pace for good).
      const margin = start.paced ? 0.9 : 0.7;
      state.minSpacingMs = Math.max(state.minSpacingMs, 1000 / (margin * Math.max(1, start.recent - 1)));
      this.#space(state, state.minSpacingMs);
      this.#pauses?.learnt?.(state.name, 1000 / state.minSpacingMs).catch(() => {});
    }
    trace?.(`${now} ${state.name} learn proven=${state.proven} provenRate=${state.provenRate} atPace=${atPace} ceiling=${state.ceiling} min=${state.minSpacingMs.toFixed(1)} spacing=${state.spacingMs.toFixed(1)}`);
    // A limit refused again after it was tried again is the host's policy, not a passing load: a
    // probe above it would only be refused once more. A transient 429 is caught otherwise: at a
    // level answered before it only halves the allowance, which grows back on answers.
    state.learntUntil = state.probed ? Infinity : now + state.probeAfterMs;
    state.probeAfterMs = Math.min(MAX_PROBE_AFTER_MS, state.probeAfterMs * 2);
  }

  /**
   * What the origin stated of its limit. A quota over a window paces the origin under it (a quota
   * without a window, over the longest reset it stated: its window is no shorter), shared with the
   * fleet as a learnt pace is. What is left before the reset, less our starts since this request's,
   * bounds the starts until then; the latest-started request's answer is the one believed.
   */
  #stated(state: Origin, start: Start, info: RateLimitInfo): void {
    const now = this.#clock.now();
    // Resets are stated in whole seconds: a window is at least the longest one rounded up to a second.
    if (info.resetMs !== undefined) state.longestResetMs = Math.max(state.longestResetMs, Math.min(1000 * Math.ceil(info.resetMs / 1000), MAX_RESET_WAIT_MS));
    const windowMs = info.perSecond !== undefined ? info.windowMs ?? 1000 : state.longestResetMs;
    const perSecond = info.perSecond ?? (info.limit !== undefined && windowMs >= 1 ? (1000 * info.limit) / windowMs : 0);
    if (perSecond >= 1 / 60) {
      // Evenly spaced, 10% under the quota: at most floor(0.9 q) + 1 <= q starts in any window of it.
      const ms = 1000 / (STATED_MARGIN * perSecond);
      if (ms > state.statedSpacingMs) {
        trace?.(`${now} ${state.name} stated pace=${perSecond.toFixed(2)}`);
        state.statedSpacingMs = ms;
        state.minSpacingMs = Math.max(state.minSpacingMs, ms);
        this.#space(state, ms);
        const shared = this.#pauses?.stated?.(state.name, (perSecond * windowMs) / 1000, windowMs) ?? this.#pauses?.learnt?.(state.name, 1000 / ms);
        shared?.catch(() => {});
      }
    }
    if (info.remaining !== undefined && info.resetMs !== undefined && start.nth >= state.quotaNth) {
      state.quotaNth = start.nth;
      state.quotaUntil = now + Math.min(info.resetMs, MAX_RESET_WAIT_MS);
      state.quotaLeft = info.remaining - (state.granted - start.nth);
      if (state.quotaLeft <= 0 && state.quotaUntil > now) this.#pause(state, state.quotaUntil, 'retry-after');
    }
  }

  /** A pace another member of the fleet learnt: starts no closer than it allows this one (a lesson of its own may be slower). */
  #adopt(state: Origin, perSecond: number): void {
    const ms = 1000 / perSecond;
    if (ms <= state.minSpacingMs) return;
    trace?.(`${this.#clock.now()} ${state.name} adopt pace=${perSecond.toFixed(2)}`);
    state.minSpacingMs = ms;
    this.#space(state, ms);
  }

  /** Multiplicative decrease, once per round of requests: the allowance halves, or at 1 a 429 doubles the spacing. */
  #decrease(state: Origin, start: Start, throttled: boolean): void {
    if (start.epoch !== state.epoch) return;
    state.epoch++;
    const limit = state.limit(this.#cap);
    state.credit = 0;
    if (limit > 1) state.allowance = Math.ceil(limit / 2);
    else if (throttled) this.#space(state, 2 * (state.spacingMs > 0 ? state.spacingMs : 1000 / Math.max(1, state.provenRate, start.recent)));
  }

  #space(state: Origin, ms: number): void {
    if (ms <= state.spacingMs) return;
    state.spacingMs = ms;
    // Back to the spacing before in about ten answers, but never under what a 429 taught.
    state.spacingStep = ms / 20;
  }

  #pause(state: Origin, until: number, reason: PauseReason): void {
    if (until <= state.pausedUntil) return;
    state.pausedUntil = until;
    state.pauseReason = reason;
    trace?.(`${this.#clock.now()} ${state.name} pause until=${until} ${reason}`);
    this.#pauses?.set(state.name, until, reason).catch(() => {});
  }

  #forbidden(state: Origin, start: Start, signal: AbortSignal | undefined): Promise<boolean> | boolean {
    // An origin that never answered otherwise refuses us from the start: not a ban, nothing to wait for.
    if (state.answers === 0) return false;
    const now = this.#clock.now();
    if (state.bans > 0 && start.epoch < state.bannedEpoch) return true; // started before the ban: part of it
    state.forbiddenAnswers++;
    if (state.streak === 0) state.streakFrom = this.#serial;
    state.streak++;
    if (state.streak >= this.#banStreak(state)) {
      this.#ban(state, now);
      return true;
    }
    if (state.inFlight === 0 && state.waiters.length === 0) return false;
    return new Promise<boolean>((resolve, reject) => {
      const onAbort = (): void => {
        const at = state.verdicts.indexOf(settle);
        if (at >= 0) state.verdicts.splice(at, 1);
        reject(signal!.reason);
      };
      const settle = (banned: boolean): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(banned);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      state.verdicts.push(settle);
    });
  }

  /**
   * 403s in a row that make a ban: `banAfter`, or more at an origin that refuses many images of
   * its own (S3 answers 403 for a missing key), so that a streak that long by chance is unlikely (1 in 10,000).
   */
  #banStreak(state: Origin): number {
    const own = (state.forbiddenAnswers - state.streak + 1) / (state.answers + state.forbiddenAnswers - state.streak + 2);
    return Math.max(this.#banAfter, Math.ceil(Math.log(1e-4) / Math.log(Math.min(own, 0.999))));
  }

  #ban(state: Origin, now: number): void {
    state.bans++;
    // The streak was the ban's, not refusals of the origin's own.
    state.forbiddenAnswers -= state.streak;
    state.streak = 0;
    state.allowance = 1;
    state.bannedEpoch = ++state.epoch;
    this.#pause(state, now + Math.min(MAX_BAN_PAUSE_MS, this.#banPauseMs * 2 ** (state.bans - 1)), 'ban');
    this.#resolveVerdicts(state, true);
  }

  #resolveVerdicts(state: Origin, banned: boolean): void {
    const verdicts = state.verdicts;
    state.verdicts = [];
    for (const settle of verdicts) settle(banned);
  }
}

/** A granted slot: one object per request, its methods on the prototype (no closures per grant). */
class GateGrant implements Grant {
  readonly #gate: HostGate;
  readonly #state: Origin;
  readonly #start: Start;
  #lingering = false;

  constructor(gate: HostGate, state: Origin, start: Start) {
    this.#gate = gate;
    this.#state = state;
    this.#start = start;
  }

  done(answer: Answer, retryAfterMs?: number, rateLimit?: RateLimitInfo): void {
    // Without an answer (a reset, a time-out) the origin may count the request a moment more,
    // until our closing the connection reaches it: its slot is given back a moment later.
    if (answer !== 'failed' || this.#lingering || !this.#state.open.has(this.#start)) return this.#gate.finish(this.#state, this.#start, answer, retryAfterMs, rateLimit);
    this.#lingering = true;
    this.#gate.later(() => this.#gate.finish(this.#state, this.#start, 'failed'));
  }

  forbidden(signal?: AbortSignal): Promise<boolean> {
    return this.#gate.forbiddenAnswer(this.#state, this.#start, signal);
  }
}
