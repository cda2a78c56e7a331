// Stragglers: a batch waits for its slowest image, and Lambda bills the wait. A record still
// unfinished after its share of time, when most of its batch is done, is returned to the queue, to
// come back soon to another invocation (the web's slow answers are mostly bad luck, not the image),
// instead of holding the whole invocation. It is not a failure: no failure record, no `failed`
// metric; it is not done yet. A batch slow all over (a slow host, a busy machine) is not cut: a
// retry would be as slow. The share doubles with each delivery up to the whole per-image deadline on
// the last delivery the redrive policy allows, so returns alone never send a job to the DLQ, and all
// the earlier shares together are less than that last one: returns at most double an image's time.

import type { Failed } from '../../engine/outcome.ts';
import type { Job } from '../../engine/job.ts';

/** How soon a returned record is handed out again: soon, yet a host slow because busy gets a breath. */
export const RETURN_VISIBILITY_SECONDS = 1;

/**
 * Milliseconds a record may run on delivery `receiveCount` before it is returned: the image's
 * deadline halved for each delivery still allowed after this one (1.9, 3.75, 7.5, 15 s of 30 with 5
 * receives); undefined on the last allowed delivery, where only the image's own deadline and the
 * invocation's apply.
 */
export function shareMs(receiveCount: number, maxReceiveCount: number, imageTimeoutMs: number): number | undefined {
  if (!(receiveCount >= 1) || receiveCount >= maxReceiveCount) return undefined;
  return Math.floor(imageTimeoutMs / 2 ** (maxReceiveCount - receiveCount));
}

/** A record cut short, by its share or by the invocation's deadline: returned to the queue, not failed. */
export class Unfinished extends Error {
  override name = 'Unfinished';
  readonly outcome: Failed;
  constructor(job: Job, outcome: Failed) {
    super(`${job.split}/${job.id}: not finished in its time, returned to the queue`);
    this.outcome = outcome;
  }
}

/** How much of the invocation's batch is finished: tells a straggler from a batch that is slow all over. */
export class BatchProgress {
  readonly #total: number;
  #finished = 0;
  readonly #listeners = new Set<() => void>();

  constructor(total: number) {
    this.#total = total;
  }

  /** At least half of the batch is finished: whoever still runs is behind its peers. */
  get mostlyDone(): boolean {
    return this.#total > 1 && this.#finished * 2 >= this.#total;
  }

  finished(): void {
    this.#finished++;
    for (const listener of this.#listeners) listener();
  }

  /** Calls `listener` whenever a record finishes; returns what unsubscribes it. */
  onFinished(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * A signal that aborts with `parent` (the invocation's deadline), or once the record has run `ms`
 * and most of `batch` is finished, whichever comes first; `shareEnded` says whether the share did
 * it. The share stops between `pause` and `resume` (waiting for memory to hold the body is not the
 * web's time, as the image's own deadline stops then too). Call `dispose` when the record is done
 * (it also counts the record as finished).
 */
export function recordDeadline(parent: AbortSignal, ms: number | undefined, batch: BatchProgress): { signal: AbortSignal; shareEnded: () => boolean; pause: () => void; resume: () => void; dispose: () => void } {
  const controller = new AbortController();
  let ended = false;
  let elapsed = false;
  let paused = false;
  let left = ms ?? 0;
  let since = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe = (): void => {};
  const onParent = (): void => controller.abort(parent.reason);
  const cut = (): void => {
    if (paused || !batch.mostlyDone || controller.signal.aborted) return;
    ended = true;
    controller.abort(new DOMException('the record had its share of the invocation', 'TimeoutError'));
  };
  const start = (): void => {
    since = Date.now();
    timer = setTimeout(() => {
      elapsed = true;
      cut();
      if (!ended) unsubscribe = batch.onFinished(cut);
      // Paused late (the timer was due, its callback not yet run), `left` can be below 0.
    }, Math.max(0, left));
  };
  if (ms !== undefined) start();
  if (parent.aborted) onParent();
  else parent.addEventListener('abort', onParent, { once: true });
  return {
    signal: controller.signal,
    shareEnded: () => ended,
    pause: () => {
      if (paused || ms === undefined) return;
      paused = true;
      if (!elapsed) {
        clearTimeout(timer);
        left -= Date.now() - since;
      }
    },
    resume: () => {
      if (!paused) return;
      paused = false;
      if (elapsed) cut();
      else start();
    },
    dispose: () => {
      clearTimeout(timer);
      unsubscribe();
      parent.removeEventListener('abort', onParent);
      batch.finished();
    },
  };
}
