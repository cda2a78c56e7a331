// sync's own listing (aws/home/bucket-list.ts): signed as the SDK signs, read as the SDK reads a
// real S3-compatible server's answer, and a hostile answer refused with one line.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { startEmulator, type Emulator } from '../local-cloud/emulator.ts';
import { listObjects, type ListedObject } from '../aws/listing.ts';
import { BucketLister, ListingError, parseListing } from '../aws/home/bucket-list.ts';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };

const page = (contents: string, more = ''): string => `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>${more}${contents}</ListBucketResult>`;
const entry = (key: string, size: number | string, etag = '&quot;e1&quot;'): string => `<Contents><Key>${key}</Key><LastModified>2026-12-02T05:11:07.000Z</LastModified><ETag>${etag}</ETag><Size>${size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;

test('a page: entities and character references decoded, folder markers left out, the token kept', () => {
  const xml = page(entry('images/t/a&amp;b &lt;c&gt; &#x1F600;&#13;d.jpg', 12) + entry('images/t/dir/', 0) + entry('images/t/%2E..jpg', '7'), '<IsTruncated>true</IsTruncated><NextContinuationToken>1/x+y=</NextContinuationToken>');
  const listed = parseListing(xml, 'images/t/');
  assert.deepEqual(listed.objects.map((o) => [o.key, o.size, o.etag]), [['images/t/a&b <c> 😀\rd.jpg', 12, '"e1"'], ['images/t/%2E..jpg', 7, '"e1"']]);
  assert.equal(listed.objects[0]!.lastModified, Date.parse('2026-12-02T05:11:07.000Z'));
  assert.equal(listed.next, '1/x+y=');
  assert.equal(parseListing(page('', '<IsTruncated>false</IsTruncated>'), 'p').next, undefined);
});

test("an answer that is not a listing stops with one line, never a wrong key", () => {
  const refused = (xml: string, pattern: RegExp): void => assert.throws(() => parseListing(xml, 'images/t/'), (error: unknown) => error instanceof ListingError && pattern.test(error.message) && !error.message.includes('\n'));
  refused('<html>hello</html>', /not a listing \(no ListBucketResult\)/);
  refused(page(entry('images/t/a.jpg', '-1')), /size of "images\/t\/a.jpg" is not a number/);
  refused(page(entry('images/t/a.jpg', '1e3')), /not a number/);
  refused(page(entry('', 3)), /without a key/);
  refused(page(entry('images/t/a&b.jpg', 3)), /stray "&"/);
  refused(page(entry('images/t/a&nbsp;b.jpg', 3)), /unknown entity &nbsp;/);
  refused(page(entry('images/t/a&#xD800;.jpg', 3)), /invalid character reference/);
  refused(page('<Contents><Key>images/t/a.jpg</Key><Size>3</Size>'), /without its end/);
  refused(page(entry('images/t/a.jpg', 3), '<IsTruncated>true</IsTruncated>'), /truncated without a continuation token/);
});

// A server of canned pages that keeps what it was asked.
let server: Server;
let asked: IncomingMessage[] = [];
let answers: Array<[number, string]> = [];
let endpoint = '';
before(async () => {
  server = createServer((request, response) => {
    asked.push(request);
    const [status, body] = answers.shift() ?? [500, '<Error><Code>InternalError</Code></Error>'];
    response.writeHead(status, { 'content-type': 'application/xml' }).end(body);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
});

test("pages follow the token, each request signed as the SDK's SigV4 signer signs it; a 503 is tried again, a 403 is not", async () => {
  const s3 = new S3Client({ endpoint, region: 'ap-east-1', credentials: CREDENTIALS, forcePathStyle: true });
  const lister = new BucketLister(s3, 'the-bucket');
  try {
    asked = [];
    answers = [
      [200, page(entry('images/t/a b+c.jpg', 1), '<IsTruncated>true</IsTruncated><NextContinuationToken>tok/en+=</NextContinuationToken>')],
      [503, '<Error><Code>SlowDown</Code></Error>'],
      [200, page(entry('images/t/z.jpg', 2), '<IsTruncated>false</IsTruncated>')],
    ];
    const pages = [];
    for await (const objects of lister.pages('images/t/ü &')) pages.push(objects.map((o) => o.key));
    assert.deepEqual(pages, [['images/t/a b+c.jpg'], ['images/t/z.jpg']]);
    assert.equal(asked.length, 3);
    const sha256 = (s3.config as unknown as { sha256: ConstructorParameters<typeof SignatureV4>[0]['sha256'] }).sha256;
    const sdk = new SignatureV4({ credentials: CREDENTIALS, region: 'ap-east-1', service: 's3', sha256, uriEscapePath: false, applyChecksum: false });
    for (const request of asked) {
      const url = new URL(request.url!, endpoint);
      assert.equal(url.pathname, '/the-bucket/');
      assert.equal(url.searchParams.get('prefix'), 'images/t/ü &');
      assert.equal(url.searchParams.get('list-type'), '2');
      const date = request.headers['x-amz-date'] as string;
      const signingDate = new Date(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`);
      const headers = { host: request.headers.host!, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
      const signed = await sdk.sign({ method: 'GET', protocol: 'http:', hostname: '127.0.0.1', path: url.pathname, query: Object.fromEntries(url.searchParams), headers }, { signingDate });
      assert.equal(request.headers.authorization, signed.headers.authorization);
    }
    assert.equal(new URL(asked[1]!.url!, endpoint).searchParams.get('continuation-token'), 'tok/en+=');

    asked = [];
    answers = [[403, '<Error><Code>AccessDenied</Code></Error>']];
    await assert.rejects(lister.page('images/t/'), /^AccessDenied: listing images\/t\/: HTTP 403 AccessDenied$/);
    assert.equal(asked.length, 1);
  } finally {
    await lister.close();
    s3.destroy();
  }
});

