// The report page from a known report: the figures a student reads, values from the bucket that
// stay text whatever they hold, and a Content-Security-Policy that lets only the page's own style
// and script run.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { emptyCounts, type SplitCounts } from '../aws/home/cloud-state.ts';
import { escapeHtml, reportPage } from '../cli/report-page.ts';
import { missingRow, type HostReport, type SplitReport } from '../cli/report.ts';
import { formatIndexRow } from '../engine/index-table.ts';

const HOSTILE = '<script>alert(1)</script>';

function counts(fetched: number, byReason: Record<string, number>, pending = 0): SplitCounts {
  const failed = Object.values(byReason).reduce((a, b) => a + b, 0);
  return { ...emptyCounts(), entries: fetched + failed + pending, fetched, failed, pending, bytes: fetched * 1000, byReason };
}

const host = (name: string, c: SplitCounts, topReason: HostReport['topReason']): HostReport => ({ host: name, ...c, topReason });

/** 1,000 images: 900 stored, 90 failed, 10 pending, on three hosts, one of them hostile. */
function knownSplit(): SplitReport {
  return {
    split: 'train',
    manifest: 'manifests/train.json',
    splitAt: '2026-11-30T08:00:00.000Z',
    counts: counts(900, { 'http-404': 50, 'http-403': 30, timeout: 6, [HOSTILE]: 4 }, 10),
    hosts: 3,
    byHost: [
      host('images.example.com', counts(500, { 'http-404': 50, 'http-403': 10 }), 'http-404'),
      host(HOSTILE, counts(100, { 'http-403': 20, [HOSTILE]: 4 }, 10), 'http-403'),
      host('cdn.example.org', counts(300, { timeout: 6 }), 'timeout'),
    ],
    byStatus: { '404': 50, '403': 30 },
    examples: {
      'http-404': [{ image_id: '7', url: 'https://images.example.com/7.jpg' }, { image_id: '8"onmouseover="alert(1)', url: 'javascript:alert(document.cookie)' }],
      'http-403': [{ image_id: '9', url: `https://h/${HOSTILE}?a=1&b=2` }],
      timeout: [{ image_id: '10', url: 'https://evil.example/\u202egpj.exe' }],
      [HOSTILE]: [{ image_id: '11', url: '' }],
    },
  };
}

const PAGE_TAGS = new Set('!doctype html head meta title style body header h1 p code time dl div dt dd section h2 svg rect span h3 table thead tr th button tbody td script'.split(' '));
const PAGE_ATTRIBUTES = new Set('lang charset http-equiv content name datetime class id viewbox preserveaspectratio role aria-label x width height data-type aria-sort scope type data-v'.split(' '));

const page = (over: Partial<Parameters<typeof reportPage>[0]> = {}): string =>
  reportPage({ bucket: 'my-bucket', madeAt: new Date('2026-12-01T10:20:30.000Z'), splits: [knownSplit()], queue: { waiting: 12, inFlight: 3, delayed: 0, deadLetter: 2 }, args: [], ...over });

const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&amp;': '&' };

