// The bare Node client of bench/cpu-floor.ts, in a process of its own: undici's request() on an
// Agent with N connections, each body read and dropped. No files, guard, hashing or index: the
// least CPU per image any Node client built on undici spends. With DIR, each body is written to
// DIR/<n> (fs.writeFile, callback API) as aria2c writes its files: the least for a client that
// stores. Prints {"ok":…,"bytes":…}.
//
// --lean: the leanest undici client found: dispatch() with a handler that collects the chunks (no
// request(), response stream or async iterator), every URL split into origin and path before the
// first request, and each body written with one synchronous call (writeFileSync): cloudfetch's
// own choices, without the rest. (undici's header and body timers, 0 to turn them off, made no
// difference measured here.)
//
//   node bench/bare-client.ts URL-LIST CONNECTIONS [DIR] [--lean]

import { writeFile, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Agent, request, type Dispatcher } from 'undici';

const args = process.argv.slice(2);
const lean = args.includes('--lean');
const [list, connectionsText, dir] = args.filter((a) => a !== '--lean');
const urls = (await readFile(list!, 'utf8')).split('\n').filter(Boolean);
const connections = Number(connectionsText);
const write = promisify(writeFile);
const agent = new Agent({ connections });
let next = 0;
let ok = 0;
let bytes = 0;

/** One GET at undici's dispatch level: status and the body's chunks, nothing per request but the handler. */
function get(origin: string, path: string): Promise<{ statusCode: number; chunks: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let statusCode = 0;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: () => {},
      onResponseStart: (_controller, status) => void (statusCode = status),
      onResponseData: (_controller, chunk) => void chunks.push(chunk),
      onResponseEnd: () => resolve({ statusCode, chunks }),
      onResponseError: (_controller, error) => reject(error),
    };
    agent.dispatch({ origin, path, method: 'GET' }, handler);
  });
}

const loop = async (): Promise<void> => {
  while (next < urls.length) {
    const n = next++;
    const chunks: Buffer[] = [];
    let status: number;
    if (lean) {
      const url = targets![n]!;
      const got = await get(url.origin, url.path);
      status = got.statusCode;
      for (const chunk of got.chunks) chunks.push(chunk);
      for (const chunk of chunks) bytes += chunk.length;
    } else {
      const { statusCode, body } = await request(urls[n]!, { dispatcher: agent });
      status = statusCode;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (dir) chunks.push(chunk);
      }
    }
    if (dir) {
      const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (lean) writeFileSync(join(dir, String(n)), data);
      else await write(join(dir, String(n)), data);
    }
    if (status === 200) ok++;
  }
};
const targets = lean ? urls.map((text) => ({ origin: new URL(text).origin, path: `${new URL(text).pathname}${new URL(text).search}` })) : null;
await Promise.all(Array.from({ length: connections }, loop));
await agent.close();
process.stdout.write(JSON.stringify({ ok, bytes }) + '\n');
