// A timeline of one sync: loaded with `node --import bench/sync-trace.ts cli/cloudfetch.js sync …`
// and SYNC_TRACE=<file>, it records from Node's and undici's diagnostics channels when each
// request starts, when its answer's headers and its last byte come, and on which connection, and
// writes them to <file> on exit; `node bench/sync-trace.ts <file>` prints where the time went.
// bench/link.ts --trace uses it. Nothing of the sync itself is changed.

import { subscribe } from 'node:diagnostics_channel';
import { readFileSync, writeFileSync } from 'node:fs';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** A request: times in ms since the process started. */
export interface TracedRequest {
  /** undici (the downloads' reader) or node:http (the SDK: status, listing, records). */
  via: 'undici' | 'http';
  method: string;
  path: string;
  connection: number;
  sent: number;
  headers?: number;
  done?: number;
  status?: number;
  error?: string;
}

const main = import.meta.url === `file://${process.argv[1]}`;
const file = process.env.SYNC_TRACE;
if (file && !main) record(file);

function record(to: string): void {
  const requests: TracedRequest[] = [];
  const sockets = new WeakMap<Socket, number>();
  let connections = 0;
  const connectionOf = (socket: Socket | null | undefined): number => {
    if (!socket) return -1;
    let id = sockets.get(socket);
    if (id === undefined) sockets.set(socket, (id = connections++));
    return id;
  };
  const now = (): number => performance.now();
  // The first TCP connection of any kind (the command's reachability check comes before any request).
  let firstSocket: number | undefined;
  subscribe('net.client.socket', () => (firstSocket ??= now()));
  const byUndici = new WeakMap<object, TracedRequest>();
  subscribe('undici:client:sendHeaders', (m) => {
    const { request, socket } = m as { request: { method: string; path: string }; socket: Socket };
    const r: TracedRequest = { via: 'undici', method: request.method, path: request.path, connection: connectionOf(socket), sent: now() };
    byUndici.set(request, r);
    requests.push(r);
  });
  subscribe('undici:request:headers', (m) => {
    const { request, response } = m as { request: object; response: { statusCode: number } };
    const r = byUndici.get(request);
    if (r) Object.assign(r, { headers: now(), status: response.statusCode });
  });
  subscribe('undici:request:trailers', (m) => {
    const r = byUndici.get((m as { request: object }).request);
    if (r) r.done = now();
  });
  subscribe('undici:request:error', (m) => {
    const { request, error } = m as { request: object; error: Error };
    const r = byUndici.get(request);
    if (r) Object.assign(r, { done: now(), error: error.message });
  });
  const byHttp = new WeakMap<object, TracedRequest>();
  subscribe('http.client.request.start', (m) => {
    const { request } = m as { request: ClientRequest };
    const r: TracedRequest = { via: 'http', method: request.method, path: request.path, connection: -1, sent: now() };
    byHttp.set(request, r);
    requests.push(r);
    request.once('socket', (socket) => (r.connection = connectionOf(socket)));
  });
  subscribe('http.client.response.finish', (m) => {
    const { request, response } = m as { request: ClientRequest; response: IncomingMessage };
    const r = byHttp.get(request);
    if (!r) return;
    Object.assign(r, { headers: now(), status: response.statusCode });
    response.once('end', () => (r.done = now()));
  });
  // The epoch ms this Node started at: a bench that knows when it launched the command adds the launcher's own start.
  process.once('exit', () => writeFileSync(to, JSON.stringify({ exit: now(), origin: performance.timeOrigin, firstSocket, connections, requests })));
}

export interface Trace { exit: number; origin?: number; firstSocket?: number; connections: number; requests: TracedRequest[] }

const s = (ms: number | undefined): string => (ms === undefined ? '—' : (ms / 1000).toFixed(2));

