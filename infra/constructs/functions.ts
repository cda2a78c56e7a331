// The three Lambda functions (bundled from aws/lambda/*.ts by esbuild, no Docker), their roles with
// explicit least-privilege statements, their log groups, and what invokes them: an S3 upload
// under manifests/ for the manifest function, the jobs queue for the fetch function, the user
// (`cloudfetch pack`, a direct invocation) for the pack function.

import * as path from 'node:path';
import { Duration, RemovalPolicy, Size, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { MANIFEST_SUFFIXES, PREFIX } from '../../aws/bucket.ts';
import { FUNCTION_SERVICES, functionEnvironment, LOG_RETENTION_DAYS, PACK_FUNCTION, shapesImages, type Settings } from '../../aws/settings.ts';
import { SHARP_EXTERNAL, sharpInstallCommand } from '../sharp-bundle.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface FunctionsProps {
  readonly settings: Settings;
  readonly bucket: s3.Bucket;
  readonly jobs: sqs.Queue;
  /** Where a manifest event goes when the manifest function fails on it. */
  readonly failedManifests: sqs.Queue;
}

interface FunctionSpec {
  readonly entry: string;
  readonly description: string;
  readonly service: string;
  readonly memoryMb: number;
  readonly timeoutSeconds: number;
  /** /tmp space: the manifest function writes the split's index there before uploading it. */
  readonly tmpMb?: number;
  readonly environment: Record<string, string>;
  readonly logRemovalPolicy: RemovalPolicy;
  /** sharp (resizing) beside the bundle, for the function's arm64 platform (infra/sharp-bundle.ts). */
  readonly sharp?: boolean;
}

export class Functions extends Construct {
  readonly manifest: NodejsFunction;
  readonly fetch: NodejsFunction;
  readonly pack: NodejsFunction;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const { settings, bucket, jobs, failedManifests } = props;
    const at = { bucket: bucket.bucketName, jobsQueueUrl: jobs.queueUrl };
    const logRemovalPolicy = settings.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    this.manifest = nodeFunction(this, 'Manifest', {
      entry: 'aws/lambda/manifest.ts',
      description: 'cloudfetch: splits a manifest uploaded under manifests/ into one queued job per image',
      service: FUNCTION_SERVICES.manifest,
      memoryMb: settings.manifestMemoryMb,
      timeoutSeconds: settings.manifestTimeoutSeconds,
      // A million-entry index with long URLs can pass the default 512 MB; more /tmp costs little.
      tmpMb: 2048,
      environment: functionEnvironment(settings, 'manifest', at),
      logRemovalPolicy,
    });
    this.fetch = nodeFunction(this, 'Fetch', {
      entry: 'aws/lambda/fetch.ts',
      description: 'cloudfetch: fetches the images of a batch of jobs into images/',
      service: FUNCTION_SERVICES.fetch,
      memoryMb: settings.fetchMemoryMb,
      timeoutSeconds: settings.fetchTimeoutSeconds,
      environment: functionEnvironment(settings, 'fetch', at),
      logRemovalPolicy,
      sharp: true,
    });

    // Manifest function. It never writes under manifests/, so its own writes cannot trigger it.
    allowObjects(this.manifest, 'ReadUploadedManifests', ['s3:GetObject'], bucket, [PREFIX.manifests],
      'manifests/<name>: the manifest a user uploads.');
    allowObjects(this.manifest, 'WriteStatus', ['s3:PutObject'], bucket, [PREFIX.status],
      'status/<split>.json, one per uploaded manifest.');
    // A large index goes up in parts (authorised as s3:PutObject); a failed upload aborts its parts.
    allowObjects(this.manifest, 'WriteIndex', ['s3:PutObject', 's3:AbortMultipartUpload'], bucket, [PREFIX.index],
      'index/<split>.csv, one per uploaded manifest, uploaded in parts when large.');
    if (settings.skipExistingAtSplit) {
      // One listing of images/<split>/ instead of a HeadObject per image; only under images/.
      this.manifest.addToRolePolicy(listImagesStatement('ListStoredImages', bucket));
    }
    // SendMessageBatch is authorised as sqs:SendMessage.
    this.manifest.addToRolePolicy(new iam.PolicyStatement({ sid: 'QueueJobs', actions: ['sqs:SendMessage'], resources: [jobs.queueArn] }));
    // S3 invokes it asynchronously, and Lambda's default two retries would re-run a split that
    // crashed midway, queueing its jobs again. No retry: the event is kept in failedManifests
    // instead (an alarm says so). Lambda sends it with the function's role, which needs only
    // sqs:SendMessage; CDK's SqsDestination would also grant GetQueueAttributes and GetQueueUrl.
    this.manifest.configureAsyncInvoke({ retryAttempts: 0, onFailure: { bind: () => ({ destination: failedManifests.queueArn }) } });
    this.manifest.addToRolePolicy(new iam.PolicyStatement({ sid: 'KeepFailedEvents', actions: ['sqs:SendMessage'], resources: [failedManifests.queueArn] }));

