// A simulated web on loopback, deterministic from a seed: the yardstick for politeness (issue #12).
// Many hosts, each an origin of its own (127.0.0.1 and an OS-chosen port, as undici pools
// connections), each with a profile: heavy-tailed latency (log-normal), a concurrency or request-rate
// limit (beyond it 429 with Retry-After; too many crossings within a window: 403 to everything for a
// while, as bot protection does), link rot (404/410), flaky 5xx and resets (the first request of
// such a path fails, the next ones work), placeholders (one host's many dead URLs answering 200
// with the same bytes), and optionally an outage mid-run (a ban or a long Retry-After that is not
// the client's doing). Some rate-limited hosts state their limit in every answer (RateLimit fields
// of the IETF draft, or X-RateLimit-*); a concurrency limit has no such field, so those hosts are
// silent. It counts, per host, what a client did to it, and why each crossing came.
//
// Paths are /img/<name>.jpg; a path's fate is a hash of the seed, the host and the path, so the
// same seed gives the same profiles and the same dead and placeholder paths.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sampleImage } from './origin.ts';

export type Limit = { kind: 'concurrency'; max: number } | { kind: 'rate'; perSecond: number };

/**
 * How a host states its rate limit in every answer: `ietf`, the draft's structured fields
 * (`RateLimit-Policy: "default";q=10;w=1`, `RateLimit: "default";r=3;t=1`); `ietf-fields`, its older
 * RateLimit-Limit / -Remaining / -Reset (seconds from now); `x-ratelimit`, X-RateLimit-Limit /
 * -Remaining / -Reset (an epoch time, as GitHub sends it, and no window: a client infers it).
 */
export type Announce = 'ietf' | 'ietf-fields' | 'x-ratelimit';

export interface HostProfile {
  /** Log-normal latency of every answer: its median and the sigma of its logarithm. */
  medianMs: number;
  sigma: number;
  /** Longest latency drawn (the tail is cut here). */
  maxMs: number;
  limit: Limit;
  /** How the host states its limit (a rate limit only); absent: it does not. */
  announce?: Announce;
  retryAfterSeconds: number;
  /** `crossings` limit crossings within `windowMs` ban the client for `banMs`: 403 to everything. */
  ban: { crossings: number; windowMs: number; banMs: number };
  /**
   * An outage that is not the client's doing, from the host's `afterRequests`-th request on: a ban
   * (403 to everything) or 429 with a Retry-After of the time left, for `seconds` (Infinity: until
   * the test calls `endOutage`).
   */
  outage?: { afterRequests: number; kind: 'ban' | 'retry-after'; seconds: number };
  /** Shares of paths: gone (404 or 410), placeholder, a 5xx first, a reset first. */
  deadShare: number;
  placeholderShare: number;
  flakyShare: number;
  resetShare: number;
}

export type Fate = 'ok' | 'dead' | 'placeholder' | 'flaky' | 'reset';

/**
 * Why a request crossed a host's limit, as the host can tell from when it came: the host's first
 * crossing (how a client learns the limit); within the Retry-After of the one before (sent before
 * the client could read that 429: the same burst); a minute or more after the one before (a client
 * trying again after a quiet while); or in between (the client came back from the pause too fast).
 */
export type CrossingCause = 'first' | 'burst' | 'after-pause' | 'after-a-minute';

export interface HostReport {
  url: string;
  /** Every request seen, whatever its answer. */
  requests: number;
  peakConcurrency: number;
  /** Requests beyond the limit (answered 429). */
  crossings: number;
  crossingsByCause: Record<CrossingCause, number>;
  bansTriggered: number;
  /** Requests answered 403 while banned. */
  refusedWhileBanned: number;
  /** When the host's last request came, ms after the web started (its own drain). */
  lastRequestMs: number;
  /** Answers by kind; they add up to `requests`. */
  answers: { image: number; placeholder: number; gone: number; serverError: number; reset: number; tooMany: number; banned: number; outage: number };
}

