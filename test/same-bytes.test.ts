// Placeholders and duplicates (#12, part 3): one host answering many distinct URLs with the same
// bytes serves a placeholder (failed `placeholder`, nothing kept on disk); other shared bytes are
// duplicates, kept and named in duplicate_of; the threshold is a flag, 0 turning the check off.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { parse } from 'csv-parse/sync';
import { DigestPrefixes, prefixOf, SameBytes, settleSameBytes } from '../engine/same-bytes.ts';
import { TableFile, type IndexRow } from '../engine/index-table.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { cli } from './support/cli.ts';

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
type Row = Record<string, string>;

let a: Origin;
let b: Origin;
let dir: string;
before(async () => {
  [a, b] = await Promise.all([startOrigin(), startOrigin()]);
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-same-bytes-'));
});
after(async () => {
  await Promise.all([a.close(), b.close()]);
  await rm(dir, { recursive: true, force: true });
});

/**
 * In manifest order: a placeholder early and late on host a (6 distinct URLs, one image), the same
 * bytes once on host b (one URL there: an image), two URLs of a with one image (below the
 * threshold), one URL under three ids, one image on a and b (2 + 1 URLs: duplicates across hosts),
 * ordinary images and a 404.
 */
function entries(): Array<{ id: string; url: string }> {
  const list: Array<{ id: string; url: string }> = [];
  const add = (id: string, url: string): void => void list.push({ id, url });
  add('ph1', `${a.url}/img/unavailable.jpg?p=1`);
  add('ph2', `${a.url}/img/unavailable.jpg?p=2`);
  add('img1', `${a.url}/img/one.jpg`);
  add('dup1', `${a.url}/img/twin.jpg?copy=1`);
  add('ph3', `${a.url}/img/unavailable.jpg?p=3`);
  add('phb', `${b.url}/img/unavailable.jpg?p=b`);
  add('same1', `${a.url}/img/same.png`);
  add('gone', `${a.url}/status/404`);
  add('dup2', `${a.url}/img/twin.jpg?copy=2`);
  add('same2', `${a.url}/img/same.png`);
  add('cross1', `${b.url}/img/cross.jpg?at=b`);
  add('cross2', `${a.url}/img/cross.jpg?at=a1`);
  add('img2', `${b.url}/img/two.jpg`);
  add('same3', `${a.url}/img/same.png`);
  add('ph4', `${a.url}/img/unavailable.jpg?p=4`);
  add('cross3', `${a.url}/img/cross.jpg?at=a2`);
  add('ph5', `${a.url}/img/unavailable.jpg?p=5`);
  add('ph6', `${a.url}/img/unavailable.jpg?p=6`);
  return list;
}

async function run(name: string, flags: string[]): Promise<{ rows: Map<string, Row>; order: string[]; out: string; stderr: string; summary: { fetched: number; failed: number; entries: number; failuresByReason: Record<string, number> } }> {
  const list = entries();
  const manifest = join(dir, `${name}.csv`);
  await writeFile(manifest, 'id,url\n' + list.map((e) => `${e.id},${e.url}\n`).join(''));
  const out = join(dir, `${name}-out`);
  const result = await cli(['run', manifest, '--out', out, '--allow-private-network', '--json', ...flags]);
  assert.equal(result.code, 0, result.stderr);
  const table = parse(await readFile(join(out, `${name}.csv`), 'utf8'), { columns: true }) as Row[];
  assert.deepEqual(table.map((r) => r.image_id), list.map((e) => e.id), 'every entry once, in manifest order');
  return { rows: new Map(table.map((r) => [r.image_id!, r])), order: table.map((r) => r.image_id!), out, stderr: result.stderr, summary: JSON.parse(result.stdout) };
}

/** Every file under the split's folder, by content hash. */
async function filesOnDisk(out: string, split: string): Promise<string[]> {
  const names = await readdir(join(out, split));
  return Promise.all(names.map(async (name) => sha256(await readFile(join(out, split, name)))));
}

const PLACEHOLDER = sha256(sampleImage('unavailable', 'jpeg'));

