// The fetcher against the fault-injecting origin: every fault ends in the right reason, with
// retries only where a retry can help, and stored bytes equal to what the origin sent.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { Fetcher, type FetchResult, type FetcherOptions } from '../engine/fetch/fetcher.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';

let origin: Origin;
let fetcher: Fetcher;
const OPTIONS: Partial<FetcherOptions> = {
  guard: { allowLoopback: true },
  retries: 2,
  retryBaseMs: 5,
  retryMaxMs: 2_000,
  timeoutMs: 5_000,
  idleTimeoutMs: 2_000,
  hostConcurrency: 8,
};

before(async () => {
  origin = await startOrigin();
  fetcher = new Fetcher(OPTIONS);
});
after(async () => {
  await fetcher.destroy();
  await origin.close();
});

const get = (path: string): Promise<FetchResult> => fetcher.fetchImage([`${origin.url}${path}`]);

function assertImage(result: FetchResult, expected: Buffer, format = 'jpeg'): void {
  assert.ok(result.ok, `expected an image, got ${result.ok ? '' : `${result.reason}: ${result.detail}`}`);
  assert.ok(result.body.equals(expected), 'stored bytes differ from the origin bytes');
  assert.equal(result.format, format);
}

function assertFailed(result: FetchResult, reason: string, attempts?: number): void {
  assert.equal(result.ok, false, 'expected a failure');
  if (result.ok) return;
  assert.equal(result.reason, reason, result.detail);
  if (attempts !== undefined) assert.equal(result.attempts, attempts);
}

describe('images', () => {
  test('an image arrives byte for byte, whatever its format', async () => {
    assertImage(await get('/img/a.jpg'), sampleImage('a', 'jpeg'));
    assertImage(await get('/img/b.png'), sampleImage('b', 'png'), 'png');
    assertImage(await get('/img/c.gif'), sampleImage('c', 'gif'), 'gif');
    assertImage(await get('/img/d.webp'), sampleImage('d', 'webp'), 'webp');
    assertImage(await get('/img/e.avif'), sampleImage('e', 'avif'), 'avif');
  });

  test('a wrong or missing Content-Type does not matter: the bytes decide', async () => {
    assertImage(await get('/img/w.jpg?type=text/html'), sampleImage('w', 'jpeg'));
    assertImage(await get('/img/n.png?type=none'), sampleImage('n', 'png'), 'png');
  });

  test('a gzip Content-Encoding is decoded, as a browser would', async () => {
    assertImage(await get('/img/z.jpg?gzip=1&size=5000'), sampleImage('z', 'jpeg', 5000));
  });

  test('a redirect chain is followed to the image', async () => {
    assertImage(await get('/redirect/3/r.jpg'), sampleImage('r', 'jpeg'));
  });

  test('a slow but steady body arrives within the deadline', async () => {
    assertImage(await get('/trickle/t.jpg?ms=5&chunk=256'), sampleImage('t', 'jpeg'));
  });
});

