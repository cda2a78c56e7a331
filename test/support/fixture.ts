// A test file's shared set-up, started by the first test that asks for it and closed once by the
// file's `after`, whatever subset of its tests runs. Not `before`: when a name filter
// (--test-name-pattern) matches none of a file's tests, node:test (24) runs the file's `after`
// without waiting for its async `before`, so the tear-down met half-built state (a TypeError) and
// what the set-up started afterwards kept the process alive. A file whose tests share module
// variables may still call get() from `before`: close() waits for the set-up it started.

export interface Fixture<T> {
  /** The set-up's result; the set-up runs on the first call only. */
  get(): Promise<T>;
  /** Closes what the set-up opened, in reverse order (what it got to, if it failed midway); nothing if no test asked for it. */
  close(): Promise<void>;
}

/** `setUp` registers a closer for each thing it opens, as soon as it is open. */
export function lazyFixture<T>(setUp: (onClose: (close: () => unknown) => void) => Promise<T>): Fixture<T> {
  let started: Promise<T> | undefined;
  let closed = false;
  const closers: Array<() => unknown> = [];
  return {
    // Refused once closed: nothing is opened after the tear-down, whatever order the hooks ran in.
    get: () => (closed ? Promise.reject(new Error('the fixture is closed')) : (started ??= setUp((close) => void closers.push(close)))),
    async close() {
      closed = true;
      if (!started) return;
      // A set-up that failed has failed its tests already; what it opened is still closed.
      await started.catch(() => {});
      const errors: unknown[] = [];
      for (const close of closers.splice(0).reverse()) {
        try {
          await close();
        } catch (error) {
          errors.push(error);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'the tear-down failed');
    },
  };
}
