// The address guard: every spelling of a private address is refused, before any connection, on
// the first request and on every redirect hop.

import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, buildConnector, interceptors, request, type Dispatcher } from 'undici';
import {
  GUARD_ERROR_CODE,
  GuardError,
  addressVerdict,
  checkUrl,
  dnsLookup,
  guardInterceptor,
  isGuardError,
  type GuardOptions,
} from '../engine/fetch/guard.ts';
import { sampleImage, startOrigin, type Origin } from '../local-cloud/origin.ts';

const REFUSED_HOSTS = [
  '127.1',
  '0x7f000001',
  '2130706433',
  '017700000001',
  '0177.0.0.1',
  '127.000.000.001',
  '127.0.0.1.',
  '127.255.255.254',
  '[::1]',
  '[::ffff:127.0.0.1]',
  '[::ffff:7f00:1]',
  '[0:0:0:0:0:ffff:127.0.0.1]',
  '[::127.0.0.1]', // deprecated IPv4-compatible form
  '10.1.2.3',
  '0x0a000001',
  '172.16.0.1',
  '172.31.255.255',
  '192.168.1.1',
  '169.254.169.254',
  '169.254.170.2', // ECS task metadata
  '100.64.0.1',
  '[fd00:ec2::254]',
  '[fc00::1]',
  '[fe80::1]',
  '[fec0::1]',
  '0.0.0.0',
  '0',
  '[::]',
  '224.0.0.1',
  '239.255.255.250',
  '[ff02::1]',
  '255.255.255.255',
  '192.0.2.1',
  '198.18.0.1',
  '203.0.113.7',
  '240.0.0.1',
  '[2001:db8::1]',
  '[::ffff:10.0.0.1]',
  '[::ffff:169.254.169.254]',
  '[64:ff9b::a00:1]', // NAT64 of 10.0.0.1
  '[64:ff9b::a9fe:a9fe]', // NAT64 of 169.254.169.254
  '[2002:a00:1::1]', // 6to4 of 10.0.0.1
  '[2002:7f00:1::1]', // 6to4 of 127.0.0.1
  '[2001::1]', // Teredo
  '[100::1]', // discard-only
];

const ALLOWED_HOSTS = ['93.184.216.34', '8.8.8.8', '1.1.1.1', '[2606:4700::1111]', '[2a00:1450:4001::200e]', '[::ffff:8.8.8.8]', '[64:ff9b::808:808]', 'example.com', 'images.example.com.'];

function urlWithHost(spelling: string): URL {
  return new URL(`http://${spelling}/img.jpg`);
}

