// moto's server (Python) for the tests that run on a second emulator: a separate process that
// applies the redrive policy itself and honours If-None-Match: * on PutObject.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

const motoInstalled = spawnSync('moto_server', ['-h'], { stdio: 'ignore' }).status === 0;
/** The `skip` of a moto test: false, or why it is skipped. */
export const motoSkip: string | false = motoInstalled ? false : 'moto_server is not installed (pip install "moto[server]"): the moto tests are skipped';

/** moto_server on a port the OS picks; ready once it says where it listens and answers there. */
export async function startMoto(): Promise<{ endpoint: string; process: ChildProcess }> {
  // Its own process group, so the kill at the end reaches the Python process behind any wrapper (pyenv shims).
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', '0'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let seen = '';
    const look = (chunk: Buffer): void => {
      seen += chunk.toString();
      const found = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen);
      if (found) resolve(found[1]!);
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', (code) => reject(new Error(`moto_server exited (${code}) before listening: ${seen}`)));
    child.once('error', reject);
  });
  // It prints the address after binding; one answered request confirms it serves.
  assert.equal((await fetch(`${endpoint}/moto-api/`)).ok, true);
  return { endpoint, process: child };
}

