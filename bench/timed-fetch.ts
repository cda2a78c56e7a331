// Every fetch invocation of a local cloud timed: what Lambda bills (duration × memory = GB-s),
// for the benches that price it (bench/cost.ts, bench/sim-web-cloud.ts).

import type { FetchHandler } from '../local-cloud/cloud.ts';

export interface Invocation {
  ms: number;
  records: number;
  /** Distinct message groups in the batch (FIFO hands out as many of one group as it can). */
  groups: number;
}

/** A wrapFetch for startDevCloud that adds each invocation's duration and batch size to `into`. */
export function timedFetch(into: Invocation[]): (real: FetchHandler) => FetchHandler {
  return (real) => async (event, context) => {
    const started = performance.now();
    try {
      return await real(event, context);
    } finally {
      into.push({ ms: performance.now() - started, records: event.Records.length, groups: new Set(event.Records.map((r) => r.attributes.MessageGroupId)).size });
    }
  };
}
