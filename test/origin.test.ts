// The fault-injecting origin itself: what each route answers, its counters, and a close() that
// never hangs.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { detectImageFormat } from '../engine/fetch/image.ts';
import { sampleImage, startOrigin, type Origin, type SampleFormat } from '../local-cloud/origin.ts';

const FORMATS: Array<[ext: string, format: SampleFormat, type: string]> = [
  ['jpg', 'jpeg', 'image/jpeg'],
  ['png', 'png', 'image/png'],
  ['gif', 'gif', 'image/gif'],
  ['webp', 'webp', 'image/webp'],
  ['bmp', 'bmp', 'image/bmp'],
  ['tiff', 'tiff', 'image/tiff'],
  ['avif', 'avif', 'image/avif'],
];

describe('sampleImage', () => {
  it('is deterministic, differs by name, and starts with the magic bytes of its format', () => {
    for (const [, format] of FORMATS) {
      const image = sampleImage('cat', format);
      assert.deepEqual(sampleImage('cat', format), image);
      assert.notDeepEqual(sampleImage('dog', format), image);
      assert.equal(detectImageFormat(image), format);
    }
    assert.deepEqual(sampleImage('cat'), sampleImage('cat', 'jpeg'));
  });

  it('is exactly `size` bytes when asked, whatever the size', () => {
    for (const [, format] of FORMATS) {
      const natural = sampleImage('x', format).length;
      for (const size of [natural + 1, natural + 3, natural + 4, natural + 11, natural + 12, natural + 65_537, natural + 65_540, 300_000, 20]) {
        const image = sampleImage('x', format, size);
        assert.equal(image.length, size, `${format} ${size}`);
        assert.equal(detectImageFormat(image), format, `${format} ${size}`);
      }
    }
  });
});