export interface SimHost {
  readonly url: string;
  readonly profile: HostProfile;
  /** The fate of a path of this host (without query). */
  fate(path: string): Fate;
  /** The bytes a path answers with status 200: its own image, or the host's placeholder. */
  body(path: string): Buffer;
  /** Requests per second a polite client can sustain here (a concurrency limit ÷ the mean latency). */
  allowedRate(): number;
  report(): HostReport;
  /** Ends the host's outage now (one of `seconds: Infinity` included). */
  endOutage(): void;
}

export interface SimWeb {
  readonly seed: number;
  readonly hosts: readonly SimHost[];
  report(): HostReport[];
  close(): Promise<void>;
}

export interface SimWebOptions {
  seed: number;
  hosts: number;
  /** Changes to the generated profile of host i (tests use it for short bans, no latency...). */
  adjust?: (profile: HostProfile, i: number) => HostProfile;
  /** The clock of rate windows and bans (default Date.now): a test moves it instead of waiting. */
  clock?: () => number;
  /** Called as host `host` answers a request (or resets it), with the status (0 for a reset). */
  onAnswer?: (host: number, status: number) => void;
  /** Called as each request arrives at host `host`, with what the host made of it (a trace of crossings and what came before them). */
  onArrival?: (host: number, at: number, verdict: Arrival) => void;
}

/** What a host made of a request as it came: admitted within its limit, a crossing (and its cause), refused while banned, or an outage's answer. */
export type Arrival = 'admitted' | CrossingCause | 'banned' | 'outage';

/** mulberry32: small, fast, the same sequence everywhere for a seed. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A uniform number in [0, 1) from a hash of the parts. */
function hashUnit(...parts: Array<string | number>): number {
  return createHash('sha256').update(parts.join('\0')).digest().readUInt32BE(0) / 4294967296;
}

/**
 * Host i's profile from the seed: the first three (the big hosts of simManifest) always have a
 * concurrency limit. Of the rate-limited hosts, a quarter each announce their limit in one of the
 * three ways (see Announce) and a quarter are silent; drawn from a hash of its own, so the rest of
 * a seed's profiles are what they were before hosts announced.
 */
export function generateProfile(seed: number, i: number): HostProfile {
  const random = prng(seed * 1000 + i + 1);
  const r = (low: number, high: number): number => low + (high - low) * random();
  const byConcurrency = i < 3 || random() < 0.5;
  const way = Math.floor(4 * hashUnit(seed, i, 'announce'));
  const announce = byConcurrency ? undefined : (['ietf', 'ietf-fields', 'x-ratelimit'] as const)[way];
  return {
    ...(announce ? { announce } : {}),
    medianMs: Math.round(r(20, 60)),
    sigma: r(1.2, 1.6), // p99 = median × e^(2.33σ): 0.3–2.5 s
    maxMs: 10_000,
    limit: byConcurrency ? { kind: 'concurrency', max: Math.round(r(4, 8)) } : { kind: 'rate', perSecond: Math.round(r(5, 20)) },
    retryAfterSeconds: Math.round(r(1, 5)),
    ban: { crossings: 50, windowMs: 10_000, banMs: 30_000 },
    deadShare: r(0.02, 0.1),
    placeholderShare: random() < 0.25 ? r(0.05, 0.15) : 0,
    flakyShare: r(0.01, 0.05),
    resetShare: r(0, 0.02),
  };
}

function meanLatencyMs(p: HostProfile): number {
  return Math.min(p.maxMs, p.medianMs * Math.exp((p.sigma * p.sigma) / 2));
}

/** Standard normal from two uniforms (Box–Muller). */
function normal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

const HTML = (text: string): Buffer => Buffer.from(`<!doctype html><title>${text}</title><h1>${text}</h1>\n`);

