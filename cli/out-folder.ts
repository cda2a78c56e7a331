// The output folder, checked before anything is fetched: a run that cannot write should say so
// at once, in words, not after its first download as an errno.

import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.ts';

/** Creates `dir` when missing and proves it writable; a UsageError naming the cause otherwise. */
export async function prepareOutFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.cloudfetch-probe-${process.pid}`);
    await writeFile(probe, '', { flag: 'wx' });
    await rm(probe);
  } catch (error) {
    throw new UsageError(`cannot write to the output folder ${dir}: ${await cause(dir, error as NodeJS.ErrnoException)}`);
  }
}

async function cause(dir: string, error: NodeJS.ErrnoException): Promise<string> {
  switch (error.code) {
    case 'EEXIST':
    case 'ENOTDIR': {
      const file = await nearestNonFolder(dir);
      if (file === dir) return 'it is a file, not a folder';
      if (file !== null) return `${file} is a file, not a folder`;
      break;
    }
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'the filesystem is read-only';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'no space left on the device';
  }
  return error.message;
}

/** The path itself or its deepest existing ancestor, as spelled in `path`, when it is not a folder. */
async function nearestNonFolder(path: string): Promise<string | null> {
  for (let at = path; ; at = dirname(at)) {
    try {
      return (await stat(at)).isDirectory() ? null : at;
    } catch {
      if (dirname(at) === at) return null;
    }
  }
}
