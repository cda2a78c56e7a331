import assert from 'node:assert/strict';
import { test } from 'node:test';
import { extensionOf, imageKey, safeSegment } from '../engine/keys.ts';

test('safe ids pass through unchanged', () => {
  for (const id of ['1', '97c0a12e07ae8dd5', 'img_01-a.b', 'A.B.C']) assert.equal(safeSegment(id), id);
});

test('unsafe ids are percent-encoded: no separators, no dot-dot, no control bytes, no hidden files', () => {
  assert.equal(safeSegment('../etc/passwd'), '%2E.%2Fetc%2Fpasswd');
  assert.equal(safeSegment('..'), '%2E.');
  assert.equal(safeSegment('.'), '%2E');
  assert.equal(safeSegment('a/b'), 'a%2Fb');
  assert.equal(safeSegment('a\\b'), 'a%5Cb');
  assert.equal(safeSegment('a\u0000b\nc'), 'a%00b%0Ac');
  assert.equal(safeSegment('ü 1'), '%C3%BC%201');
  assert.equal(safeSegment(''), '%00');
  for (const id of ['../x', '..', 'a/b', 'x\u0001', '.hidden', 'C:\\x']) {
    const segment = safeSegment(id);
    assert.ok(!segment.includes('/') && !segment.includes('\\') && !segment.startsWith('.'), segment);
    assert.ok(!/[\u0000-\u001f]/.test(segment), segment);
  }
});

test('distinct ids never share a key, even when they look alike once cleaned', () => {
  const ids = ['a/b', 'a_b', 'a%2Fb', 'a b', 'a+b', '.a', '%2Ea', 'A', 'a'];
  const segments = ids.map(safeSegment);
  assert.equal(new Set(segments).size, ids.length, segments.join(' '));
});

test('over-long ids are cut and keep a hash of the whole, so they stay distinct', () => {
  const a = safeSegment('x'.repeat(500) + 'a');
  const b = safeSegment('x'.repeat(500) + 'b');
  assert.ok(a.length <= 200 && b.length <= 200);
  assert.notEqual(a, b);
  assert.match(a, /~[0-9a-f]{16}$/);
});

test('the extension comes from the URL path when it is an image extension', () => {
  assert.equal(extensionOf('https://h/x/IMG_1212.JPG'), 'jpg');
  assert.equal(extensionOf('https://h/x/a.jpeg?w=100'), 'jpg');
  assert.equal(extensionOf('https://h/x/a.png#frag'), 'png');
  assert.equal(extensionOf('https://h/x/a.tif'), 'tiff');
  assert.equal(extensionOf('https://h/x/a.webp'), 'webp');
  assert.equal(extensionOf('https://contestimg.wish.com/api/webimage/570f35feb2f4b95d223aa9b1-large'), null);
  assert.equal(extensionOf('https://lh5.googleusercontent.com/-PUnMrX7oOyA/s1600/'), null);
  assert.equal(extensionOf('https://h/page.html'), null);
  assert.equal(extensionOf('not a url'), null);
});

test('keys: flat and by-label layouts, jpg by default, first mirror with an extension', () => {
  assert.equal(imageKey('train', '1', ['https://h/a.png'], ['5'], 'flat'), 'train/1.png');
  assert.equal(imageKey('train', '1', ['https://h/noext', 'https://m/b.gif'], ['5'], 'flat'), 'train/1.gif');
  assert.equal(imageKey('train', '2', ['https://h/noext'], [], 'flat'), 'train/2.jpg');
  assert.equal(imageKey('train', '3', ['https://h/a.jpg'], ['12519'], 'by-label'), 'train/12519/3.jpg');
  assert.equal(imageKey('test', '4', ['https://h/a.jpg'], [], 'by-label'), 'test/_unlabeled/4.jpg');
  assert.equal(imageKey('train', 'a/../b', ['https://h/a.jpg'], ['x/y'], 'by-label'), 'train/x%2Fy/a%2F..%2Fb.jpg');
});