async function startHost(seed: number, i: number, profile: HostProfile, clock: () => number, closing: AbortSignal, onAnswer: (host: number, status: number) => void, onArrival: ((host: number, at: number, verdict: Arrival) => void) | undefined): Promise<{ host: SimHost; server: Server; sockets: Set<Socket> }> {
  const latency = prng(seed * 7919 + i);
  const placeholder = sampleImage(`placeholder-${seed}-${i}`, 'jpeg', 6000);
  const attempts = new Map<string, number>();
  const crossingTimes: number[] = [];
  let bannedUntil = 0;
  let lastCrossing = -Infinity;
  /** When the outage began and ends (ms, this host's clock); null before it began. */
  let outage: { from: number; until: number } | null = null;
  let inFlight = 0; // every open request, answered or refused
  let admitted = 0; // those within the limit, being answered
  let sent = 0; // rate limit: requests admitted in the current second
  let second = 0;
  const counts: HostReport = {
    url: '',
    requests: 0,
    peakConcurrency: 0,
    crossings: 0,
    crossingsByCause: { first: 0, burst: 0, 'after-pause': 0, 'after-a-minute': 0 },
    lastRequestMs: 0,
    bansTriggered: 0,
    refusedWhileBanned: 0,
    answers: { image: 0, placeholder: 0, gone: 0, serverError: 0, reset: 0, tooMany: 0, banned: 0, outage: 0 },
  };

  function fate(path: string): Fate {
    const u = hashUnit(seed, i, path);
    let edge = profile.deadShare;
    if (u < edge) return 'dead';
    if (u < (edge += profile.placeholderShare)) return 'placeholder';
    if (u < (edge += profile.flakyShare)) return 'flaky';
    if (u < (edge += profile.resetShare)) return 'reset';
    return 'ok';
  }

  function body(path: string): Buffer {
    if (fate(path) === 'placeholder') return placeholder;
    const name = path.slice(path.lastIndexOf('/') + 1).replace(/\.jpg$/, '');
    return sampleImage(`${i}-${name}`, 'jpeg', 2000 + Math.floor(hashUnit(seed, i, path, 'size') * 30_000));
  }

  /** The fields stating the host's rate limit and what is left of its current second, as of `now`. */
  function announcement(now: number): Record<string, string> {
    if (!profile.announce || profile.limit.kind !== 'rate') return {};
    const limit = profile.limit.perSecond;
    const current = Math.floor(now / 1000);
    const remaining = Math.max(0, current === second ? limit - sent : limit);
    if (profile.announce === 'ietf') return { 'ratelimit-policy': `"default";q=${limit};w=1`, ratelimit: `"default";r=${remaining};t=1` };
    if (profile.announce === 'ietf-fields') return { 'ratelimit-limit': `${limit}, ${limit};w=1`, 'ratelimit-remaining': String(remaining), 'ratelimit-reset': '1' };
    return { 'x-ratelimit-limit': String(limit), 'x-ratelimit-remaining': String(remaining), 'x-ratelimit-reset': String(current + 1) };
  }

  /** Whether this request crosses the limit; counts the crossing and may start a ban. */
  function crosses(now: number): boolean {
    let over: boolean;
    if (profile.limit.kind === 'concurrency') over = admitted >= profile.limit.max;
    else {
      const current = Math.floor(now / 1000);
      if (current !== second) [second, sent] = [current, 0];
      over = sent >= profile.limit.perSecond;
      if (!over) sent++;
    }
    if (!over) return false;
    counts.crossings++;
    const since = now - lastCrossing;
    const cause: CrossingCause = lastCrossing === -Infinity ? 'first' : since < 1000 * profile.retryAfterSeconds ? 'burst' : since >= 60_000 ? 'after-a-minute' : 'after-pause';
    counts.crossingsByCause[cause]++;
    onArrival?.(i, now, cause);
    lastCrossing = now;
    crossingTimes.push(now);
    while (crossingTimes[0]! <= now - profile.ban.windowMs) crossingTimes.shift();
    if (crossingTimes.length >= profile.ban.crossings) {
      counts.bansTriggered++;
      bannedUntil = now + profile.ban.banMs;
      crossingTimes.length = 0;
    }
    return true;
  }

  const startedAt = clock();
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    counts.requests++;
    inFlight++;
    counts.peakConcurrency = Math.max(counts.peakConcurrency, inFlight);
    // A request stops counting (in flight, and against a concurrency limit) when its answer is
    // handed over, as a real server sees it. Waiting for 'close' raced with the client: its answer
    // read, it sent the next request, which could arrive in the same poll before 'close' fired.
    const done: Array<() => void> = [() => inFlight--];
    const settle = (): void => {
      for (const f of done.splice(0)) f();
    };
    const end = res.end.bind(res);
    res.end = ((...args: Parameters<typeof end>) => {
      settle();
      return end(...args);
    }) as typeof res.end;
    res.once('close', settle);
    res.on('error', () => {});
    res.once('close', () => onAnswer(i, res.writableFinished ? res.statusCode : 0));
    const path = (req.url ?? '/').split('?')[0]!;
    const now = clock();
    counts.lastRequestMs = now - startedAt;
    if (profile.outage && !outage && counts.requests > profile.outage.afterRequests) outage = { from: now, until: now + 1000 * profile.outage.seconds };
    if (outage && now < outage.until) {
      counts.answers.outage++;
      onArrival?.(i, now, 'outage');
      if (profile.outage!.kind === 'ban') res.writeHead(403, { 'content-type': 'text/html' }).end(HTML('403 Forbidden'));
      else {
        const left = Number.isFinite(outage.until) ? Math.ceil((outage.until - now) / 1000) : 3600;
        res.writeHead(429, { 'content-type': 'text/html', 'retry-after': String(left) }).end(HTML('429 Too Many Requests'));
      }
      return;
    }
    if (now < bannedUntil) {
      counts.refusedWhileBanned++;
      counts.answers.banned++;
      onArrival?.(i, now, 'banned');
      res.writeHead(403, { 'content-type': 'text/html' }).end(HTML('403 Forbidden'));
      return;
    }
    if (crosses(now)) {
      counts.answers.tooMany++;
      res.writeHead(429, { 'content-type': 'text/html', 'retry-after': String(profile.retryAfterSeconds), ...announcement(now) }).end(HTML('429 Too Many Requests'));
      return;
    }
    admitted++;
    done.push(() => admitted--);
    onArrival?.(i, now, 'admitted');
    // Stop the wait when the client goes away or the web closes.
    const left = new AbortController();
    res.once('close', () => left.abort());
    const wait = Math.min(profile.maxMs, profile.medianMs * Math.exp(profile.sigma * normal(latency)));
    sleep(wait, undefined, { signal: AbortSignal.any([closing, left.signal]) }).then(
      () => answer(path, req.socket, res),
      () => res.destroy(),
    );
  });

  function answer(path: string, socket: Socket, res: ServerResponse): void {
    if (res.destroyed) return;
    // Stated as the answer leaves: what is left of the second it leaves in.
    const stated = announcement(clock());
    const fateOf = /^\/img\/[^/]+\.jpg$/.test(path) ? fate(path) : 'dead';
    const seen = (attempts.get(path) ?? 0) + 1;
    attempts.set(path, seen);
    if (fateOf === 'dead') {
      counts.answers.gone++;
      const status = hashUnit(seed, i, path, 'status') < 0.5 ? 404 : 410;
      res.writeHead(status, { 'content-type': 'text/html', ...stated }).end(HTML(`${status}`));
    } else if (fateOf === 'flaky' && seen === 1) {
      counts.answers.serverError++;
      const status = [500, 502, 503][Math.floor(hashUnit(seed, i, path, 'status') * 3)]!;
      res.writeHead(status, { 'content-type': 'text/html', ...stated }).end(HTML(`${status}`));
    } else if (fateOf === 'reset' && seen === 1) {
      counts.answers.reset++;
      socket.resetAndDestroy();
    } else {
      if (fateOf === 'placeholder') counts.answers.placeholder++;
      else counts.answers.image++;
      const bytes = body(path);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length, ...stated }).end(bytes);
    }
  }

  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  counts.url = url;
  const host: SimHost = {
    url,
    profile,
    fate,
    body,
    allowedRate: () => (profile.limit.kind === 'rate' ? profile.limit.perSecond : (profile.limit.max * 1000) / meanLatencyMs(profile)),
    report: () => ({ ...counts, crossingsByCause: { ...counts.crossingsByCause }, answers: { ...counts.answers } }),
    endOutage: () => {
      if (outage) outage.until = Math.min(outage.until, clock());
    },
  };
  return { host, server, sockets };
}

