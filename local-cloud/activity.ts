// What the local cloud's two event sources (s3-notifications.ts, sqs-poller.ts) share: the signal
// that something happened, for whoever waits for the cloud to settle, and small helpers.

import { setTimeout as sleep } from 'node:timers/promises';

export type Log = (line: string) => void;

/**
 * Tells whoever waits for the local cloud to settle that something happened. `progressed()` marks
 * real work (an event found, an invocation started or finished, messages deleted); `tick()` only
 * wakes waiters (a poll that found nothing), so they can look again without sleeping.
 */
export class Activity {
  #progress = 0;
  #waiters: Array<() => void> = [];

  get progress(): number {
    return this.#progress;
  }

  progressed(): void {
    this.#progress++;
    this.tick();
  }

  tick(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next progressed() or tick(). */
  next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

export const errorText = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

/** Waits for `work`, at most `ms` (Infinity: for ever). */
export async function within(work: Promise<unknown>, ms: number): Promise<void> {
  if (!Number.isFinite(ms)) {
    await work;
    return;
  }
  const done = new AbortController();
  await Promise.race([work, sleep(ms, undefined, { signal: done.signal }).catch(() => {})]);
  done.abort();
}
