// The Store on S3: HeadObject to skip, a put with If-None-Match: * so it never overwrites. Both are
// signed requests over one keep-alive pool (aws/signed-request.ts), not SDK commands: once per image,
// the SDK's middleware cost more CPU than the request. Bodies over one part go up in parts with the
// SDK's Upload (a few at a time, each a view of the body, not a copy). Each image carries the
// SHA-256 of its bytes in its metadata (x-amz-meta-sha256), so a HEAD can describe what is stored
// when the fetch record of the delivery that stored it is lost (fetch-record.ts).

import { PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { hash } from 'node:crypto';
import type { PutMetadata, Store } from '../../engine/store.ts';
import { contentTypeOf, type ImageFormat } from '../../engine/fetch/image.ts';
import { Upload } from '@aws-sdk/lib-storage';
import { listObjects } from '../listing.ts';
import { signedObjectsOnce, type SignedObjects } from '../signed-request.ts';

/** lib-storage's part size: a larger body goes up in parts, as before. */
const SINGLE_PUT_BYTES = 5 * 1024 * 1024;

/**
 * A stored image as its HEAD describes it. What comes from the bucket is checked, not believed: a
 * field is there only when its header is well formed. `sha256` is missing on objects stored before
 * puts carried it (and on any put by other means); `url` is the source-url metadata as stored
 * (percent-encoded past ASCII, cut at 1,024 characters).
 */
export interface StoredImage {
  bytes: number;
  sha256?: string;
  url?: string;
  /** The format the stored content type names, when it names one of ours. */
  format?: ImageFormat;
}

const FORMATS: readonly ImageFormat[] = ['jpeg', 'png', 'gif', 'webp', 'bmp', 'tiff', 'avif', 'heic', 'ico'];

export class S3Store implements Store {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #objects: SignedObjects;

  /** `objects`: the signed client to share (one pool for every store of the bucket); one of its own if not given. */
  constructor(s3: S3Client, bucket: string, prefix: string, objects?: SignedObjects) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#prefix = prefix;
    this.#objects = objects ?? signedObjectsOnce(s3, bucket);
  }

  /** The stored image's size, with its metadata (described() is this HEAD), or null when the key is not stored. */
  async head(key: string): Promise<StoredImage | null> {
    const client = await this.#objects.get();
    // 404 when the key is missing (with s3:ListBucket; 403 without it, an error as it should be).
    const answer = await client.send({ method: 'HEAD', key: this.#prefix + key, expect: [404] });
    if (answer.status === 404) return null;
    return storedImage(answer.headers);
  }

  /** What is stored under the key, its SHA-256 and source URL included when its metadata has them. */
  described(key: string): Promise<StoredImage | null> {
    return this.head(key);
  }

  async put(key: string, body: Uint8Array, meta: PutMetadata): Promise<boolean> {
    // S3 metadata is US-ASCII: encode what may not be. Empty values are left out, as the SDK does.
    const metadata: Record<string, string> = {
      'source-url': metadataValue(meta.url, 1024),
      'image-id': metadataValue(meta.id, 256),
      labels: metadataValue(meta.labels.join(' '), 512),
    };
    // The hash signs the payload too (S3 refuses a body that does not match it), so no other checksum.
    const sha256 = hash('sha256', body, 'hex');
    metadata.sha256 = sha256;
    if (body.length > SINGLE_PUT_BYTES) return this.#upload(key, body, meta.contentType, metadata);
    const headers: Record<string, string> = { 'content-type': meta.contentType, 'if-none-match': '*' };
    for (const [name, value] of Object.entries(metadata)) if (value !== '') headers[`x-amz-meta-${name}`] = value;
    const client = await this.#objects.get();
    // 412: someone stored it first (a duplicate delivery); 409: a concurrent conditional write.
    const answer = await client.send({ method: 'PUT', key: this.#prefix + key, headers, body, sha256, expect: [412, 409] });
    return answer.status < 300;
  }

  async #upload(key: string, body: Uint8Array, contentType: string, metadata: Record<string, string>): Promise<boolean> {
    try {
      await new Upload({ client: this.#s3, params: {
        Bucket: this.#bucket,
        Key: this.#prefix + key,
        Body: body,
        ContentType: contentType,
        IfNoneMatch: '*',
        Metadata: metadata,
      } }).done();
      return true;
    } catch (error) {
      // As put(): 412 (a multipart upload hears it when completing) or 409.
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

function storedImage(headers: Record<string, string | string[] | undefined>): StoredImage {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const length = one('content-length') ?? '';
  const sha256 = one('x-amz-meta-sha256');
  const url = one('x-amz-meta-source-url');
  const type = one('content-type');
  const format = type === undefined ? undefined : FORMATS.find((f) => contentTypeOf(f) === type);
  return {
    bytes: /^\d{1,15}$/.test(length) ? Number(length) : 0,
    ...(sha256 !== undefined && /^[0-9a-f]{64}$/.test(sha256) ? { sha256 } : {}),
    ...(url ? { url } : {}),
    ...(format ? { format } : {}),
  };
}

/** Which of a job's URLs the stored source-url metadata names (it is stored encoded, maybe cut), if any. */
export function storedSourceUrl(urls: readonly string[], stored: StoredImage): string | undefined {
  return stored.url === undefined ? undefined : urls.find((url) => metadataValue(url, 1024) === stored.url);
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
