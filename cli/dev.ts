// `cloudfetch dev`: the local cloud in the foreground, until Ctrl-C. Other commands reach it with
// --dev, through the connection file it writes in the current folder.

import { rmSync } from 'node:fs';
import { mkdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { plural } from '../engine/summary.ts';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { startLambdaApi } from '../local-cloud/lambda-api.ts';
import { EXIT, UsageError } from './errors.ts';
import { awsUsageError, checkReachable } from './target.ts';

export const DEV_FILE = '.cloudfetch/dev.json';

/** How long Ctrl-C waits for running invocations: a fetch that hangs must not hold the exit. */
const STOP_GRACE_SECONDS = 5;

export interface DevConnection {
  endpoint: string;
  region: string;
  /** Absent: sign as the user's own AWS configuration does (environment, profile); never written here. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  bucket: string;
  queueUrl: string;
  dlqUrl: string;
  pid: number;
  /** The local Lambda Invoke API and the fetch function it serves (`plan --dev`). */
  lambdaEndpoint?: string;
  fetchFunction?: string;
  packFunction?: string;
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
  /** Fetch invocations at once. */
  fetchConcurrency?: number;
  verbose: boolean;
}

/** Runs the local cloud until Ctrl-C (or SIGTERM), then exits the process with 130. */
export async function devCommand(o: DevCommandOptions): Promise<never> {
  const endpoint = o.endpoint ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint) await checkReachable({ endpoint });
  let dev: DevCloud;
  try {
    dev = await startDevCloud({
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      allowPrivateNetwork: o.allowPrivateNetwork,
      visibilityTimeoutSeconds: o.visibilityTimeout,
      ...(o.fetchConcurrency ? { fetchConcurrency: o.fetchConcurrency } : {}),
      logLevel: o.verbose ? 'INFO' : 'WARN',
    });
  } catch (error) {
    throw awsUsageError(error, { where: endpoint ? { endpoint } : {} });
  }
  const { cloud, emulator } = dev;
  const lambda = await startLambdaApi(cloud);
  const file = resolve(DEV_FILE);
  const connection: DevConnection = {
    endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials,
    bucket: cloud.bucket, queueUrl: cloud.queueUrl, dlqUrl: cloud.dlqUrl, pid: process.pid,
    lambdaEndpoint: lambda.url, fetchFunction: lambda.fetchFunction, packFunction: lambda.packFunction,
  };
  // Listening before the file exists: whoever reads it may send Ctrl-C at once.
  const stopRequested = new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await mkdir(dirname(file), { recursive: true });
  // Other commands (and tests) read it as soon as it exists: it appears whole, by a rename.
  const partial = `${file}.${process.pid}.part`;
  await writeFile(partial, JSON.stringify(connection, null, 2) + '\n');
  await rename(partial, file);
  process.stderr.write(
    `Local cloud running (${emulator.kind === 'embedded' ? 'embedded emulator' : 'external endpoint'} ${emulator.endpoint}):\n` +
      `  bucket      ${cloud.bucket}\n  jobs queue  ${cloud.queueUrl}\n  dead letter ${cloud.dlqUrl}\n` +
      `Manifests uploaded under manifests/ are split and fetched by the real handlers. In another terminal:\n` +
      `  npx cloudfetch submit train.json --dev      then status / sync / report with --dev\n` +
      `  aws --endpoint-url ${emulator.endpoint} s3 cp train.json s3://${cloud.bucket}/manifests/${emulator.kind === 'embedded' ? '   (any credentials)' : ''}\n` +
      `Ctrl-C stops it (the embedded emulator keeps nothing).\n`,
  );
  await stopRequested;
  const quit = (): never => {
    rmSync(file, { force: true });
    process.exit(EXIT.interrupted);
  };
  process.on('SIGINT', quit);
  process.on('SIGTERM', quit);
  const running = cloud.running();
  const busy = [
    running.fetch ? `${running.fetch} running fetch ${plural(running.fetch, 'invocation')}` : '',
    running.manifest ? `${running.manifest} manifest ${plural(running.manifest, 'invocation')}` : '',
  ].filter(Boolean).join(' and ');
  process.stderr.write(busy
    ? `Stopping the local cloud: polling stopped, waiting up to ${STOP_GRACE_SECONDS} s for ${busy} (Ctrl-C again to quit at once)…\n`
    : 'Stopping the local cloud…\n');
  await rm(file, { force: true });
  await rmdir(dirname(file)).catch(() => {});
  await lambda.close();
  const { abandoned } = await dev.stop({ graceMs: STOP_GRACE_SECONDS * 1000 });
  if (abandoned > 0) {
    const jobs = emulator.kind === 'embedded' ? 'the embedded emulator keeps nothing' : 'their jobs come back after the visibility timeout';
    process.stderr.write(`Left ${abandoned} ${plural(abandoned, 'invocation')} unfinished: ${jobs}.\n`);
  }
  // Invocations left running hold sockets and timers: exit rather than wait for them.
  process.exit(EXIT.interrupted);
}
