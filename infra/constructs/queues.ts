// The jobs queue (one message per image) and its dead-letter queue, where a job lands after
// settings.maxReceiveCount deliveries that each ended in a transient failure or a crash; and the
// queue that keeps the S3 events the manifest function failed on (its on-failure destination).
// The jobs queue is FIFO with a message group per host slot (aws/fifo.ts): SQS hands out one
// message of a group at a time, which caps the jobs of one origin in flight across the whole fleet
// at hostConcurrency. High-throughput mode (quotas per message group, not per queue) keeps a
// million-image run from meeting FIFO's per-queue limit. A FIFO queue's DLQ must be FIFO too.

import { Duration, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DEAD_LETTER_RETENTION_SECONDS, JOBS_RETENTION_SECONDS, visibilityTimeoutSeconds, type Settings } from '../../aws/settings.ts';

/** FIFO, deduplication and throughput quotas per message group, explicit deduplication ids (never the body's hash: a retry sends the same body). */
const HIGH_THROUGHPUT_FIFO = {
  fifo: true,
  contentBasedDeduplication: false,
  deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
  fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
} as const;

export interface QueuesProps {
  readonly settings: Settings;
}

export class Queues extends Construct {
  readonly jobs: sqs.Queue;
  readonly deadLetters: sqs.Queue;
  readonly failedManifests: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    const { settings } = props;
    const deadLetterQueue = (id: string, fifo: boolean): sqs.Queue => new sqs.Queue(this, id, {
      retentionPeriod: Duration.seconds(DEAD_LETTER_RETENTION_SECONDS),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      ...(fifo ? HIGH_THROUGHPUT_FIFO : {}),
    });
    this.deadLetters = deadLetterQueue('DeadLetters', true);
    this.failedManifests = deadLetterQueue('FailedManifests', false);
    Validations.of(this.failedManifests).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'The manifest function\'s on-failure destination: it is itself where failed events end, read by a person, so a further dead-letter queue would never receive anything.',
    });
    this.jobs = new sqs.Queue(this, 'Jobs', {
      ...HIGH_THROUGHPUT_FIFO,
      retentionPeriod: Duration.seconds(JOBS_RETENTION_SECONDS),
      // Redelivery waits for the visibility timeout: 6× the fetch timeout leaves room for
      // Lambda's own retries of a batch before SQS hands the message out again.
      visibilityTimeout: Duration.seconds(visibilityTimeoutSeconds(settings)),
      receiveMessageWaitTime: Duration.seconds(20),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: settings.maxReceiveCount },
    });
  }
}
