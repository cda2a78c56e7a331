// The page `cloudfetch report --html` writes: one file a student studies before deciding what to
// retry. Everything in it comes from the bucket, which strangers' URLs fill, so every value is
// escaped, URLs are text (never links), and a Content-Security-Policy lets nothing load or run
// but the page's own style and script (by hash). No framework, no network, prints on paper.

import { createHash } from 'node:crypto';
import { FAILURE_REASONS, isFailureReason, isTransient } from '../engine/outcome.ts';
import { formatBytes, plural } from '../engine/summary.ts';
import type { SplitCounts } from '../aws/home/cloud-state.ts';
import type { HostReport, SplitReport } from './report.ts';
import type { QueueState } from '../aws/home/queue-state.ts';

export interface ReportPageInput {
  bucket: string;
  madeAt: Date;
  splits: SplitReport[];
  /** null: the target has no queue URL. */
  queue: QueueState | null;
  /** The target flags given to `report`, repeated in the commands the page suggests. */
  args: readonly string[];
}

/** Example URLs kept per reason: enough to open a few by hand, few enough to read. */
export const EXAMPLES_PER_REASON = 5;

export const percent = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** HTML-escaped text; control and bidi-override characters shown as \u escapes, so a URL cannot disguise itself. */
export function escapeHtml(value: string | number): string {
  return String(value)
    .replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const integer = new Intl.NumberFormat('en-US');
const n = (value: number): string => integer.format(value);
const utc = (date: Date): string => `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;

/** A time in UTC, which the page's script rewrites in the reader's own time zone. */
function time(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? escapeHtml(iso) : `<time datetime="${date.toISOString()}">${utc(date)}</time>`;
}

const STYLE = `
:root{color-scheme:light;--ok:#7cbf7a;--bad:#ec8f86;--wait:#cfd4da;--line:#dde1e6;--soft:#f5f7f9;--ink:#1f2328;--mute:#5c6670}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#fff;margin:0 auto;padding:1.5rem 2rem 3rem;max-width:78rem}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.3rem;margin:2.2rem 0 .4rem;padding-bottom:.2rem;border-bottom:2px solid var(--line)}
h3{font-size:1.05rem;margin:1.6rem 0 .4rem}p{margin:.4rem 0}.mute{color:var(--mute)}
code{font:.88em/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.totals{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0;padding:0}
.totals div{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.5rem .9rem;min-width:8.5rem}
.totals dt{font-size:.8rem;color:var(--mute);text-transform:uppercase;letter-spacing:.04em}.totals dd{margin:0;font-size:1.45rem;font-variant-numeric:tabular-nums}
.bar{display:block;width:100%;max-width:46rem;height:14px;margin:.5rem 0;border-radius:3px}
.ok{fill:var(--ok);background:var(--ok)}.bad{fill:var(--bad);background:var(--bad)}.wait{fill:var(--wait);background:var(--wait)}
.key{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin:0 .25em 0 .8em;vertical-align:-.05em}
table{border-collapse:collapse;width:100%;margin:.4rem 0 .6rem;font-variant-numeric:tabular-nums}
th,td{text-align:left;vertical-align:top;padding:.35rem .6rem;border-bottom:1px solid var(--line)}
th{background:var(--soft);font-weight:600;font-size:.9rem;white-space:nowrap}
td.num,th.num{text-align:right}tbody tr:nth-child(even){background:#fbfcfd}
th button{font:inherit;color:inherit;background:none;border:0;padding:0;cursor:pointer}
th button::after{content:" \\2195"/"";color:#9aa3ad}th[aria-sort=descending] button::after{content:" \\2193"/"";color:var(--ink)}th[aria-sort=ascending] button::after{content:" \\2191"/"";color:var(--ink)}
.examples dt{margin:.7rem 0 .15rem;font-weight:600}.examples dd{margin:0 0 .1rem 1.2rem}.examples dd span{font-size:.85em}
.yes{color:#1f6f3a}.no{color:#8a3a32}
.note{background:#fff8e6;border:1px solid #f0dfb0;border-radius:6px;padding:.5rem .8rem}
@media print{body{padding:0;max-width:none;font-size:10pt}h2{break-after:avoid}tr,.totals div{break-inside:avoid}th button::after{content:none}
.bar,.key,.ok,.bad,.wait{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
@page{margin:1.4cm}
`;

// Times in the reader's zone; tables sorted by a click on a column header (numbers first largest, text A to Z).
const SCRIPT = `
for (const t of document.querySelectorAll('time[datetime]')) {
  const d = new Date(t.getAttribute('datetime'));
  if (isNaN(d)) continue;
  t.title = t.textContent;
  t.textContent = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });
}
for (const table of document.querySelectorAll('table.sortable')) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, col) => {
    const button = th.querySelector('button');
    if (!button) return;
    button.addEventListener('click', () => {
      const now = th.getAttribute('aria-sort');
      const text = th.dataset.type === 'text';
      const dir = now === 'descending' ? 'ascending' : now === 'ascending' ? 'descending' : text ? 'ascending' : 'descending';
      for (const h of heads) h.removeAttribute('aria-sort');
      th.setAttribute('aria-sort', dir);
      const key = (row) => (text ? row.cells[col].textContent : Number(row.cells[col].dataset.v));
      const order = (a, b) => { const x = key(a), y = key(b); return text ? x.localeCompare(y) : x - y; };
      const rows = [...table.tBodies[0].rows].sort((a, b) => (dir === 'ascending' ? order(a, b) : order(b, a)));
      table.tBodies[0].append(...rows);
    });
  });
}
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
const CSP = `default-src 'none'; style-src ${sha256(STYLE)}; script-src ${sha256(SCRIPT)}; base-uri 'none'; form-action 'none'`;

interface Column<T> {
  title: string;
  /** Numeric columns sort by this value; the others by their text. */
  value?: (row: T) => number;
  cell: (row: T) => string;
}

function table<T>(columns: Array<Column<T>>, rows: T[], sortedBy: number): string {
  const head = columns.map((c, i) => {
    const attributes = `${c.value ? ' class="num"' : ' data-type="text"'}${i === sortedBy ? ' aria-sort="descending"' : ''}`;
    return `<th${attributes} scope="col"><button type="button">${escapeHtml(c.title)}</button></th>`;
  }).join('');
  const body = rows.map((row) => `<tr>${columns.map((c) => (c.value ? `<td class="num" data-v="${c.value(row)}">${c.cell(row)}</td>` : `<td>${c.cell(row)}</td>`)).join('')}</tr>`).join('\n');
  return `<table class="sortable"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** Stored, failed and pending as one stacked bar (SVG attributes, not style: the CSP allows no inline style). */
function outcomeBar(c: SplitCounts): string {
  const parts: Array<[string, number]> = [['ok', c.fetched], ['bad', c.failed], ['wait', c.pending]];
  let x = 0;
  const rects = parts.map(([kind, value]) => {
    const width = c.entries > 0 ? (1000 * value) / c.entries : 0;
    const rect = `<rect class="${kind}" x="${x.toFixed(1)}" width="${width.toFixed(1)}" height="14"/>`;
    x += width;
    return rect;
  }).join('');
  const label = `${n(c.fetched)} stored, ${n(c.failed)} failed, ${n(c.pending)} pending`;
  return `<svg class="bar" viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" aria-label="${label}">${rects}</svg>
<p><span class="key ok"></span>stored ${n(c.fetched)} (${percent(c.fetched, c.entries)})<span class="key bad"></span>failed ${n(c.failed)} (${percent(c.failed, c.entries)})<span class="key wait"></span>pending ${n(c.pending)}</p>`;
}

const HOST_COLUMNS: Array<Column<HostReport>> = [
  { title: 'host', cell: (h) => `<code>${escapeHtml(h.host)}</code>` },
  { title: 'images', value: (h) => h.entries, cell: (h) => n(h.entries) },
  { title: 'stored', value: (h) => h.fetched, cell: (h) => n(h.fetched) },
  { title: 'failed', value: (h) => h.failed, cell: (h) => n(h.failed) },
  { title: 'success', value: (h) => (h.entries > 0 ? h.fetched / h.entries : 0), cell: (h) => percent(h.fetched, h.entries) },
  { title: 'top failure reason', cell: (h) => (h.topReason ? `<code>${escapeHtml(h.topReason)}</code> <span class="mute">${n(h.byReason[h.topReason] ?? 0)}</span>` : '<span class="mute">none</span>') },
];

interface ReasonRow {
  reason: string;
  count: number;
  share: number;
}

const REASON_COLUMNS: Array<Column<ReasonRow>> = [
  { title: 'reason', cell: (r) => `<code>${escapeHtml(r.reason)}</code>` },
  { title: 'images', value: (r) => r.count, cell: (r) => n(r.count) },
  { title: 'of failed', value: (r) => r.share, cell: (r) => `${(100 * r.share).toFixed(1)}%` },
  {
    title: 'retried automatically',
    cell: (r) => (!isFailureReason(r.reason) ? '<span class="mute">unknown</span>' : isTransient(r.reason) ? '<span class="yes">yes, with backoff</span>' : '<span class="no">no: final</span>'),
  },
  { title: 'meaning', cell: (r) => (isFailureReason(r.reason) ? escapeHtml(FAILURE_REASONS[r.reason]) : '<span class="mute">not a reason this version knows</span>') },
];

function examples(r: SplitReport, reasons: ReasonRow[]): string {
  const items = reasons.map(({ reason, count }) => {
    const urls = (r.examples[reason] ?? []).map((e) => `<dd><code>${e.url ? escapeHtml(e.url) : '(no URL)'}</code> <span class="mute">id ${escapeHtml(e.image_id)}</span></dd>`);
    return `<dt><code>${escapeHtml(reason)}</code> <span class="mute">${n(count)}</span></dt>${urls.join('')}`;
  });
  return `<h3>Example URLs by reason</h3>
<p class="mute">The first failed images of each reason (${EXAMPLES_PER_REASON} at most), as text: paste one into a browser to see what the site answers.</p>
<dl class="examples">${items.join('\n')}</dl>`;
}

/** A command to run next, as `command()` in target.ts writes it for the terminal. */
type Command = (what: string) => string;

function splitSection(r: SplitReport, command: Command): string {
  const c = r.counts;
  const reasons: ReasonRow[] = Object.entries(c.byReason)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([reason, count]) => ({ reason, count, share: c.failed > 0 ? count / c.failed : 0 }));
  const codes = Object.entries(r.byStatus).sort((a, b) => b[1] - a[1]);
  const failing = r.byHost.filter((h) => h.failed > 0).length;
  return `<section class="split">
<h2>Split <code>${escapeHtml(r.split)}</code></h2>
<p class="mute">From <code>${escapeHtml(r.manifest)}</code>, split ${time(r.splitAt)}. ${n(c.entries)} ${plural(c.entries, 'image')}, ${formatBytes(c.bytes)} stored.</p>
${outcomeBar(c)}
<h3>Failures by reason</h3>
${reasons.length === 0 ? '<p>No failures.</p>' : `${table(REASON_COLUMNS, reasons, 1)}
<p class="mute">To send failures of chosen reasons again (after changing the user agent or referer, say): ${command(`retry --split ${r.split} --reasons REASON,…`)}.</p>`}
${codes.length > 0 ? `<p>By HTTP status: ${codes.map(([code, count]) => `<code>${escapeHtml(code)}</code> ${n(count)}`).join(', ')}.</p>` : ''}
<h3>Hosts</h3>
<p class="mute">${r.byHost.length < r.hosts ? `The ${n(r.byHost.length)} ${plural(r.byHost.length, 'host')} with the most failures, of ${n(r.hosts)} (<code>--top</code> shows more)` : r.hosts === 1 ? 'The one host' : `All ${n(r.hosts)} hosts`}, ${n(failing)} with failures. Click a column header to sort.</p>
${table(HOST_COLUMNS, r.byHost, 3)}
${reasons.length > 0 ? examples(r, reasons) : ''}
</section>`;
}

/** Big figures in a row of boxes: [label, formatted value]. */
function figures(items: Array<[string, string]>): string {
  return `<dl class="totals">${items.map(([label, value]) => `<div><dt>${label}</dt><dd>${value}</dd></div>`).join('')}</dl>`;
}

function queueSection(queue: QueueState | null, pending: number, command: Command): string {
  if (!queue) {
    return `<p>This target has no queue URL (pass <code>--queue-url</code> and <code>--dlq-url</code>, or deploy with <code>--outputs-file cdk-outputs.json</code>), so waiting and in-flight jobs are not shown. ${n(pending)} ${plural(pending, 'image has', 'images have')} no outcome yet.</p>`;
  }
  const busy = queue.waiting + queue.inFlight + queue.delayed;
  const verdict = busy > 0
    ? `<p class="note">Still working: ${n(busy)} ${plural(busy, 'job is', 'jobs are')} waiting or being fetched, so pending images may yet be stored and failures may yet change. Retry once the queue has drained (${command('status --watch')}).</p>`
    : `<p>Nothing is waiting or in flight${pending > 0 ? `, yet ${n(pending)} ${plural(pending, 'image has', 'images have')} no outcome: their jobs were lost or parked` : ': the figures below are final'}.</p>`;
  const parked = queue.deadLetter > 0 ? ` ${command('retry')} sends the dead-letter jobs back to the queue.` : '';
  const delayed: Array<[string, string]> = queue.delayed ? [['delayed', n(queue.delayed)]] : [];
  return `${figures([['waiting', n(queue.waiting)], ['in flight', n(queue.inFlight)], ...delayed, ['dead-letter queue', n(queue.deadLetter)]])}
${verdict}<p class="mute">Jobs (one per image) of every split share the queue; the dead-letter queue holds jobs whose delivery failed too many times.${parked}</p>`;
}

export function reportPage(input: ReportPageInput): string {
  const command: Command = (what) => `<code>${escapeHtml(['cloudfetch', what, ...input.args].join(' '))}</code>`;
  const total = { entries: 0, fetched: 0, failed: 0, pending: 0 };
  for (const { counts } of input.splits) for (const k of ['entries', 'fetched', 'failed', 'pending'] as const) total[k] += counts[k];
  const names = input.splits.map((s) => `<code>${escapeHtml(s.split)}</code>`).join(', ');
  const title = `cloudfetch report: ${input.bucket}${input.splits.length > 0 ? ` (${input.splits.map((s) => s.split).join(', ')})` : ''}`;
  const body = input.splits.length === 0
    ? `<p>No split to report on yet: ${command('submit <manifest>')} first.</p>`
    : input.splits.map((r) => splitSection(r, command)).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head><body>
<header>
<h1>cloudfetch report</h1>
<p>Bucket <code>${escapeHtml(input.bucket)}</code>${input.splits.length > 0 ? `, ${plural(input.splits.length, 'split')} ${names}` : ''}. Made ${time(input.madeAt.toISOString())}.</p>
${figures([['images', n(total.entries)], ['stored', n(total.fetched)], ['failed', n(total.failed)], ['pending', n(total.pending)], ['success', percent(total.fetched, total.entries)]])}
</header>
<section id="queue">
<h2>Pending and in-flight work</h2>
${queueSection(input.queue, total.pending, command)}
</section>
${body}
<script>${SCRIPT}</script>
</body></html>
`;
}
