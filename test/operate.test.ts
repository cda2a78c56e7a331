// Operating the cloud as a user does, every step a cloudfetch command in a child process against
// `cloudfetch dev`: submit → status → sync → report → retry, and a sync killed mid-way.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { parse } from 'csv-parse/sync';
import { encodeJob } from '../aws/job-message.ts';
import { INDEX_COLUMNS } from '../engine/index-table.ts';
import { jobIds } from '../aws/fifo.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';
import type { DevConnection } from '../cli/dev.ts';
import { cli, startCli } from './support/cli.ts';
import { devClients, until } from './support/dev.ts';

let origin: Origin;
let cwd: string;
let dev: ChildProcess;
let devExit: Promise<unknown>;
let connection: DevConnection;
let s3: S3Client;
let sqs: SQSClient;

before(async () => {
  origin = await startOrigin();
  cwd = await mkdtemp(join(tmpdir(), 'cloudfetch-operate-'));
  const started = startCli(['dev', '--allow-private-network', '--visibility-timeout', '5'], { cwd });
  dev = started.child;
  devExit = started.done;
  const file = join(cwd, '.cloudfetch', 'dev.json');
  await until(() => existsSync(file), 'cloudfetch dev to start');
  connection = JSON.parse(await readFile(file, 'utf8')) as DevConnection;
  ({ s3, sqs } = devClients(connection));
});

after(async () => {
  s3?.destroy();
  sqs?.destroy();
  dev?.kill('SIGINT');
  await devExit;
  await origin.close();
  await rm(cwd, { recursive: true, force: true });
});

const run = (...args: string[]) => cli([...args, '--dev'], { cwd });
type Row = Record<string, string>;
const table = async (file: string): Promise<Row[]> => parse(await readFile(file, 'utf8'), { columns: true }) as Row[];

async function objectBytes(key: string): Promise<Buffer> {
  const answer = await s3.send(new GetObjectCommand({ Bucket: connection.bucket, Key: key }));
  return Buffer.from(await answer.Body!.transformToByteArray());
}