test('warm(3) opens three connections ahead, and three pages asked for at once go out on them: no new handshake', async () => {
  const s3 = new S3Client({ endpoint, region: 'ap-east-1', credentials: CREDENTIALS, forcePathStyle: true });
  const lister = new BucketLister(s3, 'the-bucket');
  const sockets = new Set<unknown>();
  const count = (socket: unknown): void => void sockets.add(socket);
  server.on('connection', count);
  try {
    asked = [];
    answers = [[404, '<Error><Code>NoSuchKey</Code></Error>'], [404, '<Error><Code>NoSuchKey</Code></Error>'], [404, '<Error><Code>NoSuchKey</Code></Error>']];
    await lister.warm(3);
    assert.equal(sockets.size, 3);
    // A GET of one byte of a key outside the bucket's contract, not a listing.
    assert.ok(asked.every((r) => r.method === 'GET' && new URL(r.url!, endpoint).pathname === '/the-bucket/.cloudfetch-warm' && r.headers.range === 'bytes=0-0'));
    // undici takes a connection back in the turn after its answer ended (sync's pages come a round trip later).
    await new Promise((done) => setImmediate(done));
    answers = Array.from({ length: 3 }, () => [200, page(entry('images/t/a.jpg', 1), '<IsTruncated>false</IsTruncated>')] as [number, string]);
    const pages = await Promise.all(['images/t/', 'records/t/', 'failures/t/'].map((prefix) => lister.page(prefix)));
    assert.deepEqual(pages.map((p) => p.objects.length), [1, 1, 1]);
    assert.equal(sockets.size, 3, 'the pages went out on the warmed connections');
  } finally {
    server.off('connection', count);
    await lister.close();
    s3.destroy();
  }
});

let emulator: Emulator;
before(async () => {
  emulator = await startEmulator();
});
after(async () => {
  await emulator.stop();
});

test("an S3-compatible server's listing reads as the SDK reads it, page after page", async () => {
  const s3 = new S3Client({ endpoint: emulator.endpoint, region: 'us-east-1', credentials: CREDENTIALS, forcePathStyle: true });
  const lister = new BucketLister(s3, 'list-bucket');
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'list-bucket' }));
    const keys = ['a&b.jpg', 'x<y>"z\'.jpg', 'ü ñ.jpg', 'plus+sign.jpg', '%2E%2E.jpg', 'tab\there.jpg', ...Array.from({ length: 25 }, (_, i) => `n${i}.jpg`)];
    for (const [i, key] of keys.entries()) await s3.send(new PutObjectCommand({ Bucket: 'list-bucket', Key: `images/t/${key}`, Body: Buffer.alloc(i + 1) }));
    const sdk = [];
    for await (const objects of listObjects(s3, 'list-bucket', 'images/t/')) sdk.push(...objects);
    const ours: ListedObject[] = [];
    let pages = 0;
    let token: string | undefined;
    do {
      const listed = await lister.page('images/t/', { maxKeys: 7, ...(token ? { token } : {}) });
      ours.push(...listed.objects);
      token = listed.next;
      pages++;
    } while (token);
    assert.equal(pages, Math.ceil(keys.length / 7));
    const sorted = (list: typeof ours): string[] => list.map((o) => `${o.key} ${o.size} ${o.etag}`).sort();
    assert.equal(ours.length, keys.length);
    assert.deepEqual(sorted(ours), sorted(sdk));
  } finally {
    await lister.close();
    s3.destroy();
  }
});
