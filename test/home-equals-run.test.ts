// What comes home equals what `run` writes (#10): one hostile manifest through `cloudfetch run`
// and through the local cloud + sync, the two tables compared row by row; ids with control
// characters kept exact on both paths; sync --verify repairing damaged local files.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { parse } from 'csv-parse/sync';
import { bringSplitHome } from '../aws/home/sync.ts';
import { INDEX_COLUMNS } from '../engine/index-table.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { sampleImage, sampleMixPaths, startOrigin, type Origin } from '../local-cloud/origin.ts';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { syncCommand } from '../cli/sync.ts';
import type { Target } from '../cli/target.ts';
import { cli } from './support/cli.ts';

let origin: Origin;
let dir: string;
let dev: DevCloud;
before(async () => {
  origin = await startOrigin();
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-home-'));
  dev = await startDevCloud({
    allowPrivateNetwork: true,
    visibilityTimeoutSeconds: 5,
    fetchConcurrency: 2,
    settings: { maxReceiveCount: 2, imageTimeoutSeconds: 5, fetchTimeoutSeconds: 30, fetchBatchSize: 10 },
    logLevel: 'SILENT',
    log: () => {},
  });
});
after(async () => {
  await dev.stop();
  await origin.close();
  await rm(dir, { recursive: true, force: true });
});

type Row = Record<string, string>;
const readTable = async (file: string): Promise<Row[]> => parse(await readFile(file, 'utf8'), { columns: true }) as Row[];
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Every C0 control character, each in its own id, one id with all of them, and pairs differing only in one. */
const CONTROL_IDS = [
  ...Array.from({ length: 32 }, (_, c) => `ctl${String.fromCharCode(c)}${c}`),
  `all${Array.from({ length: 32 }, (_, c) => String.fromCharCode(c)).join('')}`,
  'twin\n', 'twin\r', 'twin\t', 'twin ',
];

/**
 * The origin's sample mix (404, 403, a 503 and a reset that pass on retry, HTML, a 410 whose mirror
 * works), the ids above, a placeholder (one image for 5 distinct URLs, spread over the manifest, so
 * batches and containers each see a few) and duplicates (two URLs with one image, one URL under three ids).
 */
function hostileEntries(): Array<{ id: string; paths: string[] }> {
  const mix = Array.from({ length: 40 }, (_, i) => ({ id: String(i), paths: sampleMixPaths(i) }));
  for (let p = 1; p <= 5; p++) mix.splice(p * 7, 0, { id: `ph${p}`, paths: [`/img/unavailable.jpg?p=${p}`] });
  mix.splice(3, 0, { id: 'twin1', paths: ['/img/twin.jpg?copy=1'] }, { id: 'same1', paths: ['/img/same.png'] });
  mix.push({ id: 'twin2', paths: ['/img/twin.jpg?copy=2'] }, { id: 'same2', paths: ['/img/same.png'] }, { id: 'same3', paths: ['/img/same.png'] });
  const hostile = CONTROL_IDS.map((id, i) => ({ id, paths: [`/img/ctl${i}.jpg`] }));
  // Failed ones too: their failure record's key (safeSegment of the id) must match the index's id.
  const gone = ['gone\n', 'gone\u0000', 'gone\u001f'].map((id) => ({ id, paths: ['/status/404'] }));
  return [...mix, ...hostile, ...gone, { id: 'nowhere', paths: [] }];
}

function manifest(entries: Array<{ id: string; paths: string[] }>): string {
  const images = entries.map((e) => ({ url: e.paths.map((p) => origin.url + p), image_id: e.id }));
  const annotations = entries.map((e, i) => ({ image_id: e.id, label_id: i % 3 }));
  return JSON.stringify({ images, annotations });
}

const target = (): Target => ({
  bucket: dev.cloud.bucket, queueUrl: dev.cloud.queueUrl, dlqUrl: dev.cloud.dlqUrl, s3: dev.s3, sqs: dev.sqs,
  source: 'the local cloud', where: { endpoint: dev.emulator.endpoint, dev: true }, args: ['--dev'], close() {},
});

