// Where sync's time goes on a real disk: N files of K KiB written through the filesystem store the
// way sync writes them (temporary file, then rename; 64 at once), against a bare write of each file
// under its final name (the least a copy can do), on the folder given and on tmpfs, alternating.
//
//   node bench/disk-writes.ts [--dir /var/tmp] [--files 5000] [--kb 30] [--runs 3]

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FsStore } from '../engine/fs-store.ts';
import { defaultOutBase, isTmpfs, table } from './measure.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/var/tmp' },
    files: { type: 'string', default: '5000' },
    kb: { type: 'string', default: '30' },
    runs: { type: 'string', default: '3' },
  },
});
const files = Number(values.files);
const body = Buffer.alloc(Number(values.kb) * 1024, 0xab);
const IN_FLIGHT = 64;

async function inFlight(work: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < files) await work(next++);
  }));
  return (performance.now() - started) / 1000;
}

const ways = {
  'store (temporary, rename)': async (root: string) => {
    const store = await FsStore.open(root);
    const seconds = await inFlight((i) => store.replace(`train/${i}.jpg`, body));
    await store.close();
    return seconds;
  },
  'bare write, final name': async (root: string) => {
    await mkdir(join(root, 'train'));
    return inFlight((i) => writeFile(join(root, 'train', `${i}.jpg`), body));
  },
};

const places = [resolve(values.dir), defaultOutBase()];
const rows = [['write', 'folder', 'run', 's', 'ms per file']];
for (let run = 1; run <= Number(values.runs); run++) {
  for (const [name, way] of Object.entries(ways)) {
    for (const place of places) {
      const root = await mkdtemp(join(place, 'cloudfetch-disk-writes-'));
      try {
        const seconds = await way(root);
        rows.push([name, `${place} (${isTmpfs(root) ? 'tmpfs' : 'disk'})`, String(run), seconds.toFixed(2), ((seconds * 1000) / files).toFixed(3)]);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    }
  }
}
process.stdout.write(`${files} files of ${values.kb} KiB, ${IN_FLIGHT} at once, node ${process.version}\n${table(rows)}\n`);
