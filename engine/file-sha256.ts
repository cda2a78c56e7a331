// SHA-256 of a file's bytes by its path, read in pieces through one buffer: a 30 KB image in one
// read, a 256 MB shard without holding it. For FsStore.sha256 (sync --verify's check of local
// files) and sync --packed's check of a shard's part file.

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

const PIECE = 1 << 20;

/** Hex SHA-256 of the file at `path`. */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(PIECE);
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, PIECE, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}
