// The CDK app (cdk.json: `node infra/app.ts`). Settings come from CDK context (cdk.json, `-c`),
// account and region from the usual AWS configuration, which the CDK CLI passes on.

import { App, Validations } from 'aws-cdk-lib';
import nag from 'cdk-nag';
import { SettingsError } from '../aws/settings.ts';
import { createStack, RegionError } from './stack.ts';

try {
  const app = new App();
  createStack(app, { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION });
  // cdk-nag's AWS Solutions rules run at every synth; findings not acknowledged stop it.
  Validations.of(app).addPlugins(new nag.AwsSolutionsChecks(app));
  app.synth();
} catch (error) {
  if (!(error instanceof SettingsError || error instanceof RegionError)) throw error;
  // A user error: one line, no stack trace.
  console.error(`cloudfetch: ${error.message}`);
  process.exitCode = 2;
}
