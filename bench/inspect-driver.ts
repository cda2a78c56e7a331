// Reads one manifest the way `cloudfetch inspect` does (open, scan, inspect) and prints the report
// and the time taken; bench/inspect-memory.sh runs it under /usr/bin/time -v for peak memory.
//
//   node bench/inspect-driver.ts FILE [--json]

import { fileSource, openManifest } from '../engine/manifest/index.ts';
import { formatInspectReport, inspectManifest } from '../engine/manifest/inspect.ts';

const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: node bench/inspect-driver.ts FILE [--json]\n');
  process.exit(2);
}
const started = performance.now();
const manifest = await openManifest(fileSource(path));
const { entries } = await manifest.scan();
const scanned = performance.now();
const report = await inspectManifest(manifest);
const finished = performance.now();
const seconds = (finished - started) / 1000;
process.stdout.write(process.argv.includes('--json') ? JSON.stringify(report) + '\n' : formatInspectReport(report) + '\n\n');
process.stdout.write(
  `scan ${((scanned - started) / 1000).toFixed(2)} s, inspect ${((finished - scanned) / 1000).toFixed(2)} s, ` +
    `total ${seconds.toFixed(2)} s, ${Math.round(entries / seconds).toLocaleString('en-US')} entries/s\n`,
);
