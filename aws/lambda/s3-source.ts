// A manifest stored in S3, opened as many times as the readers need (one GetObject each).

import { Readable } from 'node:stream';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { ManifestSource } from '../../engine/manifest/index.ts';

export function s3Source(s3: S3Client, bucket: string, key: string): ManifestSource {
  return {
    name: key,
    async open(): Promise<Readable> {
      const answer = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!(answer.Body instanceof Readable)) throw new Error(`s3://${bucket}/${key}: no readable body`);
      return answer.Body;
    },
  };
}
