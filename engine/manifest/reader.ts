// What each format's reader provides to the Manifest that wraps it.

import type { ManifestEntry } from '../job.ts';

export interface FormatReader {
  /** Whether entries() depends on state that only scan() collects (iMaterialist labels). */
  readonly needsScan: boolean;
  /** One whole pass: checks everything, throws ManifestError, returns the number of entries. */
  scan(): Promise<number>;
  /** One pass handing out the entries in manifest order; throws ManifestError on bad input too. */
  entries(): AsyncGenerator<ManifestEntry>;
}
