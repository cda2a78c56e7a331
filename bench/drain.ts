// Draining a manifest whose images fail for a while: N entries, a share of them failing more often
// than one fetch invocation retries (so only a later delivery can store them), through the local
// cloud with the stack's settings, visibility timeout included. Prints how long the queue took to
// drain and checks that every image ended stored.
//
//   npm run bench:drain -- [--entries 2000] [--flaky-percent 10] [--failures 5]

import { PutObjectCommand } from '@aws-sdk/client-s3';
import { parseArgs } from 'node:util';
import { queuedSplits, splitRows } from '../aws/home/cloud-state.ts';
import { cdkJsonSettings, visibilityTimeoutSeconds } from '../aws/settings.ts';
import { startOrigin } from '../local-cloud/origin.ts';
import { startDevCloud } from '../local-cloud/dev-cloud.ts';

const { values } = parseArgs({
  options: { entries: { type: 'string', default: '2000' }, 'flaky-percent': { type: 'string', default: '10' }, failures: { type: 'string', default: '5' } },
});
const entries = Number(values.entries);
const flakyEvery = Math.round(100 / Number(values['flaky-percent']));
const failures = Number(values.failures);

const origin = await startOrigin({ latencyMs: 20 });
// The stack's own visibility timeout (the dev cloud shortens it): without per-message delays every
// redelivery would wait this long.
const visibility = visibilityTimeoutSeconds(await cdkJsonSettings());
const dev = await startDevCloud({ allowPrivateNetwork: true, visibilityTimeoutSeconds: visibility, logLevel: 'SILENT', log: () => {} });
const images = Array.from({ length: entries }, (_, i) => ({
  image_id: i + 1,
  url: [i % flakyEvery === 0 ? `${origin.url}/flaky/d${i}.jpg?fail=${failures}&code=503` : `${origin.url}/img/d${i}.jpg`],
}));
const flaky = images.filter((_, i) => i % flakyEvery === 0).length;
const started = Date.now();
try {
  await dev.s3.send(new PutObjectCommand({ Bucket: dev.cloud.bucket, Key: 'manifests/drain.json', Body: JSON.stringify({ images }) }));
  await dev.cloud.idle();
  const seconds = (Date.now() - started) / 1000;
  let stored = 0;
  for (const { split } of await queuedSplits(dev.s3, dev.cloud.bucket)) for await (const row of splitRows(dev.s3, dev.cloud.bucket, split)) if (row.status === 'fetched') stored++;
  if (stored !== entries) throw new Error(`only ${stored} of ${entries} images stored`);
  console.log(`${entries} entries (${flaky} failing ${failures} times first), visibility timeout ${visibility} s: drained in ${seconds.toFixed(1)} s, all stored`);
} finally {
  await dev.stop();
  await origin.close();
}
