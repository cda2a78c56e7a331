// The loopback image origin in a process of its own, so that a benchmarked client never shares
// an event loop with it. Prints the origin's URL as one line on stdout once it listens.
//
//   node bench/origin-server.ts [--latency 50]

import { parseArgs } from 'node:util';
import { startOrigin } from '../local-cloud/origin.ts';
import { serveUntilStopped } from './measure.ts';

const { values } = parseArgs({ options: { latency: { type: 'string', default: '50' } } });
const latencyMs = Number(values.latency);
if (!Number.isFinite(latencyMs) || latencyMs < 0) {
  process.stderr.write(`origin-server: --latency takes milliseconds (0 or more), not "${values.latency}"\n`);
  process.exit(2);
}

const origin = await startOrigin({ latencyMs });
serveUntilStopped(origin.url, () => origin.close());
