// The cloudfetch command line (started by cli/cloudfetch.js). Each command is a thin layer over the engine (engine/) and the cloud (aws/).

import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_FETCHER_OPTIONS } from '../engine/fetch/defaults.ts';
import type { FetcherOptions } from '../engine/fetch/fetcher.ts';
import { LAYOUTS, type Layout } from '../engine/keys.ts';
// The error alone, not the readers (engine/manifest/index.ts, ~25 ms): `inspect` imports them when it runs.
import { ManifestError } from '../engine/manifest/errors.ts';
import type { ManifestFormat } from '../engine/manifest/index.ts';
import { DEFAULT_PLACEHOLDER_THRESHOLD } from '../engine/same-bytes.ts';
import { OutsideFolderError } from '../engine/fs-store.ts';
import { printable } from '../engine/printable.ts';
import { openEarly } from '../aws/home/early-connections.ts';
import { DEFAULT_IMAGE_OPTIONS, MAX_RESIZE, OUTPUT_FORMATS, RESIZE_MODES, shapes, type ImageOptions, type OutputFormat, type ResizeMode } from '../engine/resize.ts';
import { CommandFailed, EXIT, ManifestRefused, UsageError } from './errors.ts';
// The cloud commands load the AWS SDK: imported when one of them runs, so `run` and `inspect`
// start fast and small.
import type { Target, TargetFlags } from './target.ts';
import pkg from '../package.json' with { type: 'json' };
import { byteSize, nonNegativeInteger, oneOf, percentage, placeholderThreshold, positiveInteger, positiveNumber, ratio, seconds } from './values.ts';

const FORMATS: readonly ManifestFormat[] = ['imaterialist', 'jsonl', 'csv', 'tsv', 'urls'];

const program = new Command('cloudfetch')
  .description('Fetch large lists of image URLs onto disk or into S3, every image accounted for.')
  .version(pkg.version)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const manifestOptions = (command: Command): Command =>
  command
    .option('--split <name>', 'split name (default: the manifest file name without extension)')
    .addOption(new Option('--format <format>', 'manifest format (default: detected)').argParser(oneOf('--format', FORMATS)))
    .option('--id-column <name>', 'CSV/TSV column holding the image id')
    .option('--url-column <name>', 'CSV/TSV column holding the URL')
    .option('--label-column <name>', 'CSV/TSV column holding the label');