/** Where the time of a traced sync went; `launched` (epoch ms the bench spawned the command) adds what came before this Node started. */
export function report(trace: Trace, launched?: number): string {
  const lines: string[] = [];
  if (launched !== undefined && trace.origin !== undefined) lines.push(`this Node started ${s(trace.origin - launched)} s after launch (nice, ip netns exec, the launcher's Node and its re-exec); times below from its start`);
  const rs = trace.requests;
  // The connections opened ahead of the downloads: a GET of WARM_KEY (a HEAD of the bucket before).
  const warming = (r: TracedRequest): boolean => r.via === 'undici' && (r.method === 'HEAD' || r.path.endsWith('/.cloudfetch-warm'));
  // The lister's pages go over undici too: a listing is not a download.
  const listing = (r: TracedRequest): boolean => r.via === 'undici' && r.path.includes('list-type=2');
  const gets = rs.filter((r) => r.via === 'undici' && r.method === 'GET' && !warming(r) && !listing(r)).sort((a, b) => a.sent - b.sent);
  const pages = rs.filter(listing).sort((a, b) => a.sent - b.sent);
  const sdk = rs.filter((r) => r.via === 'http');
  const warm = rs.filter(warming);
  const first = rs.length ? Math.min(...rs.map((r) => r.sent)) : undefined;
  lines.push(`process exit ${s(trace.exit)} s; first connection opened ${s(trace.firstSocket)} s (module load before it), first request sent ${s(first)} s`);
  if (warm.length) lines.push(`warming requests: ${warm.length}, sent ${s(Math.min(...warm.map((r) => r.sent)))}–${s(Math.max(...warm.map((r) => r.sent)))}, answered by ${s(Math.max(...warm.map((r) => r.headers ?? 0)))}`);
  const kinds = new Map<string, TracedRequest[]>();
  for (const r of sdk) {
    const kind = r.path.includes('list-type=2') ? `list ${decodeURIComponent(/prefix=([^&]*)/.exec(r.path)?.[1] ?? '').split('/').slice(0, 2).join('/')}…`
      : `${r.method} ${decodeURIComponent(r.path.split('?')[0]!).split('/').slice(2, 4).join('/')}`;
    const list = kinds.get(kind) ?? [];
    list.push(r);
    kinds.set(kind, list);
  }
  lines.push(`SDK requests (node:http): ${sdk.length}`);
  for (const [kind, list] of kinds) {
    lines.push(`  ${kind}: ${list.length}, sent ${s(Math.min(...list.map((r) => r.sent)))}–${s(Math.max(...list.map((r) => r.sent)))} s, last done ${s(Math.max(...list.map((r) => r.done ?? r.headers ?? 0)))} s`);
  }
  if (pages.length) {
    const prefixes = pages.slice(0, 4).map((r) => `${decodeURIComponent(/prefix=([^&]*)/.exec(r.path)?.[1] ?? '')} ${s(r.sent)}–${s(r.done)}`);
    lines.push(`listing pages (undici): ${pages.length}, the first: ${prefixes.join(', ')} s`);
  }
  if (gets.length === 0) return lines.join('\n');
  const ended = gets.filter((r) => r.done !== undefined).map((r) => r.done!).sort((a, b) => a - b);
  const at = (q: number): number => ended[Math.min(ended.length - 1, Math.floor(q * ended.length))]!;
  lines.push(`downloads: ${gets.length} GETs (${gets.filter((r) => r.error).length} errors or aborted, ${gets.filter((r) => r.status !== undefined && r.status !== 200).length} answered other than 200) on ${new Set(gets.map((r) => r.connection)).size} connections`);
  lines.push(`  first GET sent ${s(gets[0]!.sent)} s, first body done ${s(ended[0])} s; 10% ${s(at(0.1))}, 50% ${s(at(0.5))}, 90% ${s(at(0.9))}, 99% ${s(at(0.99))}, last ${s(ended.at(-1))} s`);
  const durations = gets.filter((r) => r.done !== undefined).map((r) => r.done! - r.sent).sort((a, b) => a - b);
  const dq = (q: number): number => durations[Math.min(durations.length - 1, Math.floor(q * durations.length))]!;
  lines.push(`  per GET (sent → last byte): median ${dq(0.5).toFixed(0)} ms, 90% ${dq(0.9).toFixed(0)}, 99% ${dq(0.99).toFixed(0)}, max ${dq(1).toFixed(0)} ms`);
  // Idle time on a connection between one answer's last byte and the next request on it.
  const byConnection = new Map<number, TracedRequest[]>();
  for (const r of rs.filter((x) => x.via === 'undici')) byConnection.set(r.connection, [...(byConnection.get(r.connection) ?? []), r]);
  const gaps: number[] = [];
  for (const list of byConnection.values()) {
    list.sort((a, b) => a.sent - b.sent);
    for (let i = 1; i < list.length; i++) if (list[i - 1]!.done !== undefined) gaps.push(list[i]!.sent - list[i - 1]!.done!);
  }
  gaps.sort((a, b) => a - b);
  if (gaps.length) lines.push(`  gap on a connection between a body's end and its next request: median ${gaps[Math.floor(gaps.length / 2)]!.toFixed(1)} ms, 90% ${gaps[Math.floor(gaps.length * 0.9)]!.toFixed(1)}, max ${gaps.at(-1)!.toFixed(0)} ms`);
  // Downloads in flight and bodies finished per half second.
  const start = Math.floor(gets[0]!.sent / 500) * 500;
  const row: string[] = [];
  for (let t = start; t < (ended.at(-1) ?? start) + 500; t += 500) {
    const inFlight = gets.filter((r) => r.sent <= t + 250 && (r.done ?? Infinity) > t + 250).length;
    const finished = ended.filter((d) => d >= t && d < t + 500).length;
    row.push(`${s(t)}:${inFlight}/${finished}`);
  }
  lines.push('  per 0.5 s from the first GET (time: in flight at mid-interval / bodies finished):');
  for (let i = 0; i < row.length; i += 8) lines.push('    ' + row.slice(i, i + 8).join('  '));
  lines.push(`after the last body: ${s(trace.exit - (ended.at(-1) ?? trace.exit))} s to exit`);
  return lines.join('\n');
}

if (main) {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write('usage: node bench/sync-trace.ts <trace file>   (or loaded with --import and SYNC_TRACE=<file>)\n');
    process.exit(2);
  }
  process.stdout.write(report(JSON.parse(readFileSync(path, 'utf8')) as Trace) + '\n');
}
