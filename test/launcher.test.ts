// The command's entry point starts on whatever Node the user's PATH has, not only the project's.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { delimiter, sep } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { CLI } from './support/cli.ts';
import pkg from '../package.json' with { type: 'json' };

const run = promisify(execFile);

test("the machine's own node (npm's node_modules/.bin left off PATH) runs cloudfetch", async () => {
  const path = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.endsWith(`node_modules${sep}.bin`)).join(delimiter);
  let machineNode: string;
  try {
    machineNode = (await run('sh', ['-c', 'command -v node'], { env: { PATH: path } })).stdout.trim();
  } catch {
    machineNode = process.execPath; // no other node on this machine: the project's own must do
  }
  const { stdout } = await run(machineNode, [CLI, '--version'], { env: { PATH: path } });
  assert.equal(stdout.trim(), pkg.version);
  const help = await run(machineNode, [CLI, 'inspect', '--help'], { env: { PATH: path } });
  assert.match(help.stdout, /Usage: cloudfetch inspect/);
});
