// Lambda: the manifest function. An upload under manifests/ is split into one job per image.

import { Logger } from '@aws-lambda-powertools/logger';
import type { Context, S3Event } from 'aws-lambda';
import { bucketName, hostConcurrency, jobsQueueUrl, keyExtension, layout, perEnvironment, placeholderThreshold, s3Client, skipExistingAtSplit, sqsClient } from './config.ts';
import { isManifestKey, type SplitStatus } from '../bucket.ts';
import { splitManifest, type SplitDeps } from './split.ts';

const logger = new Logger();

function setUp(): SplitDeps {
  return {
    s3: s3Client(),
    sqs: sqsClient(),
    bucket: bucketName(),
    queueUrl: jobsQueueUrl(),
    layout: layout(),
    extension: keyExtension(),
    skipExisting: skipExistingAtSplit(),
    hostConcurrency: hostConcurrency(),
    placeholderThreshold: placeholderThreshold(),
    log: (message, fields) => logger.info(message, fields ?? {}),
  };
}

const setUpOnce = perEnvironment(setUp);

/** S3 event keys are URL-encoded, with '+' for spaces. */
export function eventKey(raw: string): string {
  return decodeURIComponent(raw.replace(/\+/g, ' '));
}

export async function handler(event: S3Event, context: Context): Promise<SplitStatus[]> {
  const container = setUpOnce();
  logger.addContext(context);
  const results: SplitStatus[] = [];
  for (const record of event.Records) {
    const key = eventKey(record.s3.object.key);
    if (record.s3.bucket.name !== container.bucket || !isManifestKey(key)) {
      logger.warn('ignored an object that is not a manifest upload', { bucket: record.s3.bucket.name, key });
      continue;
    }
    const status = await splitManifest(key, container);
    if (status.state === 'failed') logger.warn('manifest refused', { ...status });
    else logger.info('manifest split', { ...status });
    results.push(status);
  }
  return results;
}
