// What to watch during a run: a dashboard of outcomes per minute (the fetch function's EMF
// metrics), the queue, the dead-letter queue and both functions; an alarm when jobs reach the DLQ.

import { Duration } from 'aws-cdk-lib';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { FETCH_SERVICE, METRICS_NAMESPACE } from './functions.ts';

const MINUTE = Duration.minutes(1);

export interface OperationsProps {
  readonly jobs: sqs.IQueue;
  readonly deadLetters: sqs.IQueue;
  readonly manifestFunction: lambda.IFunction;
  readonly fetchFunction: lambda.IFunction;
}

export class Operations extends Construct {
  readonly dashboard: cw.Dashboard;
  readonly deadLetterAlarm: cw.Alarm;

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    const { jobs, deadLetters, manifestFunction, fetchFunction } = props;

    this.deadLetterAlarm = new cw.Alarm(this, 'DeadLetters', {
      alarmDescription: 'cloudfetch: jobs reached the dead-letter queue (failed maxReceiveCount times); see failures/ and the fetch function logs',
      metric: deadLetters.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM }),
      threshold: 0,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    });

    const outcome = (name: string, color: string): cw.Metric => new cw.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: name,
      dimensionsMap: { service: FETCH_SERVICE },
      statistic: cw.Stats.SUM,
      period: MINUTE,
      label: name,
      color,
    });
    // The fetch function also emits `failed` with a `reason` dimension, one series per reason.
    const failedByReason = new cw.SearchExpression({
      expression: `SEARCH('{${METRICS_NAMESPACE},reason,service} MetricName="failed" service="${FETCH_SERVICE}"', 'Sum', 60)`,
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
            left: [outcome('fetched', cw.Color.GREEN), outcome('skipped', cw.Color.BLUE), outcome('failed', cw.Color.RED)],
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
            title: 'Dead-letter queue',
            left: [deadLetters.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: cw.Stats.MAXIMUM, label: 'jobs' })],
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
