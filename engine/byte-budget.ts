// Bytes of image bodies held at once, bounded by the memory a process has: an image waits for room
// before its body is read, and gives the room back once the body is stored.

/** Kept back from a function's memory for the runtime itself: Node, the SDK, sockets, the heap. */
export const RUNTIME_HEADROOM_MB = 128;

const MiB = 1024 * 1024;

/** What a process of `memoryMb` may hold in image bodies. */
export function budgetBytes(memoryMb: number): number {
  return Math.max(0, memoryMb - RUNTIME_HEADROOM_MB) * MiB;
}

/**
 * Room one image of up to `maxBytes` takes while fetched: its body's chunks and the copy they are
 * joined into are both alive for a moment.
 */
export function fetchReservation(maxBytes: number): number {
  return 2 * maxBytes;
}

export interface Reservation {
  /** Gives the room back; again, nothing. */
  release(): void;
}

export class ByteBudget {
  readonly limit: number;
  #used = 0;
  readonly #waiting: { bytes: number; grant: () => void }[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  get used(): number {
    return this.#used;
  }

  /**
   * Resolves once `bytes` fit, first come first served; at once when nothing is held, so a single
   * image larger than the budget still runs (alone). Rejects when `signal` aborts first.
   */
  reserve(bytes: number, signal?: AbortSignal): Promise<Reservation> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#waiting.length === 0 && this.#fits(bytes)) return Promise.resolve(this.#grant(bytes));
    return new Promise((resolve, reject) => {
      const waiter = {
        bytes,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#grant(bytes));
        },
      };
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        reject(signal!.reason);
        this.#wake();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.limit;
  }

  #grant(bytes: number): Reservation {
    this.#used += bytes;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.#used -= bytes;
        this.#wake();
      },
    };
  }

  #wake(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0]!.bytes)) this.#waiting.shift()!.grant();
  }
}
