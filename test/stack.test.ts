// The CDK stack, checked on the synthesized template (bundling skipped for speed, but for one run of
// the app that checks the bundles): what a reviewer would check before `cdk deploy` — settings
// applied, least privilege, cdk-nag clean, clear errors, the AWS SDK inside the bundles.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { App, Stack, Validations, type Environment } from 'aws-cdk-lib';
import { BUNDLING_STACKS } from 'aws-cdk-lib/cx-api';
import nag from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { MANIFEST_SUFFIXES, PREFIX } from '../aws/bucket.ts';
import { DEAD_LETTER_RETENTION_SECONDS, DEFAULT_SETTINGS, JOBS_RETENTION_SECONDS, readSettings, SettingsError, visibilityTimeoutSeconds } from '../aws/settings.ts';
import { CloudfetchStack, RegionError, createStack } from '../infra/stack.ts';
import { SHARP_EXTERNAL, SHARP_VERSION, sharpNativePackages } from '../infra/sharp-bundle.ts';
import { startLocalCloud } from '../local-cloud/cloud.ts';
import { startEmulator } from '../local-cloud/emulator.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const CDK_JSON = JSON.parse(readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as { app: string; context: Record<string, unknown> };
const ENV: Environment = { account: '123456789012', region: 'ap-east-1' };

/** What `cdk synth` would build with cdk.json's context plus `-c` overrides, without bundling. */
function synth(overrides: Record<string, unknown> = {}, env: Environment = ENV): { app: App; stack: CloudfetchStack; template: Template } {
  const app = new App({ context: { ...CDK_JSON.context, ...overrides, [BUNDLING_STACKS]: [] } });
  const stack = createStack(app, env);
  return { app, stack, template: Template.fromStack(stack) };
}

// --- the app run as `cdk` runs it, started first: these child processes overlap the tests below.

interface Run { code: number | null; stdout: string; stderr: string; outdir: string }
const outdirs: string[] = [];
async function runApp(env: Record<string, string>): Promise<Run> {
  const outdir = await mkdtemp(path.join(tmpdir(), 'cloudfetch-cdk-'));
  outdirs.push(outdir);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CDK_|AWS_)/.test(k)));
  const child = spawn(process.execPath, [path.join(ROOT, 'infra', 'app.ts')], {
    cwd: ROOT, env: { ...clean, CDK_OUTDIR: outdir, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve) => {
    child.on('close', (code) => resolve({ code, stdout, stderr, outdir }));
    child.on('error', (error) => resolve({ code: -1, stdout, stderr: String(error), outdir }));
  });
}
const context = (extra: Record<string, unknown> = {}): string => JSON.stringify({ ...CDK_JSON.context, [BUNDLING_STACKS]: [], ...extra });
const appRuns = {
  // With esbuild bundling, as `cdk deploy` runs it: a few seconds, overlapping the tests below.
  ok: runApp({ CDK_CONTEXT_JSON: context({ [BUNDLING_STACKS]: ['**'] }), CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'ap-northeast-1' }),
  china: runApp({ CDK_CONTEXT_JSON: context(), CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'cn-north-1' }),
  badContext: runApp({ CDK_CONTEXT_JSON: context({ 'cloudfetch:fetchBatchSize': 'lots' }), CDK_DEFAULT_REGION: 'ap-east-1' }),
};
// --- one synthesized template shared by most tests.

const base = synth();
let destroyed: ReturnType<typeof synth> | undefined;
/** The same with removalPolicy=destroy, built once when first needed. */
const withDestroy = (): ReturnType<typeof synth> => (destroyed ??= synth({ 'cloudfetch:removalPolicy': 'destroy' }));
const t = base.template;
const stack = base.stack;
const logicalId = (c: IConstruct): string => stack.getLogicalId(c.node.defaultChild as never);
const ids = {
  bucket: logicalId(stack.storage.bucket),
  jobs: logicalId(stack.queues.jobs),
  dlq: logicalId(stack.queues.deadLetters),
  failedManifests: logicalId(stack.queues.failedManifests),
  manifest: logicalId(stack.functions.manifest),
  fetch: logicalId(stack.functions.fetch),
  pack: logicalId(stack.functions.pack),
  topic: logicalId(stack.operations.alarmTopic),
  key: logicalId(stack.operations.alarmTopic.masterKey!),
};
const names: Record<string, string> = Object.fromEntries(Object.entries(ids).map(([name, id]) => [id, name]));

/** The same with an alarm e-mail: everything above plus the subscription. */
const withEmail = synth({ 'cloudfetch:alarmEmail': 'me@example.org' });

