#!/usr/bin/env node
// The cloudfetch command. Plain JavaScript, so that whatever Node a user's PATH has can start it:
// on Node >= 22.19 (type stripping, and undici 8's floor) it runs the TypeScript program here;
// on an older Node it hands over to the Node 24 that `npm ci` put in node_modules/node.
// Node's compile cache (NODE_DISABLE_COMPILE_CACHE=1 turns it off) keeps stripped and compiled
// modules between runs: start-up falls from about 0.17 s to 0.09 s; it covers only modules
// loaded after it is enabled, hence the dynamic import.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

const MINIMUM = [22, 19];
const [major, minor] = process.versions.node.split('.').map(Number);

if (major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1])) {
  module.enableCompileCache?.();
  await import('./program.ts');
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    const project = fileURLToPath(new URL('..', import.meta.url));
    process.stderr.write(`cloudfetch: needs Node.js ${MINIMUM.join('.')} or newer (this is ${process.version}); run \`npm ci\` in ${project} to bring its own Node 24\n`);
    process.exit(2);
  }
  const child = spawn(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  // On a terminal, Ctrl-C reaches the child through the process group already: passing it on
  // would make it a second Ctrl-C (quit at once, no summary). Signals sent to this process alone
  // are passed on. Either way the child decides when to stop, and its exit code is ours.
  const terminal = process.stdin.isTTY || process.stderr.isTTY;
  process.on('SIGINT', () => terminal || child.kill('SIGINT'));
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('error', (error) => {
    process.stderr.write(`cloudfetch: could not start ${bundled}: ${error.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
}
