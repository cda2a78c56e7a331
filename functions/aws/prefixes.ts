// Where things live in the bucket. The stack's IAM grants and trigger filter use the same names.

export const PREFIX = {
  /** Uploads here trigger the manifest function. */
  manifests: 'manifests/',
  /** images/<split>/<id>.<ext>: the same keys as the local layout. */
  images: 'images/',
  /** index/<split>.csv: one row per distinct entry, written at split time. */
  index: 'index/',
  /** failures/<split>/<id>.json: why an image could not be fetched. */
  failures: 'failures/',
  /** status/<split>.json: what the manifest function made of an upload. */
  status: 'status/',
} as const;

/** Manifest uploads that trigger a split: these endings, optionally gzipped. */
export const MANIFEST_SUFFIXES = ['.json', '.jsonl', '.ndjson', '.csv', '.tsv', '.txt'].flatMap((s) => [s, `${s}.gz`]);
