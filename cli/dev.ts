// `cloudfetch dev`: the local cloud in the foreground, until Ctrl-C. Other commands reach it with
// --dev, through the connection file it writes in the current folder.

import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { startDevCloud } from './dev-cloud.ts';
import { UsageError } from './errors.ts';

export const DEV_FILE = '.cloudfetch/dev.json';

export interface DevConnection {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  bucket: string;
  queueUrl: string;
  dlqUrl: string;
  pid: number;
}

export async function readDevConnection(file = DEV_FILE): Promise<DevConnection> {
  let connection: DevConnection;
  try {
    connection = JSON.parse(await readFile(file, 'utf8')) as DevConnection;
  } catch {
    throw new UsageError(`no local cloud found (${file}): start \`npx cloudfetch dev\` in another terminal, in this folder`);
  }
  try {
    process.kill(connection.pid, 0);
  } catch {
    throw new UsageError(`the local cloud that wrote ${file} (pid ${connection.pid}) is not running: start \`npx cloudfetch dev\` again`);
  }
  return connection;
}

export interface DevCommandOptions {
  endpoint?: string;
  allowPrivateNetwork: boolean;
  visibilityTimeout: number;
  verbose: boolean;
}

export async function devCommand(o: DevCommandOptions): Promise<void> {
  const dev = await startDevCloud({
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    allowPrivateNetwork: o.allowPrivateNetwork,
    visibilityTimeoutSeconds: o.visibilityTimeout,
    logLevel: o.verbose ? 'INFO' : 'WARN',
  });
  const { cloud, emulator } = dev;
  const file = resolve(DEV_FILE);
  const connection: DevConnection = {
    endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials,
    bucket: cloud.bucket, queueUrl: cloud.queueUrl, dlqUrl: cloud.dlqUrl, pid: process.pid,
  };
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(connection, null, 2) + '\n');
  process.stderr.write(
    `Local cloud running (${emulator.kind === 'embedded' ? 'embedded emulator' : 'external endpoint'} ${emulator.endpoint}):\n` +
      `  bucket      ${cloud.bucket}\n  jobs queue  ${cloud.queueUrl}\n  dead letter ${cloud.dlqUrl}\n` +
      `Manifests uploaded under manifests/ are split and fetched by the real handlers. In another terminal:\n` +
      `  npx cloudfetch submit train.json --dev      then status / sync / report with --dev\n` +
      `  aws --endpoint-url ${emulator.endpoint} s3 cp train.json s3://${cloud.bucket}/manifests/   (any credentials)\n` +
      `Ctrl-C stops it (the embedded emulator keeps nothing).\n`,
  );
  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.stderr.write('Stopping the local cloud…\n');
  await rm(file, { force: true });
  await rmdir(dirname(file)).catch(() => {});
  await dev.stop();
}
