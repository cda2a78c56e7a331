#!/usr/bin/env node
// The cloudfetch command. Plain JavaScript, so that whatever Node a user's PATH has can start it:
// on Node >= 22.19 (type stripping, and undici 8's floor) it runs the TypeScript program here;
// on an older Node it hands over to the Node 24 that `npm ci` put in node_modules/node.
// Node's compile cache (NODE_DISABLE_COMPILE_CACHE=1 turns it off) keeps stripped and compiled
// modules between runs: start-up falls from about 0.17 s to 0.09 s; it covers only modules
// loaded after it is enabled, hence the dynamic import.
// `run` starts with a small young generation (RUN_FLAGS): its live heap is ~25 MB at any manifest
// size, and V8's default semi-spaces (up to 64 MB each here) were most of its peak RSS. Heap sizes
// are fixed when Node starts, so this Node replaces itself (execve: same process id, terminal,
// signals and exit code) before loading anything, unless the user chose a size themselves.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

const MINIMUM = [22, 19];
const [major, minor] = process.versions.node.split('.').map(Number);
// 16 MB: 196 MB peak at 100k entries instead of 280–307, same CPU per image; 8 and 4 cost more CPU.
const RUN_FLAGS = ['--max-semi-space-size=16'];
const script = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const sized = /--max[-_]semi[-_]space[-_]size/.test([...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' '));
// `sync` too: 208 -> 187 MB peak for 2,000 x 30 KiB, same CPU; the re-exec costs ~50 ms of start.
const nodeFlags = (args[0] === 'run' || args[0] === 'sync') && !sized ? RUN_FLAGS : [];

if (major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1])) {
  if (nodeFlags.length > 0 && typeof process.execve === 'function') {
    try {
      process.execve(process.execPath, [process.execPath, ...process.execArgv, ...nodeFlags, script, ...args]);
    } catch {
      // Not replaced (no execve on Windows, or the system refused): run as we are, heap as it is.
    }
  }
  module.enableCompileCache?.();
  await import('./program.ts');
} else {
  const bundled = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    const project = fileURLToPath(new URL('..', import.meta.url));
    process.stderr.write(`cloudfetch: needs Node.js ${MINIMUM.join('.')} or newer (this is ${process.version}); run \`npm ci\` in ${project} to bring its own Node 24\n`);
    process.exit(2);
  }
  const child = spawn(bundled, [...nodeFlags, script, ...args], { stdio: 'inherit' });
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
