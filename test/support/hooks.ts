// node:test's `before` and `after`, with `after` waiting for the `before`s already started. When a
// name filter (--test-name-pattern) matches none of a file's tests, node:test (24) starts the file's
// async `before` and runs its `after` without waiting for it: the tear-down met half-built state
// (a TypeError on an undefined server) and what the set-up opened afterwards kept the process
// alive until killed. Import these instead of node:test's in a file whose hooks share state.

import * as nodeTest from 'node:test';

type Hook = Parameters<typeof nodeTest.before>[0];
type HookOptions = Parameters<typeof nodeTest.before>[1];

const started: Array<Promise<unknown>> = [];

export function before(fn: Hook, options?: HookOptions): void {
  // One parameter: a hook of two is taken for a callback-style one (none here is).
  nodeTest.before((context) => {
    const running = Promise.resolve((fn as (c: unknown) => unknown)(context));
    started.push(running.catch(() => {}));
    return running;
  }, options);
}

export function after(fn: Hook, options?: HookOptions): void {
  nodeTest.after(async (context) => {
    await Promise.all(started);
    return (fn as (c: unknown) => unknown)(context);
  }, options);
}
