import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FsStore } from '../engine/fs-store.ts';

const root = await mkdtemp(join(tmpdir(), 'cloudfetch-store-'));
after(() => rm(root, { recursive: true, force: true }));
const meta = { url: 'http://h/x.jpg', id: 'x', labels: [], contentType: 'image/jpeg' };

test('put stores the bytes under the key and head reports the size', async () => {
  const store = await FsStore.open(join(root, 'a'));
  assert.equal(await store.head('train/1.jpg'), null);
  assert.equal(await store.put('train/1.jpg', Buffer.from('first'), meta), true);
  assert.deepEqual(await store.head('train/1.jpg'), { bytes: 5 });
  assert.equal(await readFile(join(root, 'a', 'train', '1.jpg'), 'utf8'), 'first');
  await store.close();
});

test('put never overwrites an existing file (If-None-Match: * semantics)', async () => {
  const store = await FsStore.open(join(root, 'b'));
  assert.equal(await store.put('s/1.jpg', Buffer.from('first'), meta), true);
  assert.equal(await store.put('s/1.jpg', Buffer.from('second'), meta), false);
  assert.equal(await readFile(join(root, 'b', 's', '1.jpg'), 'utf8'), 'first');
  const temps = await readdir(join(root, 'b', '.cloudfetch-tmp'));
  assert.deepEqual(await readdir(join(root, 'b', '.cloudfetch-tmp', temps[0]!)), [], 'the refused put removed its temporary');
  await store.close();
  assert.deepEqual(await readdir(join(root, 'b')), ['s'], 'temporaries are gone after close');
});

test('puts stay synchronous through a slow put now and then, and go to the thread pool after three in a row', async () => {
  let t = 0;
  const durations = [50, 1, 50, 50, 1, 50, 50, 50, 1];
  let put = 0;
  // Each put reads the clock twice: before and after its calls.
  const now = (): number => (t += durations[Math.floor(put++ / 2)]! / 2);
  const store = await FsStore.open(join(root, 'sporadic'), { now });
  const seen: boolean[] = [];
  for (let i = 0; i < durations.length; i++) {
    assert.equal(await store.put(`s/${i}.jpg`, Buffer.alloc(100, i), meta), true);
    seen.push(store.synchronousPuts);
  }
  assert.deepEqual(seen, [true, true, true, true, true, true, true, false, false]);
  for (let i = 0; i < durations.length; i++) assert.ok((await readFile(join(root, 'sporadic', 's', `${i}.jpg`))).equals(Buffer.alloc(100, i)));
  await store.close();
});

test('put through the thread pool once puts were slow: the same bytes, the same refusal, no temporaries', async () => {
  // slowPutMs -1: every synchronous put counts as slow; after three, every later one goes through the pool.
  const store = await FsStore.open(join(root, 'slow'), { slowPutMs: -1 });
  const bodies = Array.from({ length: 40 }, (_, i) => Buffer.alloc(20_000 + i, i));
  const stored = await Promise.all(bodies.map((body, i) => store.put(`s/${i}.jpg`, body, meta)));
  assert.deepEqual(stored, bodies.map(() => true));
  assert.equal(store.synchronousPuts, false);
  assert.equal(await store.put('s/3.jpg', Buffer.from('other'), meta), false);
  for (const [i, body] of bodies.entries()) assert.ok((await readFile(join(root, 'slow', 's', `${i}.jpg`))).equals(body));
  const temps = await readdir(join(root, 'slow', '.cloudfetch-tmp'));
  assert.deepEqual(await readdir(join(root, 'slow', '.cloudfetch-tmp', temps[0]!)), [], 'no temporary left behind');
  await store.close();
});

test('keys cannot escape the folder', async () => {
  const store = await FsStore.open(join(root, 'c'));
  await assert.rejects(store.put('../evil.jpg', Buffer.from('x'), meta), /lies outside/);
  await assert.rejects(store.head('/etc/passwd'), /lies outside/);
  await store.close();
});

test('open sweeps temporaries of dead runs but not of live ones', async () => {
  const dir = join(root, 'd');
  const dead = join(dir, '.cloudfetch-tmp', '999999999-dead');
  const live = join(dir, '.cloudfetch-tmp', `${process.pid}-live`);
  await mkdir(dead, { recursive: true });
  await mkdir(live, { recursive: true });
  await writeFile(join(dead, '1.part'), 'partial');
  const store = await FsStore.open(dir);
  const left = await readdir(join(dir, '.cloudfetch-tmp'));
  assert.ok(!left.includes('999999999-dead'));
  assert.ok(left.includes(`${process.pid}-live`));
  await store.close();
});

test('opened read-only (a dry run), the store answers and creates nothing', async () => {
  const dir = join(root, 'e', 'not-yet');
  const store = await FsStore.open(dir, { readOnly: true });
  assert.equal(await store.head('train/1.jpg'), null);
  assert.deepEqual(await store.names('train'), new Set());
  await assert.rejects(store.replace('train/1.jpg', Buffer.from('x')), /opened read-only/);
  await assert.rejects(store.put('train/1.jpg', Buffer.from('x'), meta), /opened read-only/);
  await store.close();
  assert.ok(!(await readdir(root)).includes('e'), 'no folder made');
});

test('a folder empty or missing when first looked into is unseen: no look per key, and put still never overwrites', async () => {
  const store = await FsStore.open(join(root, 'unseen'));
  await mkdir(join(root, 'unseen', 'held'), { recursive: true });
  await writeFile(join(root, 'unseen', 'held', 'old.jpg'), 'old');
  await mkdir(join(root, 'unseen', 'empty'), { recursive: true });
  assert.equal(store.unseenFolder('held/new.jpg'), false, 'a folder with a file in it is looked at per key');
  assert.equal(store.unseenFolder('empty/1.jpg'), true);
  assert.equal(store.unseenFolder('missing/deep/1.jpg'), true);
  assert.equal(store.unseenFolder('../outside/1.jpg'), false, 'a key outside the folder is left to head() and put()');
  assert.equal(store.unseenFolder('top.jpg'), false, 'the root holds the temporaries');
  // Another writer's file, come after the first look: put refuses to overwrite it.
  await writeFile(join(root, 'unseen', 'empty', '1.jpg'), 'theirs');
  assert.equal(store.unseenFolder('empty/2.jpg'), true, 'decided once per folder');
  assert.equal(await store.put('empty/1.jpg', Buffer.from('ours'), meta), false);
  assert.equal(await readFile(join(root, 'unseen', 'empty', '1.jpg'), 'utf8'), 'theirs');
  assert.deepEqual(await store.head('empty/1.jpg'), { bytes: 6 }, 'head still looks');
  await store.close();
});
