// The cloud side of `cloudfetch plan`: the sample sent to the deployed fetch function's dry mode
// (aws/lambda/plan-probe.ts) with Lambda Invoke, an origin's jobs in one invocation so the
// function's per-origin limit holds, a few invocations at once.

import { existsSync } from 'node:fs';
import { functionInvoker, InvokeError } from '../aws/home/invoke.ts';
import { MAX_PLAN_JOBS, type PlanAnswer } from '../aws/plan-event.ts';
import type { ProbeJob, ProbeResult } from '../engine/probe.ts';
import { UsageError } from './errors.ts';
import type { CloudProbe } from './plan.ts';
import type { Target, TargetFlags } from './target.ts';

/** Invocations at once: a plan must not take a new account's whole Lambda concurrency. */
const INVOCATIONS = 4;
/** Jobs per invocation, so one finishes well within the function's time limit. */
const JOBS_PER_INVOCATION = 100;

/** Whether the user named a stack or one is deployed from this folder (cdk-outputs.json), as the cloud commands find it. */
export function deployedStack(flags: TargetFlags): boolean {
  return Boolean(flags.dev || flags.endpoint || process.env.AWS_ENDPOINT_URL || flags.bucket || flags.stack || flags.outputs || existsSync('cdk-outputs.json'));
}

export async function cloudProbe(t: Target, o: { functionName?: string; concurrency: number; perOrigin: number }): Promise<{ probe: CloudProbe; where: string; check: () => Promise<void> }> {
  const name = o.functionName ?? t.fetchFunction;
  if (!name) throw new UsageError(`${t.source} names no fetch function: pass --fetch-function, or --no-cloud to plan from this machine only`);
  const invoker = await functionInvoker(t.s3, name, t.lambdaEndpoint ?? t.where.endpoint);
  const ask = async (jobs: Array<{ urls: string[] }>): Promise<PlanAnswer> => {
    const event = { cloudfetchPlan: { jobs, concurrency: o.concurrency, perOrigin: o.perOrigin } };
    const answer = (await invoker.invoke(event).catch((error: unknown) => {
      throw error instanceof InvokeError ? new UsageError(`${error.message}${/failed:/.test(error.message) ? `: is it deployed from an older cloudfetch, without the dry mode? (\`npx cdk deploy\` again, or --no-cloud)` : ''}`) : error;
    })) as Partial<PlanAnswer> | undefined;
    if (!Array.isArray(answer?.results) || answer.results.length !== jobs.length) {
      throw new UsageError(`${name} did not answer a plan: is it deployed from an older cloudfetch? (\`npx cdk deploy\` again, or --no-cloud)`);
    }
    return answer as PlanAnswer;
  };
  const probe: CloudProbe = async (jobs) => {
    const results = new Array<ProbeResult | null>(jobs.length).fill(null);
    const batches = batchesByOrigin(jobs);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const answer = await ask(batch.map((i) => ({ urls: jobs[i]!.urls })));
        batch.forEach((i, k) => (results[i] = answer.results[k] ?? null));
      }
    };
    await Promise.all(Array.from({ length: Math.min(INVOCATIONS, batches.length) }, worker));
    return results;
  };
  // An empty plan first: credentials, permission and a function that knows the dry mode, before
  // the sample is fetched here.
  return { probe, where: `the fetch function ${name}`, check: async () => void (await ask([])) };
}

/** Job indexes in batches of about JOBS_PER_INVOCATION, each origin's jobs together (split only past MAX_PLAN_JOBS). */
function batchesByOrigin(jobs: readonly ProbeJob[]): number[][] {
  const byOrigin = new Map<string, number[]>();
  jobs.forEach((job, i) => {
    const list = byOrigin.get(job.origin);
    if (list) list.push(i);
    else byOrigin.set(job.origin, [i]);
  });
  const batches: number[][] = [];
  let current: number[] = [];
  for (const indexes of byOrigin.values()) {
    for (let at = 0; at < indexes.length; at += MAX_PLAN_JOBS) {
      const part = indexes.slice(at, at + MAX_PLAN_JOBS);
      if (current.length > 0 && current.length + part.length > JOBS_PER_INVOCATION) {
        batches.push(current);
        current = [];
      }
      current.push(...part);
    }
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
