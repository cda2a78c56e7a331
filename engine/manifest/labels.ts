// The labels of every image of an iMaterialist manifest, kept compact enough for millions of
// images: label texts are interned to small integers, image ids that are small integers index a
// typed array, and multi-label sets live in one shared Int32Array pool.

import { idKey } from './id.ts';

/** Dense storage stops here (64 MB of Int32Array); larger ids go to the Map. */
const DENSE_LIMIT = 1 << 24;

/**
 * A label code: 0 = none, c > 0 = the single label c - 1, c < 0 = a set stored in the pool at
 * offset -c - 1 as [count, label, label, ...].
 */
type Code = number;

export class LabelStore {
  private readonly names: string[] = [];
  private readonly indexOf = new Map<string, number>();
  private dense = new Int32Array(1024);
  private readonly sparse = new Map<string | number, Code>();
  private pool = new Int32Array(1024);
  private poolLength = 0;
  private stored = 0;

  /** Number of images with at least one label. */
  get size(): number {
    return this.stored;
  }

  /** Distinct label texts seen. */
  get distinctLabels(): number {
    return this.names.length;
  }

  /** Adds labels to the image `id`, merging with the ones it has already. */
  add(id: string, labels: readonly string[]): void {
    if (labels.length === 0) return;
    const key = idKey(id);
    const before = this.code(key);
    let indices: number[];
    if (before === 0) {
      indices = labels.map((label) => this.intern(label));
    } else {
      indices = this.indices(before);
      const count = indices.length;
      for (const label of labels) {
        const index = this.intern(label);
        if (!indices.includes(index)) indices.push(index);
      }
      if (indices.length === count) return;
    }
    if (before === 0) this.stored++;
    this.setCode(key, this.encode(indices));
  }

  /** The labels of image `id` (shared strings), empty when it has none. */
  get(id: string): string[] {
    const code = this.code(idKey(id));
    if (code === 0) return [];
    if (code > 0) return [this.names[code - 1]!];
    return this.indices(code).map((index) => this.names[index]!);
  }

  private intern(label: string): number {
    let index = this.indexOf.get(label);
    if (index === undefined) {
      index = this.names.length;
      this.names.push(label);
      this.indexOf.set(label, index);
    }
    return index;
  }

  private code(key: string | number): Code {
    if (typeof key === 'number' && key < this.dense.length) {
      const code = this.dense[key]!;
      if (code !== 0 || this.sparse.size === 0) return code;
    }
    return this.sparse.get(key) ?? 0;
  }

  private setCode(key: string | number, code: Code): void {
    if (typeof key === 'number' && key >= this.dense.length && key < DENSE_LIMIT && key < 4 * this.stored + (1 << 20)) {
      // Grow while ids stay dense enough for the array to beat a Map (about 40 bytes an entry).
      let length = this.dense.length;
      while (length <= key) length *= 2;
      const grown = new Int32Array(Math.min(length, DENSE_LIMIT));
      grown.set(this.dense);
      this.dense = grown;
    }
    if (typeof key === 'number' && key < this.dense.length) {
      this.dense[key] = code;
      this.sparse.delete(key);
    } else {
      this.sparse.set(key, code);
    }
  }

  private encode(indices: readonly number[]): Code {
    if (indices.length === 1) return indices[0]! + 1;
    const needed = this.poolLength + 1 + indices.length;
    if (needed > this.pool.length) {
      let length = this.pool.length;
      while (length < needed) length *= 2;
      const grown = new Int32Array(length);
      grown.set(this.pool.subarray(0, this.poolLength));
      this.pool = grown;
    }
    const offset = this.poolLength;
    this.pool[offset] = indices.length;
    for (let i = 0; i < indices.length; i++) this.pool[offset + 1 + i] = indices[i]!;
    this.poolLength = needed;
    return -offset - 1;
  }

  private indices(code: Code): number[] {
    if (code > 0) return [code - 1];
    const offset = -code - 1;
    const count = this.pool[offset]!;
    return Array.from(this.pool.subarray(offset + 1, offset + 1 + count));
  }
}
