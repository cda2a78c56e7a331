// A repeatable sample of a manifest's jobs per origin, for `cloudfetch plan`: one pass over the
// stream, memory bounded by origins (a count each) and the entries kept as candidates (a bound in
// total), never by entries.
//
// Each job gets a priority from a hash of the seed and its position; an origin keeps the jobs of
// lowest priority (bottom-k), so any prefix of its kept jobs is a uniform sample of all of them,
// and the same manifest and seed give the same sample.

import { hashId } from './seen-ids.ts';
import { parseFetchUrl } from './fetch/url.ts';
import type { Job } from './job.ts';

export interface SampleOptions {
  /** Share of each origin's jobs to sample (0.01: 1%). */
  share: number;
  /** At least this many per origin (or all it has). */
  minPerOrigin: number;
  maxPerOrigin: number;
  /** At most this many in all: the largest origins are sampled first. */
  total: number;
  seed: number;
  /** Candidates kept at once across origins (default max(10 × total, 10,000)): past it the smallest origins' are dropped. */
  keep?: number;
}

export interface SampledJob {
  position: number;
  urls: string[];
}

export interface OriginSample {
  origin: string;
  /** Jobs of this origin (distinct entries whose first URL is here). */
  entries: number;
  sample: SampledJob[];
}

export interface ManifestSample {
  /** Every origin, largest first; those past the total bound have an empty sample. */
  origins: OriginSample[];
  jobs: number;
  sampled: number;
}

interface Candidate extends SampledJob {
  priority: number;
}

interface OriginState {
  entries: number;
  kept: Candidate[];
  /** Index of the highest priority in `kept`, replaced first. */
  worst: number;
  /** Candidates dropped for memory: this origin is not sampled. */
  dropped: boolean;
}

export class OriginSampler {
  readonly #o: SampleOptions;
  readonly #keep: number;
  readonly #origins = new Map<string, OriginState>();
  #kept = 0;
  #jobs = 0;

  constructor(o: SampleOptions) {
    this.#o = o;
    this.#keep = o.keep ?? Math.max(10 * o.total, 10_000);
  }

  add(job: Pick<Job, 'position' | 'urls'>): void {
    const origin = parseFetchUrl(job.urls[0] ?? '')?.origin;
    if (origin === undefined) return;
    this.#jobs++;
    let state = this.#origins.get(origin);
    if (!state) {
      state = { entries: 0, kept: [], worst: -1, dropped: false };
      this.#origins.set(origin, state);
    }
    state.entries++;
    if (state.dropped) return;
    // Two 32-bit hashes: ties are all but impossible, and the position breaks the rest.
    const key = String(job.position);
    const priority = hashId(key, this.#o.seed) * 2 ** 21 + (hashId(key, this.#o.seed ^ 0x5bd1e995) >>> 11);
    const candidate = { priority, position: job.position, urls: job.urls };
    if (state.kept.length < this.#o.maxPerOrigin) {
      state.kept.push(candidate);
      if (state.worst < 0 || priority > state.kept[state.worst]!.priority) state.worst = state.kept.length - 1;
      if (++this.#kept > this.#keep) this.#shed();
      return;
    }
    if (priority >= state.kept[state.worst]!.priority) return;
    state.kept[state.worst] = candidate;
    state.worst = worstOf(state.kept);
  }

  /** Drops the candidates of the smallest origins until half the bound is kept. */
  #shed(): void {
    const bySize = [...this.#origins.values()].filter((s) => !s.dropped && s.kept.length > 0).sort((a, b) => a.entries - b.entries);
    for (const state of bySize) {
      if (this.#kept <= this.#keep / 2) break;
      this.#kept -= state.kept.length;
      state.kept = [];
      state.dropped = true;
    }
  }

  result(): ManifestSample {
    const o = this.#o;
    const ordered = [...this.#origins].sort((a, b) => b[1].entries - a[1].entries);
    let left = o.total;
    const origins = ordered.map(([origin, state]): OriginSample => {
      const wanted = Math.min(o.maxPerOrigin, state.entries, Math.max(o.minPerOrigin, Math.ceil(o.share * state.entries)));
      const take = state.dropped ? 0 : Math.min(wanted, left, state.kept.length);
      left -= take;
      const sample = state.kept
        .sort((a, b) => a.priority - b.priority || a.position - b.position)
        .slice(0, take)
        .map(({ position, urls }) => ({ position, urls }));
      return { origin, entries: state.entries, sample };
    });
    return { origins, jobs: this.#jobs, sampled: o.total - left };
  }
}

function worstOf(kept: readonly Candidate[]): number {
  let worst = 0;
  for (let i = 1; i < kept.length; i++) if (kept[i]!.priority > kept[worst]!.priority) worst = i;
  return worst;
}

/** The sampled jobs taking turns by origin, so a pool works on many origins at once. */
export function interleave(origins: readonly OriginSample[]): Array<SampledJob & { origin: string }> {
  const out: Array<SampledJob & { origin: string }> = [];
  for (let round = 0; ; round++) {
    let any = false;
    for (const o of origins) {
      const job = o.sample[round];
      if (job) {
        out.push({ ...job, origin: o.origin });
        any = true;
      }
    }
    if (!any) return out;
  }
}
