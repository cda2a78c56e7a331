// The rate-limit fields of an answer as the host gate is given them (engine/fetch/rate-limit.ts):
// every form in use read, and anything garbled, negative, absurd or past ignored.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasRateLimitHeaders, parseRateLimit } from '../engine/fetch/rate-limit.ts';

const NOW = 1_700_000_000_500;

test('the IETF draft structured fields: the most restrictive policy, the item with the least left', () => {
  assert.deepEqual(parseRateLimit({ 'ratelimit-policy': '"burst";q=100;w=60, "day";q=1000;w=86400', ratelimit: '"burst";r=40;t=12, "day";r=900;t=5000' }, NOW), { perSecond: 1000 / 86400, windowMs: 86_400_000, remaining: 40, resetMs: 12_000 });
  assert.deepEqual(parseRateLimit({ 'ratelimit-policy': '"a,;b";q=10;w=1' }, NOW), { perSecond: 10, windowMs: 1_000 }, 'a quoted name may hold , and ;');
  // Draft 07's policy: a bare quota with its window; the dictionary form of an older draft.
  assert.deepEqual(parseRateLimit({ 'ratelimit-policy': '10;w=1, 50;w=60' }, NOW), { perSecond: 50 / 60, windowMs: 60_000 });
  assert.deepEqual(parseRateLimit({ ratelimit: 'limit=100, remaining=0, reset=7' }, NOW), { limit: 100, remaining: 0, resetMs: 7_000 });
});

test('RateLimit-Limit / -Remaining / -Reset and X-RateLimit-*: the reset in seconds from now or as an epoch time', () => {
  assert.deepEqual(parseRateLimit({ 'ratelimit-limit': '10, 10;w=1', 'ratelimit-remaining': '4', 'ratelimit-reset': '1' }, NOW), { perSecond: 10, windowMs: 1_000, limit: 10, remaining: 4, resetMs: 1_000 });
  assert.deepEqual(parseRateLimit({ 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4999', 'x-ratelimit-reset': '1700003600' }, NOW), { limit: 5000, remaining: 4999, resetMs: 3_599_500 });
  assert.deepEqual(parseRateLimit({ 'x-ratelimit-limit': '60', 'x-ratelimit-remaining': '3', 'x-ratelimit-reset': '30' }, NOW), { limit: 60, remaining: 3, resetMs: 30_000 });
  assert.deepEqual(parseRateLimit({ 'x-ratelimit-remaining': '3', 'x-ratelimit-reset': String(NOW + 2_000) }, NOW), { remaining: 3, resetMs: 2_000 }, 'an epoch in ms');
  assert.deepEqual(parseRateLimit({ 'x-ratelimit-limit': '1, 15000', 'x-ratelimit-policy': '1;w=1, 15000;w=2592000', 'x-ratelimit-remaining': '1, 1000', 'x-ratelimit-reset': '1, 1419704' }, NOW), { perSecond: 15000 / 2592000, windowMs: 2_592_000_000, limit: 1, remaining: 1, resetMs: 1_000 });
});

test('garbled, negative, fractional, huge or past values are ignored; nothing usable is undefined', () => {
  for (const headers of [
    {},
    { 'ratelimit-policy': '"default";q=-5;w=1' },
    { 'ratelimit-policy': '"default";q=1e9;w=1' },
    { 'ratelimit-policy': '"default";q=10;w=0.5' },
    { 'ratelimit-policy': '"default";q=10;w=0' },
    { 'ratelimit-policy': '"default";q=10;w=999999999' },
    { 'ratelimit-policy': '"default";q=10;w=ten' },
    { 'ratelimit-policy': '"default";q=99999999999;w=1' },
    { ratelimit: '"default";r=5' },
    { ratelimit: '"default";r=abc;t=1' },
    { ratelimit: '"default";r=5;t=-1' },
    { ratelimit: '"default";r=5;t=100000000' },
    { 'x-ratelimit-remaining': '5', 'x-ratelimit-reset': '1600000000' },
    { 'x-ratelimit-limit': 'lots', 'x-ratelimit-remaining': 'NaN', 'x-ratelimit-reset': 'Infinity' },
    { 'x-ratelimit-limit': '0' },
    { 'ratelimit-policy': `"x";q=10;w=1${', "y"'.repeat(300)}` },
  ]) {
    assert.equal(parseRateLimit(headers, NOW), undefined, JSON.stringify(headers).slice(0, 80));
  }
  assert.deepEqual(parseRateLimit({ 'x-ratelimit-limit': '10', 'x-ratelimit-remaining': '-1', 'x-ratelimit-reset': '3' }, NOW), { limit: 10 });
});

test('an answer without such fields is told apart by a few lookups', () => {
  assert.equal(hasRateLimitHeaders({ 'content-type': 'image/jpeg', 'content-length': '10' }), false);
  for (const name of ['ratelimit', 'ratelimit-policy', 'ratelimit-limit', 'ratelimit-remaining', 'x-ratelimit-limit', 'x-ratelimit-remaining']) {
    assert.equal(hasRateLimitHeaders({ [name]: '1' }), true, name);
  }
});
