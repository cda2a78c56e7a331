// `cloudfetch dev` itself, in a child process: its connection file appears whole, and with
// --endpoint it signs as the user's AWS configuration says (an endpoint may check), falling back
// to the emulators' test/test in us-east-1 only where nothing is configured.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import type { DevConnection } from '../cli/dev.ts';
import { startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { cli, startCli, type CliResult } from './support/cli.ts';

const dirs: string[] = [];
async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-dev-'));
  dirs.push(dir);
  return dir;
}

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** This process's environment without any AWS configuration: no variables, no ~/.aws files, no instance metadata. */
function unconfigured(home: string): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_')));
  return {
    ...env,
    HOME: home,
    AWS_CONFIG_FILE: join(home, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

/** Starts `cloudfetch dev` and resolves once it says it runs; `stop()` sends Ctrl-C and waits for the exit. */
async function startDev(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ stop(): Promise<CliResult> }> {
  const { child, done } = startCli(['dev', ...args], { cwd, env });
  await new Promise<void>((resolve, reject) => {
    let said = '';
    child.stderr!.on('data', (chunk: string) => {
      said += chunk;
      if (/^Local cloud running/m.test(said)) resolve();
    });
    void done.then((r) => reject(new Error(`cloudfetch dev ended (${r.code}) before it ran: ${r.stderr}`)));
  });
  return {
    stop() {
      child.kill('SIGINT');
      return done;
    },
  };
}

test('dev.json appears whole: a reader polling it from before the start never sees a part of it', async () => {
  const cwd = await folder();
  const file = join(cwd, '.cloudfetch', 'dev.json');
  const { child, done } = startCli(['dev'], { cwd });
  // A synchronous loop, so no moment between the file's creation and its last byte goes unread.
  const partial: string[] = [];
  let connection: DevConnection | undefined;
  let reads = 0;
  const limit = Date.now() + 60_000;
  while (!connection && Date.now() < limit) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    reads++;
    try {
      connection = JSON.parse(text) as DevConnection;
    } catch {
      partial.push(text);
    }
  }
  child.kill('SIGINT');
  const result = await done;
  assert.deepEqual(partial, [], `read ${reads} times`);
  assert.ok(connection, `no dev.json within a minute: ${result.stderr}`);
  assert.equal(connection.pid, child.pid);
  assert.equal(result.code, 130, result.stderr);
});

let emulator: Emulator;
let proxy: Server;
let proxyUrl: string;
/** Every request the proxy passed to the emulator: its path and the Authorization header. */
const requests: Array<{ path: string; authorization: string }> = [];

// The emulator behind a proxy that records who signed each request.
before(async () => {
  emulator = await startEmulator();
  proxy = createServer((req, res) => {
    requests.push({ path: req.url ?? '', authorization: req.headers.authorization ?? '' });
    const upstream = request(new URL(req.url ?? '/', emulator.endpoint), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (error) => res.destroy(error));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});

after(async () => {
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));
  await emulator.stop();
});

/** Who signed the requests from `from` on: `<access key id> <region>` for each distinct signer, and whether any went unsigned. */
function signers(from: number): { signers: string[]; unsigned: string[] } {
  const seen = new Set<string>();
  const unsigned: string[] = [];
  for (const r of requests.slice(from)) {
    const match = /Credential=([^/]+)\/\d{8}\/([^/]+)\/(?:s3|sqs)\/aws4_request/.exec(r.authorization);
    if (match) seen.add(`${match[1]} ${match[2]}`);
    // fauxqs's own inspection endpoint (status asks it when jobs are in flight) takes no signature.
    else if (!r.path.startsWith('/_fauxqs/')) unsigned.push(r.path);
  }
  return { signers: [...seen], unsigned };
}

test('dev --endpoint signs with the credentials and region the user configured, and so do the handlers and --dev commands', async () => {
  const cwd = await folder();
  const env = { ...unconfigured(cwd), AWS_ACCESS_KEY_ID: 'AKIDCLOUDFETCHTEST', AWS_SECRET_ACCESS_KEY: 'not-to-be-written-down', AWS_REGION: 'eu-west-1' };
  const from = requests.length;
  const dev = await startDev(['--endpoint', proxyUrl], cwd, env);
  try {
    const connection = JSON.parse(await readFile(join(cwd, '.cloudfetch', 'dev.json'), 'utf8')) as DevConnection;
    assert.equal(connection.region, 'eu-west-1');
    assert.equal(connection.credentials, undefined, 'the user\'s keys are not written into the folder');
    assert.doesNotMatch(readFileSync(join(cwd, '.cloudfetch', 'dev.json'), 'utf8'), /not-to-be-written-down/);

    // The manifest function splits it and the fetch function records the refused loopback address.
    await writeFile(join(cwd, 'list.txt'), 'http://127.0.0.1:9/a.jpg\n');
    const submitted = await cli(['submit', 'list.txt', '--dev'], { cwd, env });
    assert.equal(submitted.code, 0, submitted.stderr);
    const watched = await cli(['status', '--watch', '--interval', '1', '--counts', '--json', '--dev'], { cwd, env });
    assert.equal(watched.code, 0, watched.stderr);
    const status = JSON.parse(watched.stdout) as { splits: Array<{ counts: { failed: number; byReason: Record<string, number> } }> };
    assert.deepEqual(status.splits[0]!.counts.byReason, { 'blocked-address': 1 });
  } finally {
    const stopped = await dev.stop();
    assert.equal(stopped.code, 130, stopped.stderr);
  }
  const paths = requests.slice(from).map((r) => r.path);
  assert.ok(paths.some((p) => p.includes('/failures/')), `the fetch function wrote its failure record through the proxy: ${paths.join(' ')}`);
  assert.deepEqual(signers(from), { signers: ['AKIDCLOUDFETCHTEST eu-west-1'], unsigned: [] });
});

test('dev --endpoint with no AWS configuration at all signs as test/test in us-east-1, and says so in dev.json', async () => {
  const cwd = await folder();
  const env = unconfigured(cwd);
  const from = requests.length;
  const dev = await startDev(['--endpoint', proxyUrl], cwd, env);
  try {
    const connection = JSON.parse(await readFile(join(cwd, '.cloudfetch', 'dev.json'), 'utf8')) as DevConnection;
    assert.deepEqual([connection.region, connection.credentials], ['us-east-1', { accessKeyId: 'test', secretAccessKey: 'test' }]);
    const status = await cli(['status', '--dev'], { cwd, env });
    assert.equal(status.code, 0, status.stderr);
  } finally {
    const stopped = await dev.stop();
    assert.equal(stopped.code, 130, stopped.stderr);
  }
  assert.deepEqual(signers(from), { signers: ['test us-east-1'], unsigned: [] });
});

test('dev --fetch-concurrency 20 (the stack\'s fleet) starts the local cloud with FIFO queues; a bad value is one line, exit 2', async () => {
  const bad = await cli(['dev', '--fetch-concurrency', '0'], { cwd: await folder() });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: option '--fetch-concurrency <n>' argument '0' is invalid\. --fetch-concurrency takes a whole number from 1 to 1000, not "0"\.\n/);
  const dir = await folder();
  const dev = await startDev(['--fetch-concurrency', '20'], dir, process.env);
  const connection = JSON.parse(await readFile(join(dir, '.cloudfetch', 'dev.json'), 'utf8')) as DevConnection;
  assert.match(connection.queueUrl, /\.fifo$/, 'the jobs queue is FIFO, as the stack\'s');
  assert.match(connection.dlqUrl, /\.fifo$/);
  assert.equal((await dev.stop()).code, 130);
});
