// Manifest entries → jobs, for the local run (then pool.ts) and the cloud split alike: the first
// occurrence of an id wins, and an entry without a usable URL is a failed record at once.

import type { Job, ManifestEntry } from './job.ts';
import { extensionOf, extensionOfPath, imageKey, type Layout } from './keys.ts';
import type { IndexRecord } from './index-table.ts';
import type { Failed } from './outcome.ts';
import { parseFetchUrl } from './fetch/url.ts';
import { SeenIds } from './seen-ids.ts';

export type Planned = { job: Job } | { record: IndexRecord };

export interface PlanStats {
  duplicates: number;
  firstDuplicates: Array<{ id: string; position: number }>;
}

/** The by-label layout has one folder per label: an image with several labels has no one place. */
export class MultiLabelError extends Error {
  override name = 'MultiLabelError';
  constructor(position: number, count: number) {
    super(`--layout by-label needs one label per image, but entry ${position} has ${count}: use the flat layout (labels are in the index's label column)`);
  }
}

/**
 * Turns entries into jobs: first occurrence of an id wins, later ones are counted as duplicates;
 * an entry without a usable URL becomes a failed record at once. `seen` is the caller's when it
 * spills to disk (the caller closes it).
 */
export async function* planJobs(
  entries: AsyncIterable<ManifestEntry>,
  split: string,
  layout: Layout,
  stats: PlanStats,
  seen: SeenIds = new SeenIds(),
  /** The key extension when the stored format is chosen up front (see imageKey). */
  extension?: string | null,
): AsyncGenerator<Planned> {
  for await (const entry of entries) {
    if (!seen.add(entry.id)) {
      stats.duplicates++;
      if (stats.firstDuplicates.length < 5) stats.firstDuplicates.push({ id: entry.id, position: entry.position });
      continue;
    }
    const { position, id, urls, labels } = entry;
    if (layout === 'by-label' && labels.length > 1) throw new MultiLabelError(position, labels.length);
    const valid: string[] = [];
    // The key's extension (see imageKey) from the parse that checks the URL, not a second one:
    // the same parse unless parseFetchUrl trimmed the text.
    let keyExtension = extension || null;
    for (const url of urls) {
      const parsed = parseFetchUrl(url);
      if (parsed === null) continue;
      valid.push(url);
      keyExtension ??= url === url.trim() ? extensionOfPath(parsed.pathname) : extensionOf(url);
    }
    if (valid.length === 0) {
      const reason = urls.length === 0 ? 'no-url' : 'bad-url';
      const detail = urls.length === 0 ? 'the entry has no URL' : `not an http(s) URL: ${urls[0]!.slice(0, 200)}`;
      const outcome: Failed = { status: 'failed', url: urls[0] ?? '', bytes: 0, reason, detail, attempts: 0 };
      yield { record: { position, id, labels, urls, key: null, outcome } };
      continue;
    }
    yield { job: { split, id, urls: valid, labels, key: imageKey(split, id, valid, labels, layout, keyExtension ?? extension ?? 'jpg'), position } };
  }
}
