// The fetch function's dry mode, as `cloudfetch plan` invokes it: the event and the answer, shared
// by the handler (aws/lambda/plan-probe.ts) and the command.

import type { ProbeResult } from '../engine/probe.ts';

/** Most jobs one invocation takes: the command sends a larger sample in several. */
export const MAX_PLAN_JOBS = 500;

export interface PlanEvent {
  cloudfetchPlan: { jobs: Array<{ urls: string[] }>; concurrency: number; perOrigin: number };
}

export interface PlanAnswer {
  /** In the jobs' order; null for a job the invocation had no time for. */
  results: Array<ProbeResult | null>;
}

export function isPlanEvent(event: unknown): event is PlanEvent {
  return typeof event === 'object' && event !== null && 'cloudfetchPlan' in event;
}
