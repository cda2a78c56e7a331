// `cloudfetch report`: what is missing and why — failures by reason, by host and by HTTP status,
// a CSV of the missing images (URL and label: the seed of "what can the URL tell us"), and a
// self-contained HTML page with charts for people who would rather look than read.

import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { count, emptyCounts, listSplits, splitRows, type CloudRow, type SplitCounts } from '../functions/aws/cloud-state.ts';
import { csvField } from '../functions/core/index-table.ts';
import { FAILURE_REASONS, isFailureReason } from '../functions/core/outcome.ts';
import { formatBytes } from '../functions/core/summary.ts';
import { UsageError } from './errors.ts';
import type { Target } from './target.ts';

export interface SplitReport {
  split: string;
  counts: SplitCounts;
  byHost: Array<{ host: string; missing: number; total: number }>;
  byStatus: Record<string, number>;
}

const MISSING_HEADER = 'split,image_id,label,url,host,status,reason\n';

function hostOf(url: string): string {
  try {
    return new URL(url).host || '(none)';
  } catch {
    return '(invalid URL)';
  }
}

/** The HTTP status family a reason stands for, when it is one. */
function statusOf(reason: string): string | null {
  if (reason === 'rate-limited') return '429';
  const match = /^http-(\d{3}|4xx|5xx)$/.exec(reason);
  return match ? match[1]! : null;
}

export async function buildReport(t: Target, o: { split?: string; csv?: string; top: number }): Promise<SplitReport[]> {
  const statuses = await listSplits(t.s3, t.bucket);
  const splits = statuses.filter((s) => s.state === 'queued' && (!o.split || s.split === o.split)).map((s) => s.split);
  if (o.split && splits.length === 0) throw new UsageError(`no split "${o.split}" with an index in the bucket (see \`cloudfetch status\`)`);
  const csv = o.csv ? createWriteStream(o.csv) : null;
  csv?.write(MISSING_HEADER);
  const reports: SplitReport[] = [];
  try {
    for (const split of splits) {
      const counts = emptyCounts();
      const hosts = new Map<string, { missing: number; total: number }>();
      const byStatus: Record<string, number> = {};
      for await (const row of splitRows(t.s3, t.bucket, split)) {
        count(counts, row);
        const host = hostOf(row.url);
        const h = hosts.get(host) ?? { missing: 0, total: 0 };
        h.total++;
        if (row.status !== 'fetched') h.missing++;
        hosts.set(host, h);
        const code = statusOf(row.reason);
        if (code) byStatus[code] = (byStatus[code] ?? 0) + 1;
        if (csv && row.status !== 'fetched' && !csv.write(missingRow(split, row, host))) await once(csv, 'drain');
      }
      const byHost = [...hosts].map(([host, h]) => ({ host, ...h })).filter((h) => h.missing > 0).sort((a, b) => b.missing - a.missing).slice(0, o.top);
      reports.push({ split, counts, byHost, byStatus });
    }
  } finally {
    if (csv) {
      csv.end();
      await once(csv, 'close');
    }
  }
  return reports;
}

function missingRow(split: string, row: CloudRow, host: string): string {
  return [split, row.image_id, row.label, row.url, host, row.status, row.reason].map(csvField).join(',') + '\n';
}

const percent = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

export function formatReport(reports: SplitReport[]): string {
  const lines: string[] = [];
  if (reports.length === 0) lines.push('No split to report on yet: `cloudfetch submit <manifest>` first.');
  for (const r of reports) {
    const c = r.counts;
    lines.push(`${r.split}: ${c.entries} images — ${c.fetched} stored (${percent(c.fetched, c.entries)}, ${formatBytes(c.bytes)}), ${c.failed} failed, ${c.pending} pending`);
    const reasons = Object.entries(c.byReason).sort((a, b) => b[1] - a[1]);
    if (reasons.length > 0) lines.push('  by reason:');
    for (const [reason, n] of reasons) lines.push(`    ${reason.padEnd(18)} ${String(n).padStart(8)}  ${isFailureReason(reason) ? FAILURE_REASONS[reason] : ''}`);
    const codes = Object.entries(r.byStatus).sort((a, b) => b[1] - a[1]);
    if (codes.length > 0) lines.push(`  by HTTP status: ${codes.map(([code, n]) => `${code} ${n}`).join(', ')}`);
    if (r.byHost.length > 0) lines.push('  by host (missing of total):');
    for (const h of r.byHost) lines.push(`    ${h.host.padEnd(40)} ${String(h.missing).padStart(8)} of ${String(h.total).padEnd(8)} ${percent(h.missing, h.total)}`);
  }
  return lines.join('\n');
}

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Horizontal bars as inline SVG: no script, no external file, opens anywhere. */
function bars(title: string, items: Array<[string, number]>, color: string): string {
  if (items.length === 0) return '';
  const max = Math.max(...items.map(([, n]) => n));
  const row = 22;
  const svg = items.map(([label, n], i) => {
    const width = max > 0 ? Math.max(1, (360 * n) / max) : 0;
    const y = i * row;
    return `<text x="0" y="${y + 15}" class="l">${escapeHtml(label)}</text><rect x="230" y="${y + 3}" width="${width.toFixed(1)}" height="16" fill="${color}"/><text x="${(236 + width).toFixed(1)}" y="${y + 15}">${n}</text>`;
  }).join('');
  return `<h3>${escapeHtml(title)}</h3><svg width="680" height="${items.length * row}" role="img" aria-label="${escapeHtml(title)}">${svg}</svg>`;
}

export async function writeHtmlReport(file: string, reports: SplitReport[]): Promise<void> {
  const sections = reports.map((r) => {
    const c = r.counts;
    return `<section><h2>${escapeHtml(r.split)}</h2>
<p>${c.entries} images: <b>${c.fetched}</b> stored (${percent(c.fetched, c.entries)}, ${formatBytes(c.bytes)}), <b>${c.failed}</b> failed, <b>${c.pending}</b> pending.</p>
${bars('Outcome', [['stored', c.fetched], ['failed', c.failed], ['pending', c.pending]], '#4c78a8')}
${bars('Failures by reason', Object.entries(c.byReason).sort((a, b) => b[1] - a[1]), '#e45756')}
${bars('Failures by HTTP status', Object.entries(r.byStatus).sort((a, b) => b[1] - a[1]), '#f58518')}
${bars('Missing images by host', r.byHost.map((h) => [h.host, h.missing]), '#72b7b2')}
</section>`;
  }).join('\n');
  await writeFile(file, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cloudfetch report</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}svg text{font:12px system-ui,sans-serif}svg text.l{fill:#333}h3{margin:1.2em 0 .3em}</style>
</head><body><h1>cloudfetch report</h1><p>Made ${escapeHtml(new Date().toISOString())}.</p>
${sections || '<p>No split yet.</p>'}
</body></html>
`);
}