/** The page as text, roughly as a reader sees it. */
const text = (html: string): string =>
  html.replace(/<(style|script)[^>]*>[\s\S]*?<\/\1>/g, '').replace(/<[^>]+>/g, ' ').replace(/&(lt|gt|quot|#39|amp);/g, (e) => ENTITIES[e]!).replace(/\s+/g, ' ');

/** The cells of each table body row whose first cell is `first`. */
function row(html: string, first: string): string[] {
  const rows = [...html.matchAll(/<tr>(.*?)<\/tr>/g)].map((m) => [...m[1]!.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => text(c[1]!).trim()));
  const found = rows.find((cells) => cells[0] === first);
  assert.ok(found, `a row for ${first}`);
  return found;
}

describe('the report page', () => {
  test('shows the totals, the time made, the queue, every reason and the hosts by failures', () => {
    const html = page();
    const shown = text(html);
    assert.match(shown, /Bucket my-bucket , split train \. Made 2026-12-01 10:20:30 UTC \./);
    assert.match(html, /<time datetime="2026-12-01T10:20:30.000Z">2026-12-01 10:20:30 UTC<\/time>/);
    assert.match(shown, /images 1,000 stored 900 failed 90 pending 10 success 90\.0%/);
    assert.match(shown, /waiting 12 in flight 3 dead-letter queue 2/);
    assert.match(shown, /Still working: 15 jobs are waiting or being fetched/);
    assert.match(shown, /cloudfetch retry sends the dead-letter jobs back/);

    assert.deepEqual(row(html, 'http-404'), ['http-404', '50', '55.6%', 'no: final', 'HTTP 404 Not Found']);
    assert.deepEqual(row(html, 'http-403'), ['http-403', '30', '33.3%', 'no: final', 'HTTP 403 Forbidden (often hotlink or bot protection)']);
    assert.deepEqual(row(html, 'timeout'), ['timeout', '6', '6.7%', 'yes, with backoff', 'no answer within the time limit']);
    assert.deepEqual(row(html, HOSTILE), [HOSTILE, '4', '4.4%', 'unknown', 'not a reason this version knows']);
    assert.match(shown, /By HTTP status: 404 50, 403 30\./);

    assert.deepEqual(row(html, 'images.example.com'), ['images.example.com', '560', '500', '60', '89.3%', 'http-404 50']);
    assert.deepEqual(row(html, 'cdn.example.org'), ['cdn.example.org', '306', '300', '6', '98.0%', 'timeout 6']);
    assert.match(shown, /All 3 hosts, 3 with failures/);
    // Sortable: numbers carry their value; the hosts come sorted by failures.
    assert.match(html, /<td class="num" data-v="0\.8928571428571429">89\.3%<\/td>/);
    assert.match(html, /<th class="num" aria-sort="descending" scope="col"><button type="button">failed<\/button><\/th>/);
    const hosts = [...html.matchAll(/<tr><td><code>([^<]*)<\/code><\/td><td class="num" data-v="\d+">[\d,]+<\/td><td class="num" data-v="\d+">/g)].map((m) => m[1]);
    assert.deepEqual(hosts, ['images.example.com', escapeHtml(HOSTILE), 'cdn.example.org']);

    assert.match(shown, /http-404 50 https:\/\/images\.example\.com\/7\.jpg id 7 javascript:alert\(document\.cookie\) id 8"onmouseover="alert\(1\)/);
    assert.match(shown, /\(no URL\) id 11/);
  });

  test('values from the bucket stay text: no markup, no links, no attributes, no disguised URLs', () => {
    const html = page({ bucket: `b${HOSTILE}`, splits: [{ ...knownSplit(), split: `"><img src=x onerror=alert(1)>`, manifest: `manifests/${HOSTILE}` }] });
    // Every tag and attribute is one the page builder writes: none came from a value.
    const tags = [...html.matchAll(/<([a-z0-9!]+)([^>]*)>/gi)];
    assert.deepEqual(new Set(tags.map((t) => t[1]!.toLowerCase())), PAGE_TAGS);
    const attributes = tags.slice(1).flatMap((t) => [...t[2]!.matchAll(/\s([a-z-]+)(?:="([^"]*)")?/gi)]);
    assert.deepEqual(new Set(attributes.map((a) => a[1]!.toLowerCase())), PAGE_ATTRIBUTES);
    assert.ok(attributes.every((a) => !/javascript:|alert/.test(a[2] ?? '')), 'no value in an attribute');
    assert.equal(html.match(/<script/g)?.length, 1, 'only the page’s own script');
    assert.match(html, /<code>javascript:alert\(document\.cookie\)<\/code>/);
    assert.match(html, /<code>&lt;script&gt;alert\(1\)&lt;\/script&gt;<\/code>/);
    assert.match(html, /<code>https:\/\/h\/&lt;script&gt;alert\(1\)&lt;\/script&gt;\?a=1&amp;b=2<\/code>/);
    assert.match(html, /<code>&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;<\/code>/);
    assert.match(html, /<title>cloudfetch report: b&lt;script&gt;alert\(1\)&lt;\/script&gt; \(&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;\)<\/title>/);
    assert.match(html, /evil\.example\/\\u202egpj\.exe/, 'a right-to-left override is shown, not obeyed');
    assert.doesNotMatch(html, /\u202e/);
    assert.equal(escapeHtml(`a&b<c>"d'\u0007`), 'a&amp;b&lt;c&gt;&quot;d&#39;\\u0007');
  });

  test('a Content-Security-Policy lets nothing load, and only the page’s own style and script run', () => {
    const html = page();
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
    assert.ok(csp, 'a CSP meta tag');
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    assert.equal(csp, `default-src 'none'; style-src ${hash(style)}; script-src ${hash(script)}; base-uri 'none'; form-action 'none'`);
    assert.ok(html.indexOf(csp) < html.indexOf('<style>'), 'the policy comes before anything it governs');
    assert.doesNotMatch(html, / style=| on[a-z]+=/, 'no inline style or handler attributes, which the policy would refuse');
    assert.doesNotMatch(html, /https?:\/\/(?!images\.example|h\/|evil\.example)/, 'no address but the examples');
  });

  test('without a queue URL, with a drained queue, and with nothing submitted', () => {
    assert.match(text(page({ queue: null })), /This target has no queue URL .* so waiting and in-flight jobs are not shown\. 10 images have no outcome yet\./);
    assert.match(text(page({ queue: { waiting: 0, inFlight: 0, delayed: 0, deadLetter: 0 } })), /Nothing is waiting or in flight, yet 10 images have no outcome/);
    const done = { ...knownSplit(), counts: counts(900, { 'http-404': 100 }) };
    assert.match(text(page({ splits: [done], queue: { waiting: 0, inFlight: 0, delayed: 0, deadLetter: 0 } })), /Nothing is waiting or in flight: the figures below are final/);
    const empty = text(page({ splits: [] }));
    assert.match(empty, /No split to report on yet: cloudfetch submit <manifest> first\./);
    assert.match(empty, /images 0 stored 0 failed 0 pending 0 success -/);
  });

  test('several splits: totals add up, each split has its section; a long host list says how many are left out', () => {
    const val = { ...knownSplit(), split: 'val', counts: counts(100, { dns: 10 }), hosts: 40 };
    const shown = text(page({ splits: [knownSplit(), val] }));
    assert.match(shown, /splits train , val \./);
    assert.match(shown, /images 1,110 stored 1,000 failed 100 pending 10 success 90\.1%/);
    assert.match(shown, /Split train .* Split val /);
    assert.match(shown, /The 3 hosts with the most failures, of 40 \( --top shows more\)/);
  });

  test('the commands it suggests keep the target flags; one of a thing is singular', () => {
    const dev = { args: ['--dev'] };
    const shown = text(page(dev));
    assert.match(shown, /cloudfetch retry --split train --reasons REASON,… --dev \./);
    assert.match(shown, /\( cloudfetch status --watch --dev \)/);
    assert.match(shown, /cloudfetch retry --dev sends the dead-letter jobs back/);
    assert.match(text(page({ ...dev, splits: [] })), /No split to report on yet: cloudfetch submit <manifest> --dev first\./);

    const one = { ...knownSplit(), counts: counts(0, {}, 1), hosts: 1, byHost: [host('h', counts(0, {}, 1), '')], byStatus: {}, examples: {} };
    const single = text(page({ splits: [one], queue: { waiting: 1, inFlight: 0, delayed: 0, deadLetter: 0 } }));
    assert.match(single, /Still working: 1 job is waiting or being fetched/);
    assert.match(single, /\. 1 image, 0 B stored\./);
    assert.match(single, /The one host, 0 with failures/);
    assert.match(text(page({ splits: [one], queue: null })), /1 image has no outcome yet/);
    assert.match(text(page({ splits: [one], queue: { waiting: 0, inFlight: 0, delayed: 0, deadLetter: 0 } })), /yet 1 image has no outcome/);
  });
});

test('the missing-images CSV (opened in spreadsheets) quotes cells that would run as formulas; the index CSV keeps them exact', () => {
  const row = { image_id: '=1+2', label: '@SUM(A1)', url: '=HYPERLINK("http://evil.example/?x","click")', path: '', status: 'failed' as const, bytes: 0, reason: 'http-404' as const };
  assert.equal(
    missingRow('train', row, '-evil.example'),
    `train,'=1+2,'@SUM(A1),"'=HYPERLINK(""http://evil.example/?x"",""click"")",'-evil.example,failed,http-404\n`,
  );
  assert.equal(missingRow('train', { ...row, image_id: '\t+1', label: '\r-1', url: 'https://a.example/x=1' }, 'a.example'), `train,"'\t+1","'\r-1",https://a.example/x=1,a.example,failed,http-404\n`);
  // Its columns may grow; its first five cells are the values as given.
  assert.equal(formatIndexRow({ image_id: '=1+2', label: '@SUM(A1)', url: '+x', path: '', status: 'failed', reason: 'http-404' }).startsWith('=1+2,@SUM(A1),+x,,failed,'), true);
});