describe('placeholders and duplicates in run', () => {
  for (const concurrency of ['1', '16']) {
    test(`one host's placeholder fails everywhere on it, its bytes are not on disk; duplicates are named (concurrency ${concurrency})`, async () => {
      const { rows, out, stderr, summary } = await run(`sb${concurrency}`, ['--concurrency', concurrency]);
      const placeholders = ['ph1', 'ph2', 'ph3', 'ph4', 'ph5', 'ph6'];
      for (const id of placeholders) {
        const row = rows.get(id)!;
        assert.deepEqual([row.status, row.reason, row.path, row.bytes, row.format, row.original_bytes, row.duplicate_of], ['failed', 'placeholder', '', '0', '', '', ''], id);
        assert.equal(row.sha256, PLACEHOLDER, `${id}: the placeholder's sha256 says which bytes`);
        assert.equal(row.http_status, '200');
        assert.equal(row.detail, 'the same bytes as 5 other entries of this host: a placeholder, not kept');
      }
      // The same bytes from one URL of host b: an image there, and the first kept one with them.
      assert.deepEqual([rows.get('phb')!.status, rows.get('phb')!.sha256, rows.get('phb')!.duplicate_of], ['fetched', PLACEHOLDER, '']);
      assert.deepEqual(await filesOnDisk(out, `sb${concurrency}`).then((hashes) => hashes.filter((h) => h === PLACEHOLDER).length), 1, "only host b's copy is on disk");

      const duplicateOf = (id: string): string => rows.get(id)!.duplicate_of!;
      assert.deepEqual(['dup1', 'dup2', 'same1', 'same2', 'same3', 'cross1', 'cross2', 'cross3'].map(duplicateOf), ['', 'dup1', '', 'same1', 'same1', '', 'cross1', 'cross1']);
      for (const id of ['dup2', 'same2', 'same3', 'cross2', 'cross3']) assert.equal(rows.get(id)!.status, 'fetched', `${id}: a duplicate is kept`);
      for (const id of ['img1', 'img2', 'gone']) assert.equal(duplicateOf(id), '');
      assert.equal(rows.get('gone')!.reason, 'http-404');

      // Every entry accounted for, and the summary agrees with the table.
      const fetched = [...rows.values()].filter((r) => r.status === 'fetched').length;
      assert.equal(fetched, 11);
      assert.deepEqual({ entries: summary.entries, fetched: summary.fetched, failed: summary.failed }, { entries: 18, fetched: 11, failed: 7 });
      assert.deepEqual(summary.failuresByReason, { placeholder: 6, 'http-404': 1 });
      assert.equal((await filesOnDisk(out, `sb${concurrency}`)).length, 11, 'one file per kept image');
      for (const row of rows.values()) if (row.status === 'fetched') assert.equal(sha256(await readFile(join(out, row.path!))), row.sha256);
      assert.match(stderr, /^Same bytes: 5 images repeat an earlier one \(its id in duplicate_of\)$/m);
      assert.match(stderr, /placeholder +6 +the same bytes as other URLs of its host/);
    });
  }

  test('--placeholder-threshold 0 keeps every image and names the repeats; 1 is refused with a clear message', async () => {
    const { rows, out, summary } = await run('off', ['--placeholder-threshold', '0']);
    assert.deepEqual(['ph1', 'ph2', 'ph3', 'ph4', 'ph5', 'ph6', 'phb'].map((id) => [rows.get(id)!.status, rows.get(id)!.duplicate_of]), [['fetched', ''], ...Array(6).fill(['fetched', 'ph1'])]);
    assert.equal(summary.fetched, 17);
    assert.equal((await filesOnDisk(out, 'off')).filter((h) => h === PLACEHOLDER).length, 7);

    const refused = await cli(['run', join(dir, 'off.csv'), '--out', join(dir, 'never'), '--placeholder-threshold', '1']);
    assert.equal(refused.code, 2);
    // commander's usual two lines for a bad option: the error, then where to find the usage.
    assert.match(refused.stderr, /^error: option '--placeholder-threshold <n>' argument '1' is invalid\. --placeholder-threshold takes 0 \(no check\) or a whole number from 2 to 1000000, not "1"\.\n\(run with --help for usage\)\n*$/);
  });

  test('a higher threshold than the placeholder reaches keeps it as duplicates', async () => {
    const { rows } = await run('seven', ['--placeholder-threshold', '7']);
    assert.deepEqual(['ph1', 'ph6'].map((id) => [rows.get(id)!.status, rows.get(id)!.duplicate_of]), [['fetched', ''], ['fetched', 'ph1']]);
  });
});

