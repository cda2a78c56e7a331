// The bare Node client of bench/cpu-floor.ts, in a process of its own: undici's request() on an
// Agent with N connections, each body read and dropped. No files, guard, hashing or index: the
// least CPU per image any Node client built on undici spends. With DIR, each body is written to
// DIR/<n> (fs.writeFile, callback API) as aria2c writes its files: the least for a client that
// stores. Prints {"ok":…,"bytes":…}.
//
//   node bench/bare-client.ts URL-LIST CONNECTIONS [DIR]

import { writeFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';

const urls = (await readFile(process.argv[2]!, 'utf8')).split('\n').filter(Boolean);
const connections = Number(process.argv[3]);
const dir = process.argv[4];
const write = promisify(writeFile);
const agent = new Agent({ connections });
let next = 0;
let ok = 0;
let bytes = 0;
const loop = async (): Promise<void> => {
  while (next < urls.length) {
    const n = next++;
    const { statusCode, body } = await request(urls[n]!, { dispatcher: agent });
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (dir) chunks.push(chunk);
    }
    if (dir) await write(join(dir, String(n)), chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    if (statusCode === 200) ok++;
  }
};
await Promise.all(Array.from({ length: connections }, loop));
await agent.close();
process.stdout.write(JSON.stringify({ ok, bytes }) + '\n');
