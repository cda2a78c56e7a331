// The jobs queue (one message per image) and its dead-letter queue, where a job lands after
// settings.maxReceiveCount deliveries that each ended in a transient failure or a crash.

import { Duration } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { visibilityTimeoutSeconds, type Settings } from '../../aws/settings.ts';

/** The longest SQS keeps a message: a paused run can be resumed two weeks later. */
const RETENTION = Duration.days(14);

export interface QueuesProps {
  readonly settings: Settings;
}

export class Queues extends Construct {
  readonly jobs: sqs.Queue;
  readonly deadLetters: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    const { settings } = props;
    this.deadLetters = new sqs.Queue(this, 'DeadLetters', {
      retentionPeriod: RETENTION,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.jobs = new sqs.Queue(this, 'Jobs', {
      retentionPeriod: RETENTION,
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
