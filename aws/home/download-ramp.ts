// How many downloads sync runs at once: a hill climb on the rate. It starts at `start`, measures
// the bytes received per window, and steps up by half while a step raised the rate by a fifth;
// a step that did not is taken back, and so is a quarter of the downloads when transient errors
// (resets, time-outs, 5xx, 503 SlowDown) rise. Never above `most` (an explicit -c pins it there),
// nor past a budget of body bytes held at once. Decisions only: the caller moves the clock.

export interface RampOptions {
  /** Downloads at first. */
  start: number;
  /** Never more (the user's -c when given). */
  most: number;
  /** Never fewer, after errors (default 8, or `start` if smaller). */
  least?: number;
  /** Bodies held at once, in bytes, that a step up may not pass (with the mean body seen so far). */
  maxBytesInFlight?: number;
}

/**
 * A step must bring this share of the rate it would if the rate grew with the downloads (a fifth
 * for a step of half): where the round trips limit the rate, a step brings about all of it; where
 * the link is full, its bottleneck's queue overflows and the rate swings by ±15% from one window
 * to the next (traced on the lossy link at 96-216 downloads).
 */
const GROWTH = 0.4;
/** Windows with bytes before the first measure: the first bodies come in slow start (the rate rose 1.5x over two windows on the lossy link with the level unchanged). */
const WARM_WINDOWS = 2;
/** Each step up multiplies the downloads by this. */
const STEP = 1.5;
/** Errors in one window that make a back-off: at least this many, and at least ERROR_SHARE of the bodies. */
const ERROR_FLOOR = 3;
const ERROR_SHARE = 0.05;
/** Windows at a level before a level that stopped growing is probed again (conditions change in an hour's sync). */
const REPROBE_WINDOWS = 30;
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024;

type Phase =
  | { kind: 'warming'; windows: number } // the first windows with bytes: slow starts and a window begun mid-way, no verdict
  | { kind: 'measuring' } // the rate at the current level
  | { kind: 'settling'; from: number; rate: number } // a step's first window: its connections open and start slowly
  | { kind: 'judging'; from: number; rate: number } // the step's rate against the rate before it
  | { kind: 'holding'; windows: number }; // at a level that stopped growing, until REPROBE_WINDOWS

export class DownloadRamp {
  readonly most: number;
  readonly least: number;
  #level: number;
  #budget: number;
  #phase: Phase = { kind: 'warming', windows: 0 };
  #rate = 0;
  #windowStart: number | undefined;
  #bytes = 0;
  #bodies = 0;
  #errors = 0;
  #bodyBytes = 0;
  #bodyCount = 0;

  constructor(o: RampOptions) {
    this.most = Math.max(1, o.most);
    this.#level = Math.min(this.most, Math.max(1, o.start));
    this.least = Math.min(this.#level, Math.max(1, o.least ?? 8));
    this.#budget = o.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT;
  }

  /** Downloads wanted now. */
  get level(): number {
    return this.#level;
  }

  /** Body bytes received. */
  received(bytes: number): void {
    this.#bytes += bytes;
  }

  /** A body came whole. */
  body(bytes: number): void {
    this.#bodies++;
    this.#bodyBytes += bytes;
    this.#bodyCount++;
  }

  /** A download failed for a transient reason (it is tried again). */
  error(): void {
    this.#errors++;
  }

  /** Ends the window begun at the last call (the first call only begins one); returns the level for the next. */
  tick(now: number): number {
    const start = this.#windowStart;
    this.#windowStart = now;
    const bytes = this.#bytes;
    const bodies = this.#bodies;
    const errors = this.#errors;
    this.#bytes = this.#bodies = this.#errors = 0;
    if (start === undefined || now <= start) return this.#level;
    if (errors >= ERROR_FLOOR && errors >= ERROR_SHARE * bodies) {
      // Fewer at once, back to the rate found there before growing again.
      this.#level = Math.max(this.least, Math.floor(this.#level * 0.75));
      this.#phase = { kind: 'warming', windows: 0 };
      return this.#level;
    }
    // Nothing came (the listing is round trips away, or nothing is left): no verdict.
    if (bytes === 0) return this.#level;
    const rate = bytes / (now - start);
    const phase = this.#phase;
    switch (phase.kind) {
      case 'warming':
        if (++phase.windows >= WARM_WINDOWS) this.#phase = { kind: 'measuring' };
        break;
      case 'measuring':
        this.#rate = rate;
        this.#stepUp();
        break;
      case 'settling':
        this.#phase = { kind: 'judging', from: phase.from, rate: phase.rate };
        break;
      case 'judging':
        if (rate >= phase.rate * (1 + GROWTH * (this.#level / phase.from - 1))) {
          this.#rate = rate;
          this.#stepUp();
        } else {
          this.#level = phase.from;
          this.#rate = phase.rate;
          this.#phase = { kind: 'holding', windows: 0 };
        }
        break;
      case 'holding':
        if (++phase.windows >= REPROBE_WINDOWS) this.#phase = { kind: 'measuring' };
        break;
    }
    return this.#level;
  }

  #stepUp(): void {
    const mean = this.#bodyCount > 0 ? this.#bodyBytes / this.#bodyCount : 0;
    const next = Math.min(this.most, Math.max(this.#level + 1, Math.round(this.#level * STEP)));
    if (next <= this.#level || next * mean > this.#budget) {
      this.#phase = { kind: 'holding', windows: 0 };
      return;
    }
    this.#phase = { kind: 'settling', from: this.#level, rate: this.#rate };
    this.#level = next;
  }
}
