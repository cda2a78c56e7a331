// The fetcher's defaults apart from the fetcher: the command line shows them in its options without
// loading the fetcher's modules (its guard, image checks and host gate: ~20 ms of every command's start).

import type { FetcherOptions } from './fetcher.ts';

export const DEFAULT_USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36';

export const DEFAULT_FETCHER_OPTIONS: FetcherOptions = {
  // What a browser opens to one host over HTTP/1.1: a site built for browsers expects that much
  // from one client, and more looks like a bot.
  hostConcurrency: 6,
  hostWaitMs: 10 * 60_000,
  timeoutMs: 60_000,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 20_000,
  retries: 3,
  retryBaseMs: 500,
  retryMaxMs: 20_000,
  maxBytes: 50 * 1024 * 1024,
  maxRedirects: 5,
  userAgent: DEFAULT_USER_AGENT,
  guard: {},
};