    // Fetch function. HeadObject is authorised as s3:GetObject; PutObject carries If-None-Match.
    allowObjects(this.fetch, 'CheckAndStoreImages', ['s3:GetObject', 's3:PutObject'], bucket, [PREFIX.images],
      'images/<split>/<id>.<ext>, one per image of a manifest.');
    // Without s3:ListBucket, HeadObject of a missing key answers 403 instead of 404 and every new
    // image would look like an error. Unconditioned: whether S3 evaluates an s3:prefix condition
    // for that implicit check is not documented, and guessing wrong would fail every image. It
    // lets the role list key names of its own bucket, not read them outside images/.
    this.fetch.addToRolePolicy(new iam.PolicyStatement({ sid: 'TellMissingImagesApart', actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }));
    allowObjects(this.fetch, 'RecordFailures', ['s3:PutObject'], bucket, [PREFIX.failures],
      'failures/<split>/<id>.json, one per failed image.');
    allowObjects(this.fetch, 'RecordFetches', ['s3:PutObject'], bucket, [PREFIX.records],
      'records/<split>/<invocation>.jsonl, one per invocation: what each fetch learnt, for sync.');
    if (settings.keepOriginals && shapesImages(settings)) {
      allowObjects(this.fetch, 'KeepOriginals', ['s3:PutObject'], bucket, [PREFIX.originals],
        'originals/<split>/<id>.<ext>, the fetched bytes of each image stored resized under images/.');
    }

    // Fleet-wide host pauses (Retry-After, bans): read before fetching from a host, written when one
    // says so; under hosts/ only.
    allowObjects(this.fetch, 'ShareHostPauses', ['s3:GetObject', 's3:PutObject'], bucket, [PREFIX.hosts],
      'hosts/<origin hash>.json, one per host paused by Retry-After or a ban.');

    // Pack function: reads the split's images and index, writes packs/ only (shards in parts).
    this.pack = nodeFunction(this, 'Pack', {
      entry: 'aws/lambda/pack.ts',
      description: 'cloudfetch: packs a split\'s images into tar shards under packs/ for sync --packed',
      service: FUNCTION_SERVICES.pack,
      memoryMb: PACK_FUNCTION.memoryMb,
      timeoutSeconds: PACK_FUNCTION.timeoutSeconds,
      environment: functionEnvironment(settings, 'pack', at),
      logRemovalPolicy,
    });
    allowObjects(this.pack, 'ReadImages', ['s3:GetObject'], bucket, [PREFIX.images],
      'images/<split>/<id>.<ext>: the images it packs.');
    allowObjects(this.pack, 'ReadIndex', ['s3:GetObject'], bucket, [PREFIX.index],
      'index/<split>.csv: the order it packs in.');
    allowObjects(this.pack, 'WritePacks', ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], bucket, [PREFIX.packs],
      'packs/<split>/<n>.tar and manifest.json: the shards, uploaded in parts, and their manifest, read to carry on.');
    // Listing images/, and a missing manifest or index answered 404 rather than 403 (unconditioned, as
    // the fetch function's: key names of its own bucket, no contents outside the prefixes above).
    this.pack.addToRolePolicy(new iam.PolicyStatement({ sid: 'ListImagesAndTellMissingApart', actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }));

    // The jobs: SQS polling by Lambda (the event source grants receive/delete/visibility on this
    // queue only). maxConcurrency caps the instances. From a FIFO queue Lambda takes at most 10
    // messages a batch and no batching window.
    this.fetch.addEventSource(new SqsEventSource(jobs, {
      batchSize: settings.fetchBatchSize,
      reportBatchItemFailures: true,
      maxConcurrency: settings.fetchMaxConcurrency,
    }));
    // A job on its last allowed delivery going back untried (behind a failed job of its message
    // group, or its host paused) is sent anew rather than dead-lettered (aws/lambda/redelivery.ts).
    this.fetch.addToRolePolicy(new iam.PolicyStatement({ sid: 'RequeueUntriedJobs', actions: ['sqs:SendMessage'], resources: [jobs.queueArn] }));

    // The trigger: one notification per manifest ending (S3 filters take one suffix each).
    for (const suffix of MANIFEST_SUFFIXES) {
      bucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(this.manifest), { prefix: PREFIX.manifests, suffix });
    }
    acknowledgeNotificationsHandler(Stack.of(this));
  }
}

