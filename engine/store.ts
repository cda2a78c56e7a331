// The Store port: where images and tables go. S3 in the cloud, a folder on one machine.

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
}
