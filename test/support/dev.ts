// What tests of `cloudfetch dev` share: waiting for a condition, and SDK clients for the local
// cloud a dev process describes in its connection file.

import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DevConnection } from '../../cli/dev.ts';
import { startCli } from './cli.ts';

/** Looks every 20 ms until `condition` holds; the limit is a guard, not a synchronisation. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function devClients(connection: DevConnection): { s3: S3Client; sqs: SQSClient } {
  const config = { endpoint: connection.endpoint, region: connection.region, credentials: connection.credentials };
  return { s3: new S3Client({ ...config, forcePathStyle: true }), sqs: new SQSClient(config) };
}

export interface DevProcess {
  connection: DevConnection;
  s3: S3Client;
  sqs: SQSClient;
  /** What it said so far. */
  log(): string;
  /** Kills it (SIGKILL), waits for its end, closes the clients. */
  stop(): Promise<void>;
}

/** `cloudfetch dev` in a child process in `cwd`, once it says it runs and its dev.json is read. */
export async function startDevProcess(cwd: string, args: readonly string[]): Promise<DevProcess> {
  const { child, done } = startCli(['dev', ...args], { cwd });
  let log = '';
  child.stderr!.on('data', (chunk: string) => (log += chunk));
  let ended = false;
  void done.then(() => (ended = true));
  try {
    await until(() => ended || /^Local cloud running/m.test(log), 'cloudfetch dev to start', 60_000);
  } catch (error) {
    // Not left running behind a failed set-up.
    child.kill('SIGKILL');
    await done;
    throw error;
  }
  if (ended) throw new Error(`cloudfetch dev ended before it ran: ${log}`);
  const connection = JSON.parse(await readFile(join(cwd, '.cloudfetch', 'dev.json'), 'utf8')) as DevConnection;
  const { s3, sqs } = devClients(connection);
  return {
    connection, s3, sqs,
    log: () => log,
    async stop() {
      s3.destroy();
      sqs.destroy();
      child.kill('SIGKILL');
      await done;
    },
  };
}
