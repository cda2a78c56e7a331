// A byte rate shared by many transfers (sync's --bwlimit): each takes the bytes it is about to
// read, and waits until the rate allows them. Reservations are made synchronously in the order
// asked (a virtual schedule, GCRA style), so concurrent takers are served first come, first served
// and the sum granted by any moment t is at most burst + rate × t.

import { setTimeout as sleep } from 'node:timers/promises';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: Clock = { now: () => performance.now(), sleep: (ms) => sleep(ms) };

export class TokenBucket {
  /** Bytes per second. */
  readonly rate: number;
  /** Bytes that may pass at once after a quiet spell. */
  readonly burst: number;
  #clock: Clock;
  /** When the bytes granted so far would have passed at exactly the rate (ms). */
  #schedule = -Infinity;
  #granted = 0;

  constructor(rate: number, o: { burst?: number; clock?: Clock } = {}) {
    if (!(rate > 0)) throw new RangeError(`a rate must be above 0, not ${rate}`);
    this.rate = rate;
    // A tenth of a second of the rate, at least one 64 KiB read: smooth, yet a chunk always fits.
    this.burst = o.burst ?? Math.max(64 * 1024, rate / 10);
    this.#clock = o.clock ?? realClock;
  }

  /** Bytes granted so far. */
  get granted(): number {
    return this.#granted;
  }

  /** Waits until `bytes` more may pass. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = this.#clock.now();
    this.#schedule = Math.max(this.#schedule, now) + (bytes / this.rate) * 1000;
    this.#granted += bytes;
    const wait = this.#schedule - (this.burst / this.rate) * 1000 - now;
    if (wait > 0) {
      signal?.throwIfAborted();
      await this.#clock.sleep(wait);
    }
  }
}