describe('checkUrl', () => {
  for (const spelling of REFUSED_HOSTS) {
    it(`refuses http://${spelling}/`, () => {
      const error = checkUrl(urlWithHost(spelling));
      assert.ok(error instanceof GuardError, `expected ${spelling} (${urlWithHost(spelling).hostname}) to be refused`);
      assert.equal(error.reason, 'blocked-address');
      assert.equal(error.code, GUARD_ERROR_CODE);
      assert.match(error.message, /^refused \S+: .*address/);
    });
  }

  for (const spelling of ALLOWED_HOSTS) {
    it(`allows http://${spelling}/`, () => {
      assert.equal(checkUrl(urlWithHost(spelling)), null);
    });
  }

  it('says what was refused and why', () => {
    assert.equal(checkUrl(new URL('http://10.0.0.1/a.jpg'))?.message, 'refused 10.0.0.1: private address');
    assert.match(checkUrl(new URL('http://169.254.169.254/latest/meta-data/'))?.message ?? '', /^refused 169\.254\.169\.254: link-local address/);
    assert.match(checkUrl(new URL('http://[::ffff:127.0.0.1]/'))?.message ?? '', /^refused ::ffff:7f00:1: loopback address inside an IPv4-mapped IPv6 address$/);
    assert.equal(checkUrl(new URL('http://[64:ff9b::a00:1]/'))?.message, 'refused 64:ff9b::a00:1: private address inside a NAT64 address');
  });

  for (const name of ['localhost', 'LOCALHOST', 'localhost.', 'foo.localhost', 'a.b.localhost..', 'localhost:8080']) {
    it(`refuses the host name ${name} without resolving it`, () => {
      const error = checkUrl(new URL(`http://${name}/`));
      assert.equal(error?.reason, 'blocked-address');
    });
  }

  it('leaves names that merely contain "localhost" alone', () => {
    assert.equal(checkUrl(new URL('http://localhost.example.com/')), null);
    assert.equal(checkUrl(new URL('http://mylocalhost/')), null);
  });

  for (const text of ['file:///etc/passwd', 'ftp://example.com/a.jpg', 'data:image/png;base64,iVBORw0KGgo=', 'gopher://127.0.0.1:6379/_INFO', 'javascript:alert(1)', 'ws://example.com/']) {
    it(`refuses the scheme of ${text}`, () => {
      const error = checkUrl(new URL(text));
      assert.equal(error?.reason, 'blocked-scheme');
      assert.match(error?.message ?? '', /is not http or https/);
    });
  }

  it('allowLoopback lifts loopback only', () => {
    const opts: GuardOptions = { allowLoopback: true };
    for (const spelling of ['127.0.0.1', '127.1', '[::1]', '[::ffff:127.0.0.1]', 'localhost', 'a.localhost']) {
      assert.equal(checkUrl(urlWithHost(spelling), opts), null, spelling);
    }
    for (const spelling of ['10.0.0.1', '169.254.169.254', '0.0.0.0', '[fd00:ec2::254]', '192.168.0.1', '100.64.0.1', '[fe80::1]']) {
      assert.equal(checkUrl(urlWithHost(spelling), opts)?.reason, 'blocked-address', spelling);
    }
    assert.equal(checkUrl(new URL('file:///etc/passwd'), opts)?.reason, 'blocked-scheme');
  });

  it('allowPrivateNetwork lifts private and loopback ranges, never metadata, link-local or the scheme check', () => {
    const opts: GuardOptions = { allowPrivateNetwork: true };
    const never = new Set([
      '169.254.169.254', '169.254.170.2', '[fd00:ec2::254]', '[fe80::1]', '[::ffff:169.254.169.254]', '[64:ff9b::a9fe:a9fe]',
      '0.0.0.0', '0', '[::]', '224.0.0.1', '239.255.255.250', '[ff02::1]', '255.255.255.255',
    ]);
    for (const spelling of REFUSED_HOSTS) {
      assert.equal(checkUrl(urlWithHost(spelling), opts)?.reason ?? null, never.has(spelling) ? 'blocked-address' : null, spelling);
    }
    for (const spelling of never) assert.equal(checkUrl(urlWithHost(spelling), opts)?.reason, 'blocked-address', spelling);
    assert.equal(checkUrl(new URL('http://localhost/'), opts), null);
    assert.equal(checkUrl(new URL('ftp://10.0.0.1/'), opts)?.reason, 'blocked-scheme');
  });
});

describe('addressVerdict', () => {
  it('names the refused range', () => {
    assert.deepEqual(addressVerdict('10.0.0.1'), { allowed: false, range: 'private' });
    assert.deepEqual(addressVerdict('169.254.169.254'), { allowed: false, range: 'linkLocal' });
    assert.deepEqual(addressVerdict('fd00:ec2::254'), { allowed: false, range: 'uniqueLocal' });
    assert.deepEqual(addressVerdict('::ffff:7f00:1'), { allowed: false, range: 'ipv4Mapped(loopback)' });
    assert.deepEqual(addressVerdict('100.64.0.1'), { allowed: false, range: 'carrierGradeNat' });
    assert.deepEqual(addressVerdict('8.8.8.8'), { allowed: true });
    assert.deepEqual(addressVerdict('2606:4700::1111'), { allowed: true });
  });

  it('refuses what is not an address', () => {
    assert.deepEqual(addressVerdict('example.com'), { allowed: false, range: 'invalid' });
    assert.deepEqual(addressVerdict(''), { allowed: false, range: 'invalid' });
    assert.deepEqual(addressVerdict('example.com', { allowPrivateNetwork: true }), { allowed: false, range: 'invalid' });
  });

  it('tolerates brackets', () => {
    assert.deepEqual(addressVerdict('[::1]'), { allowed: false, range: 'loopback' });
    assert.deepEqual(addressVerdict('[::1]', { allowLoopback: true }), { allowed: true });
  });
});

