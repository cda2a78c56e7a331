// A counting semaphore, for connections per host and images on the network at once.

/** A counting semaphore: at most `limit` holders at once, waiters served in order. */
export class Slots {
  #free: number;
  #waiting: Array<() => void> = [];
  constructor(limit: number) {
    this.#free = limit;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
  get idle(): boolean {
    return this.#waiting.length === 0;
  }
}
