// What a host says of its rate limit in an answer's headers, for the host gate: the IETF httpapi
// draft's fields (RateLimit-Policy and RateLimit as structured fields, `"default";q=100;w=60` and
// `"default";r=50;t=30`; its older RateLimit-Limit / -Remaining / -Reset and `limit=, remaining=,
// reset=`) and the de-facto X-RateLimit-Limit / -Remaining / -Reset (the reset in seconds from now
// or as an epoch time). Untrusted: a value that is not a plain number in a sane range is ignored.

import type { IncomingHttpHeaders } from 'node:http';

/** A host's stated limit and what is left of it; each part only when the host said it. */
export interface RateLimitInfo {
  /** Requests a second the host allows (a quota over its window): the most restrictive policy, and its window (ms). */
  perSecond?: number;
  windowMs?: number;
  /** A quota whose window was not stated (X-RateLimit-Limit, RateLimit-Limit without `w`). */
  limit?: number;
  /** Requests left in the current window, and ms until the window resets (from `now`). */
  remaining?: number;
  resetMs?: number;
}

const MAX_QUOTA = 1e9;
/** A window or a reset longer than a month is not believed. */
const MAX_SECONDS = 31 * 86_400;

/** Whether an answer has any rate-limit field: a few lookups, so an answer without them costs nothing more. */
export function hasRateLimitHeaders(h: IncomingHttpHeaders): boolean {
  return h['ratelimit'] !== undefined || h['ratelimit-policy'] !== undefined || h['ratelimit-limit'] !== undefined || h['ratelimit-remaining'] !== undefined
    || h['x-ratelimit-limit'] !== undefined || h['x-ratelimit-remaining'] !== undefined;
}

/** The rate limit the headers state, or undefined when they state nothing usable. */
export function parseRateLimit(h: IncomingHttpHeaders, now = Date.now()): RateLimitInfo | undefined {
  const info: RateLimitInfo = {};
  let pace = Infinity;
  let paceWindow = 0;
  let limit = Infinity;
  /** A quota, and its window in seconds as written (absent: not stated; garbled: the quota is ignored). */
  const quota = (q: number | undefined, windowText: string | undefined): void => {
    if (q === undefined || q > MAX_QUOTA) return;
    const w = int(windowText);
    if (w !== undefined && w > 0 && w <= MAX_SECONDS && q / w < pace) [pace, paceWindow] = [q / w, w];
    else if (windowText === undefined) limit = Math.min(limit, q);
  };
  let left: { remaining: number; resetMs: number } | null = null;
  const window = (r: number | undefined, resetMs: number | undefined): void => {
    if (r === undefined || r > MAX_QUOTA || resetMs === undefined || resetMs > MAX_SECONDS * 1000) return;
    if (left === null || r < left.remaining || (r === left.remaining && resetMs > left.resetMs)) left = { remaining: r, resetMs };
  };
  for (const item of items(h['ratelimit-policy'])) quota(int(item.params.q) ?? int(item.bare), item.params.w);
  for (const item of items(h['x-ratelimit-policy'])) quota(int(item.bare), item.params.w);
  const current = items(h['ratelimit']);
  const dictionary = new Map<string, number | undefined>();
  for (const item of current) {
    const member = /^(limit|remaining|reset)=(\d{1,15})$/.exec(item.bare);
    if (member) dictionary.set(member[1]!, int(member[2]));
    else window(int(item.params.r), seconds(int(item.params.t)));
  }
  if (dictionary.size > 0) {
    quota(dictionary.get('limit'), undefined);
    window(dictionary.get('remaining'), seconds(dictionary.get('reset')));
  }
  for (const [prefix, epochReset] of [['ratelimit-', false], ['x-ratelimit-', true]] as const) {
    for (const item of items(h[`${prefix}limit`])) quota(int(item.bare), item.params.w);
    const remaining = items(h[`${prefix}remaining`]);
    const reset = items(h[`${prefix}reset`]);
    remaining.forEach((item, k) => window(int(item.bare), resetMs(int(reset[k]?.bare ?? reset[0]?.bare), epochReset, now)));
  }
  if (pace < Infinity && pace > 0) [info.perSecond, info.windowMs] = [pace, 1000 * paceWindow];
  if (limit < Infinity && limit > 0) info.limit = limit;
  const stated = left as { remaining: number; resetMs: number } | null;
  if (stated !== null) [info.remaining, info.resetMs] = [stated.remaining, stated.resetMs];
  return info.perSecond === undefined && info.limit === undefined && info.remaining === undefined ? undefined : info;
}

interface Item {
  bare: string;
  params: Record<string, string>;
}

/** A list field's members (`a;k=v, "b";k=v`), parameters split off; quoted commas and semicolons kept. At most 16. */
function items(value: string | string[] | undefined): Item[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text.length > 1024) return [];
  const result: Item[] = [];
  for (const member of split(text, ',')) {
    const [bare = '', ...rest] = split(member, ';');
    const params: Record<string, string> = Object.create(null);
    for (const param of rest) {
      const eq = param.indexOf('=');
      if (eq > 0) params[param.slice(0, eq).trim().toLowerCase()] = param.slice(eq + 1).trim();
    }
    result.push({ bare: bare.trim(), params });
    if (result.length === 16) break;
  }
  return result;
}

function split(text: string, by: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let from = 0;
  for (let k = 0; k < text.length; k++) {
    const c = text[k];
    if (c === '"') quoted = !quoted;
    else if (c === '\\' && quoted) k++;
    else if (c === by && !quoted) {
      parts.push(text.slice(from, k));
      from = k + 1;
    }
  }
  parts.push(text.slice(from));
  return parts;
}

/** A non-negative integer written as digits only (no sign, no exponent, no fraction). */
function int(text: string | undefined): number | undefined {
  return text !== undefined && /^\d{1,15}$/.test(text) ? Number(text) : undefined;
}

function seconds(s: number | undefined): number | undefined {
  return s === undefined ? undefined : s * 1000;
}

/**
 * X-RateLimit-Reset is seconds from now at some hosts and an epoch time at others (GitHub): a value
 * past a billion seconds (2001) is an epoch time, in ms past a trillion. One already past resets nothing.
 */
function resetMs(value: number | undefined, epochAllowed: boolean, now: number): number | undefined {
  if (value === undefined) return undefined;
  if (!epochAllowed || value < 1e9) return value * 1000;
  const at = value < 1e12 ? value * 1000 : value;
  return at > now ? at - now : undefined;
}
