// Lambda: the pack function. Invoked directly (`cloudfetch pack <split>`), it packs a split's images
// into tar shards under packs/<split>/ for `sync --packed`, until done or its time runs short.

import { Logger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import { bucketName, perEnvironment, s3Client } from './config.ts';
import { packRequest, type PackAnswer } from '../pack-event.ts';
import { packSplit } from './packer.ts';

const logger = new Logger();

const setUpOnce = perEnvironment(() => ({ s3: s3Client(), bucket: bucketName() }), (old) => old.s3.destroy());

export async function handler(event: unknown, context: Context): Promise<PackAnswer> {
  const { s3, bucket } = setUpOnce();
  logger.addContext(context);
  const request = packRequest(event);
  const answer = await packSplit(request, { s3, bucket, remainingMs: () => context.getRemainingTimeInMillis(), log: (message, fields) => logger.info(message, fields ?? {}) });
  logger.info(answer.complete ? 'split packed' : 'packing stopped for time; invoke again to carry on', { ...answer });
  return answer;
}