describe('origin', () => {
  let origin: Origin;
  const agent = new Agent();
  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await agent.close();
    await origin.close();
  });

  async function get(path: string, headers: Record<string, string> = {}) {
    const response = await request(`${origin.url}${path}`, { dispatcher: agent, headers });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body };
  }

  it('listens on loopback with an OS-chosen port', () => {
    assert.match(origin.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  for (const [ext, format, type] of FORMATS) {
    it(`serves /img/<name>.${ext} as ${type}`, async () => {
      const { status, headers, body } = await get(`/img/photo-1.${ext}`);
      assert.equal(status, 200);
      assert.equal(headers['content-type'], type);
      assert.deepEqual(body, sampleImage('photo-1', format));
    });
  }

  it('pads to ?size, lies or stays silent about the type, and gzips on request', async () => {
    const sized = await get('/img/big.png?size=5000');
    assert.deepEqual(sized.body, sampleImage('big', 'png', 5000));
    assert.equal((await get('/img/a.jpg?type=text/html')).headers['content-type'], 'text/html');
    assert.equal((await get('/img/a.jpg?type=none')).headers['content-type'], undefined);
    const zipped = await get('/img/z.gif?gzip=1');
    assert.equal(zipped.headers['content-encoding'], 'gzip');
    assert.deepEqual(gunzipSync(zipped.body), sampleImage('z', 'gif'));
  });

  it('answers /status/<code> with that status and an HTML body', async () => {
    for (const code of [403, 404, 410, 500, 502, 503]) {
      const { status, headers, body } = await get(`/status/${code}`);
      assert.equal(status, code);
      assert.match(String(headers['content-type']), /^text\/html/);
      assert.match(body.toString(), new RegExp(String(code)));
    }
  });

  it('fails /flaky/ N times per path and query, then serves the image; reset() forgets', async () => {
    const path = '/flaky/f.jpg?fail=2&code=502';
    assert.equal((await get(path)).status, 502);
    assert.equal((await get('/flaky/f.jpg?fail=1')).status, 503); // a different query counts apart
    assert.equal((await get(path)).status, 502);
    const third = await get(path);
    assert.equal(third.status, 200);
    assert.deepEqual(third.body, sampleImage('f'));
    assert.equal(origin.hits('/flaky/f.jpg'), 4);
    origin.reset();
    assert.equal(origin.hits('/flaky/f.jpg'), 0);
    assert.equal(origin.totalRequests(), 0);
    assert.equal((await get(path)).status, 502);
  });

  it('rate-limits /ratelimit/ with Retry-After, then serves the image', async () => {
    const first = await get('/ratelimit/r.webp?fail=1&after=7');
    assert.equal(first.status, 429);
    assert.equal(first.headers['retry-after'], '7');
    const second = await get('/ratelimit/r.webp?fail=1&after=7');
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, sampleImage('r', 'webp'));
  });

  it('resets the connection before answering, or halfway through the body', async () => {
    await assert.rejects(get('/reset-before/a'), { code: 'ECONNRESET' });
    const response = await request(`${origin.url}/reset-during/b.png?size=100000`, { dispatcher: agent });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-length'], '100000');
    let received = 0;
    await assert.rejects(async () => {
      for await (const chunk of response.body) received += (chunk as Buffer).length;
    }, { code: 'ECONNRESET' });
    assert.ok(received > 0 && received < 100_000, `received ${received}`);
  });

  it('recovers from resets after ?fail=N', async () => {
    await assert.rejects(get('/reset-before/c.jpg?fail=1'));
    assert.deepEqual((await get('/reset-before/c.jpg?fail=1')).body, sampleImage('c'));
    await assert.rejects(get('/reset-during/d.gif?fail=1'));
    assert.deepEqual((await get('/reset-during/d.gif?fail=1')).body, sampleImage('d', 'gif'));
  });

  it('truncates /truncated/ below its Content-Length', async () => {
    await assert.rejects(get('/truncated/t.jpg'));
  });

  it('follows /redirect/<n>/ through n hops to the image', async () => {
    const first = await get('/redirect/2/x.png?size=999');
    assert.equal(first.status, 302);
    assert.equal(first.headers.location, '/redirect/1/x.png?size=999');
    const second = await get(String(first.headers.location));
    assert.equal(second.headers.location, '/img/x.png?size=999');
    assert.deepEqual((await get(String(second.headers.location))).body, sampleImage('x', 'png', 999));
    assert.equal((await get('/loop/l')).headers.location, '/loop/l');
    const to = await get(`/redirect-to?location=${encodeURIComponent('http://169.254.169.254/latest/meta-data/')}`);
    assert.equal(to.status, 302);
    assert.equal(to.headers.location, 'http://169.254.169.254/latest/meta-data/');
  });

  it('serves a hotlink page as image/jpeg, an empty image, and a delayed one', async () => {
    const html = await get('/html/h');
    assert.equal(html.headers['content-type'], 'image/jpeg');
    assert.match(html.body.toString(), /<html/);
    const empty = await get('/empty/e');
    assert.equal(empty.status, 200);
    assert.equal(empty.body.length, 0);
    assert.deepEqual((await get('/delay/20/late.bmp')).body, sampleImage('late', 'bmp'));
  });

  it('trickles /trickle/ in small chunks', async () => {
    const response = await request(`${origin.url}/trickle/s.png?ms=1&chunk=64`, { dispatcher: agent });
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), sampleImage('s', 'png'));
    assert.ok(chunks.length > 1);
  });

  it('streams /large/ with or without Content-Length, equal to sampleImage', async () => {
    const bytes = 3 * 1024 * 1024 + 7;
    const sized = await get(`/large/L?bytes=${bytes}`);
    assert.equal(sized.headers['content-length'], String(bytes));
    assert.deepEqual(sized.body, sampleImage('L', 'jpeg', bytes));
    const chunked = await get(`/large/L?bytes=${bytes}&chunked=1`);
    assert.equal(chunked.headers['content-length'], undefined);
    assert.equal(chunked.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(chunked.body, sized.body);
  });

  it('answers anything else with 404', async () => {
    for (const path of ['/', '/nope', '/img/', '/img/a/b.jpg', '/status/abc', '/redirect/x/a.jpg']) {
      assert.equal((await get(path)).status, 404, path);
    }
  });

  it('counts hits per path without the query', async () => {
    origin.reset();
    await get('/img/q.jpg?size=400');
    await get('/img/q.jpg');
    assert.equal(origin.hits('/img/q.jpg'), 2);
    assert.equal(origin.totalRequests(), 2);
  });
});

describe('origin lifecycle', () => {
  it('answers after latencyMs', async () => {
    const origin = await startOrigin({ latencyMs: 60 });
    const agent = new Agent();
    try {
      const started = performance.now();
      const response = await request(`${origin.url}/img/slow.jpg`, { dispatcher: agent });
      await response.body.arrayBuffer();
      assert.ok(performance.now() - started >= 55);
    } finally {
      await agent.close();
      await origin.close();
    }
  });

  it('close() does not hang on a stalled request or a slow body', async () => {
    const origin = await startOrigin();
    const agent = new Agent();
    const stalled = request(`${origin.url}/stall-headers/s`, { dispatcher: agent });
    const trickling = await request(`${origin.url}/trickle/t.jpg?ms=60000`, { dispatcher: agent });
    while (origin.hits('/stall-headers/s') === 0) await new Promise((resolve) => setImmediate(resolve));
    await origin.close();
    await assert.rejects(stalled);
    await assert.rejects(trickling.body.arrayBuffer());
    await origin.close(); // a second close is harmless
    await agent.close();
  });
});
