// The S3 + SQS endpoint the local cloud talks to: fauxqs embedded in this process on loopback, or
// an external compatible endpoint (LocalStack, a fauxqs container) given by --endpoint or
// AWS_ENDPOINT_URL. Either way callers get one endpoint URL, a region and throwaway credentials.

import { buildApp } from 'fauxqs';

export interface Emulator {
  /** Origin of the S3 and SQS API, e.g. http://127.0.0.1:41235 (no trailing slash). */
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** `embedded`: fauxqs in this process, stopped by stop(). `external`: stop() does nothing. */
  kind: 'embedded' | 'external';
  stop(): Promise<void>;
}

/** The region both emulators assume when a request does not say otherwise. */
export const DEFAULT_EMULATOR_REGION = 'us-east-1';

/** fauxqs and LocalStack accept any credentials and never check them; these are conventional. */
export const EMULATOR_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/**
 * Starts fauxqs in this process on 127.0.0.1 with a port the OS picks, its request log off and
 * state in memory. Built from fauxqs's `buildApp` rather than `startFauxqs`, because the latter
 * always listens on 0.0.0.0, which would offer an unauthenticated S3 to the whole network.
 */
export async function startEmulator(options: { region?: string } = {}): Promise<Emulator> {
  const region = options.region ?? DEFAULT_EMULATOR_REGION;
  // defaultRegion only names resources created by requests that carry no SigV4 region; every SDK
  // request does, so the SDK clients' region is what matters (awsClientConfig uses `region`).
  const app = buildApp({ logger: false, defaultRegion: region });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
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

/**
 * An external S3/SQS-compatible endpoint. `localhost` is rewritten to 127.0.0.1: the S3 client
 * would otherwise address buckets as `<bucket>.localhost`, which the system resolver does not know
 * (an IP endpoint makes the SDK use path-style addressing by itself, even from AWS_ENDPOINT_URL).
 */
export function connectEndpoint(
  url: string,
  options: { region?: string; credentials?: { accessKeyId: string; secretAccessKey: string } } = {},
): Emulator {
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
    region: options.region ?? DEFAULT_EMULATOR_REGION,
    credentials: { ...(options.credentials ?? EMULATOR_CREDENTIALS) },
    kind: 'external',
    stop: async () => {},
  };
}

/** `--endpoint` if given, else AWS_ENDPOINT_URL if set, else a fresh embedded fauxqs. */
export async function openEmulator(endpoint?: string, env: NodeJS.ProcessEnv = process.env): Promise<Emulator> {
  const url = endpoint ?? env.AWS_ENDPOINT_URL;
  return url ? connectEndpoint(url) : startEmulator();
}

/** Options for `new S3Client(...)` and `new SQSClient(...)` that reach the emulator. */
export function awsClientConfig(emulator: Emulator): {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  forcePathStyle: true;
} {
  return {
    endpoint: emulator.endpoint,
    region: emulator.region,
    credentials: { ...emulator.credentials },
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

/**
 * Seconds until the next hidden message of a queue (in flight or delayed) is visible again, from
 * fauxqs's inspection endpoint, which moves nothing. Undefined where there is no such endpoint
 * (LocalStack, AWS) or nothing is hidden. It lists every message: for small queues only.
 */
export async function nextVisibleIn(queueUrl: string, now = Date.now()): Promise<number | undefined> {
  const url = new URL(queueUrl);
  const name = url.pathname.split('/').filter(Boolean).at(-1);
  if (!name) return undefined;
  try {
    const answer = await fetch(new URL(`/_fauxqs/queues/${encodeURIComponent(name)}`, url.origin), { signal: AbortSignal.timeout(5000) });
    if (!answer.ok) return undefined;
    const { messages } = (await answer.json()) as { messages?: { inflight?: Array<{ visibilityDeadline?: number }>; delayed?: Array<{ delayUntil?: number }> } };
    let first = Infinity;
    for (const m of messages?.inflight ?? []) if (typeof m.visibilityDeadline === 'number') first = Math.min(first, m.visibilityDeadline);
    for (const m of messages?.delayed ?? []) if (typeof m.delayUntil === 'number') first = Math.min(first, m.delayUntil);
    return Number.isFinite(first) ? Math.max(0, (first - now) / 1000) : undefined;
  } catch {
    return undefined;
  }
}
