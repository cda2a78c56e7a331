// The stack's settings as `cdk deploy` would use them: cdk.json's context over the defaults.

import { readFile } from 'node:fs/promises';
import { readSettings, type Settings } from '../infra/settings.ts';

export async function cdkSettings(): Promise<Settings> {
  const cdk = JSON.parse(await readFile(new URL('../cdk.json', import.meta.url), 'utf8')) as { context?: Record<string, unknown> };
  return readSettings((key) => cdk.context?.[key]);
}
