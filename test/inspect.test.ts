import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fileSource, openManifest, type Manifest } from '../engine/manifest/index.ts';
import { formatInspectReport, inspectManifest, type InspectReport } from '../engine/manifest/inspect.ts';

const competition = (name: string): string => fileURLToPath(new URL(`fixtures/manifests/competitions/${name}`, import.meta.url));

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-inspect-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function open(name: string, content: string): Promise<Manifest> {
  const path = join(dir, name);
  await writeFile(path, content);
  const manifest = await openManifest(fileSource(path));
  await manifest.scan();
  return manifest;
}

const PROBLEMS = [
  { id: '1', urls: ['https://a.example/1.jpg', 'https://m.example/1.jpg'], labels: ['cat', 'dog'] },
  { id: '2', url: 'https://a.example/2.jpg', label: 'cat' },
  { id: '1', url: 'https://b.example/1b.jpg' }, // duplicate id
  { id: 'x', url: '' }, // no URL
  { id: 'y', urls: ['ftp://a/y', 'not a url'] }, // no usable URL, with a mirror
  { id: 'z', urls: ['nope', 'https://b.example/z.jpg'], label: 'bird' }, // the mirror is usable
  { id: 'x', url: 'https://a.example/x.jpg' }, // duplicate id
  { id: '9007199254740993', url: 'https://a.example/big' }, // beyond 2^53: text, not a number
  { id: '9007199254740992', url: 'https://a.example/big2' },
  { id: '007', url: 'https://c.example/7' },
  { id: 7, url: 'https://c.example/7' }, // not the same id as "007"
  { id: '123456789012', url: 'https://c.example/l' },
  { id: 123456789012, url: 'https://c.example/l' }, // duplicate id, as a number
];

test('inspect counts ids, duplicates, labels, missing and unusable URLs, mirrors and hosts', async () => {
  const manifest = await open('problems.jsonl', PROBLEMS.map((item) => JSON.stringify(item)).join('\n') + '\n');
  const report = await inspectManifest(manifest);
  assert.deepEqual(report, {
    format: 'jsonl',
    entries: 13,
    distinctIds: 10,
    duplicateIds: 3,
    labeled: 3,
    distinctLabels: 3,
    multiLabelEntries: 1,
    topLabels: [
      { label: 'cat', entries: 2 },
      { label: 'dog', entries: 1 },
      { label: 'bird', entries: 1 },
    ],
    urls: 15,
    noUrl: 1,
    badUrl: 1,
    mirrors: 3,
    hosts: 3,
    topHosts: [
      { host: 'a.example', urls: 5 },
      { host: 'c.example', urls: 4 },
      { host: 'b.example', urls: 2 },
    ],
    examples: { noUrl: [4], badUrl: [5], duplicateIds: [3, 7, 13] },
  } satisfies InspectReport);

  const short = await inspectManifest(manifest, { topHosts: 1, topLabels: 2 });
  assert.deepEqual(short.topHosts, [{ host: 'a.example', urls: 5 }]);
  assert.deepEqual(short.topLabels, [
    { label: 'cat', entries: 2 },
    { label: 'dog', entries: 1 },
  ]);
});

test('inspect of the real Furniture train sample, and the report as text', async () => {
  const manifest = await openManifest(fileSource(competition('furniture-2018-train.json')));
  await manifest.scan();
  const report = await inspectManifest(manifest);
  assert.deepEqual(report, {
    format: 'imaterialist',
    entries: 3,
    distinctIds: 3,
    duplicateIds: 0,
    labeled: 3,
    distinctLabels: 3,
    multiLabelEntries: 0,
    topLabels: [
      { label: '5', entries: 1 },
      { label: '38', entries: 1 },
      { label: '128', entries: 1 },
    ],
    urls: 4,
    noUrl: 0,
    badUrl: 0,
    mirrors: 1,
    hosts: 3,
    topHosts: [
      { host: 'img13.360buyimg.com', urls: 1 },
      { host: 'www.example-furniture.com', urls: 1 },
      { host: 'img.example-mall.cn', urls: 1 },
    ],
    examples: { noUrl: [], badUrl: [], duplicateIds: [] },
  } satisfies InspectReport);

  const text = formatInspectReport(report);
  const lines = text.split('\n');
  assert.equal(lines[0], 'format         imaterialist');
  assert.equal(lines[1], 'entries        3');
  assert.ok(lines.includes('labeled        3 (100.0%), 3 distinct labels, 0 multi-label'), text);
  assert.ok(lines.includes('URLs           4, 1 entry with mirrors'), text);
  assert.ok(lines.includes('top hosts                  entries'), text);
  assert.ok(lines.includes('img13.360buyimg.com              1'), text);
});

