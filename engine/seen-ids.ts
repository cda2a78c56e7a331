// The ids a run has seen, exactly, in a few bytes each instead of a JS value per id (a million
// entries would otherwise hold tens of MB of Set): small integer ids are bits of a bitmap; any
// other id is a 64-bit hash in an open-addressing table of typed arrays, its text appended to a
// spill file (or an in-memory arena without one) and compared byte for byte when a hash matches.

import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { idKey } from './manifest/id.ts';

/** 32 bits of a string's hash; two seeds give the table's 64. */
export type IdHash = (id: string, seed: number) => number;

export const hashId: IdHash = (id, seed) => {
  let h = seed >>> 0;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  // murmur3's finaliser: the low bits pick the slot, so they must depend on every character.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
};

const SEED_HIGH = 0x811c9dc5;
const SEED_LOW = 0x9747b28c;
/** Arena bytes kept in memory before they go to the spill file. */
const FLUSH_BYTES = 1 << 16;

export interface SeenIdsOptions {
  /** Where the ids' text goes; without it the arena stays in memory. Removed by close(). */
  spillFile?: string;
  /** For tests: a hash that collides on purpose. */
  hash?: IdHash;
}

export class SeenIds {
  size = 0;
  #bits = new Uint32Array(1 << 10);
  /** Integer ids that went to the table because the bitmap did not reach them then. */
  #integersInTable = 0;
  #high = new Uint32Array(1 << 10);
  #low = new Uint32Array(1 << 10);
  /** 1 + the id's offset in the arena; 0 = empty slot. */
  #at = new Float64Array(1 << 10);
  #used = 0;
  readonly #hash: IdHash;
  readonly #spillFile: string | null;
  #fd: number | null = null;
  /** Arena bytes from #flushed on, not yet in the file. */
  #tail = Buffer.alloc(FLUSH_BYTES * 2);
  #tailLength = 0;
  #flushed = 0;

  constructor(options: SeenIdsOptions = {}) {
    this.#hash = options.hash ?? hashId;
    this.#spillFile = options.spillFile ?? null;
    if (this.#spillFile !== null) this.#fd = openSync(this.#spillFile, 'wx+');
  }

  /** Adds the id; false when it was there already. */
  add(id: string): boolean {
    const key = idKey(id);
    if (typeof key === 'number' && this.#bitmapReaches(key)) {
      const word = key >>> 5;
      const bit = 1 << (key & 31);
      if ((this.#bits[word]! & bit) !== 0) return false;
      if (this.#integersInTable > 0 && this.#has(id)) return false;
      this.#bits[word] = this.#bits[word]! | bit;
      this.size++;
      return true;
    }
    if (!this.#insert(id)) return false;
    if (typeof key === 'number') this.#integersInTable++;
    this.size++;
    return true;
  }

  /** Removes the spill file; the set is empty afterwards. */
  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
    if (this.#spillFile !== null) rmSync(this.#spillFile, { force: true });
  }

  /** Grows the bitmap over `key` while it stays within a few bits per id seen. */
  #bitmapReaches(key: number): boolean {
    if (key < this.#bits.length * 32) return true;
    if (key >= 2 ** 31 || key >= 64 * this.size + (1 << 24)) return false;
    let length = this.#bits.length;
    while (length * 32 <= key) length *= 2;
    const grown = new Uint32Array(length);
    grown.set(this.#bits);
    this.#bits = grown;
    return true;
  }

  #has(id: string): boolean {
    const high = this.#hash(id, SEED_HIGH);
    const low = this.#hash(id, SEED_LOW);
    return this.#find(id, high, low) < 0;
  }

  /** The empty slot for the id, or -1 when it is in the table. */
  #find(id: string, high: number, low: number): number {
    const mask = this.#at.length - 1;
    let encoded: Buffer | null = null;
    for (let slot = low & mask; ; slot = (slot + 1) & mask) {
      const at = this.#at[slot]!;
      if (at === 0) return slot;
      if (this.#high[slot] === high && this.#low[slot] === low) {
        encoded ??= Buffer.from(id, 'utf8');
        if (this.#arenaHolds(at - 1, encoded)) return -1;
      }
    }
  }

  #insert(id: string): boolean {
    const high = this.#hash(id, SEED_HIGH);
    const low = this.#hash(id, SEED_LOW);
    const slot = this.#find(id, high, low);
    if (slot < 0) return false;
    this.#high[slot] = high;
    this.#low[slot] = low;
    this.#at[slot] = 1 + this.#append(id);
    if (++this.#used * 2 > this.#at.length) this.#grow();
    return true;
  }

  #grow(): void {
    const [high, low, at] = [this.#high, this.#low, this.#at];
    const capacity = at.length * 2;
    const mask = capacity - 1;
    this.#high = new Uint32Array(capacity);
    this.#low = new Uint32Array(capacity);
    this.#at = new Float64Array(capacity);
    for (let old = 0; old < at.length; old++) {
      if (at[old] === 0) continue;
      let slot = low[old]! & mask;
      while (this.#at[slot] !== 0) slot = (slot + 1) & mask;
      this.#high[slot] = high[old]!;
      this.#low[slot] = low[old]!;
      this.#at[slot] = at[old]!;
    }
  }

  /** Appends [byte length, 4 bytes LE][UTF-8 text] to the arena; returns its offset. */
  #append(id: string): number {
    const length = Buffer.byteLength(id, 'utf8');
    const offset = this.#flushed + this.#tailLength;
    if (this.#tailLength + 4 + length > this.#tail.length) {
      if (this.#fd !== null) this.#flush();
      if (this.#tailLength + 4 + length > this.#tail.length) {
        const grown = Buffer.alloc(Math.max(this.#tail.length * 2, this.#tailLength + 4 + length));
        this.#tail.copy(grown, 0, 0, this.#tailLength);
        this.#tail = grown;
      }
    }
    this.#tail.writeUInt32LE(length, this.#tailLength);
    this.#tail.write(id, this.#tailLength + 4, 'utf8');
    this.#tailLength += 4 + length;
    if (this.#fd !== null && this.#tailLength >= FLUSH_BYTES) this.#flush();
    return offset;
  }

  #flush(): void {
    let written = 0;
    while (written < this.#tailLength) written += writeSync(this.#fd!, this.#tail, written, this.#tailLength - written, this.#flushed + written);
    this.#flushed += this.#tailLength;
    this.#tailLength = 0;
  }

  /** Whether the arena record at `offset` is exactly these bytes. */
  #arenaHolds(offset: number, encoded: Buffer): boolean {
    const record = Buffer.allocUnsafe(4 + encoded.length);
    if (offset >= this.#flushed) {
      this.#tail.copy(record, 0, offset - this.#flushed, Math.min(this.#tailLength, offset - this.#flushed + record.length));
    } else {
      let read = 0;
      while (read < record.length) {
        const n = readSync(this.#fd!, record, read, record.length - read, offset + read);
        if (n === 0) break;
        read += n;
      }
      // A record shorter than this one may end at the file's end and go on in the tail.
      if (read < record.length) this.#tail.copy(record, read, 0, record.length - read);
    }
    return record.readUInt32LE(0) === encoded.length && record.subarray(4).equals(encoded);
  }
}
