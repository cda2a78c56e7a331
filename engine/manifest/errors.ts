// The one error a malformed manifest raises: a single line a user can act on, naming where. It
// quotes the manifest, so control characters (terminal escapes, newlines) are shown escaped.

import { printable } from '../printable.ts';

export class ManifestError extends Error {
  override name = 'ManifestError';
  /** Where in the manifest: "line 12", "entry 5 of images", "byte 1234", "header", "top level". */
  readonly position: string;
  /** The manifest's name (file name or S3 key). */
  readonly source: string;

  /** `text` is the problem, worded to read after the source name and to mention the position. */
  constructor(source: string, position: string, text: string) {
    super(`${printable(source, 1000)}: ${printable(text, 1000)}`);
    this.source = source;
    this.position = position;
  }
}

/** An image or an archive given as the manifest: saying so beats a parse error about its "lines". */
export class NotTextError extends ManifestError {
  constructor(source: string, offset: number) {
    super(source, `byte ${offset}`, '');
    this.message = `${printable(source, 1000)} is not a text manifest (binary data at byte ${offset})`;
  }
}

export const SUPPORTED_SHAPES =
  'expected {"images": [...]} (iMaterialist), JSON Lines, CSV/TSV with a header, or a list of URLs';
