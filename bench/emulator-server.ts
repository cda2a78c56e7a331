// The local cloud's S3/SQS emulator (fauxqs, in memory, on 127.0.0.1) in a process of its own, so
// that a benchmarked handler or tool never shares an event loop or a heap with it. Prints the
// endpoint as one line on stdout once it listens.
//
//   node bench/emulator-server.ts

import { startEmulator } from '../local-cloud/emulator.ts';
import { serveUntilStopped } from './measure.ts';

const emulator = await startEmulator();
serveUntilStopped(emulator.endpoint, () => emulator.stop());
