// `cloudfetch plan` against the simulated web (local-cloud/sim-web.ts): how close its predicted
// success rate comes to what the web holds, per host and in all, what the sample cost the hosts
// (requests, limit crossings, bans), and the plan as a user sees it.
//
// --dev: `cloudfetch dev` runs in a child of its own (the simulated web stays in this process), and
// the plan asks its fetch function's dry mode too, through the Invoke API it serves.
//
//   node bench/plan-sim-web.ts [--entries 20000] [--hosts 40] [--seed 1] [--text] [--dev] [-- <more plan flags>]

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PlanReport } from '../cli/plan.ts';
import { manifestCsv, simManifest, startSimWeb } from '../local-cloud/sim-web.ts';
import { table } from './measure.ts';

const { values, positionals: planFlags } = parseArgs({
  allowPositionals: true,
  options: {
    entries: { type: 'string', default: '20000' },
    hosts: { type: 'string', default: '40' },
    seed: { type: 'string', default: '1' },
    text: { type: 'boolean', default: false },
    dev: { type: 'boolean', default: false },
  },
});
const entryCount = Number(values.entries);
const hostCount = Number(values.hosts);
if (!Number.isSafeInteger(entryCount) || entryCount < 1 || !Number.isSafeInteger(hostCount) || hostCount < 4) {
  process.stderr.write('bench/plan-sim-web: --entries ≥ 1 and --hosts ≥ 4, integers\n');
  process.exit(2);
}
const CLI = new URL('../cli/cloudfetch.js', import.meta.url).pathname;
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

/** Runs in the manifest's folder, so the plan names it as a user would see it. */
async function plan(cwd: string, args: readonly string[]): Promise<{ stdout: string; seconds: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, 'plan', 'sim.csv', '--allow-private-network', values.dev ? '--dev' : '--no-cloud', '-q', ...args, ...planFlags], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`cloudfetch plan exited with ${code}`);
  return { stdout, seconds: (performance.now() - started) / 1000 };
}

/** `cloudfetch dev` in `cwd`, once it says it runs. */
async function startDev(cwd: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, 'dev', '--allow-private-network'], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.setEncoding('utf8');
  for await (const chunk of child.stderr! as AsyncIterable<string>) {
    log += chunk;
    if (/^Local cloud running/m.test(log)) return child;
  }
  throw new Error(`cloudfetch dev ended before it ran: ${log}`);
}

const web = await startSimWeb({ seed: Number(values.seed), hosts: hostCount });
const work = await mkdtemp(join(tmpdir(), 'cloudfetch-plan-sim-'));
const dev = values.dev ? await startDev(work) : null;
try {
  const entries = simManifest(web, entryCount);
  await writeFile(join(work, 'sim.csv'), manifestCsv(entries));
  const { stdout, seconds } = await plan(work, values.text ? [] : ['--json']);
  if (values.text) {
    say(stdout.trimEnd());
    say(`(${seconds.toFixed(1)} s)`);
  } else {
    const r = JSON.parse(stdout) as PlanReport;
    // The truth: a path's fate. Placeholders answer 200 with an image, so a fetch counts them as images too.
    const truth = web.hosts.map((host) => {
      const mine = entries.filter((e) => e.host === web.hosts.indexOf(host));
      const images = mine.filter((e) => e.fate !== 'dead' && e.fate !== 'placeholder').length;
      const placeholders = mine.filter((e) => e.fate === 'placeholder').length;
      return { url: host.url, entries: mine.length, images, placeholders };
    });
    const reports = web.report();
    const rows = truth
      .map((t, i) => ({ t, report: reports[i]!, planned: r.perOrigin.find((o) => o.origin === t.url) }))
      .sort((a, b) => b.t.entries - a.t.entries);
    say(table([
      ['host', 'entries', 'sampled', 'OK in sample', 'true share (images + placeholders)', 'requests', '429s', 'bans'],
      ...rows.slice(0, 8).map(({ t, report, planned }) => [
        `host ${web.hosts.findIndex((h) => h.url === t.url)}`, String(t.entries), String(planned?.sampled ?? 0),
        planned?.here ? `${(100 * planned.here.okShare).toFixed(0)}%` : '—',
        `${(100 * (t.images + t.placeholders) / t.entries).toFixed(0)}%`,
        String(report.requests), String(report.crossings), String(report.bansTriggered),
      ]),
    ]));
    const sum = (f: (x: (typeof rows)[number]) => number): number => rows.reduce((n, x) => n + f(x), 0);
    const fetchable = sum((x) => x.t.images + x.t.placeholders);
    say();
    say(`predicted success rate ${(100 * r.prediction.predictedSuccessRate).toFixed(1)}%; the web holds ${(100 * fetchable / entryCount).toFixed(1)}% images ` +
      `(${(100 * sum((x) => x.t.images) / entryCount).toFixed(1)}% real, the rest placeholders)`);
    say(`sample ${r.sample.sampled} of ${entryCount} entries over ${r.origins} hosts in ${seconds.toFixed(1)} s: ` +
      `${sum((x) => x.report.requests)} requests, ${sum((x) => x.report.crossings)} above a host's limit, ${sum((x) => x.report.bansTriggered)} bans, peak ${Math.max(...rows.map((x) => x.report.peakConcurrency))} at once on one host`);
  }
} finally {
  dev?.kill('SIGKILL');
  if (dev) await once(dev, 'exit');
  await web.close();
  await rm(work, { recursive: true, force: true });
}
