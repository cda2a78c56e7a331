// sharp inside the fetch function's asset. esbuild cannot bundle a native addon, so `sharp` stays
// an import of the bundle and its npm packages go beside it: sharp and the prebuilt libvips for the
// function's platform (linux-arm64, glibc), installed from the npm registry with npm's --cpu/--os/
// --libc whatever machine runs `cdk synth` (npm's cache makes later synths offline).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

/** The sharp the project runs locally, so `run` and the function resize alike. */
export const SHARP_VERSION = (JSON.parse(readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('sharp')), '..', 'package.json'), 'utf8')) as { version: string }).version;

/** Left out of the esbuild bundle: loaded from the asset's node_modules. */
export const SHARP_EXTERNAL = ['sharp'];

/** The Lambda platform's packages that carry the native code, as npm names them. */
export const sharpNativePackages = (cpu: string): string[] => [`@img/sharp-linux-${cpu}`, `@img/sharp-libvips-linux-${cpu}`];

/**
 * The shell command installing sharp for linux-`cpu` (glibc) into `dir`/node_modules. Only errors
 * are printed (npm's summary goes to /dev/null), so a synth prints CDK's lines alone. Install
 * scripts are skipped: sharp's only builds from source when no prebuilt package fits.
 */
export function sharpInstallCommand(dir: string, cpu: 'arm64' | 'x64'): string {
  return [
    'npm', 'install', `--prefix=${shellQuote(dir)}`, '--no-save', '--no-package-lock', '--omit=dev', '--ignore-scripts',
    '--os=linux', `--cpu=${cpu}`, '--libc=glibc', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error',
    `sharp@${SHARP_VERSION}`, '>/dev/null',
  ].join(' ');
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
