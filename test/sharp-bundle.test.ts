// The fetch function's way of carrying sharp (infra/sharp-bundle.ts), proven on this machine: the
// resizer bundled by esbuild with sharp left out, sharp installed beside it for this machine's CPU
// the way the stack installs it for arm64, and an image resized by that code in a process that
// has no other node_modules in reach. (The stack test checks the arm64 packages in the fetch asset.)

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { build } from 'esbuild';
import sharp from 'sharp';
import { SHARP_EXTERNAL, sharpInstallCommand } from '../infra/sharp-bundle.ts';

const ROOT = resolve(import.meta.dirname, '..');
let dir: string | undefined;
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test(`the resizer bundled as the fetch function is, with sharp for ${process.arch} beside it, resizes an image`, async () => {
  const cpu = process.arch;
  assert.ok(cpu === 'x64' || cpu === 'arm64', `a CPU sharp ships for Linux: ${cpu}`);
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-sharp-'));
  // The options NodejsFunction passes esbuild for the functions (infra/constructs/functions.ts).
  await build({
    entryPoints: [join(ROOT, 'engine', 'resize.ts')],
    outfile: join(dir, 'index.mjs'),
    bundle: true, platform: 'node', format: 'esm', target: 'node24', minify: true, mainFields: ['module', 'main'],
    external: SHARP_EXTERNAL,
    banner: { js: "import { createRequire } from 'module';const require = createRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  const install = spawnSync('bash', ['-c', sharpInstallCommand(dir, cpu)], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(install.status, 0, install.stderr);
  await writeFile(join(dir, 'photo.jpg'), await sharp({ create: { width: 900, height: 600, channels: 3, background: '#3a7' } }).jpeg().toBuffer());
  await writeFile(join(dir, 'check.mjs'), [
    "import { readFileSync } from 'node:fs';",
    "import { shapeImage } from './index.mjs';",
    "const bytes = readFileSync('photo.jpg');",
    "const shaped = await shapeImage(bytes, 'jpeg', '', { resize: 300, mode: 'crop', format: 'webp', quality: 80 });",
    "process.stdout.write(JSON.stringify({ ok: shaped.ok, width: shaped.width, height: shaped.height, format: shaped.format, sharp: import.meta.resolve('sharp') }));",
  ].join('\n'));
  const result = await new Promise<{ code: number | null; out: string; err: string }>((done) => {
    const child = spawn(process.execPath, ['check.mjs'], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('close', (code) => done({ code, out, err }));
  });
  assert.equal(result.code, 0, result.err);
  const answer = JSON.parse(result.out) as { ok: boolean; width: number; height: number; format: string; sharp: string };
  assert.deepEqual({ ...answer, sharp: answer.sharp.startsWith(`file://${dir}/node_modules/sharp/`) }, { ok: true, width: 300, height: 300, format: 'webp', sharp: true });
});
