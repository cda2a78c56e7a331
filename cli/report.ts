// `cloudfetch report`: what is missing and why — failures by reason (with example URLs), by host
// and by HTTP status; a CSV of the missing images (URL and label: the seed of "what can the URL
// tell us"); and one self-contained page (report-page.ts) to study before a retry.

import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { count, emptyCounts, queuedSplits, splitRows, type CloudRow, type SplitCounts } from '../aws/home/cloud-state.ts';
import { describePending, queueBusy, queueState, type QueueState } from '../aws/home/queue-state.ts';
import { hostOf } from '../engine/fetch/url.ts';
import { csvField } from '../engine/index-table.ts';
import { FAILURE_REASONS, isFailureReason, type FailureReason } from '../engine/outcome.ts';
import { printable } from '../engine/printable.ts';
import { formatBytes, plural } from '../engine/summary.ts';
import { UsageError } from './errors.ts';
import { EXAMPLES_PER_REASON, percent, reportPage } from './report-page.ts';
import { command, type Target } from './target.ts';

export interface HostReport extends SplitCounts {
  host: string;
  /** The host's most frequent failure reason ('' when none failed). */
  topReason: FailureReason | '';
}

export interface FailureExample {
  image_id: string;
  url: string;
}

export interface SplitReport {
  split: string;
  manifest: string;
  /** When the manifest function finished splitting it (ISO). */
  splitAt: string;
  counts: SplitCounts;
  /** Distinct hosts in the split; byHost holds the `top` with the most failures. */
  hosts: number;
  byHost: HostReport[];
  byStatus: Record<string, number>;
  /** The first few failed images of each reason, in manifest order. */
  examples: Record<string, FailureExample[]>;
}

/** Every split asked for, and the queue its counts were made against (null: the target has no queue URL). */
export interface Report {
  splits: SplitReport[];
  queue: QueueState | null;
}

const MISSING_HEADER = 'split,image_id,label,url,host,status,reason\n';

/** The HTTP status family a reason stands for, when it is one. */
function statusOf(reason: string): string | null {
  if (reason === 'rate-limited') return '429';
  const match = /^http-(\d{3}|4xx|5xx)$/.exec(reason);
  return match ? match[1]! : null;
}

function topReason(byReason: SplitCounts['byReason']): FailureReason | '' {
  let top: FailureReason | '' = '';
  for (const [reason, n] of Object.entries(byReason) as Array<[FailureReason, number]>) if (!top || n > byReason[top]!) top = reason;
  return top;
}

export async function buildReport(t: Target, o: { split?: string; csv?: string; top: number }): Promise<Report> {
  const [splits, queue] = await Promise.all([queuedSplits(t.s3, t.bucket, o.split), queueState(t)]);
  if (o.split && splits.length === 0) throw new UsageError(`no split "${o.split}" with an index in the bucket (see ${command(t, 'status')})`);
  const csv = o.csv ? createWriteStream(o.csv) : null;
  csv?.write(MISSING_HEADER);
  const reports: SplitReport[] = [];
  try {
    for (const { split, manifest, startedAt, finishedAt } of splits) {
      const counts = emptyCounts();
      const hosts = new Map<string, SplitCounts>();
      const byStatus: Record<string, number> = {};
      const examples: Record<string, FailureExample[]> = {};
      // As `status --counts` counts: an image whose job will be tried again is pending, not failed.
      for await (const row of splitRows(t.s3, t.bucket, split, { queueBusy: queueBusy(queue) })) {
        count(counts, row);
        const host = hostOf(row.url);
        let h = hosts.get(host);
        if (!h) hosts.set(host, (h = emptyCounts()));
        count(h, row);
        if (row.status === 'failed') {
          const some = (examples[row.reason] ??= []);
          if (some.length < EXAMPLES_PER_REASON) some.push({ image_id: row.image_id, url: row.url });
        }
        const code = statusOf(row.reason);
        if (code) byStatus[code] = (byStatus[code] ?? 0) + 1;
        if (csv && row.status !== 'fetched' && !csv.write(missingRow(split, row, host))) await once(csv, 'drain');
      }
      const byHost = [...hosts]
        .map(([host, h]) => ({ host, ...h, topReason: topReason(h.byReason) }))
        .sort((a, b) => b.failed - a.failed || b.entries - a.entries || a.host.localeCompare(b.host))
        .slice(0, o.top);
      reports.push({ split, manifest, splitAt: finishedAt ?? startedAt, counts, hosts: hosts.size, byHost, byStatus, examples });
    }
  } finally {
    if (csv) {
      csv.end();
      await once(csv, 'close');
    }
  }
  return { splits: reports, queue };
}

/** A line of the missing-images CSV, which people open in a spreadsheet (the index CSV, read by pandas, stays exact). */
export function missingRow(split: string, row: CloudRow, host: string): string {
  return [split, row.image_id, row.label, row.url, host, row.status, row.reason].map((v) => csvField(inert(v))).join(',') + '\n';
}

/** A cell a spreadsheet would run as a formula, quoted into text (OWASP's CSV injection advice). */
function inert(value: string | number | undefined): string | number | undefined {
  return typeof value === 'string' && /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
}

export function formatReport({ splits, queue }: Report, t: { args: readonly string[] }): string {
  const lines: string[] = [];
  if (splits.length === 0) lines.push(`No split to report on yet: ${command(t, 'submit <manifest>')} first.`);
  for (const r of splits) {
    const c = r.counts;
    lines.push(`${r.split}: ${c.entries} ${plural(c.entries, 'image')} — ${c.fetched} stored (${percent(c.fetched, c.entries)}, ${formatBytes(c.bytes)}), ${c.failed} failed, ${describePending(c, queue)}`);
    const reasons = Object.entries(c.byReason).sort((a, b) => b[1] - a[1]);
    if (reasons.length > 0) lines.push('  by reason:');
    for (const [reason, n] of reasons) lines.push(`    ${reason.padEnd(18)} ${String(n).padStart(8)}  ${isFailureReason(reason) ? FAILURE_REASONS[reason] : ''}`);
    const codes = Object.entries(r.byStatus).sort((a, b) => b[1] - a[1]);
    if (codes.length > 0) lines.push(`  by HTTP status: ${codes.map(([code, n]) => `${code} ${n}`).join(', ')}`);
    const failing = r.byHost.filter((h) => h.failed > 0);
    if (failing.length > 0) lines.push(`  by host (failed of images; ${r.hosts} ${plural(r.hosts, 'host')} in all):`);
    for (const h of failing) lines.push(`    ${h.host.padEnd(40)} ${String(h.failed).padStart(8)} of ${String(h.entries).padEnd(8)} ${percent(h.failed, h.entries).padStart(6)}  ${h.topReason}`);
  }
  // Reasons and HTTP statuses are read from the bucket: shown, never obeyed by the terminal.
  return lines.map((line) => printable(line, 2000)).join('\n');
}

export async function writeHtmlReport(file: string, { splits, queue }: Report, t: Target): Promise<void> {
  await writeFile(file, reportPage({ bucket: t.bucket, madeAt: new Date(), splits, queue, args: t.args }));
}
