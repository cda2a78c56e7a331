// Listing a bucket prefix page by page.

import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';

export interface ListedObject {
  key: string;
  size: number;
  lastModified: number;
  etag: string;
}

export interface ListedPage {
  objects: ListedObject[];
  /** Set when more keys follow. */
  next?: string;
}

/** One page of up to `maxKeys` (at most 1,000) keys: from the start, or at a continuation token. */
export async function listPage(s3: S3Client, bucket: string, prefix: string, o: { signal?: AbortSignal; token?: string; maxKeys?: number } = {}): Promise<ListedPage> {
  const page = await s3.send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(o.token ? { ContinuationToken: o.token } : {}), ...(o.maxKeys ? { MaxKeys: o.maxKeys } : {}) }),
    o.signal ? { abortSignal: o.signal } : {},
  );
  const objects: ListedObject[] = [];
  for (const x of page.Contents ?? []) {
    if (!x.Key || x.Key.endsWith('/')) continue;
    objects.push({ key: x.Key, size: x.Size ?? 0, lastModified: x.LastModified?.getTime() ?? 0, etag: x.ETag ?? '' });
  }
  const next = page.IsTruncated ? page.NextContinuationToken : undefined;
  return { objects, ...(next ? { next } : {}) };
}

export async function* listObjects(s3: S3Client, bucket: string, prefix: string, o: { signal?: AbortSignal } = {}): AsyncGenerator<ListedObject[]> {
  let token: string | undefined;
  do {
    const page = await listPage(s3, bucket, prefix, { ...o, ...(token ? { token } : {}) });
    yield page.objects;
    token = page.next;
  } while (token);
}