describe('dnsLookup', () => {
  it('answers IP literals without asking a resolver', async () => {
    for (const [url, address, family] of [['http://[::1]/', '::1', 6], ['http://[fd00:ec2::254]/', 'fd00:ec2::254', 6], ['http://10.0.0.1/', '10.0.0.1', 4]] as const) {
      const records = await new Promise((resolve, reject) =>
        dnsLookup(new URL(url), {}, (error, result) => (error ? reject(error) : resolve(result))),
      );
      assert.deepEqual(records, [{ address, family, ttl: Number.POSITIVE_INFINITY }]);
    }
  });
});

describe('isGuardError', () => {
  it('recognises a GuardError by class or by code', () => {
    assert.ok(isGuardError(new GuardError('blocked-address', '10.0.0.1', 'private address')));
    assert.ok(isGuardError(Object.assign(new Error('x'), { code: GUARD_ERROR_CODE })));
    assert.ok(!isGuardError(new Error('x')));
    assert.ok(!isGuardError('refused'));
  });
});

// The composition the fetcher uses, with a connector that records every connection attempt.
// The resolver is fake: IP literals go to dnsLookup (which answers them itself), the names in
// `names` resolve as given, and any other name fails, so the tests never ask a real resolver.
function guardedAgent(guard: GuardOptions, names: Record<string, string> = {}) {
  const connects: string[] = [];
  const connect = buildConnector({});
  const agent = new Agent({
    connect(options, callback) {
      connects.push(options.hostname);
      connect(options, callback);
    },
  });
  const lookup: typeof dnsLookup = (origin, options, callback) => {
    if (isIP(origin.hostname.replace(/^\[|\]$/g, '')) !== 0) return dnsLookup(origin, options, callback);
    const address = names[origin.hostname];
    if (address === undefined) {
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${origin.hostname}`), { code: 'ENOTFOUND' }), []);
      return;
    }
    callback(null, [{ address, family: address.includes(':') ? 6 : 4, ttl: 60_000 }]);
  };
  const dispatcher = agent.compose(
    guardInterceptor(guard),
    interceptors.dns({ lookup }),
    interceptors.redirect({ maxRedirections: 5 }),
    interceptors.decompress(),
  );
  return { agent, dispatcher, connects };
}

async function fetchBytes(url: string, dispatcher: Dispatcher): Promise<Buffer> {
  const response = await request(url, { dispatcher });
  assert.equal(response.statusCode, 200);
  return Buffer.from(await response.body.arrayBuffer());
}

async function refusal(promise: Promise<unknown>): Promise<GuardError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GuardError, `expected a GuardError, got ${String(error)}`);
    return error;
  }
  assert.fail('the request was not refused');
}

describe('guardInterceptor', () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await origin.close();
  });

  describe('with allowLoopback (the test origin is reachable)', () => {
    const { agent, dispatcher, connects } = guardedAgent({ allowLoopback: true }, {
      'origin.test': '127.0.0.1',
      'metadata.test': '169.254.169.254',
      'intranet.test': '10.1.2.3',
      'v6.test': 'fd00:ec2::254',
    });
    after(() => agent.close());

    it('fetches from the loopback origin, following redirects', async () => {
      assert.deepEqual(await fetchBytes(`${origin.url}/redirect/2/cat.png`, dispatcher), sampleImage('cat', 'png'));
      const port = new URL(origin.url).port;
      assert.deepEqual(await fetchBytes(`http://origin.test:${port}/img/dog.jpg`, dispatcher), sampleImage('dog'));
    });

    for (const target of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://0x0a000001/', 'http://0.0.0.0/', 'http://[::ffff:a9fe:a9fe]/', 'http://[fd00:ec2::254]/']) {
      it(`refuses a redirect to ${target} before connecting`, async () => {
        const before = connects.length;
        const error = await refusal(request(`${origin.url}/redirect-to?location=${encodeURIComponent(target)}`, { dispatcher }));
        assert.equal(error.reason, 'blocked-address');
        assert.equal(error.code, 'CLOUDFETCH_GUARD');
        // Only the origin may have been connected to (or nothing: the keep-alive socket is reused).
        assert.deepEqual(connects.slice(before).filter((host) => host !== '127.0.0.1'), []);
      });
    }

    for (const name of ['metadata.test', 'intranet.test', 'v6.test']) {
      it(`refuses a host name that resolves to a private address (${name})`, async () => {
        const error = await refusal(request(`${origin.url}/redirect-to?location=${encodeURIComponent(`http://${name}/x.jpg`)}`, { dispatcher }));
        assert.equal(error.reason, 'blocked-address');
        assert.match(error.message, new RegExp(`^refused ${name.replace('.', '\\.')} \\(`));
      });
    }

    for (const target of ['file:///etc/passwd', 'ftp://x/', 'gopher://127.0.0.1:6379/_INFO']) {
      it(`refuses a redirect to ${target} as blocked-scheme`, async () => {
        const error = await refusal(request(`${origin.url}/redirect-to?location=${encodeURIComponent(target)}&status=301`, { dispatcher }));
        assert.equal(error.reason, 'blocked-scheme');
      });
    }

    it('surfaces the GuardError unwrapped from dispatcher.request() too', async () => {
      const error = await refusal(dispatcher.request({ origin: 'http://10.0.0.1', path: '/', method: 'GET' }));
      assert.equal(error.reason, 'blocked-address');
      assert.equal(error.cause, undefined);
    });

    it('decides the same for an origin seen before: a remembered one still has its redirects checked, a refused one stays refused', async () => {
      for (let i = 0; i < 2; i++) assert.deepEqual(await fetchBytes(`${origin.url}/img/dog.jpg`, dispatcher), sampleImage('dog'));
      const scheme = await refusal(request(`${origin.url}/redirect-to?location=${encodeURIComponent('file:///etc/passwd')}&status=302`, { dispatcher }));
      assert.equal(scheme.reason, 'blocked-scheme');
      for (let i = 0; i < 2; i++) {
        const address = await refusal(dispatcher.request({ origin: 'http://10.0.0.1', path: '/', method: 'GET' }));
        assert.equal(address.reason, 'blocked-address');
      }
    });

    it('knows a URL object given as origin by identity: the same object allowed again, a refused one refused every time', async () => {
      const allowed = new URL(origin.url);
      for (let i = 0; i < 2; i++) {
        const { statusCode, body } = await dispatcher.request({ origin: allowed, path: '/img/dog.jpg', method: 'GET' });
        assert.equal(statusCode, 200);
        assert.deepEqual(Buffer.from(await body.arrayBuffer()), sampleImage('dog'));
      }
      const refused = new URL('http://10.0.0.1');
      for (let i = 0; i < 2; i++) assert.equal((await refusal(dispatcher.request({ origin: refused, path: '/', method: 'GET' }))).reason, 'blocked-address');
    });

    it('never connected anywhere but the loopback origin', () => {
      assert.ok(connects.length > 0);
      assert.deepEqual(new Set(connects), new Set(['127.0.0.1']));
    });
  });

  describe('without allowLoopback', () => {
    const { agent, dispatcher, connects } = guardedAgent({}, { localhost: '127.0.0.1' });
    after(() => agent.close());

    it('refuses the loopback origin itself, by any spelling, and the origin sees nothing', async () => {
      origin.reset();
      const port = new URL(origin.url).port;
      const spellings = ['127.1', '0x7f000001', '2130706433', 'localhost', '127.0.0.1', '[::1]', '[::ffff:127.0.0.1]'];
      for (const url of spellings.map((host) => `http://${host}:${port}/img/a.jpg`)) {
        const error = await refusal(request(url, { dispatcher }));
        assert.equal(error.reason, 'blocked-address', url);
      }
      assert.equal(origin.totalRequests(), 0);
      assert.deepEqual(connects, []);
    });
  });

  it('refuses a host name that reached it unresolved (no dns interceptor in front)', async () => {
    const agent = new Agent();
    try {
      const error = await refusal(agent.compose(guardInterceptor()).request({ origin: 'http://example.com', path: '/', method: 'GET' }));
      assert.equal(error.reason, 'blocked-address');
      assert.match(error.message, /not resolved/);
    } finally {
      await agent.close();
    }
  });

  it('lets everything through with allowPrivateNetwork', async () => {
    const { agent, dispatcher } = guardedAgent({ allowPrivateNetwork: true });
    try {
      assert.deepEqual(await fetchBytes(`${origin.url}/img/ok.gif`, dispatcher), sampleImage('ok', 'gif'));
    } finally {
      await agent.close();
    }
  });
});
