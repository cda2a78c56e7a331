// The local cloud's S3/SQS emulator (fauxqs, in memory, on 127.0.0.1) in a process of its own, so
// that a benchmarked handler or tool never shares an event loop or a heap with it. Prints the
// endpoint as one line on stdout once it listens.
//
//   node bench/emulator-server.ts [--host ADDRESS]   (default 127.0.0.1; bench/link.ts listens on
//                                                    a namespace's own address)

import { parseArgs } from 'node:util';
import { startEmulator } from '../local-cloud/emulator.ts';
import { serveUntilStopped } from './measure.ts';

const { values } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' } } });
const emulator = await startEmulator({ host: values.host });
serveUntilStopped(emulator.endpoint, () => emulator.stop());
