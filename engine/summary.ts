// Tallies of a run: what a user reads at the end, and what --json prints.

import type { IndexRecord } from './index-table.ts';
import { FAILURE_REASONS, type FailureReason } from './outcome.ts';
import { hostOf } from './fetch/url.ts';

export interface Summary {
  split: string;
  entries: number;
  fetched: number;
  skipped: number;
  failed: number;
  duplicates: number;
  /** Bytes fetched by this run (skipped images not counted). */
  bytes: number;
  seconds: number;
  failuresByReason: Partial<Record<FailureReason, number>>;
  failuresByHost: Array<{ host: string; failed: number }>;
  interrupted: boolean;
}

export class Tally {
  fetched = 0;
  skipped = 0;
  failed = 0;
  bytes = 0;
  #reasons = new Map<FailureReason, number>();
  #hosts = new Map<string, number>();

  get done(): number {
    return this.fetched + this.skipped + this.failed;
  }

  add(record: IndexRecord): void {
    const { outcome } = record;
    if (outcome.status === 'fetched') this.fetched++;
    else if (outcome.status === 'skipped') this.skipped++;
    else this.failed++;
    if (outcome.status === 'fetched') this.bytes += outcome.bytes;
    if (outcome.status !== 'failed') return;
    this.#reasons.set(outcome.reason, (this.#reasons.get(outcome.reason) ?? 0) + 1);
    const host = hostOf(outcome.url || record.urls[0] || '');
    this.#hosts.set(host, (this.#hosts.get(host) ?? 0) + 1);
  }

  /** An image counted as stored that turned out a failure after the run (a placeholder). */
  unstore(from: 'fetched' | 'skipped', bytes: number, url: string, reason: FailureReason): void {
    if (from === 'fetched') {
      this.fetched--;
      this.bytes -= bytes;
    } else this.skipped--;
    this.failed++;
    this.#reasons.set(reason, (this.#reasons.get(reason) ?? 0) + 1);
    const host = hostOf(url);
    this.#hosts.set(host, (this.#hosts.get(host) ?? 0) + 1);
  }

  summary(split: string, duplicates: number, seconds: number, interrupted: boolean, topHosts = 10): Summary {
    const byReason = [...this.#reasons].sort((a, b) => b[1] - a[1]);
    const byHost = [...this.#hosts].sort((a, b) => b[1] - a[1]).slice(0, topHosts);
    return {
      split,
      entries: this.done,
      fetched: this.fetched,
      skipped: this.skipped,
      failed: this.failed,
      duplicates,
      bytes: this.bytes,
      seconds: Math.round(seconds * 10) / 10,
      failuresByReason: Object.fromEntries(byReason),
      failuresByHost: byHost.map(([host, failed]) => ({ host, failed })),
      interrupted,
    };
  }
}

/** Sizes are counted in 1024s, so they are labelled so: 1.5 MiB, not 1.5 MB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** The noun for a count: plural(1, 'entry', 'entries') is 'entry', plural(2, 'image') is 'images'. */
export function plural(count: number, singular: string, many = `${singular}s`): string {
  return count === 1 ? singular : many;
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

export function formatSummary(s: Summary): string {
  const lines: string[] = [];
  const rate = s.seconds > 0 ? ` (${((s.fetched + s.skipped + s.failed) / s.seconds).toFixed(0)} images/s)` : '';
  lines.push(`${s.interrupted ? 'Interrupted' : 'Done'}: split ${s.split}, ${s.entries} ${plural(s.entries, 'entry', 'entries')} in ${formatDuration(s.seconds)}${rate}`);
  lines.push(`  fetched  ${s.fetched}  (${formatBytes(s.bytes)})`);
  lines.push(`  skipped  ${s.skipped}  (already stored)`);
  lines.push(`  failed   ${s.failed}`);
  if (s.duplicates > 0) lines.push(`  duplicate ids ignored: ${s.duplicates}`);
  const reasons = Object.entries(s.failuresByReason) as Array<[FailureReason, number]>;
  if (reasons.length > 0) {
    lines.push('Failures by reason:');
    for (const [reason, count] of reasons) lines.push(`  ${reason.padEnd(18)} ${String(count).padStart(8)}  ${FAILURE_REASONS[reason]}`);
  }
  if (s.failuresByHost.length > 0) {
    lines.push('Failures by host:');
    for (const { host, failed } of s.failuresByHost) lines.push(`  ${host.padEnd(40)} ${String(failed).padStart(8)}`);
  }
  if (s.interrupted) lines.push('Re-run the same command to continue: stored images are skipped.');
  return lines.join('\n');
}
