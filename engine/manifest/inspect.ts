// What a manifest holds before anything is fetched: ids, labels, URLs and hosts, and where the
// problems are. One pass over the entries, in memory bounded by the distinct ids (as bits when
// they are small integers) plus the distinct labels and hosts.

import { printable } from '../printable.ts';
import { plural } from '../summary.ts';
import { parseFetchUrl } from '../fetch/url.ts';
import type { ManifestFormat } from './detect.ts';
import { idKey } from './id.ts';
import type { Manifest } from './index.ts';

export interface InspectReport {
  format: ManifestFormat;
  entries: number;
  distinctIds: number;
  /** Entries whose id repeats an earlier entry's. */
  duplicateIds: number;
  /** Entries with at least one label. */
  labeled: number;
  distinctLabels: number;
  multiLabelEntries: number;
  /** Most frequent labels, by number of entries carrying them. */
  topLabels: Array<{ label: string; entries: number }>;
  /** All URLs, mirrors included. */
  urls: number;
  /** Entries without any URL. */
  noUrl: number;
  /** Entries with URLs of which none is an absolute http(s) URL. */
  badUrl: number;
  /** Entries with more than one URL. */
  mirrors: number;
  /** Distinct hosts of each entry's first usable URL (the one fetched first). */
  hosts: number;
  topHosts: Array<{ host: string; urls: number }>;
  /** The first few positions (entry numbers, or line numbers for line formats) of each problem. */
  examples: { noUrl: number[]; badUrl: number[]; duplicateIds: number[] };
}

export interface InspectOptions {
  /** How many hosts to list (default 10). */
  topHosts?: number;
  /** How many labels to list (default 10). */
  topLabels?: number;
}

const EXAMPLES = 5;

export async function inspectManifest(m: Manifest, opts: InspectOptions = {}): Promise<InspectReport> {
  const ids = new IdSet();
  const labels = new Map<string, number>();
  const hosts = new Map<string, number>();
  const examples: InspectReport['examples'] = { noUrl: [], badUrl: [], duplicateIds: [] };
  let entries = 0;
  let duplicateIds = 0;
  let labeled = 0;
  let multiLabelEntries = 0;
  let urls = 0;
  let noUrl = 0;
  let badUrl = 0;
  let mirrors = 0;

  for await (const entry of m.entries()) {
    entries++;
    if (!ids.add(idKey(entry.id))) {
      duplicateIds++;
      if (examples.duplicateIds.length < EXAMPLES) examples.duplicateIds.push(entry.position);
    }
    if (entry.labels.length > 0) {
      labeled++;
      if (entry.labels.length > 1) multiLabelEntries++;
      for (const label of entry.labels) labels.set(label, (labels.get(label) ?? 0) + 1);
    }
    urls += entry.urls.length;
    if (entry.urls.length > 1) mirrors++;
    if (entry.urls.length === 0) {
      noUrl++;
      if (examples.noUrl.length < EXAMPLES) examples.noUrl.push(entry.position);
      continue;
    }
    let usable: URL | null = null;
    for (const url of entry.urls) {
      usable = parseFetchUrl(url);
      if (usable !== null) break;
    }
    if (usable === null) {
      badUrl++;
      if (examples.badUrl.length < EXAMPLES) examples.badUrl.push(entry.position);
      continue;
    }
    hosts.set(usable.hostname, (hosts.get(usable.hostname) ?? 0) + 1);
  }

  return {
    format: m.format,
    entries,
    distinctIds: ids.size,
    duplicateIds,
    labeled,
    distinctLabels: labels.size,
    multiLabelEntries,
    topLabels: top(labels, opts.topLabels ?? 10).map(([label, count]) => ({ label, entries: count })),
    urls,
    noUrl,
    badUrl,
    mirrors,
    hosts: hosts.size,
    topHosts: top(hosts, opts.topHosts ?? 10).map(([host, count]) => ({ host, urls: count })),
    examples,
  };
}

