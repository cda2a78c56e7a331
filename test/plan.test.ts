// `cloudfetch plan`: a sample per origin fetched from this machine against origins on loopback
// whose failures are known, storing nothing; the predictions follow what the origins did.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { expectedMax, forecast } from '../engine/forecast.ts';
import { OriginSampler } from '../engine/sample.ts';
import { startOrigin, type Origin } from '../local-cloud/origin.ts';
import { answerPlan } from '../aws/lambda/plan-probe.ts';
import { MAX_PLAN_JOBS, type PlanEvent } from '../aws/plan-event.ts';
import type { PlanReport } from '../cli/plan.ts';
import { cli } from './support/cli.ts';

let dir = '';
let good: Origin;
let gone: Origin;
let half: Origin;
const env = { ...process.env };
delete env.AWS_ENDPOINT_URL;

/** path of entry i on each origin: good always answers an image, gone always 404, half every other. */
const goodPath = (i: number): string => `/img/g${i}.jpg`;
const gonePath = (): string => '/status/404';
const halfPath = (i: number): string => (i % 2 === 0 ? `/img/h${i}.jpg` : `/status/404?i=${i}`);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-plan-'));
  [good, gone, half] = await Promise.all([startOrigin(), startOrigin(), startOrigin()]);
  const rows = ['id,url'];
  for (let i = 0; i < 300; i++) rows.push(`g${i},${good.url}${goodPath(i)}`);
  for (let i = 0; i < 100; i++) rows.push(`x${i},${gone.url}${gonePath()}`);
  for (let i = 0; i < 200; i++) rows.push(`h${i},${half.url}${halfPath(i)}`);
  rows.push('n1,', 'n2,ftp://example.com/a.jpg', `g0,${good.url}${goodPath(0)}`);
  await writeFile(join(dir, 'm.csv'), rows.join('\n') + '\n');
});

after(async () => {
  await Promise.all([good.close(), gone.close(), half.close()]);
  await rm(dir, { recursive: true, force: true });
});

const requests = (): number => good.totalRequests() + gone.totalRequests() + half.totalRequests();

function resetOrigins(): void {
  for (const o of [good, gone, half]) o.reset();
}

async function plan(...args: string[]): Promise<PlanReport> {
  const result = await cli(['plan', 'm.csv', '--json', '--allow-private-network', '-q', ...args], { cwd: dir, env });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  return JSON.parse(result.stdout) as PlanReport;
}

test('per-origin counts and the predicted success rate follow what the origins answer; one request per sampled image, nothing written', async () => {
  resetOrigins();
  const before = await readdir(dir);
  const r = await plan('--min-per-origin', '40', '--max-per-origin', '40');
  assert.deepEqual(await readdir(dir), before, 'plan writes nothing');
  assert.equal(r.entries, 602);
  assert.equal(r.unusable, 2);
  assert.equal(r.duplicates, 1);
  const by = new Map(r.perOrigin.map((o) => [o.origin, o]));
  assert.deepEqual([good, gone, half].map((o) => by.get(o.url)?.entries), [300, 100, 200]);
  assert.deepEqual([good, gone, half].map((o) => by.get(o.url)?.sampled), [40, 40, 40]);
  assert.equal(r.sample.sampled, 120);
  assert.equal(requests(), 120, 'every sampled image asked for once, nothing else');
  assert.equal(by.get(good.url)!.here!.okShare, 1);
  assert.ok(by.get(good.url)!.here!.meanBytes > 0);
  assert.equal(by.get(gone.url)!.here!.okShare, 0);
  assert.deepEqual(by.get(gone.url)!.here!.failures, { 'http-404': 40 });
  const halfShare = by.get(half.url)!.here!.okShare;
  assert.ok(halfShare > 0.3 && halfShare < 0.7, `half the paths 404: ${halfShare}`);
  assert.equal(by.get(half.url)!.here!.failures['http-404'], 40 - Math.round(40 * halfShare));
  assert.equal(r.prediction.basis, 'here');
  assert.equal(r.cloud, null);
  const expected = (300 + 200 * halfShare) / 602;
  assert.ok(Math.abs(r.prediction.predictedSuccessRate - expected) < 1e-9, `${r.prediction.predictedSuccessRate} vs ${expected}`);
  assert.ok(r.prediction.original.bytes > 0 && r.prediction.original.cost.total > 0);
  assert.equal(r.prediction.resized, null);

  // The same seed samples the same entries: the half origin answers the same again.
  const hitsBefore = Array.from({ length: 200 }, (_, i) => half.hits(halfPath(i).split('?')[0]!));
  resetOrigins();
  const again = await plan('--min-per-origin', '40', '--max-per-origin', '40');
  assert.equal(new Map(again.perOrigin.map((o) => [o.origin, o])).get(half.url)!.here!.okShare, halfShare);
  assert.deepEqual(Array.from({ length: 200 }, (_, i) => half.hits(halfPath(i).split('?')[0]!)), hitsBefore);
});

