// The command's entry point starts on whatever Node the user's PATH has, not only the project's.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, sep } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { sampleImage } from '../local-cloud/origin.ts';
import { CLI, startCli } from './support/cli.ts';
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

// `run` must start with a small young generation (the bulk of its peak RSS otherwise), and stay
// the process the caller started: same pid, so Ctrl-C, exit codes and the terminal are unchanged.
test('run replaces itself with a Node started with --max-semi-space-size, unless the user chose one', { skip: !existsSync('/proc/self/cmdline') }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cloudfetch-launcher-'));
  let serving: number | undefined;
  const seen: string[][] = [];
  // Read while the request is in hand: the process answering is the one that runs the program.
  const server = createServer((request, response) => {
    seen.push(readFileSync(`/proc/${serving}/cmdline`, 'utf8').split('\0').filter(Boolean));
    response.writeHead(200, { 'content-type': 'image/jpeg' }).end(sampleImage('launcher'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    const manifest = join(dir, 'urls.txt');
    await writeFile(manifest, `http://127.0.0.1:${port}/a.jpg\n`);
    for (const [env, expected] of [[{}, '--max-semi-space-size=16'], [{ NODE_OPTIONS: '--max-semi-space-size=8' }, null]] as const) {
      const out = join(dir, `out-${seen.length}`);
      const started = startCli(['run', manifest, '--out', out, '--allow-private-network', '--quiet', '--json'], { env: { ...process.env, ...env } });
      serving = started.child.pid;
      const result = await started.done;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(JSON.parse(result.stdout).fetched, 1);
      const argv = seen.at(-1)!;
      assert.ok(argv.includes(CLI) && argv.includes('run'), argv.join(' '));
      const flags = argv.filter((arg) => arg.includes('semi-space'));
      assert.deepEqual(flags, expected ? [expected] : [], argv.join(' '));
    }
    assert.equal(seen.length, 2);
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
