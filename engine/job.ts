// A manifest entry as the readers give it, and the Job the workers fetch.

/** One entry of a manifest, labels already joined to it. */
export interface ManifestEntry {
  /** 1-based position of the entry in the manifest (line number for line formats). */
  position: number;
  /** The image id as written in the manifest (numbers become their decimal text). */
  id: string;
  /** Candidate URLs in order (mirrors); may be empty. */
  urls: string[];
  /** Labels as text; empty for an unlabeled (test) split. */
  labels: string[];
}

/** One image to fetch, with its storage key decided before any fetch. */
export interface Job {
  split: string;
  id: string;
  urls: string[];
  labels: string[];
  /** Store key relative to the images root, e.g. `train/123.jpg`. */
  key: string;
  position: number;
}
