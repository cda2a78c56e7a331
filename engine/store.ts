// The Store port: where images go. S3 in the cloud, a folder on one machine: where `run` fetches to
// and `sync` copies to alike.

export interface PutMetadata {
  url: string;
  id: string;
  labels: string[];
  contentType: string;
}

export interface Store {
  /** The stored object's size, or null when the key is not stored (S3 HeadObject, file stat). */
  head(key: string): Promise<{ bytes: number } | null>;
  /**
   * Stores the bytes under the key, atomically: readers never see a partial object.
   * Returns false when the key already existed (nothing was written).
   */
  put(key: string, body: Uint8Array, meta: PutMetadata): Promise<boolean>;
  /** Stores the bytes under the key atomically, replacing what is there (a sync bringing a newer copy). */
  replace(key: string, body: Uint8Array): Promise<void>;
  /**
   * The names directly in a folder (`train`, `train/6347`), empty when it does not exist: one
   * readdir or listing answers "is it here?" for a whole folder, where a head() per key would not.
   */
  names(folder: string): Promise<Set<string>>;
  /**
   * Optional: true when the key's folder held nothing when this store first looked into it (a
   * fresh run's), so the key holds nothing this store did not put itself: a caller that looks at
   * each key once, before putting it, may skip head(). put() still never overwrites.
   */
  unseenFolder?(key: string): boolean;
}
