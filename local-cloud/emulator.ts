// The S3 + SQS endpoint the local cloud talks to: fauxqs embedded in this process on loopback, or
// an external compatible endpoint (LocalStack, a fauxqs container) given by --endpoint or
// AWS_ENDPOINT_URL. Either way callers get one endpoint URL, a region and how to sign: throwaway
// credentials for fauxqs, the user's own (if any) for an external endpoint, which may check them.

import { SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';
import { batchFifoAsSqs } from './fifo-batches.ts';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface Emulator {
  /** Origin of the S3 and SQS API, e.g. http://127.0.0.1:41235 (no trailing slash). */
  endpoint: string;
  region: string;
  /** Undefined: the SDK's own chain (environment, profile), which the user configured. */
  credentials?: Credentials;
  /** `embedded`: fauxqs in this process, stopped by stop(). `external`: stop() does nothing. */
  kind: 'embedded' | 'external';
  stop(): Promise<void>;
}

/** The region both emulators assume when a request does not say otherwise. */
export const DEFAULT_EMULATOR_REGION = 'us-east-1';

/** fauxqs (and LocalStack, by default) accept any credentials; these are conventional. */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/**
 * Starts fauxqs in this process on 127.0.0.1 with a port the OS picks, its request log off and
 * state in memory. Built from fauxqs's `buildApp` rather than `startFauxqs`, because the latter
 * always listens on 0.0.0.0, which would offer an unauthenticated S3 to the whole network.
 */
export async function startEmulator(options: { region?: string; /** default 127.0.0.1 */ host?: string } = {}): Promise<Emulator> {
  const region = options.region ?? DEFAULT_EMULATOR_REGION;
  await batchFifoAsSqs();
  // defaultRegion only names resources created by requests that carry no SigV4 region; every SDK
  // request does, so the SDK clients' region is what matters (awsClientConfig uses `region`).
  const app = buildApp({ logger: false, defaultRegion: region });
  // fauxqs answers a HEAD it cannot find (HeadObject's 404, the fetch function's skip check on
  // every image) with neither Content-Length nor Transfer-Encoding, and Node's HTTP client then
  // closes the connection: every image cost the function a new connection to the emulator. S3's
  // error answers say Transfer-Encoding: chunked; so does this one now (a HEAD still has no body).
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.method === 'HEAD' && !reply.hasHeader('content-length') && !reply.hasHeader('transfer-encoding')) reply.header('transfer-encoding', 'chunked');
    return payload;
  });
  const address = await app.listen({ port: 0, host: options.host ?? '127.0.0.1' });
  let stopped: Promise<void> | undefined;
  return {
    endpoint: new URL(address).origin,
    region,
    credentials: { ...EMULATOR_CREDENTIALS },
    kind: 'embedded',
    // fauxqs closes with forceCloseConnections and wakes its long-poll waiters, so this is quick
    // and leaves no sockets or timers behind.
    stop: () => (stopped ??= app.close().then(() => undefined)),
  };
}

/** How to reach an external endpoint: a region, and credentials (undefined: the SDK's chain). */
export interface EndpointAccess {
  region: string;
  credentials?: Credentials;
}

/**
 * The region and credentials the SDK finds (environment, profile, …), as an endpoint that checks
 * credentials expects; us-east-1 and test/test, as emulators conventionally take, where none is
 * configured.
 */
export async function configuredAccess(): Promise<EndpointAccess> {
  const probe = new SQSClient({});
  try {
    const region = await probe.config.region().catch(() => DEFAULT_EMULATOR_REGION);
    const configured = await probe.config.credentials().then(() => true, () => false);
    return { region, ...(configured ? {} : { credentials: { ...EMULATOR_CREDENTIALS } }) };
  } finally {
    probe.destroy();
  }
}

/**
 * An external S3/SQS-compatible endpoint. `localhost` is rewritten to 127.0.0.1: the S3 client
 * would otherwise address buckets as `<bucket>.localhost`, which the system resolver does not know
 * (an IP endpoint makes the SDK use path-style addressing by itself, even from AWS_ENDPOINT_URL).
 */
export function connectEndpoint(url: string, access: EndpointAccess = { region: DEFAULT_EMULATOR_REGION, credentials: EMULATOR_CREDENTIALS }): Emulator {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`endpoint must be a URL such as http://127.0.0.1:4566, not ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`endpoint must be an http or https URL, not ${JSON.stringify(url)}`);
  }
  if (parsed.hostname === 'localhost') parsed.hostname = '127.0.0.1';
  return {
    endpoint: parsed.origin,
    region: access.region,
    ...(access.credentials ? { credentials: { ...access.credentials } } : {}),
    kind: 'external',
    stop: async () => {},
  };
}

/** `--endpoint` if given, else AWS_ENDPOINT_URL if set, else a fresh embedded fauxqs. */
export async function openEmulator(endpoint?: string, env: NodeJS.ProcessEnv = process.env): Promise<Emulator> {
  const url = endpoint ?? env.AWS_ENDPOINT_URL;
  return url ? connectEndpoint(url, await configuredAccess()) : startEmulator();
}

/** Options for `new S3Client(...)` and `new SQSClient(...)` that reach the emulator. */
export function awsClientConfig(emulator: Emulator): { endpoint: string; region: string; credentials?: Credentials; forcePathStyle: true } {
  return {
    endpoint: emulator.endpoint,
    region: emulator.region,
    ...(emulator.credentials ? { credentials: { ...emulator.credentials } } : {}),
    // Path-style (http://host/bucket/key): virtual-hosted style needs <bucket>.<host> to resolve.
    forcePathStyle: true,
  };
}

/**
 * A queue URL on the emulator's own origin. fauxqs answers CreateQueue with
 * http://sqs.<region>.localhost:<port>/000000000000/<name>, a host the system resolver does not
 * know; an SQS client configured only through AWS_ENDPOINT_URL (as the handlers are) sends each
 * request to its QueueUrl's host, so it must be the endpoint itself. fauxqs and LocalStack both
 * find the queue from the path alone.
 */
export function endpointQueueUrl(emulator: Emulator, queueUrl: string): string {
  return new URL(new URL(queueUrl).pathname, emulator.endpoint + '/').toString();
}