test('the sample is bounded in all and per origin, largest origins first; the rest are predicted at the pooled figures', async () => {
  resetOrigins();
  const r = await plan('--sample', '50', '--min-per-origin', '40', '--max-per-origin', '45', '--resize-ratio', '0.25');
  assert.equal(r.sample.sampled, 50);
  assert.equal(requests(), 50);
  const by = new Map(r.perOrigin.map((o) => [o.origin, o]));
  assert.deepEqual([good, half, gone].map((o) => by.get(o.url)!.sampled), [40, 10, 0]);
  assert.equal(r.perOrigin[0]!.origin, good.url);
  assert.deepEqual(r.prediction.unsampled, { origins: 1, entries: 100 });
  assert.equal(r.prediction.resized!.source, 'ratio');
  assert.equal(r.prediction.resized!.bytes, Math.round(r.prediction.original.bytes * 0.25));
  assert.ok(r.prediction.resized!.cost.egress < r.prediction.original.cost.egress);

  resetOrigins();
  const small = await plan();
  // 1% of each origin, at least 5: 5 + 5 + 5.
  assert.equal(small.sample.sampled, 15);
  assert.equal(requests(), 15);
});

test('--resize measures the resized bytes on the sample itself; --resize-ratio is the user\'s figure, and not both', async () => {
  resetOrigins();
  const r = await plan('--resize', '8', '--image-format', 'webp');
  assert.equal(r.prediction.resized!.source, 'measured');
  assert.deepEqual(r.prediction.assumptions.image, { resize: 8, mode: 'keep', format: 'webp', quality: 90 });
  const g = r.perOrigin.find((o) => o.origin === good.url)!.here!;
  assert.ok(g.meanShrunkBytes! > 0 && g.meanShrunkBytes! < g.meanBytes, `${g.meanShrunkBytes} vs ${g.meanBytes}`);
  assert.ok(r.prediction.resized!.bytes < r.prediction.original.bytes);
  assert.equal(r.prediction.resized!.images, r.prediction.original.images);
  const both = await cli(['plan', 'm.csv', '--allow-private-network', '--resize', '8', '--resize-ratio', '0.5'], { cwd: dir, env });
  assert.equal(both.code, 2);
  assert.equal(both.stderr, 'cloudfetch: give --resize (the sample resized here) or --resize-ratio (your figure), not both\n');
});

test('the plan for a terminal: origins, predictions, the link figure named as the user\'s', async () => {
  resetOrigins();
  const result = await cli(['plan', 'm.csv', '--allow-private-network', '--link', '20'], { cwd: dir, env });
  assert.equal(result.code, 0, result.stderr);
  for (const o of [good, gone, half]) assert.match(result.stdout, new RegExp(`^${o.url.replaceAll('.', '\\.')} `, 'm'));
  assert.match(result.stdout, /success rate +\d+% \(\d[\d,]* of 602 images\)/);
  assert.match(result.stdout, /at 20 Mbit\/s \(your --link figure\)/);
  assert.match(result.stdout, /resized +not estimated/);
  assert.match(result.stderr, /probing 15 images of 3 origins/);
});

test('bad flags: one line, exit 2, no request', async () => {
  resetOrigins();
  for (const args of [['--share', '0'], ['--link', '-1'], ['--resize-ratio', '2'], ['--sample', 'lots'], ['--min-per-origin', '9', '--max-per-origin', '3'], ['--per-origin', '0']]) {
    const result = await cli(['plan', 'm.csv', '--allow-private-network', ...args], { cwd: dir, env });
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    const lines = result.stderr.split('\n').filter((line) => line && !line.startsWith('(run with --help'));
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /--(share|link|resize-ratio|sample|min-per-origin|per-origin)/);
  }
  const missing = await cli(['plan', 'nothing.csv'], { cwd: dir, env });
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim(), 'cloudfetch: no such manifest: nothing.csv');
  assert.equal(requests(), 0);
});