describe('permanent failures are not retried', () => {
  for (const [code, reason] of [[403, 'http-403'], [404, 'http-404'], [410, 'http-410'], [400, 'http-4xx']] as const) {
    test(`HTTP ${code} → ${reason}, one request`, async () => {
      const result = await get(`/status/${code}`);
      assertFailed(result, reason, 1);
      assert.equal(!result.ok && result.httpStatus, code);
      assert.equal(origin.hits(`/status/${code}`), 1);
    });
  }

  test('an HTML page served as image/jpeg with status 200 is not-image', async () => {
    const result = await get('/html/hotlink');
    assertFailed(result, 'not-image', 1);
    assert.match(!result.ok ? result.detail : '', /HTML page/);
  });

  test('an empty body is empty', async () => assertFailed(await get('/empty/e'), 'empty', 1));

  test('an oversized body stops early as too-large, announced or not', async () => {
    const small = new Fetcher({ ...OPTIONS, maxBytes: 1024 * 1024 });
    try {
      assertFailed(await small.fetchImage([`${origin.url}/large/big?bytes=${8 * 1024 * 1024}`]), 'too-large', 1);
      assertFailed(await small.fetchImage([`${origin.url}/large/big2?bytes=${8 * 1024 * 1024}&chunked=1`]), 'too-large', 1);
      assertImage(await small.fetchImage([`${origin.url}/large/ok?bytes=${512 * 1024}`]), (await fetchBytes(`/large/ok?bytes=${512 * 1024}`)));
    } finally {
      await small.destroy();
    }
  });

  test('a redirect to another origin is followed there, whatever the redirect status; a 304 is not followed (http-other)', async () => {
    const other = await startOrigin();
    try {
      for (const status of [301, 302, 303, 307, 308]) {
        const target = `${other.url}/img/moved-${status}.jpg`;
        assertImage(await get(`/redirect-to?status=${status}&location=${encodeURIComponent(target)}`), sampleImage(`moved-${status}`), 'jpeg');
        assert.equal(other.hits(`/img/moved-${status}.jpg`), 1);
      }
      // Relative to the hop that sent it, not to the first URL.
      assertImage(await get(`/redirect-to?location=${encodeURIComponent(`${other.url}/redirect-to?location=${encodeURIComponent('/img/rel.jpg')}`)}`), sampleImage('rel'), 'jpeg');
      assert.equal(other.hits('/img/rel.jpg'), 1);
    } finally {
      await other.close();
    }
    assertFailed(await get('/redirect-to?status=304&location='), 'http-other', 1);
  });

  test('a redirect loop and too many hops are redirect-loop', async () => {
    assertFailed(await get('/loop/l'), 'redirect-loop', 1);
    assertFailed(await get('/redirect/9/deep.jpg'), 'redirect-loop', 1);
  });
});

describe('transient failures are retried with backoff', () => {
  test('a server that fails twice then answers is fetched on the third attempt', async () => {
    const result = await get('/flaky/f.jpg?fail=2&code=503');
    assertImage(result, sampleImage('f', 'jpeg'));
    assert.equal(result.attempts, 3);
    assert.equal(origin.hits('/flaky/f.jpg'), 3);
  });

  test('a server that keeps failing ends as http-5xx after every allowed attempt', async () => {
    const result = await get('/status/502');
    assertFailed(result, 'http-5xx', 3);
    assert.equal(origin.hits('/status/502'), 3);
  });

  test('429 honours Retry-After, and a Retry-After beyond reach fails at once as rate-limited', async () => {
    const started = Date.now();
    const result = await get('/ratelimit/q.jpg?fail=1&after=1');
    assertImage(result, sampleImage('q', 'jpeg'));
    assert.ok(Date.now() - started >= 950, 'the retry came before Retry-After');
    // Its own fetcher: the hour's pause holds for the whole origin, and other tests use it.
    const patient = new Fetcher({ ...OPTIONS, hostWaitMs: 60_000 });
    try {
      const before = Date.now();
      const refused = await patient.fetchImage([`${origin.url}/ratelimit/q2.jpg?fail=5&after=3600`]);
      assertFailed(refused, 'rate-limited', 1);
      // Carried on, so the fetch function can hand the job out again when the host allows.
      const until = !refused.ok ? refused.hostPausedUntil! : 0;
      assert.ok(until >= before + 3_600_000 && until <= Date.now() + 3_600_000, `paused until ${until}`);
      assert.ok(!refused.ok && refused.retryAfterMs! > 3_590_000);
      assert.match(!refused.ok ? refused.detail : '', /its host asked us to wait \(Retry-After\) until /);
      // The next image of that origin is not even tried.
      const next = await patient.fetchImage([`${origin.url}/img/after-pause.jpg`]);
      assertFailed(next, 'rate-limited', 0);
      assert.equal(origin.hits('/img/after-pause.jpg'), 0);
    } finally {
      await patient.destroy();
    }
  });

  test("the wait for its host's turn is not the image's time: --timeout is about the request", async () => {
    const narrow = new Fetcher({ ...OPTIONS, hostConcurrency: 1, timeoutMs: 1_000, retries: 0 });
    try {
      // One at a time, 600 ms each: the third starts 1.2 s after it was asked for, and still has its whole second.
      const results = await Promise.all([1, 2, 3].map((n) => narrow.fetchImage([`${origin.url}/delay/600/turn${n}.jpg`])));
      results.forEach((result, n) => assertImage(result, sampleImage(`turn${n + 1}`, 'jpeg')));
    } finally {
      await narrow.destroy();
    }
  });

  test('resets before and during the body are retried, and recover', async () => {
    assertImage(await get('/reset-before/rb.jpg?fail=1'), sampleImage('rb', 'jpeg'));
    assertImage(await get('/reset-during/rd.jpg?fail=2'), sampleImage('rd', 'jpeg'));
    assertFailed(await get('/reset-before/rb2'), 'connection-reset', 3);
    assertFailed(await get('/reset-during/rd2.jpg'), 'truncated', 3);
  });

  test('a truncated body is never taken for an image', async () => {
    assertFailed(await get('/truncated/tr.jpg?size=4000'), 'truncated', 3);
  });

  test('a server that never answers, or trickles past the deadline, is a timeout', async () => {
    const impatient = new Fetcher({ ...OPTIONS, idleTimeoutMs: 200, timeoutMs: 1_000, retries: 0 });
    try {
      assertFailed(await impatient.fetchImage([`${origin.url}/stall-headers/s`]), 'timeout', 1);
      assertFailed(await impatient.fetchImage([`${origin.url}/trickle/slow.jpg?ms=100&chunk=16&size=4000`]), 'timeout', 1);
    } finally {
      await impatient.destroy();
    }
  });

  test('a refused connection is connection-refused', async () => {
    const closed = await startOrigin();
    const url = closed.url;
    await closed.close();
    const result = await fetcher.fetchImage([`${url}/img/x.jpg`]);
    assertFailed(result, 'connection-refused', 3);
  });
});

