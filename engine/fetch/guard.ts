// Refuses URLs and connections that would let a user-given URL reach inside the machine or its
// network: non-http(s) schemes and every address that is not global unicast. Inside Lambda that
// means the runtime API on 127.0.0.1:9001, the instance metadata on 169.254.169.254 and
// fd00:ec2::254, and the VPC's private ranges.
//
// Two layers:
//  - checkUrl() is a cheap pre-flight on the URL as given (scheme, IP literal, "localhost").
//  - guardInterceptor() sits innermost in the undici chain, so it sees every dispatch, including
//    each redirect hop, after the dns interceptor has replaced the host name with the IP that will
//    be connected to. Compose it FIRST (compose() makes the last interceptor the outermost):
//
//      agent.compose(guardInterceptor(opts), interceptors.dns({...}),
//                    interceptors.redirect({ maxRedirections }), interceptors.decompress())
//
//    A dispatch reaching it with an origin that is not an IP literal is refused (fail closed):
//    without the dns interceptor in front, the guard could not know where the socket would go.
//
// Refusals surface from agent.request() / undici.request() as the GuardError itself (undici does
// not wrap handler errors): test with `instanceof GuardError` or `code === 'CLOUDFETCH_GUARD'`.

import { lookup } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Dispatcher, interceptors } from 'undici';

export interface GuardOptions {
  /**
   * Lifts the address checks (CLI --allow-private-network; for local testing only), except for
   * link-local and instance-metadata addresses, unspecified, multicast and broadcast, which no
   * image server of a local test lives on.
   */
  allowPrivateNetwork?: boolean;
  /** Lifts only 127.0.0.0/8, ::1 and the name "localhost" (the test suite's loopback origin). */
  allowLoopback?: boolean;
}

export type GuardReason = 'blocked-address' | 'blocked-scheme';

export const GUARD_ERROR_CODE = 'CLOUDFETCH_GUARD';

export class GuardError extends Error {
  readonly reason: GuardReason;
  readonly code = GUARD_ERROR_CODE;
  /** The address, host name or URL that was refused. */
  readonly target: string;

  constructor(reason: GuardReason, target: string, why: string) {
    super(`refused ${target}: ${why}`);
    this.name = 'GuardError';
    this.reason = reason;
    this.target = target;
  }
}

export function isGuardError(error: unknown): error is GuardError {
  return error instanceof GuardError || (error instanceof Error && (error as { code?: unknown }).code === GUARD_ERROR_CODE);
}

export type AddressVerdict = { allowed: true } | { allowed: false; range: string };

// ipaddr.js range names, in the words of a failure message.
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'unspecified address',
  broadcast: 'broadcast address',
  multicast: 'multicast address',
  linkLocal: 'link-local address (cloud instance metadata lives here)',
  loopback: 'loopback address',
  carrierGradeNat: 'carrier-grade NAT address',
  private: 'private address',
  reserved: 'reserved or documentation address',
  benchmarking: 'benchmarking address',
  as112: 'AS112 address',
  as112v6: 'AS112 address',
  amt: 'AMT address',
  uniqueLocal: 'unique-local address (cloud instance metadata lives here)',
  deprecatedSiteLocal: 'site-local address',
  discard: 'discard-only address',
  rfc6145: 'IPv4-translated address',
  rfc6052: 'NAT64 address',
  '6to4': '6to4 address',
  teredo: 'Teredo address',
  deprecatedOrchid: 'ORCHID address',
  orchid2: 'ORCHID address',
  droneRemoteIdProtocolEntityTags: 'DRIP address',
  segmentRouting: 'segment-routing address',
  notGlobal: 'address outside the global unicast space 2000::/3',
  invalid: 'not an IP address',
};

// The IPv6 forms that carry an IPv4 address, named for "X inside <form>".
const CARRIERS: Record<string, string> = {
  ipv4Mapped: 'an IPv4-mapped IPv6 address',
  rfc6052: 'a NAT64 address',
  '6to4': 'a 6to4 address',
};