export async function startSimWeb(options: SimWebOptions): Promise<SimWeb> {
  const closing = new AbortController();
  const started: Array<Awaited<ReturnType<typeof startHost>>> = [];
  try {
    for (let i = 0; i < options.hosts; i++) {
      const generated = generateProfile(options.seed, i);
      started.push(await startHost(options.seed, i, options.adjust ? options.adjust(generated, i) : generated, options.clock ?? Date.now, closing.signal, options.onAnswer ?? (() => {}), options.onArrival));
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  let closed: Promise<void> | null = null;
  function closeAll(): Promise<void> {
    closed ??= (async () => {
      closing.abort();
      await Promise.all(
        started.map(
          ({ server, sockets }) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              for (const socket of sockets) socket.destroy();
            }),
        ),
      );
    })();
    return closed;
  }
  return {
    seed: options.seed,
    hosts: started.map((s) => s.host),
    report: () => started.map((s) => s.host.report()),
    close: closeAll,
  };
}

export interface SimEntry {
  id: string;
  url: string;
  host: number;
  fate: Fate;
}

/**
 * `entries` entries over the web's hosts, `bigShare` of them on the first `bigHosts` hosts (evenly),
 * the rest spread evenly over the others; the order is shuffled (seeded), as real manifests mix hosts.
 */