describe('mirrors and bad URLs', () => {
  test('every mirror is tried in order until one answers', async () => {
    const result = await fetcher.fetchImage([`${origin.url}/status/404`, 'ftp://nope/x.jpg', `${origin.url}/img/m.jpg`]);
    assertImage(result, sampleImage('m', 'jpeg'));
    assert.equal(result.ok && result.url, `${origin.url}/img/m.jpg`);
  });

  test('when every mirror fails, the last reason is kept and the others are listed', async () => {
    const result = await fetcher.fetchImage([`${origin.url}/status/404`, `${origin.url}/status/403`]);
    assertFailed(result, 'http-403');
    assert.match(!result.ok ? result.detail : '', /mirrors: http-404, http-403/);
  });

  test('no URL and unusable URLs', async () => {
    assertFailed(await fetcher.fetchImage([]), 'no-url', 0);
    assertFailed(await fetcher.fetchImage(['javascript:alert(1)']), 'bad-url', 0);
  });
});

describe('the address guard', () => {
  test('redirects to private, link-local and metadata addresses are refused before any connection', async () => {
    for (const target of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/x.jpg', 'http://0x0a000001/x.jpg', 'http://[::ffff:192.168.0.1]/x.jpg']) {
      const result = await get(`/redirect-to?location=${encodeURIComponent(target)}`);
      assertFailed(result, 'blocked-address', 1);
    }
  });

  test('redirects to other schemes are refused', async () => {
    assertFailed(await get(`/redirect-to?location=${encodeURIComponent('file:///etc/passwd')}`), 'blocked-scheme', 1);
  });

  test('without permission, loopback is refused in any spelling and the origin sees nothing', async () => {
    const strict = new Fetcher({ ...OPTIONS, guard: {} });
    const port = new URL(origin.url).port;
    const before = origin.totalRequests();
    try {
      for (const host of ['127.0.0.1', '127.1', '0x7f000001', '2130706433', '[::ffff:127.0.0.1]', 'localhost']) {
        assertFailed(await strict.fetchImage([`http://${host}:${port}/img/a.jpg`]), 'blocked-address', 0);
      }
    } finally {
      await strict.destroy();
    }
    assert.equal(origin.totalRequests(), before);
  });
});

