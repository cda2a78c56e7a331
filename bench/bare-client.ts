// The bare Node client of bench/cpu-floor.ts, in a process of its own: undici's request() on an
// Agent with N connections, each body read and dropped. No files, guard, hashing or index: the
// least CPU per image any Node client built on undici spends. Prints {"ok":…,"bytes":…}.
//
//   node bench/bare-client.ts URL-LIST CONNECTIONS

import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';

const urls = (await readFile(process.argv[2]!, 'utf8')).split('\n').filter(Boolean);
const connections = Number(process.argv[3]);
const agent = new Agent({ connections });
let next = 0;
let ok = 0;
let bytes = 0;
const loop = async (): Promise<void> => {
  while (next < urls.length) {
    const { statusCode, body } = await request(urls[next++]!, { dispatcher: agent });
    for await (const chunk of body as AsyncIterable<Buffer>) bytes += chunk.length;
    if (statusCode === 200) ok++;
  }
};
await Promise.all(Array.from({ length: connections }, loop));
await agent.close();
process.stdout.write(JSON.stringify({ ok, bytes }) + '\n');
