// Connections to an http endpoint opened as a command starts, while Node still loads the AWS SDK
// and undici (~0.3 s): the first requests (the splits' status, the first listings) go out on them
// instead of waiting for a handshake, a round trip of a long link. Only node:net here, so that
// opening them costs the command's start nothing. An https endpoint (AWS itself) is not opened
// ahead: its TLS session is the clients' own.

import { connect, type Socket } from 'node:net';

const open = new Map<string, Socket[]>();

const keyOf = (host: string, port: number): string => `${host.replace(/^\[|\]$/g, '')}:${port}`;

/** Opens `count` connections to `endpoint` when it is an http URL; they wait for takeEarly(). */
export function openEarly(endpoint: string, count: number): void {
  const url = URL.parse(endpoint);
  if (!url || url.protocol !== 'http:') return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 80);
  const sockets = open.get(keyOf(host, port)) ?? [];
  open.set(keyOf(host, port), sockets);
  for (let i = 0; i < count; i++) {
    const socket = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    // Not one of them keeps the process alive, and a refused one is said by the command's own check.
    socket.unref();
    socket.on('error', () => socket.destroy());
    sockets.push(socket);
  }
}

/** One of the connections opened to host:port (connected or still connecting), or undefined. */
export function takeEarly(host: string, port: number): Socket | undefined {
  const sockets = open.get(keyOf(host, port));
  while (sockets?.length) {
    const socket = sockets.shift()!;
    if (socket.destroyed || (socket.readyState !== 'open' && socket.readyState !== 'opening')) {
      socket.destroy();
      continue;
    }
    socket.ref();
    socket.removeAllListeners('error');
    return socket;
  }
  return undefined;
}

type Connector = (options: { hostname: string; protocol: string; port: string }, callback: (...args: [null, Socket] | [Error, null]) => void) => void;

/**
 * An undici connector that takes an early connection to the origin when there is one, else (or
 * if it fails or is not connected within `timeoutMs`) dials with `dial` (undici's buildConnector).
 */
export function earlyConnector<C extends Connector>(dial: C, timeoutMs: number): C {
  return ((options, callback) => {
    const socket = options.protocol === 'http:' ? takeEarly(options.hostname, Number(options.port || 80)) : undefined;
    if (!socket) return dial(options, callback);
    // Never from within the call: undici's client is mid-way through its own connect() then.
    if (!socket.connecting) return void process.nextTick(callback, null, socket);
    const settle = (connected: boolean): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect).off('error', onFailure).off('close', onFailure);
      if (connected) callback(null, socket);
      else {
        socket.destroy();
        dial(options, callback);
      }
    };
    const onConnect = (): void => settle(true);
    const onFailure = (): void => settle(false);
    const timer = setTimeout(onFailure, timeoutMs);
    socket.once('connect', onConnect).once('error', onFailure).once('close', onFailure);
  }) as C;
}

/** Closes the connections nobody took. */
export function closeEarly(): void {
  for (const sockets of open.values()) for (const socket of sockets) socket.destroy();
  open.clear();
}