imageOptions(fetchOptions(manifestOptions(
  program
    .command('run')
    .description('fetch every image of a manifest into a folder; re-run to resume')
    .argument('<manifest>', 'iMaterialist JSON, JSON Lines, CSV/TSV or a URL list (.gz too)'),
)))
  .option('-o, --out <dir>', 'output folder', 'data')
  .addOption(new Option('--layout <layout>', 'flat: <split>/<id>.<ext>; by-label: <split>/<label>/<id>.<ext>').default('flat').argParser(oneOf('--layout', LAYOUTS)))
  .addOption(new Option('-c, --concurrency <n>', 'images in flight at once').default(64).argParser(positiveInteger('--concurrency', 4096)))
  .addOption(new Option('--host-concurrency <n>', 'requests to one host (origin) at once at most; fewer when it pushes back').default(DEFAULT_FETCHER_OPTIONS.hostConcurrency).argParser(positiveInteger('--host-concurrency', 4096)))
  .addOption(new Option('--per-host <n>').hideHelp().argParser(positiveInteger('--per-host', 4096))) // the old name
  .addOption(new Option('--placeholder-threshold <n>', 'this many distinct URLs of one host with the same bytes are a placeholder, not kept (0: no check)').default(DEFAULT_PLACEHOLDER_THRESHOLD).argParser(placeholderThreshold('--placeholder-threshold')))
  .option('--json', 'print the summary as JSON on stdout')
  .option('-q, --quiet', 'nothing on stderr but errors')
  .action(async (manifest: string, flags: RunFlags) => {
    const controller = new AbortController();
    const onSignal = (): void => {
      if (controller.signal.aborted) process.exit(EXIT.interrupted);
      controller.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const { runCommand } = await import('./run.ts');
    const summary = await runCommand({
      manifest,
      out: flags.out,
      ...pick(flags, ['split', 'format', 'idColumn', 'urlColumn', 'labelColumn']),
      layout: flags.layout,
      concurrency: flags.concurrency,
      placeholderThreshold: flags.placeholderThreshold,
      ...imageFlags(flags),
      fetcher: { hostConcurrency: flags.perHost ?? flags.hostConcurrency, ...fetcherFlags(flags) },
      signal: controller.signal,
      log: process.stderr,
      quiet: flags.quiet === true,
    });
    if (flags.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    process.exitCode = summary.interrupted ? EXIT.interrupted : EXIT.ok;
  });

/** Resizing and re-encoding: the same flags for `run` and `plan` (which resizes its sample to measure the bytes). */
function imageOptions(command: Command): Command {
  return command
    .addOption(new Option('--resize <px>', 'resize so the largest side is at most this (never upscales)').argParser(positiveInteger('--resize', MAX_RESIZE)))
    .addOption(new Option('--resize-mode <mode>', 'keep: keep the aspect; crop: centre crop to a square; pad: pad to a square').default(DEFAULT_IMAGE_OPTIONS.mode).argParser(oneOf('--resize-mode', RESIZE_MODES)))
    .addOption(new Option('--image-format <format>', 'keep: the original format (re-encoded only when resized); jpeg or webp: every image re-encoded').default(DEFAULT_IMAGE_OPTIONS.format).argParser(oneOf('--image-format', OUTPUT_FORMATS)))
    .addOption(new Option('--quality <1-100>', 'JPEG, WebP and AVIF quality when re-encoding').default(DEFAULT_IMAGE_OPTIONS.quality).argParser(positiveInteger('--quality', 100)));
}

/** Resizing and re-encoding, when asked for: `run` then decodes every image (engine/resize.ts). */
function imageFlags(flags: ImageFlags): { image?: ImageOptions } {
  if (flags.resize === undefined && flags.resizeMode !== 'keep') throw new UsageError(`--resize-mode ${flags.resizeMode} needs --resize <px>: the side of the square`);
  const image: ImageOptions = { resize: flags.resize ?? null, mode: flags.resizeMode, format: flags.imageFormat, quality: flags.quality };
  return shapes(image) ? { image } : {};
}

/** What each image's fetch may do: the same flags for `run` and `plan`. */
function fetchOptions(command: Command): Command {
  return command
    .addOption(new Option('--timeout <seconds>', 'overall deadline per image, retries included').default(DEFAULT_FETCHER_OPTIONS.timeoutMs / 1000).argParser(seconds('--timeout')))
    .addOption(new Option('--retries <n>', 'further attempts after a transient failure (5xx, 429, reset, timeout)').default(DEFAULT_FETCHER_OPTIONS.retries).argParser(nonNegativeInteger('--retries', 20)))
    .addOption(new Option('--retry-delay <seconds>', 'first backoff before a retry; doubles each time, with jitter').default(DEFAULT_FETCHER_OPTIONS.retryBaseMs / 1000).argParser(seconds('--retry-delay')))
    .addOption(new Option('--max-bytes <size>', 'largest image accepted; K, M, G count in 1024s: 50MB = 50MiB').default(DEFAULT_FETCHER_OPTIONS.maxBytes, '50MiB').argParser(byteSize('--max-bytes')))
    .option('--user-agent <text>', 'User-Agent header (default: a current desktop browser)')
    .option('--referer <url>', 'Referer header, for sites that refuse hotlinks')
    .option('--allow-private-network', 'allow private and loopback addresses (local testing only; link-local and metadata addresses stay refused)');
}

function fetcherFlags(flags: FetchFlags): Partial<FetcherOptions> {
  return {
    timeoutMs: flags.timeout * 1000,
    retries: flags.retries,
    retryBaseMs: flags.retryDelay * 1000,
    maxBytes: flags.maxBytes,
    ...(flags.userAgent ? { userAgent: flags.userAgent } : {}),
    ...(flags.referer ? { referer: flags.referer } : {}),
    guard: { allowPrivateNetwork: flags.allowPrivateNetwork === true },
  };
}

manifestOptions(
  program
    .command('inspect')
    .description('what a manifest holds, before fetching: entries, ids, labels, hosts, invalid entries')
    .argument('<manifest>', 'iMaterialist JSON, JSON Lines, CSV/TSV or a URL list (.gz too)'),
)
  .addOption(new Option('--top <n>', 'how many hosts and labels to list').default(10).argParser(positiveInteger('--top', 1000)))
  .option('--json', 'print the report as JSON on stdout')
  .action(async (manifest: string, flags: InspectFlags) => {
    const [{ openManifestFile }, { formatInspectReport, inspectManifest }] = await Promise.all([import('./manifest-file.ts'), import('../engine/manifest/inspect.ts')]);
    const opened = await openManifestFile({ manifest, ...pick(flags, ['split', 'format', 'idColumn', 'urlColumn', 'labelColumn']) });
    await opened.manifest.scan();
    const report = await inspectManifest(opened.manifest, { topHosts: flags.top, topLabels: flags.top });
    process.stdout.write(flags.json ? JSON.stringify({ split: opened.split, ...report }, null, 2) + '\n' : formatInspectReport(report) + '\n');
  });

program
  .command('dev')
  .description('run the cloud on this machine: an S3/SQS emulator and the real Lambda handlers, until Ctrl-C')
  .option('--endpoint <url>', 'an S3/SQS-compatible endpoint instead of the embedded emulator (default: AWS_ENDPOINT_URL)')
  .option('--allow-private-network', 'let the fetch function reach private and loopback addresses (a local image server)')
  .addOption(new Option('--visibility-timeout <seconds>', 'seconds before a failed job is delivered again').default(60).argParser(positiveInteger('--visibility-timeout', 43_200)))
  .addOption(new Option('--fetch-concurrency <n>', 'fetch invocations at once (the stack runs cloudfetch:fetchMaxConcurrency, 20)').default(4).argParser(positiveInteger('--fetch-concurrency', 1000)))
  .option('--verbose', "the handlers' INFO logs (JSON)")
  .action(async (flags: { endpoint?: string; allowPrivateNetwork?: boolean; visibilityTimeout: number; fetchConcurrency: number; verbose?: boolean }) => {
    const { devCommand } = await import('./dev.ts');
    await devCommand({ ...flags, allowPrivateNetwork: flags.allowPrivateNetwork === true, verbose: flags.verbose === true });
  });

const targetOptions = (command: Command): Command =>
  command
    .option('--dev', 'use the local cloud started by `cloudfetch dev` in this folder')
    .option('--bucket <name>', 'the bucket (default: from cdk-outputs.json or the stack)')
    .option('--queue-url <url>', 'the jobs queue URL')
    .option('--dlq-url <url>', 'the dead-letter queue URL')
    .option('--stack <name>', 'the stack name (default: cloudfetch:stackName in cdk.json)')
    .option('--outputs <file>', 'outputs of `cdk deploy --outputs-file` (default: cdk-outputs.json when present)')
    .option('--region <region>', 'AWS region (default: your AWS configuration)')
    .option('--profile <name>', 'AWS profile')
    .option('--endpoint <url>', 'an S3/SQS-compatible endpoint (default: AWS_ENDPOINT_URL)');

async function withTarget<T>(flags: TargetFlags, work: (target: Target) => Promise<T>, sockets?: number): Promise<T> {
  const { awsUsageError, resolveTarget } = await import('./target.ts');
  const target = await resolveTarget(flags, sockets);
  try {
    return await work(target);
  } catch (error) {
    throw awsUsageError(error, { where: target.where });
  } finally {
    target.close();
  }
}

const json = (value: unknown): boolean => process.stdout.write(JSON.stringify(value, null, 2) + '\n');

imageOptions(fetchOptions(manifestOptions(targetOptions(
  program
    .command('plan')
    .description('before the first request: sample the manifest per origin, fetch the sample here (and from the deployed stack), storing nothing; predict success, time, bytes home and cost')
    .argument('<manifest>', 'iMaterialist JSON, JSON Lines, CSV/TSV or a URL list (.gz too)'),
))))
  .addOption(new Option('--sample <n>', 'images sampled in all, at most (the largest origins first)').default(1000).argParser(positiveInteger('--sample', 100_000)))
  .addOption(new Option('--share <percent>', "share of each origin's entries to sample").default(1).argParser(percentage('--share')))
  .addOption(new Option('--min-per-origin <n>', 'sample at least this many of each origin').default(5).argParser(positiveInteger('--min-per-origin', 500)))
  .addOption(new Option('--max-per-origin <n>', 'sample at most this many of each origin').default(100).argParser(positiveInteger('--max-per-origin', 500)))
  .addOption(new Option('--seed <n>', 'the same seed and manifest give the same sample').default(1).argParser(nonNegativeInteger('--seed', 2 ** 32 - 1)))
  .addOption(new Option('-c, --concurrency <n>', 'sampled images in flight at once from here').default(16).argParser(positiveInteger('--concurrency', 256)))
  .addOption(new Option('--per-origin <n>', 'sampled images of one origin in flight at once').default(2).argParser(positiveInteger('--per-origin', 16)))
  .addOption(new Option('--link <mbit/s>', 'your link home in Mbit/s, for the time home').default(50).argParser(positiveNumber('--link')))
  .addOption(new Option('--resize-ratio <r>', 'resized bytes ÷ original bytes, for the "resized" line (your assumption)').argParser(ratio('--resize-ratio')))
  .addOption(new Option('--functions <n>', 'fetch functions at once in the cloud (default: cloudfetch:fetchMaxConcurrency)').argParser(positiveInteger('--functions', 1000)))
  .addOption(new Option('--host-concurrency <n>', 'images of one origin at once across the cloud (default: cloudfetch:hostConcurrency)').argParser(positiveInteger('--host-concurrency', 256)))
  .option('--no-cloud', 'only from this machine, even when a stack is deployed')
  .option('--fetch-function <name>', 'the fetch function to probe from (default: FetchFunctionName of the stack)')
  .addOption(new Option('--top <n>', 'how many origins to list').default(20).argParser(positiveInteger('--top', 10_000)))
  .option('--json', 'print the plan as JSON on stdout')
  .option('-q, --quiet', 'nothing on stderr but errors')
  .action(async (manifest: string, flags: PlanFlags) => {
    const { cdkJsonSettings } = await import('../aws/settings.ts');
    const { formatPlan, planCommand } = await import('./plan.ts');
    if (flags.minPerOrigin > flags.maxPerOrigin) throw new UsageError(`--min-per-origin (${flags.minPerOrigin}) is above --max-per-origin (${flags.maxPerOrigin})`);
    const { image } = imageFlags(flags);
    if (image && flags.resizeRatio !== undefined) throw new UsageError('give --resize (the sample resized here) or --resize-ratio (your figure), not both');
    const stack = await cdkJsonSettings();
    const settings = { ...stack, ...(flags.functions ? { fetchMaxConcurrency: flags.functions } : {}) };
    const options = {
      manifest,
      ...pick(flags, ['split', 'format', 'idColumn', 'urlColumn', 'labelColumn']),
      sample: { share: flags.share / 100, minPerOrigin: flags.minPerOrigin, maxPerOrigin: flags.maxPerOrigin, total: flags.sample, seed: flags.seed },
      fetcher: fetcherFlags(flags),
      concurrency: flags.concurrency,
      perOrigin: flags.perOrigin,
      settings,
      hostConcurrency: flags.hostConcurrency ?? settings.hostConcurrency,
      linkMbps: flags.link,
      ...(flags.resizeRatio !== undefined ? { resizeRatio: flags.resizeRatio } : {}),
      ...(image ? { image } : {}),
      log: process.stderr,
      quiet: flags.quiet === true,
    };
    const { cloudProbe, deployedStack } = await import('./plan-cloud.ts');
    const report = flags.cloud && deployedStack(flags)
      ? await withTarget(flags, async (t) => planCommand({
        ...options, cloud: await cloudProbe(t, { ...(flags.fetchFunction ? { functionName: flags.fetchFunction } : {}), concurrency: flags.concurrency, perOrigin: flags.perOrigin }),
      }))
      : await planCommand(options);
    process.stdout.write(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatPlan(report, flags.top) + '\n');
  });

targetOptions(
  program
    .command('submit')
    .description('upload a manifest to the deployed stack (or the local cloud) and wait until it is split into jobs')
    .argument('<manifest>', 'iMaterialist JSON, JSON Lines, CSV/TSV or a URL list (.gz too)'),
)
  .option('--split <name>', 'split name (default: the file name without extension)')
  .option('--no-check', 'skip reading the manifest here before the upload')
  .addOption(new Option('--wait <seconds>', 'how long to wait for the split (0: do not wait)').default(300).argParser(nonNegativeInteger('--wait', 3600)))
  .option('--dry-run', 'check the manifest and say what would be uploaded, upload nothing')
  .option('--json', "print the split's status as JSON on stdout")
  .action(async (manifest: string, flags: TargetFlags & { split?: string; check: boolean; wait: number; dryRun?: boolean; json?: boolean }) => {
    const { submitCommand } = await import('./submit.ts');
    const result = await withTarget(flags, (t) => submitCommand(t, {
      manifest, ...(flags.split ? { split: flags.split } : {}), check: flags.check, wait: flags.wait, dryRun: flags.dryRun === true, log: process.stderr,
    }));
    if (flags.json) json(result);
  });

targetOptions(program.command('status').description('per split: entries, queued, stored, failed; the queue and the dead-letter queue'))
  .option('--split <name>', 'only this split')
  .option('--watch', 'follow the queue until it drains, with rate and ETA')
  .addOption(new Option('--interval <seconds>', 'seconds between looks in --watch').default(5).argParser(positiveInteger('--interval', 3600)))
  .option('--counts', 'exact stored and failed counts per split (lists every key: slower)')
  .option('--json', 'print the status as JSON on stdout')
  .action(async (flags: TargetFlags & { split?: string; watch?: boolean; interval: number; counts?: boolean; json?: boolean }) => {
    const { formatStatus, statusReport, watchStatus } = await import('./status.ts');
    await withTarget(flags, async (t) => {
      const scope = flags.split ? { split: flags.split } : {};
      if (flags.watch) await watchStatus(t, { ...scope, intervalMs: flags.interval * 1000, log: process.stderr });
      const report = await statusReport(t, { ...scope, counts: flags.counts === true });
      if (flags.json) json(report);
      else process.stdout.write(formatStatus(report, t) + '\n');
    });
  });

targetOptions(
  program
    .command('sync')
    .description('bring images and index tables home: resumable, skips files already here')
    .argument('<dir>', 'local folder'),
)
  .option('--split <name>', 'only this split (default: every split)')
  .addOption(new Option('--layout <layout>', 'flat: <split>/<id>.<ext>; by-label: <split>/<label>/<id>.<ext>').default('flat').argParser(oneOf('--layout', LAYOUTS)))
  .addOption(new Option('-c, --concurrency <n>', 'downloads at once, pinned (default: 64 at first, more while the rate grows, up to 256)').argParser(positiveInteger('--concurrency', 1024)))
  .addOption(new Option('--bwlimit <rate>', 'bytes per second for all downloads together, e.g. 10M (K, M, G count in 1024s)').argParser(byteSize('--bwlimit')))
  .option('-q, --quiet', 'no progress output')
  .option('--dry-run', 'say what would be copied (files and bytes), write nothing')
  .option('--verify', 're-hash local files against the index\'s sha256 and copy damaged ones again (without it, a file of the right size is kept)')
  .option('--packed', 'bring the split\'s tar shards (see pack) in ranges over -c connections, then what no shard holds object by object')
  .option('--json', 'print what was copied as JSON on stdout')
  .action(async (dir: string, flags: TargetFlags & { split?: string; layout: Layout; concurrency?: number; bwlimit?: number; quiet?: boolean; dryRun?: boolean; verify?: boolean; packed?: boolean; json?: boolean }) => {
    // Before the SDK and undici load: the status read's connection and the first listings' (cli/sync.ts: 1 + 3, 1 + 6 with --split).
    const endpoint = flags.dev ? undefined : flags.endpoint ?? process.env.AWS_ENDPOINT_URL;
    if (endpoint) openEarly(endpoint, flags.split ? 7 : 4);
    const { syncCommand } = await import('./sync.ts');
    const dryRun = flags.dryRun === true;
    const results = await withTarget(flags, (t) => syncCommand(t, {
      dir, ...(flags.split ? { split: flags.split } : {}), layout: flags.layout, ...(flags.concurrency ? { concurrency: flags.concurrency } : {}), ...(flags.bwlimit ? { bwlimit: flags.bwlimit } : {}),
      progress: !flags.quiet, dryRun, verify: flags.verify === true, packed: flags.packed === true, log: process.stderr,
    }), flags.concurrency ?? 64);
    if (flags.json) json(results.map(({ split, home, seconds, packed }) => ({ split, ...(dryRun ? { dryRun } : {}), ...home.images, counts: home.counts, index: home.indexFile, seconds, ...(packed ? { packed } : {}) })));
  });

targetOptions(
  program
    .command('pack')
    .description('pack a split\'s images into tar shards in the bucket (packs/<split>/) for sync --packed: the stack\'s pack function, invoked until done')
    .argument('<split>', 'the split to pack'),
)
  .addOption(new Option('--shard-size <size>', 'bytes per shard, K, M, G counting in 1024s').default(256 * 1024 * 1024, '256M').argParser(byteSize('--shard-size')))
  .option('--repack', 'pack anew, even if packed already (images stored since are then in the shards)')
  .action(async (split: string, flags: TargetFlags & { shardSize: number; repack?: boolean }) => {
    const { packCommand } = await import('./pack.ts');
    await withTarget(flags, (t) => packCommand(t, { split, shardBytes: flags.shardSize, repack: flags.repack === true, log: process.stderr }));
  });

targetOptions(program.command('report').description('what is missing and why: by reason, host and HTTP status; CSV and HTML'))
  .option('--split <name>', 'only this split')
  .option('--csv <file>', 'write the missing images (URL, label, reason) as CSV')
  .option('--html <file>', 'write one self-contained page: hosts, reasons with example URLs, the queue')
  .addOption(new Option('--top <n>', 'how many hosts to list').default(20).argParser(positiveInteger('--top', 10_000)))
  .option('--json', 'print the report as JSON on stdout')
  .action(async (flags: TargetFlags & { split?: string; csv?: string; html?: string; top: number; json?: boolean }) => {
    const { buildReport, formatReport, writeHtmlReport } = await import('./report.ts');
    await withTarget(flags, async (t) => {
      const report = await buildReport(t, { ...(flags.split ? { split: flags.split } : {}), ...(flags.csv ? { csv: flags.csv } : {}), top: flags.top });
      if (flags.html) await writeHtmlReport(flags.html, report, t);
      if (flags.json) json(report.splits);
      else process.stdout.write(formatReport(report, t) + '\n');
      if (flags.csv) process.stderr.write(`Missing images: ${flags.csv}\n`);
      if (flags.html) process.stderr.write(`Report page: ${flags.html}\n`);
    });
  });

targetOptions(program.command('retry').description('send dead-letter jobs back to the queue, and recorded failures of chosen reasons'))
  .option('--split <name>', 'only this split (for --reasons)')
  .option('--reasons <list>', 'comma-separated failure reasons to send again, e.g. http-403,timeout', (v: string) => v.split(',').map((r) => r.trim()).filter(Boolean), [] as string[])
  .option('--no-dead-letter', 'leave the dead-letter queue alone')
  .option('--dry-run', 'count what would be sent, send nothing')
  .option('--json', 'print the counts as JSON on stdout')
  .action(async (flags: TargetFlags & { split?: string; reasons: string[]; deadLetter: boolean; dryRun?: boolean; json?: boolean }) => {
    const { formatRetry, retryCommand } = await import('./retry.ts');
    const result = await withTarget(flags, (t) => retryCommand(t, { ...(flags.split ? { split: flags.split } : {}), reasons: flags.reasons, deadLetter: flags.deadLetter, dryRun: flags.dryRun === true }));
    if (flags.json) json(result);
    else process.stderr.write(formatRetry(result) + '\n');
  });

interface ManifestFlags {
  split?: string;
  format?: ManifestFormat;
  idColumn?: string;
  urlColumn?: string;
  labelColumn?: string;
}

interface FetchFlags {
  timeout: number;
  retries: number;
  retryDelay: number;
  maxBytes: number;
  userAgent?: string;
  referer?: string;
  allowPrivateNetwork?: boolean;
}

interface ImageFlags {
  resize?: number;
  resizeMode: ResizeMode;
  imageFormat: OutputFormat;
  quality: number;
}

interface RunFlags extends ManifestFlags, FetchFlags, ImageFlags {
  out: string;
  layout: Layout;
  concurrency: number;
  hostConcurrency: number;
  perHost?: number;
  placeholderThreshold: number;
  json?: boolean;
  quiet?: boolean;
}

interface PlanFlags extends ManifestFlags, FetchFlags, ImageFlags, TargetFlags {
  sample: number;
  share: number;
  minPerOrigin: number;
  maxPerOrigin: number;
  seed: number;
  concurrency: number;
  perOrigin: number;
  link: number;
  resizeRatio?: number;
  functions?: number;
  hostConcurrency?: number;
  cloud: boolean;
  fetchFunction?: string;
  top: number;
  json?: boolean;
  quiet?: boolean;
}

interface InspectFlags extends ManifestFlags {
  top: number;
  json?: boolean;
}

function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}

try {
  await program.parseAsync();
} catch (error) {
  // Imported only when a command ends in an error: the commands that succeed do not load engine/plan.ts.
  const { MultiLabelError } = await import('../engine/plan.ts');
  if (error instanceof CommanderError) {
    // Commander has printed its message already; help and version are not failures.
    process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else if (error instanceof UsageError || error instanceof ManifestError || error instanceof MultiLabelError || error instanceof ManifestRefused) {
    // Messages quote manifests, servers and the bucket: no control character reaches the terminal.
    process.stderr.write(`cloudfetch: ${printable(error.message, 2000)}\n`);
    process.exitCode = EXIT.usage;
  } else if (error instanceof OutsideFolderError) {
    process.stderr.write(`cloudfetch: ${error.message}\n`);
    process.exitCode = EXIT.failure;
  } else if (error instanceof CommandFailed) {
    process.stderr.write(`cloudfetch: ${printable(error.message, 2000)}\n`);
    process.exitCode = EXIT.failure;
  } else {
    const debug = Boolean(process.env.CLOUDFETCH_DEBUG);
    const detail = error instanceof Error ? ((debug ? error.stack : undefined) ?? printable(error.message, 2000)) : printable(String(error), 2000);
    process.stderr.write(`cloudfetch: unexpected error: ${detail}\n`);
    process.exitCode = EXIT.failure;
  }
}