/** Words for a range name from addressVerdict, e.g. "private address", or "loopback address inside a 6to4 address". */
function describe(range: string): string {
  const embedded = /^(\w+)\((\w+)\)$/.exec(range);
  if (embedded) return `${describe(embedded[2]!)} inside ${CARRIERS[embedded[1]!] ?? embedded[1]}`;
  return RANGE_WORDS[range] ?? `${range} address`;
}

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

function verdictV4(address: ipaddr.IPv4, opts: GuardOptions): AddressVerdict {
  const range = address.range();
  if (range === 'unicast') return { allowed: true };
  if (range === 'loopback' && opts.allowLoopback) return { allowed: true };
  return { allowed: false, range };
}

function ipv4FromParts(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

function verdictV6(address: ipaddr.IPv6, opts: GuardOptions): AddressVerdict {
  const range = address.range();
  // Addresses that carry an IPv4 address are as good as the IPv4 address they lead to.
  const embeddedIn = (outer: string, inner: ipaddr.IPv4): AddressVerdict => {
    const verdict = verdictV4(inner, opts);
    return verdict.allowed ? verdict : { allowed: false, range: `${outer}(${verdict.range})` };
  };
  const p = address.parts;
  if (range === 'ipv4Mapped') return embeddedIn(range, address.toIPv4Address());
  // NAT64 with the well-known prefix is what DNS64 hands an IPv6-only Lambda for IPv4-only sites.
  if (range === 'rfc6052' && address.match(NAT64_WELL_KNOWN)) return embeddedIn(range, ipv4FromParts(p[6]!, p[7]!));
  if (range === '6to4') return embeddedIn(range, ipv4FromParts(p[1]!, p[2]!));
  if (range === 'loopback' && opts.allowLoopback) return { allowed: true };
  if (range !== 'unicast') return { allowed: false, range };
  // ipaddr.js calls ::/8 (e.g. the deprecated IPv4-compatible ::7f00:1) and other unassigned
  // space "unicast"; only 2000::/3 is handed out as global unicast.
  if (!address.match(GLOBAL_UNICAST_V6)) return { allowed: false, range: 'notGlobal' };
  return { allowed: true };
}

/** Whether a connection to this IP literal (IPv4 or IPv6, brackets tolerated) may be made. */
export function addressVerdict(ip: string, opts: GuardOptions = {}): AddressVerdict {
  const literal = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    address = ipaddr.parse(literal);
  } catch {
    return { allowed: false, range: 'invalid' };
  }
  const verdict = address.kind() === 'ipv4' ? verdictV4(address as ipaddr.IPv4, opts) : verdictV6(address as ipaddr.IPv6, opts);
  if (verdict.allowed || !opts.allowPrivateNetwork) return verdict;
  const innermost = /\((\w+)\)$/.exec(verdict.range)?.[1] ?? verdict.range;
  if (NEVER_ALLOWED.has(innermost) || (address.kind() === 'ipv6' && address.match(EC2_METADATA_V6))) return verdict;
  return { allowed: true };
}

// Refused even with allowPrivateNetwork: the metadata service lives in link-local space.
const NEVER_ALLOWED = new Set(['linkLocal', 'unspecified', 'multicast', 'broadcast', 'invalid']);
const EC2_METADATA_V6 = ipaddr.IPv6.parseCIDR('fd00:ec2::254/128');

function isHttpScheme(protocol: string): boolean {
  return protocol === 'http:' || protocol === 'https:';
}

/** RFC 6761: "localhost" and every name under it are loopback, whatever DNS would say. */
function isLocalhostName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.+$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