/** The n largest counts, ties in first-seen order. */
function top(counts: Map<string, number>, n: number): Array<[string, number]> {
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, n);
}

/** A readable multi-line report for the terminal. */
export function formatInspectReport(r: InspectReport): string {
  const n = (value: number): string => value.toLocaleString('en-US');
  const [unit, units] = r.format === 'imaterialist' ? ['entry', 'entries'] : ['line', 'lines'];
  const at = (positions: number[], total: number): string =>
    positions.length === 0 ? '' : ` (at ${plural(total, unit, units)} ${positions.join(', ')}${total > positions.length ? ', …' : ''})`;
  const percent = (part: number): string => {
    if (r.entries === 0) return '';
    const share = (100 * part) / r.entries;
    return part > 0 && share < 0.1 ? ' (<0.1%)' : ` (${share.toFixed(1)}%)`;
  };

  const rows: Array<[string, string]> = [
    ['format', r.format],
    ['entries', n(r.entries)],
    ['distinct ids', n(r.distinctIds)],
    ['duplicate ids', `${n(r.duplicateIds)}${at(r.examples.duplicateIds, r.duplicateIds)}`],
    ['labeled', `${n(r.labeled)}${percent(r.labeled)}, ${n(r.distinctLabels)} distinct ${plural(r.distinctLabels, 'label')}, ${n(r.multiLabelEntries)} multi-label`],
    ['URLs', `${n(r.urls)}, ${n(r.mirrors)} ${plural(r.mirrors, 'entry', 'entries')} with mirrors`],
    ['no URL', `${n(r.noUrl)}${percent(r.noUrl)}${at(r.examples.noUrl, r.noUrl)}`],
    ['no usable URL', `${n(r.badUrl)}${percent(r.badUrl)}${at(r.examples.badUrl, r.badUrl)}`],
    ['hosts', `${n(r.hosts)} (first usable URL of each entry)`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`);

  const table = (title: string, column: string, items: Array<[string, number]>): void => {
    if (items.length === 0) return;
    const nameWidth = Math.max(title.length, ...items.map(([name]) => name.length));
    const countWidth = Math.max(column.length, ...items.map(([, count]) => n(count).length));
    lines.push('', `${title.padEnd(nameWidth)}  ${column.padStart(countWidth)}`);
    for (const [name, count] of items) lines.push(`${name.padEnd(nameWidth)}  ${n(count).padStart(countWidth)}`);
  };
  // Labels are the manifest's own text: shown escaped, never obeyed by the terminal.
  table('top labels', 'entries', r.topLabels.map((l) => [printable(l.label, 80), l.entries]));
  table('top hosts', 'entries', r.topHosts.map((h) => [h.host, h.urls]));
  return lines.join('\n');
}

/**
 * A set of id keys: small non-negative integers as bits in a growing bitmap (1M dense ids take
 * 128 KB instead of tens of MB in a Set), everything else in a Set.
 */
class IdSet {
  size = 0;
  private bits = new Uint32Array(1 << 10);
  private readonly others = new Set<string | number>();

  /** Adds the key; false when it was there already. */
  add(key: string | number): boolean {
    if (typeof key === 'number' && key >= this.bits.length * 32 && key < 1 << 30 && key < 64 * this.size + (1 << 24)) {
      let length = this.bits.length;
      while (length * 32 <= key) length *= 2;
      const grown = new Uint32Array(length);
      grown.set(this.bits);
      this.bits = grown;
    }
    if (typeof key === 'number' && key < this.bits.length * 32) {
      const word = key >>> 5;
      const bit = 1 << (key & 31);
      if ((this.bits[word]! & bit) !== 0) return false;
      this.bits[word] = this.bits[word]! | bit;
      // Set before the bitmap grew over it?
      if (this.others.size > 0 && this.others.delete(key)) return false;
      this.size++;
      return true;
    }
    if (this.others.has(key)) return false;
    this.others.add(key);
    this.size++;
    return true;
  }
}