describe('the pieces', () => {
  test('DigestPrefixes finds the repeated 64-bit prefixes across its chunks, and their rows in order', () => {
    const digests = new DigestPrefixes();
    const hex = (n: number): string => n.toString(16).padStart(16, '0').padEnd(64, 'f');
    // Rows complete out of order: sequence numbers are given, not counted.
    for (let n = 0; n < 70_000; n++) digests.add(hex(n * 7919), 70_000 - n);
    digests.add(hex(5 * 7919), 80_000);
    digests.add(hex(69_999 * 7919), 0);
    const { prefixes, sequences } = digests.repeating();
    assert.deepEqual([...prefixes].sort(), [prefixOf(hex(5 * 7919)), prefixOf(hex(69_999 * 7919))].sort());
    assert.deepEqual([...sequences], [0, 1, 69_995, 80_000]);
  });

  test('settleSameBytes rewrites only the repeated rows of a table over 1 MiB whose ids hold quotes, commas and line breaks', async () => {
    const written = join(dir, 'written.csv');
    const table = new TableFile(written);
    const digests = new DigestPrefixes();
    const rows: IndexRow[] = [];
    const hex = (n: number): string => sha256(Buffer.from(String(n)));
    for (let n = 0; n < 30_000; n++) {
      const id = n % 3 === 0 ? `id"${n}\n,x` : `id${n}`;
      // Every 1,000th row is one host's placeholder; rows 5 and 20,002 share bytes; the rest are unique.
      const digest = n % 1000 === 999 ? 'f'.repeat(64) : n === 20_002 ? hex(5) : hex(n);
      const row: IndexRow = { image_id: id, label: '', url: `http://h${n % 1000 === 999 ? 0 : n % 7}/i${n}.jpg`, path: `s/${n}.jpg`, status: 'fetched', bytes: 100, format: 'jpeg', attempts: 1, detail: n % 5 === 0 ? 'a "detail", with\r\nbreaks' : '', sha256: digest };
      rows.push(row);
      digests.add(digest, n);
      table.write(row);
    }
    await table.commit();
    assert.ok((await readFile(written)).length > 2 ** 20, 'more than one read chunk');
    const settled = new TableFile(join(dir, 'settled.csv'));
    const changed: string[] = [];
    await settleSameBytes(written, settled, digests.repeating(), 3, async ({ before, after }) => void changed.push(`${before.image_id}:${after.status}:${after.duplicate_of ?? ''}`));
    await settled.commit();
    const back = parse(await readFile(join(dir, 'settled.csv'), 'utf8'), { columns: true }) as Row[];
    assert.equal(back.length, rows.length);
    assert.equal(changed.length, 31);
    assert.ok(changed.includes('id20002:fetched:id5'));
    for (const [n, row] of back.entries()) {
      if (n % 1000 === 999) assert.deepEqual([row.status, row.reason, row.path], ['failed', 'placeholder', ''], `row ${n}`);
      else if (n === 20_002) assert.equal(row.duplicate_of, 'id5');
      else assert.deepEqual(row, Object.fromEntries(Object.keys(row).map((c) => [c, String((rows[n] as Record<string, unknown>)[c] ?? '')])), `row ${n} as written`);
    }
  });

  test('SameBytes counts distinct URLs per host, not entries', () => {
    const same = new SameBytes(3);
    for (const url of ['http://h/a', 'http://h/a', 'http://h/b', 'http://other/c']) same.add('x', url);
    assert.equal(same.placeholder('x', 'http://h/a'), null, 'two URLs of h');
    same.add('x', 'http://h/c');
    assert.match(same.placeholder('x', 'http://h/zzz')!, /as 3 other entries/);
    assert.equal(same.placeholder('x', 'http://other/c'), null);
    assert.equal(same.repeated('x'), true);
    assert.equal(new SameBytes(0).placeholder('x', 'http://h/a'), null);
  });

  test('SameBytes: bytes seen once are no placeholder unless the threshold is 1, and count once their digest repeats', () => {
    const three = new SameBytes(3);
    three.add('y', 'http://h/a');
    assert.equal(three.placeholder('y', 'http://h/a'), null);
    assert.equal(three.repeated('y'), false);
    three.add('y', 'http://h/b');
    three.add('y', 'http://h/c');
    assert.match(three.placeholder('y', 'http://h/c')!, /as 2 other entries of this host/, 'the first URL counts once its digest repeats');
    const one = new SameBytes(1);
    one.add('z', 'http://h/a');
    assert.match(one.placeholder('z', 'http://h/a')!, /as 0 other entries/);
    assert.equal(one.placeholder('z', 'http://other/a'), null, 'another host');
  });
});
