// The Store on S3: HeadObject to skip, a put with If-None-Match: * so it never overwrites. Bodies
// over one part go up in parts (a few at a time, each a view of the body, not a copy).

import { HeadObjectCommand, PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import type { PutMetadata, Store } from '../../engine/store.ts';
import { Upload } from '@aws-sdk/lib-storage';
import { listObjects } from '../listing.ts';

export class S3Store implements Store {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;

  constructor(s3: S3Client, bucket: string, prefix: string) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#prefix = prefix;
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    try {
      const answer = await this.#s3.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
      return { bytes: answer.ContentLength ?? 0 };
    } catch (error) {
      if (error instanceof S3ServiceException && (error.$metadata.httpStatusCode === 404 || error.name === 'NotFound')) return null;
      throw error;
    }
  }

  async put(key: string, body: Uint8Array, meta: PutMetadata): Promise<boolean> {
    try {
      await new Upload({ client: this.#s3, params: {
        Bucket: this.#bucket,
        Key: this.#prefix + key,
        Body: body,
        ContentType: meta.contentType,
        IfNoneMatch: '*',
        // S3 metadata is US-ASCII: encode what may not be.
        Metadata: {
          'source-url': metadataValue(meta.url, 1024),
          'image-id': metadataValue(meta.id, 256),
          labels: metadataValue(meta.labels.join(' '), 512),
        },
      } }).done();
      return true;
    } catch (error) {
      // 412: someone stored it first (a duplicate delivery; a multipart upload hears it when
      // completing); 409: a concurrent conditional write.
      const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
      if (status === 412 || status === 409) return false;
      throw error;
    }
  }

  async replace(key: string, body: Uint8Array): Promise<void> {
    await this.#s3.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Body: body }));
  }

  async names(folder: string): Promise<Set<string>> {
    const names = new Set<string>();
    const prefix = `${this.#prefix}${folder}/`;
    for await (const page of listObjects(this.#s3, this.#bucket, prefix)) for (const o of page) names.add(o.key.slice(prefix.length).split('/')[0]!);
    return names;
  }
}

/** S3 user metadata travels in HTTP headers: printable ASCII only, so percent-encode the rest. */
function metadataValue(text: string, max: number): string {
  let out = '';
  for (const ch of text) {
    if (ch >= ' ' && ch <= '~' && ch !== '%') out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    if (out.length >= max) break;
  }
  return out.slice(0, max);
}