export function simManifest(web: SimWeb, entries: number, bigHosts = 3, bigShare = 0.6): SimEntry[] {
  const hosts = web.hosts.length;
  const random = prng(web.seed * 31 + entries);
  const result: SimEntry[] = [];
  for (let n = 0; n < entries; n++) {
    const big = n < Math.round(entries * bigShare) || hosts <= bigHosts;
    const host = big ? n % Math.min(bigHosts, hosts) : bigHosts + (n % (hosts - bigHosts));
    const path = `/img/e${n}.jpg`;
    result.push({ id: `e${n}`, url: web.hosts[host]!.url + path, host, fate: web.hosts[host]!.fate(path) });
  }
  for (let n = result.length - 1; n > 0; n--) {
    const k = Math.floor(random() * (n + 1));
    [result[n], result[k]] = [result[k]!, result[n]!];
  }
  return result;
}

/** The manifest as CSV (`id,url`), a format `cloudfetch run` reads. */
export function manifestCsv(entries: readonly SimEntry[]): string {
  return 'id,url\n' + entries.map((e) => `${e.id},${e.url}\n`).join('');
}

/** What a polite client could get: the entries with a real image, and the time it needs (entries ÷ allowed rate per host). */
export function politeIdeal(web: SimWeb, entries: readonly SimEntry[]): { images: number; sumSeconds: number; maxHostSeconds: number } {
  const perHost = new Array<number>(web.hosts.length).fill(0);
  let images = 0;
  for (const entry of entries) {
    perHost[entry.host]!++;
    if (entry.fate !== 'dead' && entry.fate !== 'placeholder') images++;
  }
  const seconds = perHost.map((count, h) => count / web.hosts[h]!.allowedRate());
  return { images, sumSeconds: seconds.reduce((a, b) => a + b, 0), maxHostSeconds: Math.max(0, ...seconds) };
}
