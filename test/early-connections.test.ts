// Connections opened as `sync` starts (aws/home/early-connections.ts): the SDK's first request and
// the lister's pages go out on them, not on new connections; the ones nobody took are closed.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { closeEarly, openEarly, takeEarly } from '../aws/home/early-connections.ts';
import { BucketLister } from '../aws/home/bucket-list.ts';
import { clientSettings } from '../cli/target.ts';

const LISTING = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>';

let server: Server;
let endpoint = '';
let port = 0;
// The server's connections in the order they came, and the one each request came on.
let connections: Socket[] = [];
let requests: Array<{ url: string; connection: number }> = [];
let connected: (() => void) | undefined;
let wanted = 0;

before(async () => {
  server = createServer((request, response) => {
    requests.push({ url: request.url ?? '', connection: connections.indexOf(request.socket) });
    response.writeHead(200, { 'content-type': 'application/xml' }).end(LISTING);
  });
  server.on('connection', (socket) => {
    connections.push(socket);
    if (connections.length >= wanted) connected?.();
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  port = (server.address() as AddressInfo).port;
  endpoint = `http://127.0.0.1:${port}`;
});
after(async () => {
  closeEarly();
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
});

/** Opens `count` early connections and waits until the server has them all. */
async function opened(count: number): Promise<void> {
  connections = [];
  requests = [];
  wanted = count;
  const all = new Promise<void>((resolve) => (connected = resolve));
  openEarly(endpoint, count);
  await all;
}

test('the SDK\'s first request and the lister\'s pages go out on the connections opened ahead: no new connection', async () => {
  await opened(3);
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
  const s3 = new S3Client({ ...clientSettings({ endpoint, region: 'us-east-1', credentials }, { sockets: 4 }), forcePathStyle: true });
  const lister = new BucketLister(s3, 'b');
  try {
    await Promise.all([
      s3.send(new ListObjectsV2Command({ Bucket: 'b', Prefix: 'status/' })),
      lister.page('images/', { maxKeys: 100 }),
      lister.page('records/'),
    ]);
    assert.equal(connections.length, 3, 'no connection beyond the three opened ahead');
    assert.deepEqual(requests.map((r) => r.connection).sort(), [0, 1, 2]);
    assert.equal(takeEarly('127.0.0.1', port), undefined, 'all three taken');
  } finally {
    s3.destroy();
    await lister.close();
  }
});

test('the ones nobody took are closed by closeEarly; an https endpoint is not opened ahead', async () => {
  await opened(2);
  const closed = new Promise<void>((resolve) => {
    let n = 0;
    for (const socket of connections) socket.once('close', () => ++n === 2 && resolve());
  });
  closeEarly();
  await closed;
  assert.equal(takeEarly('127.0.0.1', port), undefined);
  openEarly(`https://127.0.0.1:${port}`, 2);
  assert.equal(takeEarly('127.0.0.1', port), undefined);
});
