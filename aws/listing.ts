// Listing a bucket prefix page by page.

import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';

export interface ListedObject {
  key: string;
  size: number;
  lastModified: number;
  etag: string;
}

export async function* listObjects(s3: S3Client, bucket: string, prefix: string, signal?: AbortSignal): AsyncGenerator<ListedObject[]> {
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
      signal ? { abortSignal: signal } : {},
    );
    const objects: ListedObject[] = [];
    for (const o of page.Contents ?? []) {
      if (!o.Key || o.Key.endsWith('/')) continue;
      objects.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0, etag: o.ETag ?? '' });
    }
    yield objects;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}