test('the text report names problem positions as lines for line formats, with thousands separators', async () => {
  const rows = ['url'];
  for (let i = 0; i < 1200; i++) rows.push(i % 400 === 0 ? '' : `https://h${i % 3}.example/${i}.jpg`);
  const manifest = await open('many.csv', rows.join('\n') + '\n');
  const report = await inspectManifest(manifest);
  // Blank lines are skipped by the CSV reader: the three empty cells are whole empty lines here.
  assert.equal(report.entries, 1197);
  const text = formatInspectReport(report);
  assert.match(text, /^entries {8}1,197$/m);
  assert.match(text, /^no URL {9}0 \(0\.0%\)$/m);
  assert.match(text, /^hosts {10}3 \(first usable URL of each entry\)$/m);
});

test('the text report lists the first problem positions, singular and plural right', async () => {
  const manifest = await open('problems2.jsonl', PROBLEMS.map((item) => JSON.stringify(item)).join('\n') + '\n');
  const text = formatInspectReport(await inspectManifest(manifest));
  assert.match(text, /^duplicate ids  3 \(at lines 3, 7, 13\)$/m);
  assert.match(text, /^no URL         1 \(7\.7%\) \(at line 4\)$/m);
  assert.match(text, /^no usable URL  1 \(7\.7%\) \(at line 5\)$/m);
  const one = formatInspectReport(await inspectManifest(await open('one.jsonl', '{"id": 1, "urls": ["https://a.example/1", "https://b.example/1"], "label": "cat"}\n')));
  assert.match(one, /^labeled {8}1 \(100\.0%\), 1 distinct label, 0 multi-label$/m);
  assert.match(one, /^URLs {11}2, 1 entry with mirrors$/m);
});

test('duplicates are found across many ids, numbers and text mixed (bitmap growth, Set fallback)', async () => {
  const lines: string[] = [];
  let expectedDuplicates = 0;
  for (let i = 1; i <= 40_000; i++) lines.push(JSON.stringify({ id: i, url: 'https://a/x' }));
  for (let i = 40_000; i >= 1; i -= 7) {
    lines.push(JSON.stringify({ id: String(i), url: 'https://a/x' }));
    expectedDuplicates++;
  }
  for (const id of ['k1', 'k2', 'k1', '5000000000', '5000000000', '0', '0']) lines.push(JSON.stringify({ id, url: 'https://a/x' }));
  expectedDuplicates += 3;
  const manifest = await open('mixed.jsonl', lines.join('\n'));
  const report = await inspectManifest(manifest);
  assert.equal(report.entries, lines.length);
  assert.equal(report.duplicateIds, expectedDuplicates);
  assert.equal(report.distinctIds, 40_000 + 4);
  assert.deepEqual(report.examples.duplicateIds, [40_001, 40_002, 40_003, 40_004, 40_005]);
});

test('labels with terminal escape sequences are shown escaped in the text report', async () => {
  const manifest = await open('escapes.jsonl', `${JSON.stringify({ id: 1, url: 'https://a.example/1', label: '\u001b]0;owned\u0007cat' })}\n`);
  const text = formatInspectReport(await inspectManifest(manifest));
  assert.match(text, /^\\x1b\]0;owned\\x07cat +1$/m);
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
});