function nodeFunction(scope: Construct, id: string, spec: FunctionSpec): NodejsFunction {
  const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
    retention: LOG_RETENTION_DAYS,
    removalPolicy: spec.logRemovalPolicy,
  });
  // An explicit role instead of AWSLambdaBasicExecutionRole: logs go to this group only.
  const role = new iam.Role(scope, `${id}Role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the ${spec.service} function`,
  });
  role.addToPrincipalPolicy(new iam.PolicyStatement({
    sid: 'WriteOwnLogs',
    actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
    resources: [logGroup.logGroupArn],
  }));
  return new NodejsFunction(scope, id, {
    entry: path.join(ROOT, spec.entry),
    handler: 'handler',
    projectRoot: ROOT,
    depsLockFilePath: path.join(ROOT, 'package-lock.json'),
    description: spec.description,
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: spec.memoryMb,
    ...(spec.tmpMb ? { ephemeralStorageSize: Size.mebibytes(spec.tmpMb) } : {}),
    timeout: Duration.seconds(spec.timeoutSeconds),
    role,
    logGroup,
    // Source maps for the bundle's stack traces (sourceMap below): a packaging detail, not a setting.
    environment: { ...spec.environment, NODE_OPTIONS: '--enable-source-maps' },
    bundling: {
      format: OutputFormat.ESM,
      target: 'node24',
      mainFields: ['module', 'main'],
      // Bundled CommonJS dependencies still call require().
      banner: "import { createRequire } from 'module';const require = createRequire(import.meta.url);",
      minify: true,
      sourceMap: true,
      sourcesContent: false,
      // The SDK goes into the bundle: the runtime's copy lacks @aws-sdk/lib-storage and its version
      // is not ours to choose. Sizes are in README (For developers).
      bundleAwsSDK: true,
      // esbuild's warnings and errors only, not its summary of every build.
      logLevel: LogLevel.WARNING,
      ...(spec.sharp ? {
        externalModules: SHARP_EXTERNAL,
        // Lambda runs arm64 (Architecture.ARM_64 above) whatever this machine is.
        commandHooks: { beforeBundling: () => [], beforeInstall: () => [], afterBundling: (_input: string, output: string) => [sharpInstallCommand(output, 'arm64')] },
      } : {}),
    },
  });
}

/** s3:ListBucket on the bucket, only for listings (and missing-key answers) under images/. */
function listImagesStatement(sid: string, bucket: s3.Bucket): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid,
    actions: ['s3:ListBucket'],
    resources: [bucket.bucketArn],
    conditions: { StringLike: { 's3:prefix': [`${PREFIX.images}*`] } },
  });
}

/**
 * Object actions on key prefixes of the stack's bucket. The object ARN ends in a wildcard (the
 * keys are only known at run time), which cdk-nag's IAM5 flags once per prefix: acknowledged here.
 */
function allowObjects(fn: NodejsFunction, sid: string, actions: string[], bucket: s3.Bucket, prefixes: string[], why: string): void {
  fn.addToRolePolicy(new iam.PolicyStatement({ sid, actions, resources: prefixes.map((p) => bucket.arnForObjects(`${p}*`)) }));
  const bucketId = Stack.of(bucket).getLogicalId(bucket.node.defaultChild as s3.CfnBucket);
  for (const prefix of prefixes) {
    Validations.of(fn.role!).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${prefix}*]`,
      reason: `${why} ${actions.join(', ')} on this one prefix of the stack's own bucket; object names are only known at run time.`,
    });
  }
}

/** CDK's singleton that applies the bucket's notification configuration at deploy time. */
function acknowledgeNotificationsHandler(stack: Stack): void {
  const handler = stack.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
  if (!handler) return;
  Validations.of(handler).acknowledge(
    { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: 'CDK-managed handler that writes the bucket notification configuration during deployment; CDK attaches this policy to its role.' },
  );
}
