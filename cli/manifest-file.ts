// Opening a manifest named on the command line, with the errors a user can act on.

import { access, constants, stat } from 'node:fs/promises';
import { fileSource, openManifest, splitNameOf, type Manifest, type ManifestFormat } from '../engine/manifest/index.ts';
import { safeSegment } from '../engine/keys.ts';
import { UsageError } from './errors.ts';

export interface ManifestFileOptions {
  manifest: string;
  split?: string;
  format?: ManifestFormat;
  idColumn?: string;
  urlColumn?: string;
  labelColumn?: string;
}

export async function openManifestFile(o: ManifestFileOptions): Promise<{ manifest: Manifest; split: string }> {
  try {
    const info = await stat(o.manifest);
    if (!info.isFile()) throw new UsageError(`${o.manifest} is not a file.`);
    await access(o.manifest, constants.R_OK);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `no such manifest: ${o.manifest}` : `cannot read ${o.manifest} (${code ?? String(error)})`);
  }
  const split = o.split ?? splitNameOf(o.manifest);
  if (split.trim() === '' || safeSegment(split) !== split) {
    throw new UsageError(`the split name "${split}" is not usable as a folder name: give one with --split (letters, digits, . _ -).`);
  }
  const manifest = await openManifest(fileSource(o.manifest), {
    ...(o.format ? { format: o.format } : {}),
    ...(o.idColumn ? { idColumn: o.idColumn } : {}),
    ...(o.urlColumn ? { urlColumn: o.urlColumn } : {}),
    ...(o.labelColumn ? { labelColumn: o.labelColumn } : {}),
  });
  return { manifest, split };
}
