// Lambda's Invoke API for the local cloud's fetch and pack functions (RequestResponse only): what
// `cloudfetch plan --dev` calls for the fetch function's dry mode and `cloudfetch pack --dev` for
// the pack function, the same signed POST each sends to AWS. The real handler modules run in this
// process, in the environment the local cloud set up,
// one invocation at a time per module instance (a container, as Lambda runs them: invocations at
// once get containers of their own, with their own fetcher).

import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Context } from 'aws-lambda';
import { PACK_FUNCTION } from '../aws/settings.ts';
import { lambdaContext, type LocalCloud } from './cloud.ts';

/** Lambda's limit on a synchronous invocation's payload. */
const MAX_PAYLOAD = 6 * 1024 * 1024;

type Handler = (event: unknown, context: Context) => Promise<unknown>;

export interface LambdaApi {
  /** The endpoint, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  readonly fetchFunction: string;
  readonly packFunction: string;
  close(): Promise<void>;
}

/** `handler`: one to call instead of loading the fetch function's module (tests). */
export async function startLambdaApi(cloud: LocalCloud, handler?: Handler): Promise<LambdaApi> {
  const s = cloud.settings;
  const fn = { name: `${s.stackName}-fetch`, memoryMb: s.fetchMemoryMb, timeoutSeconds: s.fetchTimeoutSeconds };
  const idle: Handler[] = [];
  let containers = 0;
  const container = async (): Promise<Handler> => {
    const free = idle.pop() ?? handler;
    if (free) return free;
    const module = await withEnv(cloud.env.fetch, () => import(`../aws/lambda/fetch.ts?container=invoke-${containers++}`) as Promise<typeof import('../aws/lambda/fetch.ts')>);
    return module.handler as unknown as Handler;
  };
  const path = `/2015-03-31/functions/${encodeURIComponent(fn.name)}/invocations`;
  // The pack function: one module, loaded with its environment; invocations at once share it (they
  // hold no state between calls but their clients).
  const packFn = { name: `${s.stackName}-pack`, memoryMb: PACK_FUNCTION.memoryMb, timeoutSeconds: PACK_FUNCTION.timeoutSeconds };
  const packPath = `/2015-03-31/functions/${encodeURIComponent(packFn.name)}/invocations`;
  let packHandler: Promise<Handler> | undefined;
  const packContainer = (): Promise<Handler> => (packHandler ??= withEnv(cloud.env.pack, () => import('../aws/lambda/pack.ts')).then((m) => m.handler as unknown as Handler));

  const fail = (res: ServerResponse, status: number, type: string, message: string): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type });
    res.end(JSON.stringify({ Type: 'User', message }));
  };

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'POST' || !url.pathname.startsWith('/2015-03-31/functions/')) return fail(res, 404, 'UnknownOperationException', 'only Invoke is served here');
    if (url.pathname !== path && url.pathname !== packPath) return fail(res, 404, 'ResourceNotFoundException', `Function not found: ${decodeURIComponent(url.pathname.split('/')[3] ?? '')}`);
    if ((req.headers['x-amz-invocation-type'] ?? 'RequestResponse') !== 'RequestResponse') return fail(res, 400, 'InvalidParameterValueException', 'only RequestResponse invocations');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_PAYLOAD) return fail(res, 413, 'RequestTooLargeException', `the payload exceeds ${MAX_PAYLOAD} bytes`);
      chunks.push(chunk);
    }
    let event: unknown;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return fail(res, 400, 'InvalidRequestContentException', 'could not parse the request body as JSON');
    }
    const packing = url.pathname === packPath;
    const run = packing ? await packContainer() : await container();
    try {
      const answer = await run(event, lambdaContext(packing ? packFn : fn, cloud.emulator.region));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer ?? null));
    } catch (error) {
      // As Lambda answers a function that threw: status 200, the error in the payload.
      res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' });
      res.end(JSON.stringify({ errorType: error instanceof Error ? error.name : 'Error', errorMessage: error instanceof Error ? error.message : String(error) }));
    } finally {
      if (!packing) idle.push(run);
    }
  }

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    serve(req, res).catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    fetchFunction: fn.name,
    packFunction: packFn.name,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Loads a handler module with exactly its function's environment, as cloud.ts loads the poller's containers. */
async function withEnv<T>(env: Readonly<Record<string, string>>, load: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return await load();
  } finally {
    for (const key of Object.keys(env)) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  }
}
