// The signed object client (aws/signed-request.ts) and the S3 store on it, against a loopback server
// that checks every signature with a SigV4 verifier of its own: what is signed (session token,
// payload hash), retries as the SDK's standard mode, errors, keep-alive, addressing.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { bucketSigner, RequestSigner, S3RequestError, SignedObjectClient, signedObjectsOnce } from '../aws/signed-request.ts';
import { S3Store } from '../aws/lambda/s3-store.ts';
import { FetchLog, handleRecord } from '../aws/lambda/fetch-record.ts';
import { encodeJob } from '../aws/job-message.ts';
import type { Job } from '../engine/job.ts';
import type { Store } from '../engine/store.ts';
import type { ImageFetcher } from '../engine/worker.ts';
import type { SQSRecord } from 'aws-lambda';

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The signature checked against the secret of the access key it names. */
  signatureOk: boolean;
  accessKeyId: string;
}

const SECRETS: Record<string, string> = { k1: 'secret-one', k2: 'secret-two' };
let server: Server;
let endpoint: string;
let seen: Seen[] = [];
let connections = 0;
let closed = 0;
let generation = 0;
/** How the server answers each request, in order; the last one repeats. */
let answers: Array<(req: IncomingMessage, res: ServerResponse, socket: Socket) => void> = [];

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const { ok, accessKeyId } = verifySigV4(req, body);
      seen.push({ method: req.method!, path: req.url!, headers: req.headers, body, signatureOk: ok, accessKeyId });
      const answer = answers[Math.min(seen.length - 1, answers.length - 1)]!;
      answer(req, res, req.socket);
    });
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    // Only the sockets of the test under way (a client closed by the last one closes its sockets late).
    const of = generation;
    socket.once('close', () => {
      if (of === generation) closed++;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  seen = [];
  connections = 0;
  closed = 0;
  generation++;
  answers = [ok()];
});

function ok(headers: Record<string, string> = {}): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    res.writeHead(200, { 'content-length': '0', ...headers });
    res.end();
  };
}
function status(code: number, s3Code?: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const xml = s3Code ? `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${s3Code}</Code><Message>told so</Message></Error>` : '';
    // As S3: an error answer is chunked, and a HEAD's has no body.
    res.writeHead(code, { 'content-type': 'application/xml', 'transfer-encoding': 'chunked' });
    res.end(req.method === 'HEAD' ? undefined : xml);
  };
}
const reset = (_req: IncomingMessage, _res: ServerResponse, socket: Socket): void => void socket.destroy();

function s3Client(credentials: S3Client['config']['credentials'] | { accessKeyId: string; secretAccessKey: string; sessionToken?: string } = { accessKeyId: 'k1', secretAccessKey: SECRETS.k1!, sessionToken: 'the-session' }): S3Client {
  return new S3Client({ endpoint, region: 'eu-west-1', forcePathStyle: true, credentials: credentials as never, maxAttempts: 3 });
}

async function withClient(o: { maxAttempts?: number; s3?: S3Client }, run: (client: SignedObjectClient) => Promise<void>): Promise<void> {
  const s3 = o.s3 ?? s3Client();
  const client = await SignedObjectClient.open(s3, 'the-bucket', { retryDelayMs: () => 1, ...(o.maxAttempts ? { maxAttempts: o.maxAttempts } : {}) });
  try {
    await run(client);
  } finally {
    await client.close();
    s3.destroy();
  }
}

