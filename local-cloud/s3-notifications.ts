// The S3 ObjectCreated notifications that invoke the manifest function, emulated over a real S3
// API: fauxqs has no bucket notifications, so uploads under manifests/ are found by listing. Each
// becomes the AWS-shaped event handed to an `invoke` the caller provides, retried as S3 → Lambda
// retries an asynchronous invocation.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, type S3Client, type _Object } from '@aws-sdk/client-s3';
import type { S3Event } from 'aws-lambda';
import { isManifestKey, PREFIX } from '../aws/bucket.ts';
import { Activity, errorText, within, type Log } from './activity.ts';

/**
 * A key as S3 writes it into event notifications: form-URL-encoded, so a space is `+` and a `+`
 * is `%2B`. Slashes and RFC 3986 unreserved characters stay as they are; everything else is
 * percent-encoded as UTF-8. Decode with decodeURIComponent(key.replace(/\+/g, ' ')).
 */
export function s3EventKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

export interface CreatedObject {
  key: string;
  size: number;
  /** As S3 lists it, with or without the quotes. */
  eTag: string;
}

let sequence = 0n;

/**
 * The event S3 sends to a Lambda function for one new object. eventName is
 * `ObjectCreated:CompleteMultipartUpload` for an object whose ETag shows it was uploaded in parts,
 * `ObjectCreated:Put` otherwise.
 */
export function s3ObjectCreatedEvent(bucket: string, region: string, object: CreatedObject, configurationId = 'manifest-upload'): S3Event {
  const eTag = object.eTag.replace(/"/g, '');
  // Sequencers only order events for one key; time then a counter keeps them increasing.
  const sequencer = ((BigInt(Date.now()) << 16n) + (sequence++ & 0xffffn)).toString(16).toUpperCase().padStart(18, '0');
  return {
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        awsRegion: region,
        eventTime: new Date().toISOString(),
        eventName: /-\d+$/.test(eTag) ? 'ObjectCreated:CompleteMultipartUpload' : 'ObjectCreated:Put',
        userIdentity: { principalId: 'AWS:LOCALCLOUD' },
        requestParameters: { sourceIPAddress: '127.0.0.1' },
        responseElements: {
          'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase(),
          'x-amz-id-2': randomBytes(48).toString('base64'),
        },
        s3: {
          s3SchemaVersion: '1.0',
          configurationId,
          bucket: { name: bucket, ownerIdentity: { principalId: 'LOCALCLOUD' }, arn: `arn:aws:s3:::${bucket}` },
          object: { key: s3EventKey(object.key), size: object.size, eTag, sequencer },
        },
      },
    ],
  };
}

export interface ManifestNotificationsOptions {
  s3: S3Client;
  bucket: string;
  region: string;
  /** Runs the manifest function once; a rejection is a failed invocation. */
  invoke: (event: S3Event) => Promise<unknown>;
  /** Between two listings of manifests/. Default 1000 ms. */
  pollIntervalMs?: number;
  /**
   * Waits before Lambda's two asynchronous retries of a failed invocation. AWS waits about one
   * minute, then two; the default here is 1 s, then 2 s.
   */
  retryDelaysMs?: readonly number[];
  /** Invoke for manifests already in the bucket at start. Default false: S3 only notifies uploads. */
  processExisting?: boolean;
  activity?: Activity;
  log?: Log;
}

export interface ManifestNotifications {
  /** Lists manifests/ once and invokes for each new or changed manifest; resolves with how many. */
  scan(): Promise<number>;
  /** Invokes at once for a key just uploaded (if it passes the filter and is new); true if it did. */
  notifyObjectCreated(key: string): Promise<boolean>;
  /** Invocations running or waiting for a retry. */
  readonly inFlight: number;
  stats(): { invocations: number; errors: number; retries: number; gaveUp: number };
  /**
   * Stops polling and retrying, then waits for running invocations to finish, at most `graceMs`;
   * resolves with how many were still running (left to finish on their own).
   */
  stop(graceMs?: number): Promise<number>;
}

/**
 * Polls ListObjectsV2 under manifests/ and invokes for every key that passes the stack's filter
 * and is new, or whose ETag or LastModified changed (a second upload of the same bytes goes
 * unnoticed only if the listing shows the same LastModified: AWS lists whole seconds, fauxqs
 * milliseconds). Invocations are asynchronous, as S3 → Lambda is: a
 * failure is logged and retried twice with the same event, then dropped.
 */