describe('operating the cloud with cloudfetch commands', () => {
  test('submit → status reaches done → sync → the local tree and table equal the bucket; report agrees', async () => {
    const lines = ['id,url,landmark_id'];
    for (let i = 1; i <= 40; i++) {
      const path = i % 10 === 3 ? '/status/404' : i % 10 === 6 ? `/html/p${i}` : `/img/p${i}.jpg`;
      lines.push(`p${i},${origin.url}${path},${i % 3}`);
    }
    lines.push('p41,,1');
    await writeFile(join(cwd, 'landmarks.csv'), lines.join('\n') + '\n');

    const submitted = await run('submit', 'landmarks.csv');
    assert.equal(submitted.code, 0, submitted.stderr);
    assert.match(submitted.stderr, /Split "landmarks": 41 entries, 40 queued, 0 already stored, 1 without a usable URL/);

    const watched = await run('status', '--watch', '--interval', '1', '--json');
    assert.equal(watched.code, 0, watched.stderr);
    const status = JSON.parse(watched.stdout) as { done: boolean; queue: { waiting: number; inFlight: number; deadLetter: number } };
    assert.equal(status.done, true);
    assert.deepEqual([status.queue.waiting, status.queue.inFlight, status.queue.deadLetter], [0, 0, 0]);

    const synced = await run('sync', 'data', '--json');
    assert.equal(synced.code, 0, synced.stderr);
    const [summary] = JSON.parse(synced.stdout) as Array<{ split: string; downloaded: number; counts: Record<string, number> }>;
    assert.equal(summary!.split, 'landmarks');
    assert.equal(summary!.downloaded, 32);

    // The local tree equals the bucket's images, byte for byte.
    const files = (await readdir(join(cwd, 'data', 'landmarks'))).sort();
    const expected = Array.from({ length: 40 }, (_, i) => i + 1).filter((i) => i % 10 !== 3 && i % 10 !== 6);
    assert.deepEqual(files, expected.map((i) => `p${i}.jpg`).sort());
    for (const i of expected) {
      const local = await readFile(join(cwd, 'data', 'landmarks', `p${i}.jpg`));
      assert.ok(local.equals(sampleImage(`p${i}`, 'jpeg')), `p${i} bytes`);
      assert.ok(local.equals(await objectBytes(`images/landmarks/p${i}.jpg`)), `p${i} equals the bucket`);
    }
    const rows = await table(join(cwd, 'data', 'landmarks.csv'));
    assert.equal(rows.length, 41);
    const byStatus = (s: string) => rows.filter((r) => r.status === s).length;
    assert.deepEqual([byStatus('fetched'), byStatus('failed'), byStatus('pending')], [32, 9, 0]);
    assert.deepEqual(rows.filter((r) => r.reason === 'http-404').map((r) => r.image_id), ['p3', 'p13', 'p23', 'p33']);
    // Every column, the ones of a fetch empty: the entry was never fetched.
    const blank = Object.fromEntries(INDEX_COLUMNS.map((column) => [column, '']));
    assert.deepEqual(rows.find((r) => r.image_id === 'p41'), { ...blank, image_id: 'p41', label: '1', status: 'failed', bytes: '0', reason: 'no-url', attempts: '0', detail: 'the entry has no URL' });

    // The report counts what the table holds, and writes its CSV and page.
    const reported = await run('report', '--json', '--csv', 'missing.csv', '--html', 'report.html');
    assert.equal(reported.code, 0, reported.stderr);
    const [report] = JSON.parse(reported.stdout) as Array<{ counts: { entries: number; fetched: number; failed: number; byReason: Record<string, number> }; byStatus: Record<string, number> }>;
    assert.deepEqual(
      { entries: report!.counts.entries, fetched: report!.counts.fetched, failed: report!.counts.failed },
      { entries: rows.length, fetched: byStatus('fetched'), failed: byStatus('failed') },
    );
    assert.deepEqual(report!.counts.byReason, { 'http-404': 4, 'not-image': 4, 'no-url': 1 });
    assert.deepEqual(report!.byStatus, { '404': 4 });
    const missing = await table(join(cwd, 'missing.csv'));
    assert.deepEqual(missing.map((r) => r.image_id).sort(), rows.filter((r) => r.status !== 'fetched').map((r) => r.image_id).sort());
    const page = await readFile(join(cwd, 'report.html'), 'utf8');
    assert.match(page, /<svg/);
    assert.match(page, /http-404/);

    // A second sync finds everything here and copies nothing.
    const again = await run('sync', 'data', '--json');
    const [second] = JSON.parse(again.stdout) as Array<{ downloaded: number; skipped: number }>;
    assert.deepEqual([second!.downloaded, second!.skipped], [0, 32]);
  });

  test('a sync killed mid-way leaves no partial file, and the next one completes the set', async () => {
    const images = Array.from({ length: 300 }, (_, i) => ({ url: [`${origin.url}/img/k${i + 1}.jpg?size=30000`], image_id: i + 1 }));
    await writeFile(join(cwd, 'many.json'), JSON.stringify({ images }));
    assert.equal((await run('submit', 'many.json')).code, 0);
    assert.equal((await run('status', '--watch', '--interval', '1')).code, 0);

    const target = join(cwd, 'home');
    const sync = startCli(['sync', 'home', '--split', 'many', '--concurrency', '1', '--dev'], { cwd });
    const split = join(target, 'many');
    await until(async () => existsSync(split) && (await readdir(split)).length >= 30, 'the first files');
    sync.child.kill('SIGKILL');
    await sync.done;
    const survivors = (await readdir(split)).filter((f) => !f.startsWith('.'));
    assert.ok(survivors.length < 300, `${survivors.length} files after the kill`);
    for (const file of survivors) {
      const n = file.replace('.jpg', '').replace(/^/, 'k');
      assert.ok((await readFile(join(split, file))).equals(sampleImage(n, 'jpeg', 30000)), `${file} is whole`);
    }

    const resumed = await run('sync', 'home', '--split', 'many', '--json');
    assert.equal(resumed.code, 0, resumed.stderr);
    const [result] = JSON.parse(resumed.stdout) as Array<{ downloaded: number; skipped: number }>;
    assert.equal(result!.skipped, survivors.length);
    assert.equal(result!.downloaded, 300 - survivors.length);
    const all = await readdir(split);
    assert.equal(all.length, 300);
    for (let n = 1; n <= 300; n++) assert.ok((await readFile(join(split, `${n}.jpg`))).equals(sampleImage(`k${n}`, 'jpeg', 30000)));
    assert.equal(existsSync(join(target, '.cloudfetch-tmp')), false, 'temporaries of the killed sync swept');
    assert.equal((await table(join(target, 'many.csv'))).length, 300);
  });

  test('retry sends dead-letter jobs back to the queue, and they are fetched', async () => {
    const job = { split: 'parked', id: '1', urls: [`${origin.url}/img/parked.jpg`], labels: ['x'], key: 'parked/1.jpg', position: 1 };
    await sqs.send(new SendMessageCommand({ QueueUrl: connection.dlqUrl, MessageBody: encodeJob(job), ...jobIds(job, 4) }));
    const before = JSON.parse((await run('status', '--json')).stdout) as { queue: { deadLetter: number } };
    assert.equal(before.queue.deadLetter, 1);

    const retried = await run('retry', '--json');
    assert.equal(retried.code, 0, retried.stderr);
    assert.deepEqual(JSON.parse(retried.stdout), { fromDeadLetter: 1, resent: 0, alreadyStored: 0 });
    assert.equal((await run('status', '--watch', '--interval', '1')).code, 0);
    assert.ok((await objectBytes('images/parked/1.jpg')).equals(sampleImage('parked', 'jpeg')));
    const after = JSON.parse((await run('status', '--json')).stdout) as { queue: { deadLetter: number } };
    assert.equal(after.queue.deadLetter, 0);
  });

  test('retry --reasons sends recorded failures again; unknown reasons are refused', async () => {
    const refused = await run('retry', '--reasons', 'http-999');
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /unknown reason "http-999"/);
    const hitsBefore = origin.hits('/status/404');
    const retried = await run('retry', '--reasons', 'http-404', '--split', 'landmarks', '--json');
    assert.equal(retried.code, 0, retried.stderr);
    assert.equal((JSON.parse(retried.stdout) as { resent: number }).resent, 4);
    assert.equal((await run('status', '--watch', '--interval', '1')).code, 0);
    assert.equal(origin.hits('/status/404'), hitsBefore + 4);
  });

  test('without a local cloud or a stack, commands say what to do in one line', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'cloudfetch-nowhere-'));
    try {
      const result = await cli(['status', '--dev'], { cwd: elsewhere });
      assert.equal(result.code, 2);
      assert.match(result.stderr, /no local cloud found .*start `npx cloudfetch dev`/);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});