describe('signed object requests', () => {
  test('a PUT is signed with the session token and the payload hash given, path-style', async () => {
    const body = Buffer.from('the image bytes');
    const sha256 = createHash('sha256').update(body).digest('hex');
    await withClient({}, async (client) => {
      const answer = await client.send({ method: 'PUT', key: 'images/train/a b+ü.jpg', headers: { 'content-type': 'image/jpeg', 'if-none-match': '*' }, body, sha256, expect: [412] });
      assert.equal(answer.status, 200);
    });
    assert.equal(seen.length, 1);
    const [put] = seen;
    assert.equal(put!.path, '/the-bucket/images/train/a%20b%2B%C3%BC.jpg');
    assert.ok(put!.signatureOk, 'the signature checks out');
    assert.equal(put!.headers['x-amz-security-token'], 'the-session');
    assert.equal(put!.headers['x-amz-content-sha256'], sha256);
    const signedHeaders = /SignedHeaders=([^,]+)/.exec(put!.headers.authorization!)![1]!.split(';');
    for (const name of ['content-length', 'content-type', 'host', 'if-none-match', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token']) assert.ok(signedHeaders.includes(name), `${name} is signed`);
    assert.deepEqual(put!.body, body);
  });

  test('a body that does not match its signed hash fails the check (the verifier is real)', async () => {
    await withClient({}, async (client) => {
      await client.send({ method: 'PUT', key: 'k', body: Buffer.from('one'), sha256: createHash('sha256').update('two').digest('hex'), expect: [] });
    });
    assert.equal(seen[0]!.signatureOk, false);
  });

  test('credentials about to expire are fetched anew for the next request', async () => {
    let calls = 0;
    // Expiring within the SDK's 5-minute window: its memoized provider asks again each time.
    const provider = async (): Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: Date }> => {
      calls++;
      const id = calls % 2 === 1 ? 'k1' : 'k2';
      return { accessKeyId: id, secretAccessKey: SECRETS[id]!, sessionToken: `token-${calls}`, expiration: new Date(Date.now() + 60_000) };
    };
    await withClient({ s3: s3Client(provider) }, async (client) => {
      await client.send({ method: 'HEAD', key: 'a', expect: [404] });
      await client.send({ method: 'HEAD', key: 'b', expect: [404] });
    });
    assert.ok(seen.every((s) => s.signatureOk));
    assert.notEqual(seen[0]!.accessKeyId, seen[1]!.accessKeyId);
    assert.notEqual(seen[0]!.headers['x-amz-security-token'], seen[1]!.headers['x-amz-security-token']);
  });

  test('503 SlowDown, 500 and a reset connection are tried again, the same bytes each time', async () => {
    answers = [status(503, 'SlowDown'), status(500, 'InternalError'), reset, ok()];
    const body = Buffer.from('bytes');
    await withClient({ maxAttempts: 4 }, async (client) => {
      const answer = await client.send({ method: 'PUT', key: 'k', body, sha256: createHash('sha256').update(body).digest('hex'), expect: [] });
      assert.equal(answer.status, 200);
    });
    assert.equal(seen.length, 4);
    assert.ok(seen.every((s) => s.signatureOk && s.body.equals(body)));
  });

  test('the tries are spent: the last error, with its status, code and count', async () => {
    answers = [status(503, 'SlowDown')];
    await withClient({}, async (client) => {
      await assert.rejects(client.send({ method: 'PUT', key: 'k', body: Buffer.from('x'), expect: [] }), (error: unknown) => {
        assert.ok(error instanceof S3RequestError);
        assert.equal(error.status, 503);
        assert.equal(error.code, 'SlowDown');
        assert.equal(error.attempts, 3); // the S3Client's maxAttempts
        assert.match(error.message, /PUT k: HTTP 503 SlowDown: told so/);
        return true;
      });
    });
    assert.equal(seen.length, 3);
  });

  test('403 AccessDenied is not tried again', async () => {
    answers = [status(403, 'AccessDenied')];
    await withClient({}, async (client) => {
      await assert.rejects(client.send({ method: 'PUT', key: 'k', body: Buffer.from('x'), expect: [] }), { name: 'S3RequestError', status: 403, code: 'AccessDenied' });
    });
    assert.equal(seen.length, 1);
  });

  test('HEADs of missing keys keep one connection, framed or not', async () => {
    const unframed = (_req: IncomingMessage, res: ServerResponse): void => {
      // Neither Content-Length nor Transfer-Encoding: Node's own client would close the connection.
      res.useChunkedEncodingByDefault = false;
      res.writeHead(404, { connection: 'keep-alive' });
      res.end();
    };
    for (const answer of [status(404), unframed]) {
      seen = [];
      connections = 0;
      closed = 0;
      generation++;
      answers = [answer];
      await withClient({}, async (client) => {
        for (let i = 0; i < 5; i++) assert.equal((await client.send({ method: 'HEAD', key: `missing/${i}`, expect: [404] })).status, 404);
        assert.equal(closed, 0, 'no connection closed after a HEAD');
      });
      assert.equal(seen.length, 5);
      // The pool may open a second one while the first finishes its answer, not one per HEAD.
      assert.ok(connections <= 2, `${connections} connections`);
    }
  });

  test('an aborted request is not tried again', async () => {
    answers = [status(503, 'SlowDown')];
    const stop = new AbortController();
    await withClient({}, async (client) => {
      const sending = client.send({ method: 'PUT', key: 'k', body: Buffer.from('x'), expect: [], signal: stop.signal });
      stop.abort(new Error('deadline'));
      await assert.rejects(sending, /deadline|aborted/);
    });
    assert.ok(seen.length <= 1);
  });
});

describe('the signer', () => {
  test("signs as the SDK's SigV4 signer does, session token and spaces in values included", async () => {
    const credentials = async (): Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken: string }> => ({ accessKeyId: 'k1', secretAccessKey: SECRETS.k1!, sessionToken: 'the  session' });
    const headers = { host: 'b-1.s3.ap-east-1.amazonaws.com', 'content-type': 'image/jpeg', 'if-none-match': '*', 'x-amz-meta-labels': ' a  b ', 'x-amz-content-sha256': 'e'.repeat(64), 'content-length': '12' };
    const path = '/images/train/a%20b%2B%C3%BC.jpg';
    const now = new Date('2026-12-02T05:11:07.123Z');
    const ours = await new RequestSigner(credentials, 'ap-east-1', 's3').sign('PUT', path, headers, now);
    // The SDK's signer, with the hash an S3Client gives it.
    const s3 = new S3Client({ region: 'ap-east-1' });
    const sha256 = (s3.config as unknown as { sha256: ConstructorParameters<typeof SignatureV4>[0]['sha256'] }).sha256;
    s3.destroy();
    const sdk = await new SignatureV4({ credentials, region: 'ap-east-1', service: 's3', sha256, uriEscapePath: false, applyChecksum: false })
      .sign({ method: 'PUT', protocol: 'https:', hostname: headers.host, path, query: {}, headers: { ...headers } }, { signingDate: now });
    assert.equal(ours.authorization, sdk.headers.authorization);
    assert.equal(ours['x-amz-date'], sdk.headers['x-amz-date']);
    assert.equal(ours['x-amz-security-token'], 'the  session');
  });

  test('x-amz-date is the second signed in (made once a second): the next second, and the next day, are their own', async () => {
    const signer = new RequestSigner(async () => ({ accessKeyId: 'k1', secretAccessKey: SECRETS.k1! }), 'ap-east-1', 's3');
    const dateAt = async (iso: string): Promise<string | undefined> => (await signer.sign('GET', '/a.jpg', { host: 'h', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, new Date(iso)))['x-amz-date'];
    assert.equal(await dateAt('2026-12-02T23:59:58.100Z'), '20261202T235958Z');
    assert.equal(await dateAt('2026-12-02T23:59:58.900Z'), '20261202T235958Z');
    assert.equal(await dateAt('2026-12-02T23:59:59.000Z'), '20261202T235959Z');
    const next = await signer.sign('GET', '/a.jpg', { host: 'h', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, new Date('2026-12-03T00:00:00.000Z'));
    assert.equal(next['x-amz-date'], '20261203T000000Z');
    assert.match(next.authorization!, /Credential=k1\/20261203\/ap-east-1\/s3\/aws4_request/);
    // An earlier second (a clock set back) is its own too.
    assert.equal(await dateAt('2026-12-02T23:59:58.500Z'), '20261202T235958Z');
  });
});

describe('addressing', () => {
  test('virtual-hosted on AWS, path-style when the client says so (emulators)', async () => {
    const aws = new S3Client({ region: 'ap-east-1', credentials: { accessKeyId: 'k1', secretAccessKey: 'x' } });
    const local = new S3Client({ region: 'us-east-1', endpoint: 'http://127.0.0.1:4566', forcePathStyle: true, credentials: { accessKeyId: 'k1', secretAccessKey: 'x' } });
    try {
      assert.equal((await bucketSigner(aws, 'my-images')).base.href, 'https://my-images.s3.ap-east-1.amazonaws.com/');
      assert.equal((await bucketSigner(local, 'my-images')).base.href, 'http://127.0.0.1:4566/my-images/');
    } finally {
      aws.destroy();
      local.destroy();
    }
  });

  test('AWS_ENDPOINT_URL_S3 is honoured before the client has sent anything', async () => {
    const saved = process.env.AWS_ENDPOINT_URL_S3;
    process.env.AWS_ENDPOINT_URL_S3 = 'http://127.0.0.1:4999';
    const s3 = new S3Client({ region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'k1', secretAccessKey: 'x' } });
    try {
      assert.equal((await bucketSigner(s3, 'b-1')).base.href, 'http://127.0.0.1:4999/b-1/');
    } finally {
      s3.destroy();
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_S3;
      else process.env.AWS_ENDPOINT_URL_S3 = saved;
    }
  });
});

describe('the S3 store on signed requests', () => {
  const meta = { url: 'https://h/ü.jpg', id: 'ü/1', labels: ['a', 'b'], contentType: 'image/jpeg' };

  test('head: the size, null for a missing key, an error for a refusal', async () => {
    const s3 = s3Client();
    const store = new S3Store(s3, 'the-bucket', 'images/');
    try {
      answers = [ok({ 'content-length': '1234' })];
      assert.deepEqual(await store.head('train/1.jpg'), { bytes: 1234 });
      assert.equal(seen.at(-1)!.method, 'HEAD');
      assert.equal(seen.at(-1)!.path, '/the-bucket/images/train/1.jpg');
      // Its metadata, when well formed: what the bucket says is checked, not believed.
      seen = [];
      const digest = 'a1'.repeat(32);
      answers = [ok({ 'content-length': '1234', 'content-type': 'image/jpeg', 'x-amz-meta-sha256': digest, 'x-amz-meta-source-url': 'https://h/%C3%BC.jpg' })];
      assert.deepEqual(await store.described('train/1.jpg'), { bytes: 1234, sha256: digest, url: 'https://h/%C3%BC.jpg', format: 'jpeg' });
      seen = [];
      answers = [ok({ 'content-length': '1234', 'content-type': 'text/html', 'x-amz-meta-sha256': `${digest}0` })];
      assert.deepEqual(await store.head('train/1.jpg'), { bytes: 1234 });
      seen = [];
      answers = [ok({ 'content-length': '1234', 'x-amz-meta-sha256': digest.toUpperCase() })];
      assert.deepEqual(await store.head('train/1.jpg'), { bytes: 1234 });
      seen = [];
      answers = [status(404)];
      assert.equal(await store.head('train/2.jpg'), null);
      seen = [];
      answers = [status(403)];
      await assert.rejects(store.head('train/3.jpg'), { name: 'S3RequestError', status: 403 });
    } finally {
      s3.destroy();
    }
  });

  test('put: If-None-Match, content type, metadata, the payload signed; 412 and 409 say it was there', async () => {
    const s3 = s3Client();
    const store = new S3Store(s3, 'the-bucket', 'images/');
    try {
      const body = Buffer.from([0xff, 0xd8, 0xff, 1, 2, 3]);
      assert.equal(await store.put('train/1.jpg', body, meta), true);
      const put = seen[0]!;
      assert.ok(put.signatureOk);
      assert.equal(put.headers['if-none-match'], '*');
      assert.equal(put.headers['content-type'], 'image/jpeg');
      assert.equal(put.headers['x-amz-meta-image-id'], '%C3%BC/1');
      assert.equal(put.headers['x-amz-meta-source-url'], 'https://h/%C3%BC.jpg');
      assert.equal(put.headers['x-amz-meta-labels'], 'a b');
      assert.equal(put.headers['x-amz-content-sha256'], createHash('sha256').update(body).digest('hex'));
      // Kept with the object, so that its HEAD can say what is stored (a record lost, a put refused).
      assert.equal(put.headers['x-amz-meta-sha256'], createHash('sha256').update(body).digest('hex'));
      assert.deepEqual(put.body, body);
      answers = [status(412, 'PreconditionFailed')];
      assert.equal(await store.put('train/1.jpg', body, meta), false);
      answers = [status(409, 'ConditionalRequestConflict')];
      assert.equal(await store.put('train/1.jpg', body, meta), false);
      answers = [status(400, 'InvalidRequest')];
      await assert.rejects(store.put('train/1.jpg', body, meta), { name: 'S3RequestError', status: 400, code: 'InvalidRequest' });
      // No labels: no empty metadata header, as the SDK leaves it out.
      seen = [];
      answers = [ok()];
      await store.put('train/2.jpg', body, { ...meta, labels: [] });
      assert.equal(seen[0]!.headers['x-amz-meta-labels'], undefined);
    } finally {
      s3.destroy();
    }
  });
});

describe("the fetch function's records on signed requests", () => {
  test('a failure record and the fetch log are PUT through the signed client', async () => {
    const s3 = s3Client();
    const objects = signedObjectsOnce(s3, 'the-bucket');
    try {
      const job: Job = { split: 'train', id: 'a/1', urls: ['https://h.example/1.jpg'], labels: ['5'], key: 'train/a%2F1.jpg', position: 1 };
      const record = { messageId: 'm1', receiptHandle: 'r1', body: encodeJob(job), attributes: { ApproximateReceiveCount: '2' } } as unknown as SQSRecord;
      const store = { head: async () => null } as unknown as Store;
      const fetcher: ImageFetcher = { fetchImage: async () => ({ ok: false, url: job.urls[0]!, reason: 'http-404', detail: 'HTTP 404 Not Found', attempts: 1, httpStatus: 404 }) };
      const log = new FetchLog(s3, 'the-bucket', 'invocation-1', objects);
      const outcome = await handleRecord(record, { s3, bucket: 'the-bucket', store, fetcher, signal: new AbortController().signal, log, objects });
      assert.equal(outcome.status, 'failed');
      await log.flush();
      assert.deepEqual(seen.map((r) => [r.method, r.path, r.headers['content-type'], r.signatureOk]), [
        ['PUT', '/the-bucket/failures/train/http-404/a%252F1.json', 'application/json', true],
        ['PUT', '/the-bucket/records/train/invocation-1.jsonl', 'application/x-ndjson', true],
      ]);
      const failure = JSON.parse(seen[0]!.body.toString()) as { id: string; reason: string; receiveCount: number };
      assert.deepEqual([failure.id, failure.reason, failure.receiveCount], ['a/1', 'http-404', 2]);
      assert.equal(JSON.parse(seen[1]!.body.toString().trim()).reason, 'http-404');
    } finally {
      objects.destroy();
      s3.destroy();
    }
  });
});

describe("the fetch function's records of skipped images", () => {
  const job: Job = { split: 'train', id: '7', urls: ['https://h.example/7.jpg'], labels: [], key: 'train/7.jpg', position: 7 };
  const body = Buffer.from([0xff, 0xd8, 0xff, 1, 2, 3]);
  const digest = createHash('sha256').update(body).digest('hex');
  const other = createHash('sha256').update('other bytes').digest('hex');
  const storedAs = (sha256?: string) => ok({ 'content-length': '11', 'content-type': 'image/jpeg', 'x-amz-meta-source-url': job.urls[0]!, ...(sha256 ? { 'x-amz-meta-sha256': sha256 } : {}) });

  /** One delivery of the job: its requests, and the lines its fetch log writes. */
  async function deliver(receives: number, serverAnswers: typeof answers): Promise<{ status: string; requests: string[]; lines: Array<Record<string, unknown>> }> {
    const s3 = s3Client();
    const objects = signedObjectsOnce(s3, 'the-bucket');
    try {
      const store = new S3Store(s3, 'the-bucket', 'images/', objects);
      const record = { messageId: 'm7', receiptHandle: 'r7', body: encodeJob(job), attributes: { ApproximateReceiveCount: String(receives) } } as unknown as SQSRecord;
      const fetcher: ImageFetcher = { fetchImage: async () => ({ ok: true, url: job.urls[0]!, body, format: 'jpeg', contentType: 'image/jpeg', attempts: 2, httpStatus: 200, sha256: digest }) };
      const log = new FetchLog(s3, 'the-bucket', 'invocation-7', objects);
      seen = [];
      answers = serverAnswers;
      const outcome = await handleRecord(record, { s3, bucket: 'the-bucket', store, described: (key) => store.described(key), fetcher, signal: new AbortController().signal, log, objects });
      const requests = seen.map((r) => `${r.method} ${r.path}`);
      seen = [];
      answers = [ok()];
      await log.flush();
      const lines = seen.length === 0 ? [] : seen[0]!.body.toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      return { status: outcome.status, requests, lines };
    } finally {
      objects.destroy();
      s3.destroy();
    }
  }
  const line = (l: Record<string, unknown>) => [l.id, l.status, l.url, l.bytes, l.format, l.sha256, l.attempts];

  test('found stored on a first delivery: one HEAD, no line (the delivery that stored it has said it all)', async () => {
    const d = await deliver(1, [storedAs(digest)]);
    assert.deepEqual([d.status, d.requests, d.lines], ['skipped', ['HEAD /the-bucket/images/train/7.jpg'], []]);
  });

  test('found stored on a redelivery: a line from the same HEAD\'s metadata, no request more', async () => {
    const d = await deliver(2, [storedAs(other)]);
    assert.deepEqual([d.status, d.requests], ['skipped', ['HEAD /the-bucket/images/train/7.jpg']]);
    assert.deepEqual(d.lines.map(line), [['7', 'fetched', job.urls[0], 11, 'jpeg', other, 0]]);
  });

  test('found stored without its sha256 (stored before puts carried it): no line rather than a line without it', async () => {
    const d = await deliver(3, [storedAs()]);
    assert.deepEqual([d.status, d.requests.length, d.lines], ['skipped', 1, []]);
  });

  test('a put refused: one HEAD more, and the line describes the bytes stored, not those refused', async () => {
    const d = await deliver(1, [status(404), status(412, 'PreconditionFailed'), storedAs(other)]);
    assert.deepEqual([d.status, d.requests], ['skipped', ['HEAD /the-bucket/images/train/7.jpg', 'PUT /the-bucket/images/train/7.jpg', 'HEAD /the-bucket/images/train/7.jpg']]);
    assert.deepEqual(d.lines.map(line), [['7', 'fetched', job.urls[0], 11, 'jpeg', other, 2]]);
  });

  test('a put refused for the very bytes stored: the delivery\'s own line (it says more: the fetched size)', async () => {
    const d = await deliver(2, [status(404), status(412, 'PreconditionFailed'), ok({ 'content-length': '6', 'content-type': 'image/jpeg', 'x-amz-meta-sha256': digest })]);
    assert.deepEqual(d.lines.map((l) => [...line(l), l.originalBytes]), [['7', 'fetched', job.urls[0], 6, 'jpeg', digest, 2, 6]]);
  });

  test('the HEAD after a refused put not answered: the image stays skipped, no line', async () => {
    const d = await deliver(1, [status(404), status(412, 'PreconditionFailed'), status(403)]);
    assert.deepEqual([d.status, d.requests.length, d.lines], ['skipped', 3, []]);
  });
});

/** SigV4 as S3 checks it (header-signed requests), written apart from the SDK's signer. */
function verifySigV4(req: IncomingMessage, body: Buffer): { ok: boolean; accessKeyId: string } {
  const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
  if (!auth) return { ok: false, accessKeyId: '' };
  const [, accessKeyId, day, region, service, signedHeaders, signature] = auth as unknown as string[];
  const secret = SECRETS[accessKeyId!];
  const payloadHash = req.headers['x-amz-content-sha256'] as string;
  if (!secret || (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== createHash('sha256').update(body).digest('hex'))) return { ok: false, accessKeyId: accessKeyId! };
  const [path, query = ''] = req.url!.split('?');
  const names = signedHeaders!.split(';');
  const canonical = [
    req.method, path, query,
    ...names.map((n) => `${n}:${String(req.headers[n]).trim().replace(/\s+/g, ' ')}`), '',
    signedHeaders, payloadHash,
  ].join('\n');
  const date = req.headers['x-amz-date'] as string;
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${secret}`).update(day!).digest();
  for (const part of [region!, service!, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return { ok: createHmac('sha256', key).update(toSign).digest('hex') === signature, accessKeyId: accessKeyId! };
}
