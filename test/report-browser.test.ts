// The report page in a real browser: a split fetched by the local cloud from two origins (one
// host each), `cloudfetch report --html` run as a user runs it, the file opened in headless
// Chromium (Debian's, driven by playwright-core; nothing is downloaded). The page must load
// nothing, raise no error, show the known figures and sort its host table on a click.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { after, before } from './support/hooks.ts';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startDevCloud, type DevCloud } from '../local-cloud/dev-cloud.ts';
import { DEV_FILE, type DevConnection } from '../cli/dev.ts';
import { startOrigin, type Origin } from '../local-cloud/origin.ts';
import { cli } from './support/cli.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no ${CHROMIUM}: the browser test is skipped (apt-get install chromium)`;

let a: Origin;
let b: Origin;
let dev: DevCloud;
let dir: string;
let browser: BrowserContext | undefined;

before(async () => {
  if (skip) return;
  [a, b] = await Promise.all([startOrigin(), startOrigin()]);
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-report-'));
  dev = await startDevCloud({ allowPrivateNetwork: true, visibilityTimeoutSeconds: 5, logLevel: 'SILENT', log: () => {} });
  // What `cloudfetch dev` writes, so that `--dev` finds this process's local cloud.
  const { emulator, cloud } = dev;
  const connection: DevConnection = {
    endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials,
    bucket: cloud.bucket, queueUrl: cloud.queueUrl, dlqUrl: cloud.dlqUrl, pid: process.pid,
  };
  await mkdir(join(dir, '.cloudfetch'));
  await writeFile(join(dir, DEV_FILE), JSON.stringify(connection));
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  await Promise.all([a?.close(), b?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Host b: 3 stored, 2 × 403, a 404 whose URL carries a script. Host a: 8 stored, 6 × 404, an HTML page. A javascript: URL, no URL. */
function manifest(): string {
  const lines = ['id,url,landmark_id'];
  const add = (url: string) => lines.push(`r${lines.length},${url},1`);
  for (let i = 0; i < 3; i++) add(`${b.url}/img/b${i}.jpg`);
  add(`${b.url}/status/403?n=1`);
  add(`${b.url}/status/403?n=2`);
  add(`${b.url}/status/404?q=<script>alert(1)</script>`);
  for (let i = 0; i < 8; i++) add(`${a.url}/img/a${i}.jpg`);
  for (let i = 0; i < 6; i++) add(`${a.url}/status/404?n=${i}`);
  add(`${a.url}/html/page`);
  add('javascript:alert(1)');
  add('');
  return lines.join('\n') + '\n';
}

async function open(file: string): Promise<{ page: Page; problems: string[]; requests: string[] }> {
  const profile = await mkdtemp(join(dir, 'chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timezoneId: 'Asia/Hong_Kong',
    locale: 'en-US',
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  const problems: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('dialog', (d) => problems.push(`dialog: ${d.message()}`));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(file).href);
  return { page, problems, requests };
}

const hostTable = (page: Page) => page.locator('section.split table').nth(1);
const hostColumn = (page: Page): Promise<string[]> => hostTable(page).locator('tbody tr td:first-child').allTextContents();

describe('the report page in Chromium', { skip }, () => {
  test('report --html on a fetched split: the known figures, nothing loaded, sortable hosts', async () => {
    await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/landmarks.csv', Body: manifest() }));
    await dev.cloud.notifyObjectCreated('manifests/landmarks.csv');
    await dev.cloud.idle();

    const reported = await cli(['report', '--dev', '--html', 'report.html', '--json'], { cwd: dir });
    assert.equal(reported.code, 0, reported.stderr);
    const [report] = JSON.parse(reported.stdout) as Array<{ counts: { byReason: Record<string, number> } }>;
    assert.deepEqual(report!.counts.byReason, { 'http-404': 7, 'not-image': 1, 'http-403': 2, 'bad-url': 1, 'no-url': 1 });

    const { page, problems, requests } = await open(join(dir, 'report.html'));
    const hostA = new URL(a.url).host;
    const hostB = new URL(b.url).host;

    assert.equal(await page.locator('header dl').innerText().then((t) => t.replace(/\s+/g, ' ')), 'IMAGES 23 STORED 11 FAILED 12 PENDING 0 SUCCESS 47.8%');
    assert.match(await page.locator('#queue').innerText(), /WAITING\s+0\s+IN FLIGHT\s+0\s+DEAD-LETTER QUEUE\s+0[\s\S]*Nothing is waiting or in flight: the figures below are final/);
    // Made: shown in the reader's time zone, the UTC time kept as the title.
    const made = page.locator('header time');
    assert.match(await made.innerText(), /GMT\+8$/);
    assert.match(await made.getAttribute('title') ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);

    const reasons = await page.locator('section.split table').first().locator('tbody tr').evaluateAll((rows) =>
      rows.map((r) => [...r.cells].slice(0, 4).map((c) => c.textContent)));
    assert.deepEqual(reasons, [
      ['http-404', '7', '58.3%', 'no: final'],
      ['http-403', '2', '16.7%', 'no: final'],
      ['bad-url', '1', '8.3%', 'no: final'],
      ['no-url', '1', '8.3%', 'no: final'],
      ['not-image', '1', '8.3%', 'no: final'],
    ]);

    const hosts = await hostTable(page).locator('tbody tr').evaluateAll((rows) =>
      rows.map((r) => [...r.cells].map((c) => c.textContent)));
    assert.deepEqual(hosts, [
      [hostA, '15', '8', '7', '53.3%', 'http-404 6'],
      [hostB, '6', '3', '3', '50.0%', 'http-403 2'],
      ['(no host)', '1', '0', '1', '0.0%', 'bad-url 1'],
      ['(no URL)', '1', '0', '1', '0.0%', 'no-url 1'],
    ]);

    // Examples: the first five of the seven 404s in manifest order, the hostile URLs as plain text.
    const examples = await page.locator('dl.examples > *').evaluateAll((items) => {
      const byReason: Record<string, string[]> = {};
      let reason = '';
      for (const item of items) {
        if (item.tagName === 'DT') byReason[(reason = item.querySelector('code')!.textContent!)] = [];
        else byReason[reason]!.push(item.textContent!);
      }
      return byReason;
    });
    assert.deepEqual(examples['http-404'], [
      `${b.url}/status/404?q=<script>alert(1)</script> id r6`,
      ...[0, 1, 2, 3].map((n) => `${a.url}/status/404?n=${n} id r${15 + n}`),
    ]);
    assert.deepEqual(examples['bad-url'], ['javascript:alert(1) id r22']);
    assert.deepEqual(examples['no-url'], ['(no URL) id r23']);
    assert.equal(await page.locator('a, img, iframe, object, embed').count(), 0);

    // A click on a header sorts by that column; a click on "failed" sorts by failures again.
    await hostTable(page).getByRole('button', { name: 'host', exact: true }).click();
    const byName = await hostColumn(page);
    assert.deepEqual(byName, [hostA, hostB, '(no host)', '(no URL)'].sort((x, y) => x.localeCompare(y)));
    assert.notDeepEqual(byName, hosts.map((h) => h[0]), 'the order changed');
    assert.equal(await hostTable(page).locator('th[aria-sort]').innerText(), 'host');
    await hostTable(page).getByRole('button', { name: 'failed', exact: true }).click();
    assert.deepEqual(await hostColumn(page), [hostA, hostB, '(no host)', '(no URL)']);

    assert.deepEqual(problems, [], 'no console error, failed request or dialog');
    assert.deepEqual(requests, [pathToFileURL(join(dir, 'report.html')).href], 'the page loads nothing but itself');

    // The policy is in force: an image the page did not ship cannot load, even from script.
    const hits = a.totalRequests();
    const blocked = await page.locator('body').evaluate((body, url) => new Promise<string>((done) => {
      body.ownerDocument.addEventListener('securitypolicyviolation', (e: { effectiveDirective: string }) => done(e.effectiveDirective), { once: true });
      const img = body.ownerDocument.createElement('img');
      img.src = url;
      body.append(img);
    }), `${a.url}/img/beacon.jpg`);
    assert.equal(blocked, 'img-src');
    assert.equal(a.totalRequests(), hits);
  });
});