function shortUrl(url: URL): string {
  const text = url.href;
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

function schemeError(url: URL): GuardError {
  return new GuardError('blocked-scheme', shortUrl(url), `scheme ${url.protocol} is not http or https`);
}

/**
 * Pre-flight check of a URL as written: the scheme, an IP literal host, and the name "localhost".
 * Host names are not resolved here; the interceptor checks the address they resolve to.
 */
export function checkUrl(url: URL, opts: GuardOptions = {}): GuardError | null {
  if (!isHttpScheme(url.protocol)) return schemeError(url);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (isIP(host) !== 0) {
    const verdict = addressVerdict(host, opts);
    return verdict.allowed ? null : new GuardError('blocked-address', host, describe(verdict.range));
  }
  if (isLocalhostName(host) && !opts.allowLoopback && !opts.allowPrivateNetwork) {
    return new GuardError('blocked-address', host, 'loopback host name');
  }
  return null;
}

/** Checks an origin as the connection will see it: scheme, and a host that must be an IP literal. */
function checkOrigin(origin: URL, servername: string | undefined, opts: GuardOptions): GuardError | null {
  if (!isHttpScheme(origin.protocol)) return schemeError(origin);
  const host = origin.hostname.startsWith('[') ? origin.hostname.slice(1, -1) : origin.hostname;
  if (isIP(host) === 0) {
    if (opts.allowPrivateNetwork) return null;
    return new GuardError(
      'blocked-address',
      host,
      'host name not resolved before the guard (compose interceptors.dns() after guardInterceptor())',
    );
  }
  const verdict = addressVerdict(host, opts);
  if (verdict.allowed) return null;
  const target = servername && servername !== host ? `${servername} (${host})` : host;
  return new GuardError('blocked-address', target, describe(verdict.range));
}

function toUrl(origin: string | URL | undefined): URL | null {
  if (origin instanceof URL) return origin;
  if (typeof origin !== 'string' || !URL.canParse(origin)) return null;
  return new URL(origin);
}

// Handed to onResponseError when a request is refused before it started: already aborted, so a
// RetryHandler further out treats the refusal as final instead of retrying it.
function refusedController(reason: Error): Dispatcher.DispatchController {
  return {
    aborted: true,
    paused: false,
    reason,
    abort() {},
    pause() {},
    resume() {},
  };
}

const REDIRECT_STATUSES = new Set([300, 301, 302, 303, 307, 308]);

/**
 * Passes everything through, except a redirect whose Location has a non-http(s) scheme: undici's
 * redirect handler would throw a plain InvalidArgumentError for it; this fails it as a
 * GuardError (blocked-scheme) instead, whether or not redirects are being followed.
 */
class GuardHandler implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler;
  readonly #base: URL;

  constructor(handler: Dispatcher.DispatchHandler, base: URL) {
    this.#handler = handler;
    this.#base = base;
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>): void {
    this.#handler.onRequestUpgrade?.(...args);
  }

  onResponseStarted(): void {
    this.#handler.onResponseStarted?.();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>[2],
    statusMessage?: string,
  ): void {
    if (REDIRECT_STATUSES.has(statusCode)) {
      const raw = headers.location;
      const location = Array.isArray(raw) ? raw[0] : raw;
      if (typeof location === 'string' && URL.canParse(location, this.#base)) {
        const target = new URL(location, this.#base);
        if (!isHttpScheme(target.protocol)) {
          controller.abort(schemeError(target));
          return;
        }
      }
    }
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>): void {
    this.#handler.onResponseEnd?.(...args);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#handler.onResponseError?.(controller, error);
  }

  onBodySent(chunk: Buffer): void {
    this.#handler.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.#handler.onRequestSent?.();
  }
}

/**
 * The undici interceptor: refuses, before any connection, a dispatch whose origin is not http(s)
 * or whose host (already resolved by the dns interceptor) is a refused address. The request then
 * fails with a GuardError, passed to the handler's onResponseError like undici's own errors.
 * `checkRedirects: false` leaves out the per-request handler that refuses a redirect to a
 * non-http(s) scheme: for a caller that follows redirects itself and checks each Location with
 * checkUrl() before dispatching it (the fetcher), as every hop still passes this guard.
 */
export function guardInterceptor(opts: GuardOptions = {}, checkRedirects = true): Dispatcher.DispatcherComposeInterceptor {
  const options: GuardOptions = { ...opts };
  const wrap = (handler: Dispatcher.DispatchHandler, base: URL): Dispatcher.DispatchHandler => (checkRedirects ? new GuardHandler(handler, base) : handler);
  // Fails the request the way undici's own interceptors do; no connection has been asked for.
  const refuse = (handler: Dispatcher.DispatchHandler, error: GuardError): boolean => {
    handler.onResponseError?.(refusedController(error), error);
    return true;
  };
  // Allowed origins as the dns interceptor spells them (e.g. "http://93.184.215.14:80"), or the
  // URL object a caller dispatches with again and again (the fetcher keeps one per origin), with
  // their parsed URL: a connection to a known address costs one lookup instead of a URL parse and
  // an address check. Only allowed ones are kept (refusals are rare, each builds its message);
  // the verdict depends on the origin alone, the servername only words a refusal.
  const allowed = new Map<string | URL, URL>();
  return (dispatch) =>
    function guard(dispatchOpts, handler) {
      const key = typeof dispatchOpts.origin === 'string' || dispatchOpts.origin instanceof URL ? dispatchOpts.origin : undefined;
      const known = key === undefined ? undefined : allowed.get(key);
      if (known) return dispatch(dispatchOpts, wrap(handler, known));
      const origin = toUrl(dispatchOpts.origin);
      if (origin === null) return refuse(handler, new GuardError('blocked-address', String(dispatchOpts.origin), 'no valid origin to check'));
      // The dns interceptor passes the host name it resolved as servername (for TLS SNI).
      const servername: unknown = (dispatchOpts as { servername?: unknown }).servername;
      const refusal = checkOrigin(origin, typeof servername === 'string' ? servername : undefined, options);
      if (refusal) return refuse(handler, refusal);
      if (key !== undefined) {
        if (allowed.size >= 10_000) allowed.clear();
        allowed.set(key, origin);
      }
      return dispatch(dispatchOpts, wrap(handler, origin));
    };
}

type DnsLookup = NonNullable<NonNullable<Parameters<typeof interceptors.dns>[0]>['lookup']>;

/**
 * A `lookup` for interceptors.dns() that answers IP literals itself. undici's own lookup hands a
 * bracketed IPv6 literal ("[2606:4700::1111]", as URL.hostname spells it) to getaddrinfo, which
 * fails with ENOTFOUND, so without this no IPv6-literal URL can be fetched (and none reaches the
 * guard). Host names go to the system resolver as undici would send them.
 */
export const dnsLookup: DnsLookup = (origin, options, callback) => {
  const host = origin.hostname.startsWith('[') ? origin.hostname.slice(1, -1) : origin.hostname;
  const family = isIP(host);
  if (family === 4 || family === 6) {
    callback(null, [{ address: host, family, ttl: Number.POSITIVE_INFINITY }]);
    return;
  }
  // undici passes its dualStack/affinity settings in the options; mirror its default lookup.
  const { dualStack, affinity } = options as { dualStack?: boolean; affinity?: 4 | 6 | null };
  lookup(host, { all: true, family: dualStack === false ? (affinity ?? 0) : 0, order: 'ipv4first' }, (error, addresses) => {
    if (error) {
      callback(error, []);
      return;
    }
    const unique = new Map<string, { address: string; family: 4 | 6; ttl: number }>();
    for (const { address, family: f } of addresses) {
      if (f === 4 || f === 6) unique.set(`${address}:${f}`, { address, family: f, ttl: Number.POSITIVE_INFINITY });
    }
    callback(null, [...unique.values()]);
  });
};
