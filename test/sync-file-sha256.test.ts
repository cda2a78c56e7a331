// engine/file-sha256.ts: the digest of the whole file at any size, read in pieces (sync --packed's
// shard check; FsStore.sha256's twin).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileSha256 } from '../engine/file-sha256.ts';

test('the SHA-256 of every byte: empty, small, exactly one piece, more than one piece', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-sha-'));
  try {
    for (const size of [0, 1, 30 * 1024, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7]) {
      const bytes = randomBytes(size);
      const file = join(dir, `f${size}`);
      await writeFile(file, bytes);
      assert.equal(await fileSha256(file), createHash('sha256').update(bytes).digest('hex'), `${size} bytes`);
    }
    await assert.rejects(fileSha256(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
