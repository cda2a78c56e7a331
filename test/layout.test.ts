// The shape of the code: each top-level folder says what runs it, and every import points down
// (engine ← aws ← infra, local-cloud ← cli ← test, bench). A move that breaks it fails here.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Layer of a file: its top folder, with aws/ split into its shared part, lambda/ and home/. */
function layerOf(file: string): string {
  const parts = relative(ROOT, file).split(sep);
  if (parts[0] === 'aws' && (parts[1] === 'lambda' || parts[1] === 'home')) return `aws/${parts[1]}`;
  return parts.length === 1 ? '.' : parts[0]!;
}

// What each layer may import from the project (itself always).
const ALLOWED: Record<string, readonly string[]> = {
  engine: [],
  aws: ['engine'],
  'aws/lambda': ['engine', 'aws'],
  'aws/home': ['engine', 'aws'],
  infra: ['engine', 'aws'],
  'local-cloud': ['engine', 'aws', 'aws/lambda', 'aws/home'],
  cli: ['engine', 'aws', 'aws/home', 'local-cloud', '.'],
  test: ['engine', 'aws', 'aws/lambda', 'aws/home', 'infra', 'local-cloud', 'cli', 'bench', '.'],
  bench: ['engine', 'aws', 'aws/lambda', 'aws/home', 'local-cloud', 'cli', '.'],
};

// Packages that tie code to AWS, Lambda or CDK: never in the engine.
const CLOUD_PACKAGES = /^(@aws-sdk\/|@aws-lambda-powertools\/|@smithy\/|aws-cdk-lib|aws-cdk$|constructs$|cdk-nag|aws-lambda$|fauxqs)/;

async function* sources(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.') || entry.name === 'cdk.out') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (/\.(ts|js)$/.test(entry.name)) yield path;
  }
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** What is wrong with one file's imports, one line each. */
function violations(file: string, text: string): string[] {
  const layer = layerOf(file);
  const allowed = ALLOWED[layer];
  if (!allowed) return [];
  const wrong: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const specifier = (match[1] ?? match[2])!;
    const where = `${relative(ROOT, file)} imports ${specifier}`;
    if (!specifier.startsWith('.')) {
      if (layer === 'engine' && CLOUD_PACKAGES.test(specifier)) wrong.push(`${where} (the engine runs everywhere: no AWS)`);
      continue;
    }
    const target = layerOf(resolve(dirname(file), specifier));
    if (target !== layer && !allowed.includes(target)) wrong.push(`${where} (${layer} may import ${allowed.join(', ') || 'only itself'})`);
  }
  return wrong;
}

test('every import points down the stack, and the engine knows nothing of AWS', async () => {
  const wrong: string[] = [];
  let files = 0;
  for await (const file of sources(ROOT)) {
    if (!ALLOWED[layerOf(file)] || file === fileURLToPath(import.meta.url)) continue;
    files++;
    wrong.push(...violations(file, await readFile(file, 'utf8')));
  }
  assert.ok(files > 50, `only ${files} files seen: is ROOT right?`);
  assert.deepEqual(wrong, []);
});

test('the check catches an upward import and an AWS package in the engine', () => {
  const engineFile = join(ROOT, 'engine', 'example.ts');
  assert.equal(violations(engineFile, "import { S3Client } from '@aws-sdk/client-s3';\nimport { PREFIX } from '../aws/bucket.ts';\n").length, 2);
  const lambdaFile = join(ROOT, 'aws', 'lambda', 'example.ts');
  assert.equal(violations(lambdaFile, "const cloud = await import('../../local-cloud/cloud.ts');\n").length, 1);
  assert.deepEqual(violations(lambdaFile, "import { PREFIX } from '../bucket.ts';\nimport type { Job } from '../../engine/job.ts';\n"), []);
});
