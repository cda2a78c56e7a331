// The fetch function's dry mode for `cloudfetch plan`: invoked directly (Lambda Invoke) with
// { cloudfetchPlan: { jobs } }, it fetches them with the function's own fetcher, guard and memory
// budget, and answers each one's outcome, time and bytes. Nothing is written to the bucket or queued.

import { probeJobs, type ProbeJob } from '../../engine/probe.ts';
import { parseFetchUrl } from '../../engine/fetch/url.ts';
import type { ImageFetcher } from '../../engine/worker.ts';
import { MAX_PLAN_JOBS, type PlanAnswer, type PlanEvent } from '../plan-event.ts';

const MAX_URLS = 10;
const MAX_URL_LENGTH = 8192;

/** Checks what a stranger with lambda:InvokeFunction could send, then probes. */
export async function answerPlan(event: PlanEvent, fetcher: ImageFetcher, signal: AbortSignal): Promise<PlanAnswer> {
  const { jobs, concurrency, perOrigin } = event.cloudfetchPlan ?? {};
  if (!Array.isArray(jobs) || jobs.length > MAX_PLAN_JOBS) throw new TypeError(`cloudfetchPlan.jobs must be an array of at most ${MAX_PLAN_JOBS} jobs`);
  if (!isCount(concurrency, 256) || !isCount(perOrigin, 16)) throw new TypeError('cloudfetchPlan.concurrency (1–256) and perOrigin (1–16) must be whole numbers');
  const probes: ProbeJob[] = jobs.map((job, i) => {
    const urls: unknown = job?.urls;
    if (!Array.isArray(urls) || urls.length === 0 || urls.length > MAX_URLS || !urls.every((u) => typeof u === 'string' && u.length <= MAX_URL_LENGTH)) {
      throw new TypeError(`cloudfetchPlan.jobs[${i}].urls must be 1–${MAX_URLS} URLs of at most ${MAX_URL_LENGTH} characters`);
    }
    const origin = parseFetchUrl(urls[0] as string)?.origin;
    if (!origin) throw new TypeError(`cloudfetchPlan.jobs[${i}].urls[0] is not an http(s) URL`);
    return { origin, urls: urls as string[] };
  });
  return { results: await probeJobs(probes, fetcher, { concurrency, perOrigin, signal }) };
}

function isCount(value: unknown, max: number): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= max;
}
