import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectImageFormat } from '../engine/fetch/image.ts';

const bytes = (...parts: Array<number[] | string>): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

test('image formats are told by their magic bytes', () => {
  assert.equal(detectImageFormat(bytes([0xff, 0xd8, 0xff, 0xe0], '\0\x10JFIF\0')), 'jpeg');
  assert.equal(detectImageFormat(bytes([0x89], 'PNG\r\n\x1a\n', '\0\0\0\rIHDR')), 'png');
  assert.equal(detectImageFormat(bytes('GIF89a', [1, 0, 1, 0])), 'gif');
  assert.equal(detectImageFormat(bytes('GIF87a', [1, 0, 1, 0])), 'gif');
  assert.equal(detectImageFormat(bytes('RIFF', [0x24, 0, 0, 0], 'WEBPVP8 ')), 'webp');
  assert.equal(detectImageFormat(bytes('BM', [0x3a, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0])), 'bmp');
  assert.equal(detectImageFormat(bytes([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0])), 'tiff');
  assert.equal(detectImageFormat(bytes([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8])), 'tiff');
  assert.equal(detectImageFormat(bytes([0, 0, 0, 0x1c], 'ftypavif', [0, 0, 0, 0])), 'avif');
});

test('HTML, text, RIFF audio and short bodies are not images', () => {
  assert.equal(detectImageFormat(bytes('<!DOCTYPE html><html><body>Forbidden</body></html>')), null);
  assert.equal(detectImageFormat(bytes('{"error": "not found"}')), null);
  assert.equal(detectImageFormat(bytes('RIFF', [0x24, 0, 0, 0], 'WAVEfmt ')), null);
  assert.equal(detectImageFormat(bytes([0xff, 0xd8])), null);
  assert.equal(detectImageFormat(bytes('BM')), null);
  assert.equal(detectImageFormat(new Uint8Array()), null);
});
