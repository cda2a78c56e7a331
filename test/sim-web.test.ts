import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateProfile, manifestCsv, politeIdeal, simManifest, startSimWeb, type HostProfile, type SimHost } from '../local-cloud/sim-web.ts';

/** No latency, no faults, no limit: each test turns on what it checks. */
function quiet(profile: HostProfile): HostProfile {
  return { ...profile, medianMs: 0, sigma: 0, limit: { kind: 'concurrency', max: 1000 }, deadShare: 0, placeholderShare: 0, flakyShare: 0, resetShare: 0 };
}

/** The first `count` paths of a host with this fate. */
function pathsOf(host: SimHost, fate: string, count: number): string[] {
  const found: string[] = [];
  for (let n = 0; found.length < count; n++) if (host.fate(`/img/p${n}.jpg`) === fate) found.push(`/img/p${n}.jpg`);
  return found;
}

test('the same seed gives the same profiles, dead paths and placeholders; another seed does not', async () => {
  const [a, b, c] = await Promise.all([startSimWeb({ seed: 7, hosts: 6 }), startSimWeb({ seed: 7, hosts: 6 }), startSimWeb({ seed: 8, hosts: 6 })]);
  try {
    const paths = Array.from({ length: 500 }, (_, n) => `/img/p${n}.jpg`);
    const describe = (web: typeof a) => web.hosts.map((h) => ({ profile: h.profile, fates: paths.map((p) => h.fate(p)) }));
    assert.deepEqual(describe(a), describe(b));
    assert.notDeepEqual(describe(a), describe(c));
    assert.deepEqual(a.hosts[0]!.body('/img/p1.jpg'), b.hosts[0]!.body('/img/p1.jpg'));
    assert.notEqual(a.hosts[0]!.url, b.hosts[0]!.url, 'each host has a port of its own');
    // A seed's web has every kind of path somewhere, and the big hosts (0–2) a concurrency limit.
    const fates = new Set(describe(a).flatMap((h) => h.fates));
    assert.deepEqual([...fates].sort(), ['dead', 'flaky', 'ok', 'placeholder', 'reset']);
    assert.ok(a.hosts.slice(0, 3).every((h) => h.profile.limit.kind === 'concurrency'));
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

test('beyond its concurrency limit a host answers 429 with Retry-After and counts the crossing', { timeout: 10_000 }, async () => {
  // Admitted requests wait a minute: they are still in flight whatever the order of arrival.
  const web = await startSimWeb({
    seed: 1,
    hosts: 1,
    adjust: (p) => ({ ...quiet(p), medianMs: 60_000, maxMs: 60_000, limit: { kind: 'concurrency', max: 2 }, retryAfterSeconds: 3 }),
  });
  const held = new AbortController();
  try {
    const answers: Response[] = [];
    let third: () => void;
    const threeAnswered = new Promise<void>((resolve) => (third = resolve));
    const requests = Array.from({ length: 5 }, (_, n) =>
      fetch(`${web.hosts[0]!.url}/img/p${n}.jpg`, { signal: held.signal }).then((response) => {
        answers.push(response);
        if (answers.length === 3) third();
      }),
    );
    await threeAnswered;
    assert.deepEqual(answers.map((r) => [r.status, r.headers.get('retry-after')]), [[429, '3'], [429, '3'], [429, '3']]);
    const report = web.report()[0]!;
    assert.equal(report.requests, 5);
    assert.equal(report.crossings, 3);
    assert.equal(report.answers.tooMany, 3);
    assert.ok(report.peakConcurrency >= 3 && report.peakConcurrency <= 5, `peak ${report.peakConcurrency}`);
    assert.equal(report.bansTriggered, 0);
    held.abort();
    const settled = await Promise.allSettled(requests);
    assert.equal(settled.filter((s) => s.status === 'rejected').length, 2, 'the two admitted ones were still waiting');
  } finally {
    held.abort();
    await web.close();
  }
});

test('sustained abuse bans the client: 403 for everything until the ban ends', async () => {
  let now = 1_000_000;
  const web = await startSimWeb({
    seed: 2,
    hosts: 1,
    clock: () => now,
    adjust: (p) => ({ ...quiet(p), limit: { kind: 'rate', perSecond: 1 }, ban: { crossings: 3, windowMs: 10_000, banMs: 30_000 } }),
  });
  try {
    const get = async (n: number) => (await fetch(`${web.hosts[0]!.url}/img/p${n}.jpg`)).status;
    const statuses = [];
    for (let n = 0; n < 6; n++) statuses.push(await get(n));
    // One admitted in this second, three crossings (the third starts the ban), then refused.
    assert.deepEqual(statuses, [200, 429, 429, 429, 403, 403]);
    now += 29_999;
    assert.equal(await get(0), 403, 'the ban holds for its whole time, even for a path that worked');
    now += 1;
    assert.equal(await get(0), 200, 'and is lifted after it');
    const report = web.report()[0]!;
    assert.deepEqual(
      { requests: report.requests, crossings: report.crossings, bans: report.bansTriggered, refused: report.refusedWhileBanned },
      { requests: 8, crossings: 3, bans: 1, refused: 3 },
    );
  } finally {
    await web.close();
  }
});

test('each crossing is counted by its cause: the first, the same burst, back too soon after the pause, after a quiet minute', async () => {
  let now = 5_000_000;
  const web = await startSimWeb({
    seed: 2,
    hosts: 1,
    clock: () => now,
    adjust: (p) => ({ ...quiet(p), limit: { kind: 'rate', perSecond: 1 }, retryAfterSeconds: 2 }),
  });
  try {
    const get = async (n: number) => (await fetch(`${web.hosts[0]!.url}/img/p${n}.jpg`)).status;
    assert.deepEqual([await get(0), await get(1), await get(2)], [200, 429, 429]);
    now += 2000;
    assert.deepEqual([await get(3), await get(4)], [200, 429]);
    now += 60_000;
    assert.deepEqual([await get(5), await get(6)], [200, 429]);
    const report = web.report()[0]!;
    assert.equal(report.crossings, 4);
    assert.deepEqual(report.crossingsByCause, { first: 1, burst: 1, 'after-pause': 1, 'after-a-minute': 1 });
  } finally {
    await web.close();
  }
});

test('an outage mid-run: from its Nth request the host bans everyone, or asks for a long wait until the test ends it', async () => {
  let now = 7_000_000;
  const answered: Array<[number, number]> = [];
  const web = await startSimWeb({
    seed: 3,
    hosts: 2,
    clock: () => now,
    onAnswer: (host, status) => answered.push([host, status]),
    adjust: (p, i) => ({ ...quiet(p), outage: i === 0 ? { afterRequests: 2, kind: 'retry-after', seconds: Infinity } : { afterRequests: 1, kind: 'ban', seconds: 30 } }),
  });
  try {
    const [paused, banning] = web.hosts as [SimHost, SimHost];
    const get = async (host: SimHost, n: number) => {
      const response = await fetch(`${host.url}/img/p${n}.jpg`);
      await response.arrayBuffer();
      return [response.status, response.headers.get('retry-after')];
    };
    assert.deepEqual([await get(paused, 0), await get(paused, 1), await get(paused, 2), await get(paused, 0)], [[200, null], [200, null], [429, '3600'], [429, '3600']]);
    now += 3_600_000;
    assert.deepEqual(await get(paused, 3), [429, '3600'], 'until the test ends it');
    paused.endOutage();
    assert.deepEqual(await get(paused, 3), [200, null]);
    assert.deepEqual([await get(banning, 0), await get(banning, 1)], [[200, null], [403, null]]);
    now += 29_999;
    assert.deepEqual(await get(banning, 1), [403, null]);
    now += 1;
    assert.deepEqual(await get(banning, 1), [200, null]);
    const [p, b] = web.report();
    assert.deepEqual([p!.requests, p!.answers.outage, p!.answers.image, p!.crossings, p!.bansTriggered], [6, 3, 3, 0, 0]);
    assert.deepEqual([b!.requests, b!.answers.outage, b!.answers.image, b!.crossings, b!.bansTriggered], [4, 2, 2, 0, 0]);
    assert.deepEqual(answered.filter(([host]) => host === 0).map(([, status]) => status), [200, 200, 429, 429, 429, 200]);
  } finally {
    await web.close();
  }
});

test('placeholders: many URLs of one host answer 200 with the same bytes', async () => {
  const web = await startSimWeb({ seed: 3, hosts: 2, adjust: (p) => ({ ...quiet(p), placeholderShare: 0.3 }) });
  try {
    const [host, other] = web.hosts as [SimHost, SimHost];
    const bodies = async (h: SimHost, paths: string[]) =>
      Promise.all(paths.map(async (p) => {
        const response = await fetch(h.url + p);
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('content-type'), 'image/jpeg');
        return Buffer.from(await response.arrayBuffer());
      }));
    const placeholders = await bodies(host, pathsOf(host, 'placeholder', 4));
    for (const body of placeholders) assert.deepEqual(body, placeholders[0]);
    assert.equal(placeholders[0]!.subarray(0, 3).toString('hex'), 'ffd8ff', 'a real JPEG');
    const images = await bodies(host, pathsOf(host, 'ok', 2));
    assert.notDeepEqual(images[0], images[1]);
    assert.notDeepEqual(images[0], placeholders[0]);
    const elsewhere = await bodies(other, pathsOf(other, 'placeholder', 1));
    assert.notDeepEqual(elsewhere[0], placeholders[0], 'each host has its own placeholder');
  } finally {
    await web.close();
  }
});

test("the report's counts are the requests made, answer by answer", async () => {
  const web = await startSimWeb({
    seed: 4,
    hosts: 1,
    adjust: (p) => ({ ...quiet(p), deadShare: 0.2, placeholderShare: 0.2, flakyShare: 0.2, resetShare: 0.2 }),
  });
  try {
    const host = web.hosts[0]!;
    const seen = { image: 0, placeholder: 0, gone: 0, serverError: 0, reset: 0 };
    const paths = Array.from({ length: 60 }, (_, n) => `/img/p${n}.jpg`);
    // Each path twice: a flaky path fails with a 5xx, a reset one with a reset, the first time only.
    for (const round of [1, 2]) {
      for (const path of paths) {
        const fate = host.fate(path);
        let status: number | 'reset';
        try {
          const response = await fetch(host.url + path);
          await response.arrayBuffer();
          status = response.status;
        } catch {
          status = 'reset';
        }
        if (fate === 'dead') assert.ok(status === 404 || status === 410, `${path}: ${status}`);
        else if (round === 1 && fate === 'flaky') assert.ok(typeof status === 'number' && status >= 500, `${path}: ${status}`);
        else if (round === 1 && fate === 'reset') assert.equal(status, 'reset', path);
        else assert.equal(status, 200, `${path} (${fate}, round ${round})`);
        if (status === 'reset') seen.reset++;
        else if (status === 200) seen[fate === 'placeholder' ? 'placeholder' : 'image']++;
        else if (status >= 500) seen.serverError++;
        else seen.gone++;
      }
    }
    const report = web.report()[0]!;
    assert.equal(report.requests, 120);
    assert.deepEqual(report.answers, { ...seen, tooMany: 0, banned: 0, outage: 0 });
    assert.ok(Object.values(seen).every((n) => n > 0), JSON.stringify(seen));
    assert.equal(report.peakConcurrency, 1);
  } finally {
    await web.close();
  }
});

test('a manifest where three hosts hold 60% of the entries, and its polite ideal', async () => {
  const web = await startSimWeb({ seed: 5, hosts: 10 });
  try {
    const entries = simManifest(web, 1000);
    assert.equal(new Set(entries.map((e) => e.id)).size, 1000);
    const perHost = web.hosts.map((h) => entries.filter((e) => e.url.startsWith(`${h.url}/`)).length);
    assert.deepEqual(perHost, [200, 200, 200, 57, 57, 57, 57, 57, 58, 57]);
    assert.notDeepEqual(entries.slice(0, 3).map((e) => e.host), [0, 1, 2], 'hosts are mixed through the file');
    const csv = manifestCsv(entries).split('\n');
    assert.equal(csv[0], 'id,url');
    assert.equal(csv[1], `${entries[0]!.id},${entries[0]!.url}`);
    assert.equal(csv.length, 1002);
    const ideal = politeIdeal(web, entries);
    assert.equal(ideal.images, entries.filter((e) => e.fate !== 'dead' && e.fate !== 'placeholder').length);
    const expected = perHost.reduce((sum, count, h) => sum + count / web.hosts[h]!.allowedRate(), 0);
    assert.ok(Math.abs(ideal.sumSeconds - expected) < 1e-9);
    assert.ok(ideal.maxHostSeconds > 0 && ideal.maxHostSeconds < ideal.sumSeconds);
  } finally {
    await web.close();
  }
});

test('a host that announces its rate limit states it, and what is left of its second, in every answer', async () => {
  let now = 7_000_200;
  const web = await startSimWeb({
    seed: 3,
    hosts: 3,
    clock: () => now,
    adjust: (p, i) => ({ ...quiet(p), limit: { kind: 'rate', perSecond: 2 }, announce: (['ietf', 'ietf-fields', 'x-ratelimit'] as const)[i]! }),
  });
  try {
    const fields = ['ratelimit-policy', 'ratelimit', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'];
    const get = async (host: number, n: number) => {
      const answer = await fetch(`${web.hosts[host]!.url}/img/p${n}.jpg`);
      await answer.arrayBuffer();
      return [answer.status, ...fields.flatMap((f) => (answer.headers.has(f) ? [`${f}: ${answer.headers.get(f)}`] : []))];
    };
    assert.deepEqual(await get(0, 0), [200, 'ratelimit-policy: "default";q=2;w=1', 'ratelimit: "default";r=1;t=1']);
    assert.deepEqual(await get(0, 1), [200, 'ratelimit-policy: "default";q=2;w=1', 'ratelimit: "default";r=0;t=1']);
    assert.deepEqual(await get(0, 2), [429, 'ratelimit-policy: "default";q=2;w=1', 'ratelimit: "default";r=0;t=1']);
    assert.deepEqual(await get(1, 0), [200, 'ratelimit-limit: 2, 2;w=1', 'ratelimit-remaining: 1', 'ratelimit-reset: 1']);
    assert.deepEqual(await get(2, 0), [200, 'x-ratelimit-limit: 2', 'x-ratelimit-remaining: 1', 'x-ratelimit-reset: 7001']);
    now += 1000;
    assert.deepEqual(await get(0, 3), [200, 'ratelimit-policy: "default";q=2;w=1', 'ratelimit: "default";r=1;t=1'], 'a new second');
    assert.equal(web.report()[0]!.crossings, 1);
  } finally {
    await web.close();
  }
});

test('hosts with a concurrency limit never announce; of the rate-limited ones, some do in each way and some are silent', () => {
  const profiles = Array.from({ length: 40 }, (_, i) => generateProfile(1, i));
  assert.ok(profiles.every((p) => p.limit.kind === 'rate' || p.announce === undefined));
  const ways = new Set(profiles.filter((p) => p.limit.kind === 'rate').map((p) => p.announce ?? 'silent'));
  assert.deepEqual([...ways].sort(), ['ietf', 'ietf-fields', 'silent', 'x-ratelimit']);
});