// cfn-lint (when installed) on that template, in the background; W3005: CDK adds an explicit
// DependsOn on a role that a GetAtt already implies, harmless.
const lint = (async (): Promise<{ missing: boolean; stdout: string }> => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cloudfetch-lint-'));
  outdirs.push(dir);
  const file = path.join(dir, 'template.json');
  await writeFile(file, JSON.stringify(withEmail.template.toJSON()));
  return new Promise((resolve) => {
    const child = spawn('cfn-lint', ['--format', 'json', '--ignore-checks', 'W3005', '--', file], { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.on('error', () => resolve({ missing: true, stdout }));
    // 127: a pyenv shim or a shell found no cfn-lint.
    child.on('close', (code) => resolve({ missing: code === 127, stdout }));
  });
})();
after(async () => {
  await Promise.all([lint, ...Object.values(appRuns)]);
  await Promise.all(outdirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

type Resource = { Properties: Record<string, any>; DeletionPolicy?: string; UpdateReplacePolicy?: string };
const resources = (type: string, tpl = t): Record<string, Resource> => tpl.findResources(type) as Record<string, Resource>;
const only = <T>(record: Record<string, T>): T => {
  const values = Object.values(record);
  assert.equal(values.length, 1, `expected exactly one, found ${values.length}`);
  return values[0]!;
};

/** A policy resource as text: bucket/images/*, jobs, manifest-logs … */
function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, any>;
  if (v['Fn::GetAtt']) {
    const [id, attribute] = v['Fn::GetAtt'] as [string, string];
    return `${names[id] ?? id}${attribute === 'Arn' && names[id] ? '' : `.${attribute}`}`;
  }
  if (v.Ref) return names[v.Ref] ?? v.Ref;
  if (v['Fn::Join']) return (v['Fn::Join'][1] as unknown[]).map(render).join(v['Fn::Join'][0]);
  return JSON.stringify(value);
}
const list = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

interface Grant { action: string; resource: string; condition?: string }
/** Every Allow of the policies attached to a function's role, as action → resource lines. */
function grantsOf(fnLogicalId: string, tpl = t): Grant[] {
  const fn = only(Object.fromEntries(Object.entries(resources('AWS::Lambda::Function', tpl)).filter(([id]) => id === fnLogicalId)));
  const roleId = fn.Properties.Role['Fn::GetAtt'][0] as string;
  const grants: Grant[] = [];
  for (const policy of Object.values(resources('AWS::IAM::Policy', tpl))) {
    if (!list(policy.Properties.Roles).some((r: any) => r.Ref === roleId)) continue;
    for (const s of policy.Properties.PolicyDocument.Statement) {
      assert.equal(s.Effect, 'Allow');
      for (const action of list<string>(s.Action)) {
        for (const resource of list(s.Resource)) {
          grants.push({ action, resource: render(resource), ...(s.Condition ? { condition: JSON.stringify(s.Condition) } : {}) });
        }
      }
    }
  }
  const role = resources('AWS::IAM::Role', tpl)[roleId]!;
  assert.equal(role.Properties.ManagedPolicyArns, undefined, 'no managed policies on the function roles');
  assert.equal(role.Properties.Policies, undefined, 'no inline policies besides the default policy');
  return grants.sort((a, b) => `${a.action} ${a.resource}`.localeCompare(`${b.action} ${b.resource}`));
}
const line = (g: Grant): string => `${g.action} ${g.resource}${g.condition ? ` if ${g.condition}` : ''}`;
const IMAGES_ONLY = JSON.stringify({ StringLike: { 's3:prefix': ['images/*'] } });

// --- cdk.json

test('cdk.json runs the TypeScript app directly and its defaults are exactly the settings defaults', () => {
  assert.equal(CDK_JSON.app, 'node infra/app.ts');
  const ours = Object.fromEntries(Object.entries(CDK_JSON.context).filter(([k]) => k.startsWith('cloudfetch:')).map(([k, v]) => [k.slice('cloudfetch:'.length), v]));
  assert.deepEqual(ours, { ...DEFAULT_SETTINGS });
});

// --- storage

test('the bucket is private, encrypted, TLS-only, aborts stale multipart uploads and is kept on stack deletion', () => {
  const [id, bucket] = Object.entries(resources('AWS::S3::Bucket'))[0]!;
  assert.equal(Object.keys(resources('AWS::S3::Bucket')).length, 1, 'one bucket, no logging bucket');
  assert.equal(id, ids.bucket);
  assert.deepEqual(bucket.Properties.PublicAccessBlockConfiguration, { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
  assert.deepEqual(bucket.Properties.OwnershipControls, { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
  assert.deepEqual(bucket.Properties.BucketEncryption, { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
  assert.deepEqual(bucket.Properties.LifecycleConfiguration.Rules, [{ Id: 'abort-incomplete-multipart-uploads', Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }]);
  assert.equal(bucket.DeletionPolicy, 'Retain');
  assert.equal(bucket.UpdateReplacePolicy, 'Retain');
  t.resourceCountIs('Custom::S3AutoDeleteObjects', 0);

  const policy = only(resources('AWS::S3::BucketPolicy')).Properties.PolicyDocument;
  const insecure = policy.Statement.find((s: any) => s.Condition?.Bool?.['aws:SecureTransport'] === 'false');
  assert.ok(insecure, 'a statement refusing plain HTTP');
  assert.equal(insecure.Effect, 'Deny');
  assert.equal(insecure.Action, 's3:*');
  assert.deepEqual(insecure.Principal, { AWS: '*' });
  assert.deepEqual(list(insecure.Resource).map(render).sort(), ['bucket', 'bucket/*']);
  assert.ok(policy.Statement.some((s: any) => s.Effect === 'Deny' && s.Condition?.NumericLessThan?.['s3:TlsVersion'] === 1.2), 'TLS 1.2 or newer');
});

test('removalPolicy=destroy empties and deletes the bucket (and the log groups) with the stack', () => {
  const { template } = withDestroy();
  const bucket = only(resources('AWS::S3::Bucket', template));
  assert.equal(bucket.DeletionPolicy, 'Delete');
  template.resourceCountIs('Custom::S3AutoDeleteObjects', 1);
  for (const group of Object.values(resources('AWS::Logs::LogGroup', template))) assert.equal(group.DeletionPolicy, 'Delete');
  for (const group of Object.values(resources('AWS::Logs::LogGroup'))) assert.equal(group.DeletionPolicy, 'Retain');
});

test('an upload under manifests/ with each manifest ending, and nothing else, invokes the manifest function', () => {
  const config = only(resources('Custom::S3BucketNotifications')).Properties.NotificationConfiguration;
  assert.equal(config.QueueConfigurations, undefined);
  assert.equal(config.TopicConfigurations, undefined);
  const filters = config.LambdaFunctionConfigurations.map((c: any) => {
    assert.deepEqual(c.Events, ['s3:ObjectCreated:*']);
    assert.equal(render(c.LambdaFunctionArn), 'manifest');
    const rules = Object.fromEntries(c.Filter.Key.FilterRules.map((r: any) => [r.Name, r.Value]));
    assert.equal(rules.prefix, PREFIX.manifests);
    return rules.suffix as string;
  });
  assert.deepEqual([...filters].sort(), [...MANIFEST_SUFFIXES].sort());
  // S3 refuses overlapping filters: no ending may itself end with another.
  for (const a of MANIFEST_SUFFIXES) for (const b of MANIFEST_SUFFIXES) if (a !== b) assert.ok(!a.endsWith(b), `${a} overlaps ${b}`);
  const permission = only(resources('AWS::Lambda::Permission')).Properties;
  assert.equal(permission.Principal, 's3.amazonaws.com');
  assert.equal(render(permission.SourceArn), 'bucket');
  assert.equal(render(permission.FunctionName), 'manifest');
});

// --- queues

test('the jobs queue: visibility 6× the fetch timeout, long polling, a week, encrypted, a DLQ after 5 receives', () => {
  const jobs = resources('AWS::SQS::Queue')[ids.jobs]!.Properties;
  assert.equal(jobs.VisibilityTimeout, 6 * DEFAULT_SETTINGS.fetchTimeoutSeconds);
  assert.equal(jobs.VisibilityTimeout, visibilityTimeoutSeconds(DEFAULT_SETTINGS));
  assert.equal(jobs.ReceiveMessageWaitTimeSeconds, 20);
  assert.equal(jobs.MessageRetentionPeriod, 7 * 24 * 3600);
  assert.equal(jobs.MessageRetentionPeriod, JOBS_RETENTION_SECONDS);
  assert.equal(jobs.SqsManagedSseEnabled, true);
  assert.deepEqual(jobs.RedrivePolicy, { deadLetterTargetArn: { 'Fn::GetAtt': [ids.dlq, 'Arn'] }, maxReceiveCount: 5 });
  // SQS ages a dead letter from its first enqueue: the DLQs must outlive the jobs queue.
  for (const queue of ['dlq', 'failedManifests'] as const) {
    const p = resources('AWS::SQS::Queue')[ids[queue]]!.Properties;
    assert.equal(p.MessageRetentionPeriod, 14 * 24 * 3600, queue);
    assert.equal(p.MessageRetentionPeriod, DEAD_LETTER_RETENTION_SECONDS, queue);
    assert.ok(p.MessageRetentionPeriod > jobs.MessageRetentionPeriod, queue);
    assert.equal(p.SqsManagedSseEnabled, true, queue);
    assert.equal(p.RedrivePolicy, undefined, queue);
  }
  t.resourceCountIs('AWS::SQS::Queue', 3);

  const policies = Object.values(resources('AWS::SQS::QueuePolicy'));
  for (const queue of ['jobs', 'dlq', 'failedManifests']) {
    const policy = policies.find((p) => list(p.Properties.Queues).some((q: any) => render(q) === queue));
    assert.ok(policy, `${queue} has a queue policy`);
    const deny = policy.Properties.PolicyDocument.Statement.find((s: any) => s.Condition?.Bool?.['aws:SecureTransport'] === 'false');
    assert.equal(deny?.Effect, 'Deny', `${queue} refuses plain HTTP`);
    assert.equal(deny.Action, 'sqs:*');
  }
});

test('the jobs queue and its DLQ are FIFO in high-throughput mode, with explicit deduplication ids; the failed-manifests queue is standard', () => {
  const queues = resources('AWS::SQS::Queue');
  for (const queue of ['jobs', 'dlq'] as const) {
    const p = queues[ids[queue]]!.Properties;
    assert.deepEqual(
      [p.FifoQueue, p.ContentBasedDeduplication, p.DeduplicationScope, p.FifoThroughputLimit, p.QueueName],
      [true, false, 'messageGroup', 'perMessageGroupId', undefined],
      `${queue}: FIFO, per-group quotas, a name CloudFormation generates (ending in .fifo)`,
    );
  }
  assert.equal(queues[ids.failedManifests]!.Properties.FifoQueue, undefined, 'S3 event destinations stay standard');
});

test('the fetch function reads the queue in batches with partial failures and a concurrency cap', () => {
  const mapping = only(resources('AWS::Lambda::EventSourceMapping')).Properties;
  assert.equal(render(mapping.EventSourceArn), 'jobs');
  assert.equal(render(mapping.FunctionName), 'fetch');
  assert.equal(mapping.BatchSize, DEFAULT_SETTINGS.fetchBatchSize);
  assert.ok(mapping.BatchSize <= 10, 'Lambda takes at most 10 messages a batch from a FIFO queue');
  assert.equal(mapping.MaximumBatchingWindowInSeconds, undefined, 'no batching window: Lambda refuses one on a FIFO queue');
  assert.deepEqual(mapping.FunctionResponseTypes, ['ReportBatchItemFailures']);
  assert.deepEqual(mapping.ScalingConfig, { MaximumConcurrency: DEFAULT_SETTINGS.fetchMaxConcurrency });
});

test('Lambda never retries the manifest function: a failed upload event goes to the failed-manifests queue, which only it may send to', () => {
  const config = only(resources('AWS::Lambda::EventInvokeConfig')).Properties;
  assert.equal(render(config.FunctionName), 'manifest');
  assert.equal(config.Qualifier, '$LATEST');
  assert.equal(config.MaximumRetryAttempts, 0);
  assert.deepEqual(Object.keys(config.DestinationConfig), ['OnFailure']);
  assert.equal(render(config.DestinationConfig.OnFailure.Destination), 'failedManifests');

  const manifestRole = resources('AWS::Lambda::Function')[ids.manifest]!.Properties.Role['Fn::GetAtt'][0] as string;
  const senders: string[] = [];
  for (const policy of Object.values(resources('AWS::IAM::Policy'))) {
    for (const st of policy.Properties.PolicyDocument.Statement) {
      if (!list(st.Resource).some((r) => render(r) === 'failedManifests')) continue;
      for (const role of list<any>(policy.Properties.Roles)) senders.push(`${role.Ref === manifestRole ? 'manifest' : role.Ref} ${st.Effect} ${list(st.Action).join(',')}`);
    }
  }
  assert.deepEqual(senders, ['manifest Allow sqs:SendMessage']);
  const queuePolicy = Object.values(resources('AWS::SQS::QueuePolicy')).find((p) => list(p.Properties.Queues).some((q: any) => render(q) === 'failedManifests'))!;
  assert.deepEqual(queuePolicy.Properties.PolicyDocument.Statement.map((st: any) => st.Effect), ['Deny']);
});

// --- functions

test('the three functions: nodejs24.x on arm64, settings for memory and timeout, their environment and log groups', () => {
  const fns = resources('AWS::Lambda::Function');
  const expected = {
    manifest: { memory: 1024, timeout: 900, service: 'cloudfetch-manifest' },
    fetch: { memory: 512, timeout: 120, service: 'cloudfetch-fetch' },
    pack: { memory: 1024, timeout: 900, service: 'cloudfetch-pack' },
  };
  for (const [name, want] of Object.entries(expected)) {
    const p = fns[ids[name as 'manifest' | 'fetch' | 'pack']]!.Properties;
    assert.equal(p.Runtime, 'nodejs24.x');
    assert.deepEqual(p.Architectures, ['arm64']);
    assert.equal(p.Handler, 'index.handler');
    assert.equal(p.MemorySize, want.memory);
    assert.equal(p.Timeout, want.timeout);
    assert.equal(p.ReservedConcurrentExecutions, undefined, 'no reserved concurrency: new accounts may have only 10 in all');
    assert.equal(p.EphemeralStorage?.Size, name === 'manifest' ? 2048 : undefined, '/tmp for the index of a large manifest');
    const env = p.Environment.Variables;
    assert.equal(render(env.BUCKET_NAME), 'bucket');
    assert.equal(env.POWERTOOLS_SERVICE_NAME, want.service);
    assert.equal(env.POWERTOOLS_METRICS_NAMESPACE, 'cloudfetch');
    assert.equal(env.NODE_OPTIONS, '--enable-source-maps');
    assert.equal(env.LAYOUT, 'flat');
    assert.equal(env.MAX_BYTES, String(50 * 1024 * 1024));
    assert.equal(env.IMAGE_TIMEOUT_SECONDS, '30');
    assert.equal(env.HOST_CONCURRENCY, String(DEFAULT_SETTINGS.hostConcurrency));
    assert.equal(env.SKIP_EXISTING_AT_SPLIT, 'true');
    if (name === 'manifest') assert.equal(render(env.JOBS_QUEUE_URL), 'jobs');
    else assert.equal(env.JOBS_QUEUE_URL, undefined);
    const groupId = p.LoggingConfig.LogGroup.Ref as string;
    assert.equal(resources('AWS::Logs::LogGroup')[groupId]!.Properties.RetentionInDays, 30);
  }
  t.resourcePropertiesCountIs('AWS::Lambda::Function', { Runtime: 'nodejs24.x' }, 3);
  t.resourceCountIs('Custom::LogRetention', 0);
});

test('the local cloud loads each handler with the environment the stack gives that function', async () => {
  // Optional settings set, so that their variables are compared too.
  const overrides = { 'cloudfetch:userAgent': 'agent/1', 'cloudfetch:referer': 'https://example.com/', 'cloudfetch:hostConcurrency': 2, 'cloudfetch:layout': 'by-label' };
  const { template } = synth(overrides);
  const settings = readSettings((key) => ({ ...CDK_JSON.context, ...overrides })[key]);
  const emulator = await startEmulator();
  const loaded: Partial<Record<'manifest' | 'fetch', NodeJS.ProcessEnv>> = {};
  const cloud = await startLocalCloud({
    settings,
    emulator,
    log: () => {},
    handlers: {
      manifest: { load: async () => ((loaded.manifest = { ...process.env }), async () => {}) },
      fetch: { load: async () => ((loaded.fetch = { ...process.env }), async () => ({ batchItemFailures: [] })) },
    },
  });
  try {
    for (const fn of ['manifest', 'fetch'] as const) {
      const stackEnv = resources('AWS::Lambda::Function', template)[ids[fn]]!.Properties.Environment.Variables as Record<string, unknown>;
      // The bucket and queue are per deploy (tokens in the template); NODE_OPTIONS goes with the bundle's source maps.
      const { BUCKET_NAME, JOBS_QUEUE_URL, NODE_OPTIONS, ...literal } = stackEnv;
      const seen = loaded[fn]!;
      assert.deepEqual(Object.fromEntries(Object.keys(literal).map((k) => [k, seen[k]])), literal, fn);
      assert.deepEqual([render(BUCKET_NAME), seen.BUCKET_NAME], ['bucket', cloud.bucket], fn);
      assert.deepEqual([JOBS_QUEUE_URL && render(JOBS_QUEUE_URL), seen.JOBS_QUEUE_URL], fn === 'manifest' ? ['jobs', cloud.queueUrl] : [undefined, undefined], fn);
      // Nothing the stack does not set, but what points the SDK at the emulator.
      const ours = Object.keys(cloud.env[fn]).filter((k) => !k.startsWith('AWS_'));
      assert.deepEqual(ours.sort(), Object.keys(stackEnv).filter((k) => k !== 'NODE_OPTIONS').sort(), fn);
      assert.deepEqual(Object.fromEntries(ours.map((k) => [k, seen[k]])), Object.fromEntries(ours.map((k) => [k, cloud.env[fn][k]])), fn);
    }
    assert.equal(loaded.manifest!.POWERTOOLS_SERVICE_NAME, 'cloudfetch-manifest');
    assert.equal(loaded.fetch!.USER_AGENT, 'agent/1');
    // The pack function (loaded by lambda-api.ts with cloud.env.pack): the stack's literal values.
    const { BUCKET_NAME, NODE_OPTIONS, ...packLiteral } = resources('AWS::Lambda::Function', template)[ids.pack]!.Properties.Environment.Variables as Record<string, unknown>;
    assert.deepEqual(Object.fromEntries(Object.entries(cloud.env.pack).filter(([k]) => !k.startsWith('AWS_') && k !== 'BUCKET_NAME')), packLiteral);
    assert.deepEqual([render(BUCKET_NAME), cloud.env.pack.BUCKET_NAME, NODE_OPTIONS], ['bucket', cloud.bucket, '--enable-source-maps']);
  } finally {
    await cloud.stop();
    await emulator.stop();
  }
});

// --- IAM

test('the manifest function may read manifests/, write index/ and status/, list images/, queue jobs and keep failed events: nothing else', () => {
  const groupOf = (fn: string): string => resources('AWS::Lambda::Function')[fn]!.Properties.LoggingConfig.LogGroup.Ref;
  assert.deepEqual(grantsOf(ids.manifest).map(line), [
    `logs:CreateLogStream ${groupOf(ids.manifest)}.Arn`,
    `logs:PutLogEvents ${groupOf(ids.manifest)}.Arn`,
    's3:AbortMultipartUpload bucket/index/*',
    's3:GetObject bucket/manifests/*',
    `s3:ListBucket bucket if ${IMAGES_ONLY}`,
    's3:PutObject bucket/index/*',
    's3:PutObject bucket/status/*',
    'sqs:SendMessage failedManifests',
    'sqs:SendMessage jobs',
  ]);
});

test('the fetch function may check and store images/, record failures/ and records/, read and write host pauses under hosts/, consume the queue and send a job anew: nothing else', () => {
  const groupOf = (fn: string): string => resources('AWS::Lambda::Function')[fn]!.Properties.LoggingConfig.LogGroup.Ref;
  assert.deepEqual(grantsOf(ids.fetch).map(line), [
    `logs:CreateLogStream ${groupOf(ids.fetch)}.Arn`,
    `logs:PutLogEvents ${groupOf(ids.fetch)}.Arn`,
    's3:GetObject bucket/hosts/*',
    's3:GetObject bucket/images/*',
    's3:ListBucket bucket',
    's3:PutObject bucket/failures/*',
    's3:PutObject bucket/hosts/*',
    's3:PutObject bucket/images/*',
    's3:PutObject bucket/records/*',
    'sqs:ChangeMessageVisibility jobs',
    'sqs:DeleteMessage jobs',
    'sqs:GetQueueAttributes jobs',
    'sqs:GetQueueUrl jobs',
    'sqs:ReceiveMessage jobs',
    'sqs:SendMessage jobs',
  ]);
});

test('the pack function may read images/ and index/, list the bucket, and read and write packs/ (in parts): nothing else', () => {
  const groupOf = (fn: string): string => resources('AWS::Lambda::Function')[fn]!.Properties.LoggingConfig.LogGroup.Ref;
  assert.deepEqual(grantsOf(ids.pack).map(line), [
    `logs:CreateLogStream ${groupOf(ids.pack)}.Arn`,
    `logs:PutLogEvents ${groupOf(ids.pack)}.Arn`,
    's3:AbortMultipartUpload bucket/packs/*',
    's3:GetObject bucket/images/*',
    's3:GetObject bucket/index/*',
    's3:GetObject bucket/packs/*',
    's3:ListBucket bucket',
    's3:PutObject bucket/packs/*',
  ]);
  // Nothing invokes it but a user (cloudfetch pack): no event source, no permission for a service.
  assert.deepEqual(Object.values(resources('AWS::Lambda::EventSourceMapping')).filter((m) => m.Properties.FunctionName?.Ref === ids.pack), []);
  assert.deepEqual(Object.values(resources('AWS::Lambda::Permission')).filter((p) => JSON.stringify(p.Properties.FunctionName).includes(ids.pack)), []);
});

test('nothing the functions may write can trigger the manifest function, and neither may write the other\'s prefixes', () => {
  const writes = (fn: string): string[] => grantsOf(fn).filter((g) => /^s3:(PutObject|\*|Put\*|\*Object)/.test(g.action)).map((g) => g.resource);
  const writableBy = { manifest: writes(ids.manifest), fetch: writes(ids.fetch), pack: writes(ids.pack) };
  for (const writable of Object.values(writableBy)) {
    for (const r of writable) {
      assert.ok(!r.startsWith(`bucket/${PREFIX.manifests}`) && r !== 'bucket/*' && r !== 'bucket', `no writes to manifests/: ${r}`);
    }
  }
  assert.ok(!writableBy.fetch.some((r) => r.startsWith(`bucket/${PREFIX.index}`) || r.startsWith(`bucket/${PREFIX.status}`)), 'fetch cannot write index/ or status/');
  assert.ok(!writableBy.manifest.some((r) => r.startsWith(`bucket/${PREFIX.images}`) || r.startsWith(`bucket/${PREFIX.failures}`)), 'manifest cannot write images/ or failures/');
  assert.deepEqual(writableBy.pack, [`bucket/${PREFIX.packs}*`], 'pack writes packs/ only');
});

test('no Allow anywhere has a * action or resource, except CDK\'s auto-delete provider with removalPolicy=destroy', () => {
  // Wildcards inside an ARN (bucket/images/*) are the prefixes above; a bare "*" or an action
  // wildcard would grant more than one prefix of one bucket.
  const allows = (tpl: Template): Array<{ where: string; action: string; resource: string }> => {
    const found: Array<{ where: string; action: string; resource: string }> = [];
    const scan = (where: string, document: any): void => {
      for (const s of document.Statement) {
        if (s.Effect !== 'Allow') continue;
        for (const action of list<string>(s.Action)) for (const resource of list(s.Resource ?? '(principal policy)')) found.push({ where, action, resource: render(resource) });
      }
    };
    for (const [id, p] of Object.entries(resources('AWS::IAM::Policy', tpl))) scan(id, p.Properties.PolicyDocument);
    for (const [id, r] of Object.entries(resources('AWS::IAM::Role', tpl))) for (const p of list<any>(r.Properties.Policies)) scan(id, p.PolicyDocument);
    for (const [id, p] of Object.entries(resources('AWS::S3::BucketPolicy', tpl))) scan(id, p.Properties.PolicyDocument);
    for (const [id, p] of Object.entries(resources('AWS::SQS::QueuePolicy', tpl))) scan(id, p.Properties.PolicyDocument);
    for (const [id, p] of Object.entries(resources('AWS::SNS::TopicPolicy', tpl))) scan(id, p.Properties.PolicyDocument);
    return found;
  };
  for (const g of allows(t)) {
    assert.ok(!g.action.includes('*'), `wildcard action ${g.action} in ${g.where}`);
    assert.notEqual(g.resource, '*', `resource * for ${g.action} in ${g.where}`);
  }
  const destroy = allows(withDestroy().template);
  const wildcards = destroy.filter((g) => g.action.includes('*') || g.resource === '*');
  assert.ok(wildcards.length > 0);
  for (const g of wildcards) {
    // The bucket policy statement that lets CDK's provider empty the bucket on stack deletion.
    assert.match(g.where, /^StorageBucketPolicy/);
    assert.ok(['s3:DeleteObject*', 's3:GetBucket*', 's3:List*'].includes(g.action), g.action);
    assert.notEqual(g.resource, '*');
  }
});

test('without skipExistingAtSplit the manifest function may not list the bucket at all', () => {
  const { template, stack: s } = synth({ 'cloudfetch:skipExistingAtSplit': 'false' });
  const grants = grantsOf(s.getLogicalId(s.functions.manifest.node.defaultChild as never), template);
  assert.ok(!grants.some((g) => g.action === 's3:ListBucket'));
  assert.equal(resources('AWS::Lambda::Function', template)[ids.manifest]!.Properties.Environment.Variables.SKIP_EXISTING_AT_SPLIT, 'false');
});

// --- operations, outputs, tags

test('alarms on the dead-letter queue, on any manifest function error and on repeated fetch function errors, all sent to the topic', () => {
  const alarms = Object.values(resources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
  const summary = alarms.map((a) => ({
    name: a.AlarmName,
    metric: `${a.Namespace} ${a.MetricName} ${a.Dimensions.map((d: any) => `${d.Name}=${render(d.Value)}`).join(' ')} ${a.Statistic} ${a.Period}s`,
    when: `${a.ComparisonOperator} ${a.Threshold} in ${a.DatapointsToAlarm} of ${a.EvaluationPeriods}, missing data ${a.TreatMissingData}`,
    actions: list(a.AlarmActions).map(render),
    others: [a.OKActions, a.InsufficientDataActions],
  })).sort((a, b) => a.name.localeCompare(b.name));
  const others = [undefined, undefined];
  assert.deepEqual(summary, [
    { name: 'cloudfetch-dead-letters', metric: 'AWS/SQS ApproximateNumberOfMessagesVisible QueueName=dlq.QueueName Maximum 60s', when: 'GreaterThanThreshold 0 in 1 of 1, missing data notBreaching', actions: ['topic'], others },
    // A crashed batch comes back on its own: one error is noise, 3 minutes in 5 is a broken function.
    { name: 'cloudfetch-fetch-errors', metric: 'AWS/Lambda Errors FunctionName=fetch Sum 60s', when: 'GreaterThanThreshold 0 in 3 of 5, missing data notBreaching', actions: ['topic'], others },
    // Not retried: every error is an upload left unsplit.
    { name: 'cloudfetch-manifest-errors', metric: 'AWS/Lambda Errors FunctionName=manifest Sum 60s', when: 'GreaterThanThreshold 0 in 1 of 1, missing data notBreaching', actions: ['topic'], others },
  ]);
});

test('the alarm topic: encrypted with a rotating key of its own, TLS only, published to by this stack\'s alarms only, e-mailed only when alarmEmail is set', () => {
  t.resourceCountIs('AWS::SNS::Topic', 1);
  t.resourceCountIs('AWS::KMS::Key', 1);
  assert.equal(render(resources('AWS::SNS::Topic')[ids.topic]!.Properties.KmsMasterKeyId), 'key');
  const key = resources('AWS::KMS::Key')[ids.key]!;
  assert.equal(key.Properties.EnableKeyRotation, true);
  assert.equal(key.DeletionPolicy, 'Delete', 'it protects notifications in transit only');
  assert.equal(key.Properties.PendingWindowInDays, 7);
  const statement = (st: any): string => `${st.Effect} ${JSON.stringify(st.Principal)} ${list(st.Action).join(',')} ${list(st.Resource).map(render).join(',')}${st.Condition ? ` if ${JSON.stringify(st.Condition)}` : ''}`;
  // CloudWatch cannot use the AWS-managed SNS key; without its grant on ours, alarms would be dropped.
  assert.deepEqual(key.Properties.KeyPolicy.Statement.map(statement), [
    'Allow {"AWS":"arn:aws:iam::123456789012:root"} kms:* *',
    'Allow {"Service":"cloudwatch.amazonaws.com"} kms:Decrypt,kms:GenerateDataKey* *',
  ]);
  const policy = only(resources('AWS::SNS::TopicPolicy')).Properties;
  assert.deepEqual(list(policy.Topics).map(render), ['topic']);
  const ourAlarms = 'arn:aws:cloudwatch:ap-east-1:123456789012:alarm:cloudfetch-*';
  assert.deepEqual(policy.PolicyDocument.Statement.map(statement), [
    'Deny "*" sns:Publish topic if {"Bool":{"aws:SecureTransport":"false"}}',
    `Allow {"Service":"cloudwatch.amazonaws.com"} sns:Publish topic if {"ArnLike":{"aws:SourceArn":"${ourAlarms}"}}`,
  ]);
  const alarmNames = Object.values(resources('AWS::CloudWatch::Alarm')).map((a) => a.Properties.AlarmName as string);
  assert.equal(alarmNames.length, 3);
  for (const name of alarmNames) assert.ok(`arn:aws:cloudwatch:ap-east-1:123456789012:alarm:${name}`.startsWith(ourAlarms.slice(0, -1)), `${name} may publish`);

  t.resourceCountIs('AWS::SNS::Subscription', 0);
  const subscriptions = Object.values(resources('AWS::SNS::Subscription', withEmail.template)).map((r) => r.Properties);
  assert.deepEqual(subscriptions.map((p) => [p.Protocol, p.Endpoint, render(p.TopicArn)]), [['email', 'me@example.org', 'topic']]);
});

test('a dashboard of outcomes, queues and functions', () => {
  const body = render(only(resources('AWS::CloudWatch::Dashboard')).Properties.DashboardBody);
  for (const metric of ['fetched', 'skipped', 'failed', 'paused']) assert.ok(body.includes(`["cloudfetch","${metric}","service","cloudfetch-fetch"`), metric);
  assert.ok(body.includes(`SEARCH('{cloudfetch,reason,service} MetricName=\\"failed\\" service=\\"cloudfetch-fetch\\"', 'Sum', 60)`), 'failed by reason');
  for (const metric of ['ApproximateNumberOfMessagesVisible', 'ApproximateAgeOfOldestMessage', 'ApproximateNumberOfMessagesNotVisible']) assert.ok(body.includes(metric), metric);
  assert.ok(body.includes('"AWS/SQS","ApproximateNumberOfMessagesVisible","QueueName","dlq.QueueName"'), 'DLQ depth');
  assert.ok(body.includes('"AWS/SQS","ApproximateNumberOfMessagesVisible","QueueName","failedManifests.QueueName"'), 'failed manifests');
  for (const fn of ['manifest', 'fetch']) {
    for (const metric of ['Errors', 'Throttles']) assert.ok(body.includes(`"AWS/Lambda","${metric}","FunctionName","${fn}"`), `${fn} ${metric}`);
  }
});

test('outputs name the bucket, queues, functions and the dashboard\'s console URL; everything is tagged project=cloudfetch', () => {
  const outputs = t.findOutputs('*');
  assert.deepEqual(Object.keys(outputs).sort(), ['AlarmTopicArn', 'BucketName', 'DashboardUrl', 'DlqUrl', 'FailedManifestsUrl', 'FetchFunctionName', 'ManifestFunctionName', 'PackFunctionName', 'QueueUrl']);
  assert.equal(render(outputs.BucketName!.Value), 'bucket');
  assert.equal(render(outputs.QueueUrl!.Value), 'jobs');
  assert.equal(render(outputs.DlqUrl!.Value), 'dlq');
  assert.equal(render(outputs.FailedManifestsUrl!.Value), 'failedManifests');
  assert.equal(render(outputs.AlarmTopicArn!.Value), 'topic');
  assert.equal(render(outputs.ManifestFunctionName!.Value), 'manifest');
  assert.equal(render(outputs.FetchFunctionName!.Value), 'fetch');
  assert.equal(render(outputs.PackFunctionName!.Value), 'pack');
  const dashboard = Object.keys(resources('AWS::CloudWatch::Dashboard'))[0]!;
  assert.equal(render(outputs.DashboardUrl!.Value), `https://ap-east-1.console.aws.amazon.com/cloudwatch/home?region=ap-east-1#dashboards:name=${dashboard}`);

  assert.deepEqual(stack.tags.tagValues(), { project: 'cloudfetch' });
  for (const type of ['AWS::S3::Bucket', 'AWS::SQS::Queue', 'AWS::Lambda::Function', 'AWS::IAM::Role', 'AWS::Logs::LogGroup', 'AWS::SNS::Topic', 'AWS::KMS::Key', 'AWS::CloudWatch::Alarm']) {
    for (const [id, r] of Object.entries(resources(type))) {
      assert.ok(list<any>(r.Properties.Tags).some((tag) => tag.Key === 'project' && tag.Value === 'cloudfetch'), `${id} tagged`);
    }
  }
  assert.equal(stack.stackName, 'cloudfetch');
});

// --- settings through context

test('context overrides change the template, as `cdk deploy -c key=value` passes them (text)', () => {
  const { template, stack: s } = synth({
    'cloudfetch:fetchBatchSize': '5',
    'cloudfetch:fetchMaxConcurrency': '5',
    'cloudfetch:fetchTimeoutSeconds': '300',
    'cloudfetch:fetchMemoryMb': '1024',
    'cloudfetch:maxReceiveCount': '3',
    'cloudfetch:userAgent': 'my-crawler/1.0',
    'cloudfetch:stackName': 'cloudfetch-fashion',
  });
  assert.equal(s.stackName, 'cloudfetch-fashion');
  const mapping = only(resources('AWS::Lambda::EventSourceMapping', template)).Properties;
  assert.equal(mapping.BatchSize, 5);
  assert.deepEqual(mapping.ScalingConfig, { MaximumConcurrency: 5 });
  const jobs = resources('AWS::SQS::Queue', template)[s.getLogicalId(s.queues.jobs.node.defaultChild as never)]!.Properties;
  assert.equal(jobs.VisibilityTimeout, 1800);
  assert.equal(jobs.RedrivePolicy.maxReceiveCount, 3);
  const fetch = resources('AWS::Lambda::Function', template)[s.getLogicalId(s.functions.fetch.node.defaultChild as never)]!.Properties;
  assert.equal(fetch.Timeout, 300);
  assert.equal(fetch.MemorySize, 1024);
  assert.equal(fetch.Environment.Variables.USER_AGENT, 'my-crawler/1.0');
  // The alarms take the stack's name, and the topic still lets exactly them publish.
  const alarmNames = Object.values(resources('AWS::CloudWatch::Alarm', template)).map((a) => a.Properties.AlarmName).sort();
  assert.deepEqual(alarmNames, ['cloudfetch-fashion-dead-letters', 'cloudfetch-fashion-fetch-errors', 'cloudfetch-fashion-manifest-errors']);
  const publish = only(resources('AWS::SNS::TopicPolicy', template)).Properties.PolicyDocument.Statement.find((st: any) => st.Effect === 'Allow');
  assert.equal(publish.Condition.ArnLike['aws:SourceArn'], 'arn:aws:cloudwatch:ap-east-1:123456789012:alarm:cloudfetch-fashion-*');
});

test('bad context values and impossible combinations are refused with a SettingsError naming the key', () => {
  assert.throws(() => synth({ 'cloudfetch:fetchBatchSize': 'lots' }), (e: Error) => e instanceof SettingsError && /cloudfetch:fetchBatchSize must be a whole number/.test(e.message));
  assert.throws(() => synth({ 'cloudfetch:removalPolicy': 'maybe' }), (e: Error) => e instanceof SettingsError && /cloudfetch:removalPolicy must be one of retain, destroy/.test(e.message));
  assert.throws(() => synth({ 'cloudfetch:fetchMaxConcurrency': 1 }), SettingsError);
  assert.throws(
    () => synth({ 'cloudfetch:fetchBatchSize': 20 }),
    (e: Error) => e instanceof SettingsError && e.message === 'context cloudfetch:fetchBatchSize must be a whole number from 1 to 10, not 20',
  );
  for (const bad of ['me@example', 'me', 'me@ example.org', ' me@example.org', 42]) {
    assert.throws(() => synth({ 'cloudfetch:alarmEmail': bad }), (e: Error) => e instanceof SettingsError
      && e.message === `context cloudfetch:alarmEmail must be an e-mail address (or empty for none), not ${JSON.stringify(bad)}`);
  }
  for (const good of ['', 'first.last+runs@mail.example.co.uk']) assert.equal(readSettings((key) => (key === 'cloudfetch:alarmEmail' ? good : undefined)).alarmEmail, good);
});

test('mainland China regions are refused; a stack without a region still synthesizes', () => {
  for (const region of ['cn-north-1', 'cn-northwest-1']) {
    assert.throws(() => synth({}, { account: '123456789012', region }), (e: Error) => e instanceof RegionError && e.message.includes(`region ${region} is in mainland China`));
  }
  const app = new App({ context: { [BUNDLING_STACKS]: [] } });
  assert.throws(() => new CloudfetchStack(app, 'x', { settings: DEFAULT_SETTINGS, env: { region: 'cn-north-1' } }), RegionError);
  const agnostic = synth({}, {});
  assert.ok(Stack.of(agnostic.stack).resolve(agnostic.stack.region).Ref === 'AWS::Region');
  const url = agnostic.template.findOutputs('DashboardUrl').DashboardUrl!.Value;
  assert.match(JSON.stringify(url), /"Ref":"AWS::Region"/);
});

// --- cdk-nag and CDK's own warnings

test('cdk-nag AWS Solutions: no unacknowledged errors or warnings, and every acknowledgement has a reason', () => {
  // The e-mail template is the default one plus its subscription.
  for (const app of [withEmail.app, withDestroy().app]) {
    const report = new nag.AwsSolutionsChecks().validateScope(app);
    assert.deepEqual(report.violations.map((v) => `${v.severity} ${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(' ')}`), []);
  }
  const acknowledged: string[] = [];
  for (const c of stack.node.findAll()) {
    for (const entry of c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)) {
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        assert.ok(reason.length > 30, `a reason for ${id}`);
        acknowledged.push(`${c.node.path} ${id.replace(/^Annotation::/, '')}`);
      }
    }
  }
  assert.deepEqual(acknowledged.sort(), [
    'cloudfetch/BucketNotificationsHandler050a0587b7544547bf325f094a3db834 AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    `cloudfetch/Functions/FetchRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/failures/*]`,
    `cloudfetch/Functions/FetchRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/hosts/*]`,
    `cloudfetch/Functions/FetchRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/images/*]`,
    `cloudfetch/Functions/FetchRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/records/*]`,
    `cloudfetch/Functions/ManifestRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/index/*]`,
    `cloudfetch/Functions/ManifestRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/manifests/*]`,
    `cloudfetch/Functions/ManifestRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/status/*]`,
    `cloudfetch/Functions/PackRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/images/*]`,
    `cloudfetch/Functions/PackRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/index/*]`,
    `cloudfetch/Functions/PackRole AwsSolutions-IAM5[Resource::<${ids.bucket}.Arn>/packs/*]`,
    'cloudfetch/Queues/FailedManifests AwsSolutions-SQS3',
    'cloudfetch/Storage/Bucket AwsSolutions-S1',
  ]);
  assert.deepEqual(Annotations.fromStack(stack).findWarning('*', Match.anyValue()).map((w) => `${w.id} ${JSON.stringify(w.entry.data)}`), []);
  assert.deepEqual(Annotations.fromStack(stack).findError('*', Match.anyValue()).map((w) => `${w.id} ${JSON.stringify(w.entry.data)}`), []);
});

test('cfn-lint finds nothing wrong with the template (skipped when cfn-lint is not installed)', async (ctx) => {
  const result = await lint;
  if (result.missing) return ctx.skip('cfn-lint is not installed');
  const findings = (JSON.parse(result.stdout || '[]') as Array<{ Rule: { Id: string }; Message: string; Location: { Path: unknown[] } }>)
    // Older cfn-lint schemas predate Tags on AWS::CloudWatch::Dashboard, which CloudFormation accepts.
    .filter((f) => !(f.Rule.Id === 'E3002' && /'Tags' was unexpected/.test(f.Message) && resources('AWS::CloudWatch::Dashboard')[String(f.Location.Path[1])]));
  assert.deepEqual(findings.map((f) => `${f.Rule.Id} ${f.Message} at ${f.Location.Path.join('/')}`), []);
});

// --- the app itself (started at the top)

test('the app bundles and synthesizes with cdk-nag applied and prints nothing but CDK\'s bundling lines', async () => {
  const run = await appRuns.ok;
  assert.equal(run.stderr, 'Bundling asset cloudfetch/Functions/Manifest/Code/Stage...\nBundling asset cloudfetch/Functions/Fetch/Code/Stage...\nBundling asset cloudfetch/Functions/Pack/Code/Stage...\n');
  assert.equal(run.code, 0);
  const template = JSON.parse(await readFile(path.join(run.outdir, 'cloudfetch.template.json'), 'utf8'));
  assert.ok(template.Resources[ids.bucket]);
  const manifest = JSON.parse(await readFile(path.join(run.outdir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.artifacts.cloudfetch.environment, 'aws://123456789012/ap-northeast-1');
});

test('the app refuses a mainland China region in one line, exit code 2, no stack trace', async () => {
  const run = await appRuns.china;
  assert.equal(run.code, 2);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0]!, /^cloudfetch: region cn-north-1 is in mainland China, .*ap-east-1 \(Hong Kong\)/);
});

test('the app refuses a bad context value in one line, exit code 2, no stack trace', async () => {
  const run = await appRuns.badContext;
  assert.equal(run.code, 2);
  assert.equal(run.stderr, 'cloudfetch: context cloudfetch:fetchBatchSize must be a whole number from 1 to 10, not "lots"\n');
});

test('the bundles carry the AWS SDK (lib-storage too) and load with no node_modules in reach', async () => {
  const run = await appRuns.ok;
  assert.equal(run.code, 0);
  const template = JSON.parse(await readFile(path.join(run.outdir, 'cloudfetch.template.json'), 'utf8'));
  for (const fn of ['manifest', 'fetch', 'pack'] as const) {
    const zip = template.Resources[ids[fn]].Properties.Code.S3Key as string;
    const file = path.join(run.outdir, `asset.${zip.replace(/\.zip$/, '')}`, 'index.mjs');
    const code = await readFile(file, 'utf8');
    // Static and dynamic imports name Node's own modules only: nothing is left to the runtime's SDK.
    const imports = [...code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*)["']([@a-z][\w./:@-]*)["']/g)].map((m) => m[1]!);
    assert.ok(imports.includes('node:crypto'), `${fn}: the import scan sees imports`);
    // The fetch function's sharp is a native addon beside the bundle (infra/sharp-bundle.ts).
    assert.deepEqual([...new Set(imports.filter((name) => !isBuiltin(name)))], fn === 'fetch' ? SHARP_EXTERNAL : [], fn);
    // The SDK's own code is inside: client-s3's service id, and lib-storage's Upload where it is used.
    assert.ok(code.includes('"AmazonS3"'), `${fn} bundles @aws-sdk/client-s3`);
    if (fn === 'manifest') {
      assert.ok(code.includes('"AmazonSQS"'), 'manifest bundles @aws-sdk/client-sqs');
      assert.ok(code.includes('"Upload aborted."'), 'manifest bundles @aws-sdk/lib-storage');
    }
    if (fn === 'pack') assert.ok(code.includes('"Upload aborted."') && code.includes('pack stream is already finalized'), 'pack bundles @aws-sdk/lib-storage and tar-stream');
    // The asset folder is under the OS temp dir, with no node_modules above it: an import left
    // external fails here (ERR_MODULE_NOT_FOUND) as it would in Lambda.
    const load = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write(typeof m.handler);`], {
        cwd: path.dirname(file), env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.on('close', (code) => resolve({ code, out }));
    });
    assert.deepEqual(load, { code: 0, out: 'function' }, fn);
  }
});

// --- resizing (engine/resize.ts) in the fetch function

test('resizing settings reach the functions: IMAGE_FORMAT to both (keys), the rest to fetch; originals/ writable only when kept', () => {
  const plain = resources('AWS::Lambda::Function');
  for (const name of ['RESIZE', 'RESIZE_MODE', 'IMAGE_FORMAT', 'QUALITY', 'KEEP_ORIGINALS']) {
    assert.equal(plain[ids.fetch]!.Properties.Environment.Variables[name], undefined, `${name}: nothing decoded by default`);
  }
  const { template } = synth({ 'cloudfetch:resize': 384, 'cloudfetch:resizeMode': 'crop', 'cloudfetch:imageFormat': 'webp', 'cloudfetch:quality': 80, 'cloudfetch:keepOriginals': true });
  const fns = resources('AWS::Lambda::Function', template);
  const env = (id: string): Record<string, unknown> => fns[id]!.Properties.Environment.Variables;
  assert.deepEqual([env(ids.fetch).RESIZE, env(ids.fetch).RESIZE_MODE, env(ids.fetch).IMAGE_FORMAT, env(ids.fetch).QUALITY, env(ids.fetch).KEEP_ORIGINALS], ['384', 'crop', 'webp', '80', 'true']);
  assert.deepEqual([env(ids.manifest).IMAGE_FORMAT, env(ids.manifest).RESIZE], ['webp', undefined]);
  const originals = grantsOf(ids.fetch, template).filter((g) => g.resource.includes('originals/'));
  assert.deepEqual(originals.map(line), ['s3:PutObject bucket/originals/*']);
  assert.deepEqual(grantsOf(ids.fetch).filter((g) => g.resource.includes('originals/')), [], 'without keepOriginals: no grant');
  assert.throws(() => synth({ 'cloudfetch:resize': 'big' }), (e: Error) => e instanceof SettingsError && e.message === 'context cloudfetch:resize must be a whole number from 0 to 16384, not "big"');
  assert.throws(() => synth({ 'cloudfetch:resizeMode': 'pad' }), (e: Error) => e instanceof SettingsError && /^context cloudfetch:resizeMode pad needs cloudfetch:resize/.test(e.message));
  assert.throws(() => synth({ 'cloudfetch:imageFormat': 'png' }), (e: Error) => e instanceof SettingsError && /cloudfetch:imageFormat must be one of keep, jpeg, webp/.test(e.message));
  assert.throws(() => synth({ 'cloudfetch:quality': 0 }), (e: Error) => e instanceof SettingsError && /cloudfetch:quality must be a whole number from 1 to 100/.test(e.message));
});

test('the fetch asset carries sharp and its linux-arm64 binaries (whatever this machine is), the manifest asset none', async () => {
  const run = await appRuns.ok;
  assert.equal(run.code, 0);
  const template = JSON.parse(await readFile(path.join(run.outdir, 'cloudfetch.template.json'), 'utf8'));
  const asset = (fn: 'manifest' | 'fetch'): string => path.join(run.outdir, `asset.${(template.Resources[ids[fn]].Properties.Code.S3Key as string).replace(/\.zip$/, '')}`);
  const modules = path.join(asset('fetch'), 'node_modules');
  const version = (name: string): string => (JSON.parse(readFileSync(path.join(modules, name, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(version('sharp'), SHARP_VERSION);
  const [addonPackage, libvipsPackage] = sharpNativePackages('arm64');
  const addon = path.join(modules, addonPackage!, 'lib', `sharp-linux-arm64-${SHARP_VERSION}.node`);
  const libvips = readdirSync(path.join(modules, libvipsPackage!, 'lib')).find((f) => f.startsWith('libvips-cpp.so'));
  assert.ok(libvips, 'libvips for arm64');
  // ELF e_machine (offset 18, little-endian): 183 is AArch64, 62 would be x86-64.
  for (const file of [addon, path.join(modules, libvipsPackage!, 'lib', libvips)]) assert.equal(readFileSync(file).readUInt16LE(18), 183, file);
  assert.deepEqual(readdirSync(path.join(modules, '@img')).filter((name) => /x64|darwin|win32/.test(name)), [], 'no binaries of this machine');
  assert.deepEqual(readdirSync(asset('manifest')).sort(), ['index.mjs', 'index.mjs.map']);
});