async function submitToCloud(split: string, body: string): Promise<void> {
  const key = `manifests/${split}.json`;
  await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: key, Body: body }));
  await dev.cloud.notifyObjectCreated(key);
  await dev.cloud.idle();
}

describe('what comes home equals what run writes', () => {
  test('one hostile manifest: run and cloud + sync write the same table, row by row', async () => {
    const entries = hostileEntries();
    const file = join(dir, 'hostile.json');
    await writeFile(file, manifest(entries));

    origin.reset();
    const out = join(dir, 'run');
    const ran = await cli(['run', file, '--out', out, '--allow-private-network', '--timeout', '10', '--quiet']);
    assert.equal(ran.code, 0, ran.stderr);
    const local = await readTable(join(out, 'hostile.csv'));

    // The same faults again for the cloud: flaky paths fail once more before they pass.
    origin.reset();
    await submitToCloud('hostile', manifest(entries));
    const home = join(dir, 'home');
    await bringSplitHome({ s3: dev.s3, bucket: dev.cloud.bucket, split: 'hostile', dir: home });
    const synced = await readTable(join(home, 'hostile.csv'));

    assert.deepEqual(Object.keys(synced[0]!), [...INDEX_COLUMNS]);
    assert.deepEqual(local.map((r) => r.image_id), entries.map((e) => e.id), 'run: every id exact, in manifest order');
    assert.deepEqual(synced.map((r) => r.image_id), entries.map((e) => e.id), 'sync: every id exact, in manifest order');
    assert.equal(new Set(synced.map((r) => r.image_id)).size, entries.length, 'ids differing in one control character stay apart');

    // No difference is allowed: the flaky paths fail once for each (origin.reset()), so even
    // attempts agree; run's `skipped` (already on disk) cannot occur in a first run.
    const differences: string[] = [];
    for (const [i, want] of local.entries()) {
      for (const column of INDEX_COLUMNS) {
        if (synced[i]![column] !== want[column]) {
          differences.push(`${JSON.stringify(want.image_id)} ${column}: run ${JSON.stringify(want[column])}, sync ${JSON.stringify(synced[i]![column])}`);
        }
      }
    }
    assert.deepEqual(differences, []);

    // What the comparison rests on: the mix did happen, and the files are the ones hashed.
    const byId = new Map(synced.map((r) => [r.image_id, r]));
    assert.equal(byId.get('19')!.url, `${origin.url}/img/item19.png`, 'the mirror that answered, not the 410');
    assert.equal(byId.get('19')!.attempts, '2');
    assert.equal(byId.get('11')!.status, 'fetched');
    assert.equal(byId.get('11')!.attempts, '2', 'the 503 passed on retry');
    assert.deepEqual([byId.get('3')!.reason, byId.get('3')!.http_status], ['http-404', '404']);
    assert.equal(byId.get('13')!.reason, 'not-image');
    assert.match(byId.get('13')!.detail!, /HTML page/);
    assert.equal(byId.get('0')!.format, 'png');
    for (const row of synced.filter((r) => r.status === 'fetched')) {
      assert.equal(sha256(await readFile(join(home, row.path!))), row.sha256, `sha256 of ${row.path}`);
      assert.equal(sha256(await readFile(join(out, row.path!))), row.sha256, `run's file ${row.path}`);
    }
    assert.equal(synced.filter((r) => r.status === 'pending').length, 0, 'no id left pending');
    // Placeholders failed on both paths, their bytes in neither folder; duplicates kept and named.
    const placeholder = sha256(sampleImage('unavailable', 'jpeg'));
    for (const id of ['ph1', 'ph2', 'ph3', 'ph4', 'ph5']) {
      assert.deepEqual([byId.get(id)!.status, byId.get(id)!.reason, byId.get(id)!.path, byId.get(id)!.sha256], ['failed', 'placeholder', '', placeholder], id);
    }
    for (const folder of [join(home, 'hostile'), join(out, 'hostile')]) {
      const files = await readdir(folder);
      assert.equal(files.length, synced.filter((r) => r.status === 'fetched').length, `${folder}: one file per kept image`);
      for (const name of files) assert.notEqual(sha256(await readFile(join(folder, name))), placeholder, `${folder}/${name}`);
    }
    assert.deepEqual(['twin1', 'twin2', 'same1', 'same2', 'same3'].map((id) => byId.get(id)!.duplicate_of), ['', 'twin1', '', 'same1', 'same1']);
    // Each of the 2 containers stores a placeholder until it has seen it from 3 URLs, then refuses
    // it before the PUT: of 5, at least 1 is refused (pigeonhole), at most 4 stored; sync decided
    // the stored ones from every function's fetch records.
    const listed = async (prefix: string): Promise<number> => (await dev.s3.send(new ListObjectsV2Command({ Bucket: dev.cloud.bucket, Prefix: prefix }))).KeyCount ?? 0;
    const refused = await listed('failures/hostile/placeholder/');
    const stored = (await Promise.all([1, 2, 3, 4, 5].map((p) => listed(`images/hostile/ph${p}.`)))).reduce((x, y) => x + y, 0);
    assert.ok(refused >= 1 && stored <= 4 && refused + stored === 5, `refused ${refused}, stored ${stored}`);
    assert.deepEqual(synced.filter((r) => r.image_id.startsWith('gone')).map((r) => [r.status, r.reason]), Array(3).fill(['failed', 'http-404']));
  });

  test('sync --verify restores a corrupt and a truncated file byte-exact and says how many; without it a same-size corrupt file stays', async () => {
    const entries = Array.from({ length: 6 }, (_, i) => ({ id: `v${i}`, paths: [`/img/verify${i}.jpg?size=30000`] }));
    await submitToCloud('verify', manifest(entries));
    const home = join(dir, 'verify-home');
    const logged: string[] = [];
    const log = { isTTY: false, write: (text: string) => (logged.push(text), true) } as unknown as NodeJS.WriteStream;
    const sync = (verify: boolean) => syncCommand(target(), { dir: home, split: 'verify', layout: 'flat', concurrency: 4, progress: false, verify, log });
    await sync(false);
    const rows = await readTable(join(home, 'verify.csv'));
    const [corrupt, cut] = [join(home, rows[1]!.path!), join(home, rows[4]!.path!)];
    const [good, goodCut] = [await readFile(corrupt), await readFile(cut)];
    const damaged = Buffer.from(good);
    damaged[damaged.length >> 1]! ^= 0xff;
    await writeFile(corrupt, damaged);
    await truncate(cut, goodCut.length - 100);

    logged.length = 0;
    const [plain] = await sync(false);
    assert.deepEqual(await readFile(corrupt), damaged, 'without --verify a file of the right size is kept as is');
    assert.deepEqual(await readFile(cut), goodCut, 'a truncated file has the wrong size: copied again even without --verify');
    assert.equal(plain!.home.images.repaired, 1);
    assert.match(logged.join(''), /^verify: 1 file copied \(.+\), 5 already here, 1 damaged file repaired, in /m);

    await truncate(cut, 10);
    logged.length = 0;
    const [verified] = await sync(true);
    assert.deepEqual(await readFile(corrupt), good);
    assert.deepEqual(await readFile(cut), goodCut);
    assert.equal(sha256(good), rows[1]!.sha256);
    assert.deepEqual({ downloaded: verified!.home.images.downloaded, repaired: verified!.home.images.repaired }, { downloaded: 2, repaired: 2 });
    assert.match(logged.join(''), /^verify: 2 files copied \(.+\), 4 already here, 2 damaged files repaired, in /m);

    logged.length = 0;
    await sync(true);
    assert.match(logged.join(''), /^verify: 0 files copied \(0 B\), 6 already here, 0 damaged files repaired, in /m);
  });
});
