// The cloudfetch stack: a bucket, the queues, two functions, alarms and a dashboard, built from
// the settings (settings.ts). It refuses mainland China regions: the point is to fetch from outside.

import { CfnOutput, Stack, Tags, Token, type App, type Environment, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Functions } from './constructs/functions.ts';
import { Operations } from './constructs/operations.ts';
import { Queues } from './constructs/queues.ts';
import { Storage } from './constructs/storage.ts';
import { readSettings, type Settings } from '../aws/settings.ts';

export class RegionError extends Error {
  override name = 'RegionError';
}

/** Throws a RegionError for a mainland China region (cn-north-1, cn-northwest-1, …). */
export function assertOutsideChina(region: string | undefined): void {
  if (region && !Token.isUnresolved(region) && region.toLowerCase().startsWith('cn-')) {
    throw new RegionError(`region ${region} is in mainland China, and cloudfetch is meant to run outside it: deploy to a region such as ap-east-1 (Hong Kong), ap-northeast-1 (Tokyo) or ap-southeast-1 (Singapore), e.g. with AWS_REGION=ap-east-1`);
  }
}

export interface CloudfetchStackProps extends StackProps {
  readonly settings: Settings;
}

export class CloudfetchStack extends Stack {
  readonly storage: Storage;
  readonly queues: Queues;
  readonly functions: Functions;
  readonly operations: Operations;

  constructor(scope: Construct, id: string, props: CloudfetchStackProps) {
    assertOutsideChina(props.env?.region);
    super(scope, id, {
      description: 'cloudfetch: fetches lists of image URLs into S3 with Lambda',
      ...props,
      // On the CloudFormation stack itself; Tags.of below puts it on every resource in the template.
      tags: { ...props.tags, project: 'cloudfetch' },
    });
    const { settings } = props;
    this.storage = new Storage(this, 'Storage', { removalPolicy: settings.removalPolicy });
    this.queues = new Queues(this, 'Queues', { settings });
    this.functions = new Functions(this, 'Functions', {
      settings,
      bucket: this.storage.bucket,
      jobs: this.queues.jobs,
      failedManifests: this.queues.failedManifests,
    });
    this.operations = new Operations(this, 'Operations', {
      jobs: this.queues.jobs,
      deadLetters: this.queues.deadLetters,
      failedManifests: this.queues.failedManifests,
      manifestFunction: this.functions.manifest,
      fetchFunction: this.functions.fetch,
      alarmEmail: settings.alarmEmail,
    });
    Tags.of(this).add('project', 'cloudfetch');

    const output = (id: string, value: string, description: string): CfnOutput => new CfnOutput(this, id, { value, description });
    output('BucketName', this.storage.bucket.bucketName, 'Upload manifests under manifests/; images arrive under images/');
    output('QueueUrl', this.queues.jobs.queueUrl, 'Jobs queue, one message per image');
    output('DlqUrl', this.queues.deadLetters.queueUrl, 'Dead-letter queue: jobs that failed maxReceiveCount times');
    output('FailedManifestsUrl', this.queues.failedManifests.queueUrl, 'S3 events of uploads the manifest function failed on (not retried)');
    output('AlarmTopicArn', this.operations.alarmTopic.topicArn, 'Alarm notifications: subscribe with cloudfetch:alarmEmail or in the SNS console');
    output('ManifestFunctionName', this.functions.manifest.functionName, 'Splits uploaded manifests into jobs');
    output('FetchFunctionName', this.functions.fetch.functionName, 'Fetches the images of queued jobs');
    output('PackFunctionName', this.functions.pack.functionName, 'Packs a split into tar shards under packs/ (cloudfetch pack, sync --packed)');
    output(
      'DashboardUrl',
      `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${this.operations.dashboard.dashboardName}`,
      'CloudWatch dashboard of the run',
    );
  }
}

/** The stack as the app builds it: settings from the app's context, account and region from env. */
export function createStack(app: App, env: Environment): CloudfetchStack {
  const settings = readSettings((key) => app.node.tryGetContext(key));
  assertOutsideChina(env.region);
  return new CloudfetchStack(app, settings.stackName, { stackName: settings.stackName, settings, env });
}
