// Manifest readers: iMaterialist JSON, JSON Lines, CSV/TSV and URL lists, gzipped or not, always
// streamed (a manifest is never held in memory whole), each entry with its labels joined.

import type { ManifestEntry } from '../job.ts';
import { csvReader } from './csv.ts';
import { binaryOffset, detectFormat, type ManifestFormat } from './detect.ts';
import { NotTextError } from './errors.ts';
import { imaterialistReader } from './imaterialist.ts';
import { itemKeys } from './item.ts';
import { jsonLinesReader, urlListReader } from './lines.ts';
import type { FormatReader } from './reader.ts';
import { HEAD_BYTES, readHead, type ManifestSource } from './source.ts';

export { ManifestError } from './errors.ts';
export { idKey } from './id.ts';
export { fileSource, splitNameOf, type ManifestSource } from './source.ts';
export type { ManifestFormat } from './detect.ts';

export interface ReadOptions {
  /** Skip detection. */
  format?: ManifestFormat;
  /** CSV/TSV column (or JSON key) holding the id, the URL, the label. */
  idColumn?: string;
  urlColumn?: string;
  labelColumn?: string;
}

export interface Manifest {
  readonly format: ManifestFormat;
  /** Reads the whole manifest once: validates everything (throws ManifestError) and counts entries. Await it before entries(). */
  scan(): Promise<{ entries: number }>;
  /**
   * Streams the entries in manifest order with labels joined. Throws ManifestError on malformed
   * input too; runs scan() first itself when the format needs it (iMaterialist labels) and it
   * was not awaited yet.
   */
  entries(): AsyncIterable<ManifestEntry>;
}

class StreamingManifest implements Manifest {
  readonly format: ManifestFormat;
  private readonly reader: FormatReader;
  private scanned: Promise<{ entries: number }> | undefined;

  constructor(format: ManifestFormat, reader: FormatReader) {
    this.format = format;
    this.reader = reader;
  }

  scan(): Promise<{ entries: number }> {
    this.scanned ??= this.reader.scan().then((entries) => ({ entries }));
    return this.scanned;
  }

  async *entries(): AsyncGenerator<ManifestEntry> {
    if (this.reader.needsScan) await this.scan();
    yield* this.reader.entries();
  }
}

/**
 * Opens a manifest: refuses binary content (its first bytes, gunzipped), and detects the format
 * (from the name, else those bytes) unless given.
 */
export async function openManifest(source: ManifestSource, options: ReadOptions = {}): Promise<Manifest> {
  const head = await readHead(source);
  const binary = binaryOffset(head, head.length < HEAD_BYTES);
  if (binary >= 0) throw new NotTextError(source.name, binary);
  const format = options.format ?? detectFormat(source.name, head);
  const keys = itemKeys(options);
  const reader = ((): FormatReader => {
    switch (format) {
      case 'imaterialist':
        return imaterialistReader(source, keys);
      case 'jsonl':
        return jsonLinesReader(source, keys);
      case 'csv':
        return csvReader(source, ',', options);
      case 'tsv':
        return csvReader(source, '\t', options);
      case 'urls':
        return urlListReader(source);
    }
  })();
  return new StreamingManifest(format, reader);
}