async function fetchBytes(path: string): Promise<Buffer> {
  const response = await fetch(`${origin.url}${path}`);
  return Buffer.from(await response.arrayBuffer());
}

test("the caller's signal aborts every image under way on it, and only those", async () => {
  const caller = new AbortController();
  // Finished before the abort: its deadline is no longer tied to the signal.
  assertImage(await fetcher.fetchImage([`${origin.url}/img/before.jpg`], caller.signal), sampleImage('before'));
  const sent = origin.totalRequests();
  // In flight or waiting for their turn at the origin (its allowance starts small): both end.
  const stalled = [1, 2, 3].map((n) => fetcher.fetchImage([`${origin.url}/stall-headers/s${n}`], caller.signal));
  while (origin.totalRequests() === sent) await new Promise((resolve) => setImmediate(resolve));
  caller.abort();
  for (const result of await Promise.all(stalled)) {
    assertFailed(result, 'timeout');
    assert.ok(!result.ok && result.detail === 'aborted', `detail: ${result.ok ? '' : result.detail}`);
  }
  // Images on no signal, or another, are not touched by it.
  assertImage(await fetcher.fetchImage([`${origin.url}/img/after.jpg`], new AbortController().signal), sampleImage('after'));
  // A signal already aborted fails the image before any request.
  const requests = origin.totalRequests();
  assertFailed(await fetcher.fetchImage([`${origin.url}/img/late.jpg`], caller.signal), 'timeout');
  assert.equal(origin.totalRequests(), requests);
});

test('an error page is read to its end and its connection kept; a page over 64 KiB is dropped with its connection', async () => {
  const connections: Socket[] = [];
  const server = createServer((req, res) => {
    const size = req.url === '/big' ? 200 * 1024 : 1000;
    res.writeHead(404, { 'content-type': 'text/html', 'content-length': size });
    res.end(Buffer.alloc(size, 'x'));
  });
  server.on('connection', (socket: Socket) => connections.push(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const one = new Fetcher({ ...OPTIONS, hostConcurrency: 1 });
  try {
    for (let i = 0; i < 3; i++) assertFailed(await one.fetchImage([`${base}/small-${i}`]), 'http-404', 1);
    assert.equal(connections.length, 1, 'small error pages: one connection for all');
    const big = await one.fetchImage([`${base}/big`]);
    assertFailed(big, 'http-404', 1);
    assert.ok(!big.ok && big.httpStatus === 404);
    assertFailed(await one.fetchImage([`${base}/small-after`]), 'http-404', 1);
    assert.equal(connections.length, 2, 'the big page was not read to its end: its connection was closed');
  } finally {
    await one.destroy();
    for (const socket of connections) socket.destroy();
    server.close();
  }
});

test("a host's RateLimit fields reach the gate: none left in its window, the next image waits for the reset, unsent", async () => {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    const bytes = sampleImage('quota', 'jpeg');
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length, 'ratelimit-policy': '"default";q=1;w=30', ratelimit: '"default";r=0;t=30' });
    res.end(bytes);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Patient for a moment only: a wait for the 30 s reset fails the image at once instead.
  const quick = new Fetcher({ ...OPTIONS, hostWaitMs: 1_000 });
  try {
    assertImage(await quick.fetchImage([`${base}/one.jpg`]), sampleImage('quota', 'jpeg'));
    const before = Date.now();
    const next = await quick.fetchImage([`${base}/two.jpg`]);
    assertFailed(next, 'rate-limited', 0);
    assert.ok(!next.ok && next.hostPausedUntil! >= before + 29_000, `paused until ${!next.ok && next.hostPausedUntil}`);
    assert.equal(requests, 1);
  } finally {
    await quick.destroy();
    server.close();
  }
});
