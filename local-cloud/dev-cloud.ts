// The local cloud with the real handler modules, as `cloudfetch dev`, the demo and the end-to-end
// tests start it: the stack's settings from cdk.json, an emulator, and development timings.

import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { cdkJsonSettings, type Settings } from '../aws/settings.ts';
import { startLocalCloud, type FetchHandler, type LocalCloud } from './cloud.ts';
import { awsClientConfig, openEmulator, type Emulator } from './emulator.ts';

export interface DevCloudOptions {
  /** An external S3/SQS endpoint; default AWS_ENDPOINT_URL, else fauxqs in this process. */
  endpoint?: string;
  /** Let the fetch function reach private and loopback addresses (a local origin). */
  allowPrivateNetwork?: boolean;
  /** Settings to change from cdk.json's. */
  settings?: Partial<Settings>;
  /**
   * Seconds before a failed job is delivered again (the stack's 6× the function timeout is long
   * for a laptop). Keep it above the longest fetch invocation, or busy jobs are delivered twice.
   */
  visibilityTimeoutSeconds?: number;
  /** Fetch invocations at once; default 4 (the stack's is settings.fetchMaxConcurrency, 20). */
  fetchConcurrency?: number;
  /** The handlers' own log lines (JSON, Powertools): WARN by default. */
  logLevel?: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'SILENT';
  /** Wraps the fetch handler (tests: a function that dies mid-batch). */
  wrapFetch?: (real: FetchHandler) => FetchHandler;
  log?: (line: string) => void;
}

export interface DevCloud {
  cloud: LocalCloud;
  emulator: Emulator;
  s3: S3Client;
  sqs: SQSClient;
  /** Stops the cloud (see LocalCloud.stop) and the embedded emulator. */
  stop(o?: { graceMs?: number }): Promise<{ abandoned: number }>;
}

/** The stack's settings as cdk.json gives them. */
export async function startDevCloud(o: DevCloudOptions = {}): Promise<DevCloud> {
  const settings = { ...(await cdkJsonSettings()), ...o.settings };
  const emulator = await openEmulator(o.endpoint);
  try {
    const cloud = await startLocalCloud({
      settings,
      emulator,
      // Loaded by the local cloud with each function's environment set, which the handler modules
      // (and Powertools, at load time) read, as Lambda would have.
      handlers: {
        manifest: { load: async () => (await import('../aws/lambda/manifest.ts')).handler },
        // One module instance per container (the query makes it another module to the loader).
        fetch: { load: async (instance) => (o.wrapFetch ?? ((real: FetchHandler) => real))(((await import(`../aws/lambda/fetch.ts?container=${instance}`)) as typeof import('../aws/lambda/fetch.ts')).handler) },
      },
      env: {
        ...(o.allowPrivateNetwork ? { ALLOW_PRIVATE_NETWORK: 'true' } : {}),
        POWERTOOLS_METRICS_DISABLED: 'true',
        POWERTOOLS_LOG_LEVEL: o.logLevel ?? 'WARN',
      },
      visibilityTimeoutSeconds: o.visibilityTimeoutSeconds ?? 60,
      fetchConcurrency: o.fetchConcurrency ?? 4,
      ...(o.log ? { log: o.log } : {}),
    });
    const config = awsClientConfig(emulator);
    const s3 = new S3Client(config);
    const sqs = new SQSClient(config);
    return {
      cloud,
      emulator,
      s3,
      sqs,
      async stop(o = {}) {
        s3.destroy();
        sqs.destroy();
        const stopped = await cloud.stop(o);
        await emulator.stop();
        return stopped;
      },
    };
  } catch (error) {
    await emulator.stop();
    throw error;
  }
}
