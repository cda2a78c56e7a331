// What tests of `cloudfetch dev` share: waiting for a condition, and SDK clients for the local
// cloud a dev process describes in its connection file.

import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { DevConnection } from '../../cli/dev.ts';

/** Looks every 20 ms until `condition` holds; the limit is a guard, not a synchronisation. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function devClients(connection: DevConnection): { s3: S3Client; sqs: SQSClient } {
  const config = { endpoint: connection.endpoint, region: connection.region, credentials: connection.credentials };
  return { s3: new S3Client({ ...config, forcePathStyle: true }), sqs: new SQSClient(config) };
}
