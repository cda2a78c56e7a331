// What to watch during a run: a dashboard of outcomes per minute (the fetch function's EMF
// metrics), the queue, the dead-letter queues and both functions; alarms when jobs reach the DLQ
// or a function fails, sent to an encrypted SNS topic (and by e-mail when alarmEmail is set).

import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FUNCTION_SERVICES, METRICS_NAMESPACE } from '../../aws/settings.ts';

const MINUTE = Duration.minutes(1);

export interface OperationsProps {
  readonly jobs: sqs.IQueue;
  readonly deadLetters: sqs.IQueue;
  readonly failedManifests: sqs.IQueue;
  readonly manifestFunction: lambda.IFunction;
  readonly fetchFunction: lambda.IFunction;
  /** Subscribed to the alarm topic by e-mail; empty: no subscription. */
  readonly alarmEmail: string;
}

export class Operations extends Construct {
  readonly dashboard: cw.Dashboard;
  readonly alarmTopic: sns.Topic;
  readonly deadLetterAlarm: cw.Alarm;
  readonly manifestErrorsAlarm: cw.Alarm;
  readonly fetchErrorsAlarm: cw.Alarm;

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    const { jobs, deadLetters, failedManifests, manifestFunction, fetchFunction, alarmEmail } = props;

    // The alarms are named after the stack, so the topic policy can let these alarms only publish.
    const stack = Stack.of(this);
    const ourAlarms = stack.formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: `${stack.stackName}-*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    const cloudwatch = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
    // SNS encrypts with KMS only, and CloudWatch cannot publish to a topic under the AWS-managed
    // SNS key (its policy cannot grant CloudWatch): a key of our own ($1 a month), for this topic.
    const key = new kms.Key(this, 'AlarmTopicKey', {
      description: 'cloudfetch: encrypts the alarm topic',
      enableKeyRotation: true,
      // It only protects notifications on their way out: nothing needs it once the stack is gone.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    // Unconditioned, as AWS documents it for alarms: the topic policy below decides which alarms may publish.
    key.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'AlarmsEncryptNotifications',
      principals: [cloudwatch],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
    }));
    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { displayName: `${stack.stackName} alarms`, masterKey: key, enforceSSL: true });
    // The topic policy replaces SNS's default one, so CloudWatch needs an explicit Allow.
    this.alarmTopic.addToResourcePolicy(new iam.PolicyStatement({
      sid: 'OurAlarmsPublish',
      principals: [cloudwatch],
      actions: ['sns:Publish'],
      resources: [this.alarmTopic.topicArn],
      conditions: { ArnLike: { 'aws:SourceArn': ourAlarms } },
    }));
    if (alarmEmail) this.alarmTopic.addSubscription(new EmailSubscription(alarmEmail));

    const notify = new SnsAction(this.alarmTopic);
    const alarm = (id: string, name: string, description: string, metric: cw.IMetric, datapoints: { of: number; needed: number }): cw.Alarm => {
      const a = new cw.Alarm(this, id, {
        alarmName: `${stack.stackName}-${name}`,
        alarmDescription: `cloudfetch: ${description}`,
        metric,
        threshold: 0,
        comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: datapoints.of,
        datapointsToAlarm: datapoints.needed,
        treatMissingData: cw.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(notify);
      return a;
    };
    this.deadLetterAlarm = alarm('DeadLetters', 'dead-letters',
      'jobs reached the dead-letter queue (failed maxReceiveCount times); see failures/ and the fetch function logs',
      deadLetters.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM }), { of: 1, needed: 1 });
    this.manifestErrorsAlarm = alarm('ManifestErrors', 'manifest-errors',
      'the manifest function failed on an upload and will not retry it; the S3 event is in the failed-manifests queue, the reason in status/<split>.json or the function logs',
      manifestFunction.metricErrors({ period: MINUTE, statistic: cw.Stats.SUM }), { of: 1, needed: 1 });
    // A whole invocation failing (a crash, a time-out), not an image: its batch comes back anyway,
    // so one is noise; 3 minutes in 5 is a function that cannot work (a missing module, say).
    this.fetchErrorsAlarm = alarm('FetchErrors', 'fetch-errors',
      'fetch function invocations failed in 3 of the last 5 minutes (crashes or time-outs, not failed images); see the fetch function logs',
      fetchFunction.metricErrors({ period: MINUTE, statistic: cw.Stats.SUM }), { of: 5, needed: 3 });

    const outcome = (name: string, color: string): cw.Metric => new cw.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: { service: FUNCTION_SERVICES.fetch },
      statistic: cw.Stats.SUM,
      period: MINUTE,
      label: name,
      color,
    });
    // The fetch function also emits `failed` with a `reason` dimension, one series per reason.
    const failedByReason = new cw.SearchExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},reason,service} MetricName="failed" service="${FUNCTION_SERVICES.fetch}"', 'Sum', 60)`,
      label: '',
      period: MINUTE,
    });

    const wide = { width: 12, height: 6 };
    this.dashboard = new cw.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          new cw.GraphWidget({
            ...wide,
            title: 'Images per minute',
            // paused: jobs left in the queue while their host is paused for the fleet (Retry-After, a ban).
            left: [outcome('fetched', cw.Color.GREEN), outcome('skipped', cw.Color.BLUE), outcome('failed', cw.Color.RED), outcome('paused', cw.Color.ORANGE)],
          }),
          new cw.GraphWidget({ ...wide, title: 'Failed images per minute, by reason', left: [failedByReason] }),
        ],
        [
          new cw.GraphWidget({
            ...wide,
            title: 'Jobs queue',
            left: [
              jobs.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'waiting' }),
              jobs.metricApproximateNumberOfMessagesNotVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'in flight' }),
            ],
            right: [jobs.metricApproximateAgeOfOldestMessage({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'oldest (s)' })],
          }),
          new cw.GraphWidget({
            ...wide,
            title: 'Dead-letter queues',
            left: [
              deadLetters.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'jobs' }),
              failedManifests.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'failed manifests' }),
            ],
            leftAnnotations: [{ value: 0, label: 'alarm above', color: cw.Color.RED }],
          }),
        ],
        [
          functionWidget('Fetch function', fetchFunction),
          functionWidget('Manifest function', manifestFunction),
        ],
      ],
    });
  }
}

function functionWidget(title: string, fn: lambda.IFunction): cw.GraphWidget {
  return new cw.GraphWidget({
    title,
    width: 12,
    height: 6,
    left: [
      fn.metricInvocations({ period: MINUTE, statistic: cw.Stats.SUM, label: 'invocations' }),
      fn.metricErrors({ period: MINUTE, statistic: cw.Stats.SUM, label: 'errors', color: cw.Color.RED }),
      fn.metricThrottles({ period: MINUTE, statistic: cw.Stats.SUM, label: 'throttles', color: cw.Color.ORANGE }),
    ],
    right: [fn.metric('ConcurrentExecutions', { period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'concurrent' })],
  });
}
