// The dataset bucket: manifests in, images, index, failures and status out (prefixes.ts).
// Private, encrypted, TLS-only; kept when the stack is deleted unless removalPolicy=destroy.

import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { Settings } from '../../aws/settings.ts';

export interface StorageProps {
  readonly removalPolicy: Settings['removalPolicy'];
}

export class Storage extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const destroy = props.removalPolicy === 'destroy';
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // SSE-S3, not KMS: a million images means a million PutObjects (and as many reads when
      // they are synced home); SSE-KMS would add a KMS request to each one, priced per request.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      lifecycleRules: [{ id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) }],
      removalPolicy: destroy ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: destroy,
    });
    Validations.of(this.bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'A personal dataset bucket: server access logs would need a second bucket and log each of the million-plus ' +
        'requests a run makes (storage cost and noise); the function logs and the failures/ records already say what happened.',
    });
  }
}