test('sampler: repeatable, a uniform prefix per origin, memory bounded by the candidates kept', () => {
  const sample = (seed: number, keep?: number) => {
    const s = new OriginSampler({ share: 0.01, minPerOrigin: 5, maxPerOrigin: 50, total: 1000, seed, ...(keep ? { keep } : {}) });
    for (let p = 1; p <= 20_000; p++) s.add({ position: p, urls: [`https://big.example/${p}.jpg`] });
    for (let p = 20_001; p <= 23_000; p++) s.add({ position: p, urls: [`https://s${p % 1000}.example/${p}.jpg`] });
    return s.result();
  };
  const a = sample(1);
  assert.equal(a.jobs, 23_000);
  assert.equal(a.origins.length, 1001);
  assert.equal(a.origins[0]!.origin, 'https://big.example');
  assert.equal(a.origins[0]!.sample.length, 50, '1% of 20,000 is 200, capped at 50');
  assert.equal(a.origins[1]!.sample.length, 3, 'an origin of 3 entries: all of them');
  assert.equal(a.sampled, 50 + (1000 - 50), 'the total bound is reached');
  assert.deepEqual(sample(1).origins[0]!.sample, a.origins[0]!.sample);
  assert.notDeepEqual(sample(2).origins[0]!.sample.map((j) => j.position), a.origins[0]!.sample.map((j) => j.position));
  const positions = a.origins[0]!.sample.map((j) => j.position);
  assert.equal(new Set(positions).size, 50);
  // Spread over the whole origin, not its first entries.
  assert.ok(Math.max(...positions) > 15_000 && Math.min(...positions) < 5_000, String(positions));
  // Keeping at most 500 candidates: the big origin keeps its sample, the small ones are dropped.
  const bounded = sample(1, 500);
  assert.deepEqual(bounded.origins[0]!.sample, a.origins[0]!.sample);
  assert.ok(bounded.sampled < 500, String(bounded.sampled));
});

test('forecast: time bound by the slowest origin or the fleet, a batch waits for its slowest image', () => {
  const near = (actual: number, expected: number): void => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} ≠ ${expected}`);
  near(expectedMax([100, 100, 100], 20), 100);
  // Of two values, the larger is drawn at least once in 2 draws 3 times out of 4.
  near(expectedMax([0, 100], 2), 75);
  const ok = { ok: true, ms: 1000, bytes: 1000 };
  const f = forecast({
    origins: [
      { origin: 'https://a.example', entries: 1000, here: [ok, ok] },
      { origin: 'https://b.example', entries: 1000, here: [ok, { ok: false, reason: 'http-404', ms: 1000, bytes: 0 }] },
    ],
    unusable: 0, fleetConcurrency: 400, hostConcurrency: 4, batchSize: 10, memoryMb: 1024, linkMbps: 8,
  });
  near(f.predictedSuccessRate, 0.75);
  assert.equal(f.original.bytes, 1_500_000);
  near(f.original.hoursHome, 1.5 / 3600);
  // 1,000 images of 1 s, 4 at once: 250 s per origin, more than the fleet needs for both (5 s).
  near(f.cloudSeconds, 250);
  assert.equal(f.slowestOrigin, 'https://a.example');
  near(f.gbSecondsPerImage, 0.1);
});

test("the fetch function's dry mode refuses what is not a plan, and leaves out what its deadline cut short", async () => {
  const image = { ok: true as const, url: 'https://a.example/1.jpg', body: Buffer.from('x'), format: 'jpeg' as const, contentType: 'image/jpeg', attempts: 1, httpStatus: 200, sha256: '' };
  const fetcher = { fetchImage: async () => image };
  const signal = new AbortController().signal;
  const job = { urls: ['https://a.example/1.jpg'] };
  for (const bad of [
    { jobs: 'all', concurrency: 1, perOrigin: 1 },
    { jobs: Array.from({ length: MAX_PLAN_JOBS + 1 }, () => job), concurrency: 1, perOrigin: 1 },
    { jobs: [job], concurrency: 0, perOrigin: 1 },
    { jobs: [job], concurrency: 1, perOrigin: 17 },
    { jobs: [{ urls: [] }], concurrency: 1, perOrigin: 1 },
    { jobs: [{ urls: [42] }], concurrency: 1, perOrigin: 1 },
    { jobs: [{ urls: ['file:///etc/passwd'] }], concurrency: 1, perOrigin: 1 },
  ]) {
    await assert.rejects(answerPlan({ cloudfetchPlan: bad } as unknown as PlanEvent, fetcher, signal), TypeError, JSON.stringify(bad).slice(0, 80));
  }
  const answer = await answerPlan({ cloudfetchPlan: { jobs: [job, job], concurrency: 2, perOrigin: 1 } }, fetcher, signal);
  assert.deepEqual(answer.results.map((r) => r && { ok: r.ok, bytes: r.bytes, format: r.format }), [{ ok: true, bytes: 1, format: 'jpeg' }, { ok: true, bytes: 1, format: 'jpeg' }]);
  // The deadline passes while the first image is in flight: neither result says anything of the origin.
  const deadline = new AbortController();
  const slow = { fetchImage: async () => { deadline.abort(); return { ok: false as const, url: job.urls[0]!, reason: 'timeout' as const, detail: 'aborted', attempts: 1 }; } };
  const cut = await answerPlan({ cloudfetchPlan: { jobs: [job, job], concurrency: 1, perOrigin: 1 } }, slow, deadline.signal);
  assert.deepEqual(cut.results, [null, null]);
});