export async function startManifestNotifications(options: ManifestNotificationsOptions): Promise<ManifestNotifications> {
  const { s3, bucket, region, invoke } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const retryDelaysMs = options.retryDelaysMs ?? [1000, 2000];
  const activity = options.activity ?? new Activity();
  const log = options.log ?? (() => {});
  const stopping = new AbortController();
  /** key → version last invoked for, and the stamp of when it was recorded. */
  const seen = new Map<string, { version: string; stamp: number }>();
  let stamp = 0;
  const running = new Set<Promise<void>>();
  const counts = { invocations: 0, errors: 0, retries: 0, gaveUp: 0 };
  let timer: NodeJS.Timeout | undefined;

  // S3 notifies every PUT, even of the same bytes: LastModified tells a new upload of them apart.
  const versionOf = (object: _Object): string => `${object.ETag ?? ''}|${object.LastModified?.getTime() ?? ''}`;

  async function list(prefix: string): Promise<_Object[]> {
    const objects: _Object[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), {
        abortSignal: stopping.signal,
      });
      objects.push(...(page.Contents ?? []));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  /** Synchronous check-and-set, so a scan and a notify racing for one upload invoke once. */
  function claim(object: _Object): boolean {
    if (!object.Key || !isManifestKey(object.Key)) return false;
    const version = versionOf(object);
    if (seen.get(object.Key)?.version === version) return false;
    seen.set(object.Key, { version, stamp: ++stamp });
    return true;
  }

  function dispatch(object: _Object): void {
    const event = s3ObjectCreatedEvent(bucket, region, { key: object.Key!, size: object.Size ?? 0, eTag: object.ETag ?? '' });
    const run = (async () => {
      for (let attempt = 0; attempt <= retryDelaysMs.length; attempt++) {
        if (attempt > 0) {
          counts.retries++;
          try {
            await sleep(retryDelaysMs[attempt - 1], undefined, { signal: stopping.signal });
          } catch {
            log(`manifest ${object.Key}: local cloud stopped before retry ${attempt}`);
            return;
          }
        }
        counts.invocations++;
        activity.progressed();
        try {
          await invoke(event);
          return;
        } catch (error) {
          counts.errors++;
          const next = attempt < retryDelaysMs.length ? `; retry ${attempt + 1} of ${retryDelaysMs.length} in ${retryDelaysMs[attempt]} ms` : '; no retries left, event dropped';
          log(`manifest ${object.Key}: invocation failed: ${errorText(error)}${next}`);
        }
      }
      counts.gaveUp++;
    })();
    running.add(run);
    void run.finally(() => {
      running.delete(run);
      activity.progressed();
    });
  }

  async function scan(): Promise<number> {
    if (stopping.signal.aborted) return 0;
    const startStamp = stamp;
    const objects = await list(PREFIX.manifests);
    let dispatched = 0;
    const present = new Set<string>();
    for (const object of objects) {
      if (object.Key) present.add(object.Key);
      if (claim(object)) {
        dispatch(object);
        dispatched++;
      }
    }
    // Forget deleted keys, so uploading one again is new; not those claimed during this listing.
    for (const [key, entry] of seen) if (!present.has(key) && entry.stamp <= startStamp) seen.delete(key);
    return dispatched;
  }

  async function poll(): Promise<void> {
    try {
      await scan();
    } catch (error) {
      if (!stopping.signal.aborted) log(`manifest poll: ListObjectsV2 failed: ${errorText(error)}`);
    }
    if (!stopping.signal.aborted) timer = setTimeout(poll, pollIntervalMs);
  }

  // The baseline: what is there before the trigger exists is not an upload.
  if (options.processExisting) {
    await scan();
  } else {
    for (const object of await list(PREFIX.manifests)) claim(object);
  }
  timer = setTimeout(poll, pollIntervalMs);

  return {
    scan,
    async notifyObjectCreated(key) {
      if (!isManifestKey(key) || stopping.signal.aborted) return false;
      // Listing (not HeadObject) gives the same ETag and LastModified the poller compares.
      const object = (await list(key)).find((o) => o.Key === key);
      if (!object || !claim(object)) return false;
      dispatch(object);
      return true;
    },
    get inFlight() {
      return running.size;
    },
    stats: () => ({ ...counts }),
    async stop(graceMs = Infinity) {
      stopping.abort();
      clearTimeout(timer);
      const settled = (async () => {
        while (running.size > 0) await Promise.allSettled([...running]);
      })();
      await within(settled, graceMs);
      return running.size;
    },
  };
}
