// The Store on a local folder. A put writes a temporary file and hard-links it into place, so a
// final name never holds a partial file (a killed run leaves only temporaries, swept next time)
// and an existing file is never overwritten — the local twin of PutObject with If-None-Match: *.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdir, readdir, rm, rmdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { dirname, join, resolve, sep } from 'node:path';
import { fileSha256 } from './file-sha256.ts';
import { printable } from './printable.ts';
import type { PutMetadata, Store } from './store.ts';

export const TEMP_DIR = '.cloudfetch-tmp';
/** A "." or ".." segment of a key. */
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/;

// The callback API, promisified: for many small files it costs the event loop about half of what
// fs/promises does (no FileHandle per file), which a run of 64 downloads at once feels.
const writeFile = promisify(fs.writeFile);
const link = promisify(fs.link);
const unlink = promisify(fs.unlink);
const rename = promisify(fs.rename);
/** Puts slower than this (ms), SLOW_PUTS_IN_A_ROW of them, send the rest to the thread pool: see put(). */
const SLOW_PUT_MS = 20;
/**
 * One slow put is not enough: on a busy machine a process is descheduled for tens of ms at times,
 * and a put that happened to span it had made a whole run slower (the thread pool's hand-offs:
 * seen turn a 32,000-image run's puts to the pool midway on this 2-CPU machine under load).
 */
const SLOW_PUTS_IN_A_ROW = 3;

/** A key (from a bucket, say) that resolves outside the folder: refused, nothing read or written. */
export class OutsideFolderError extends Error {
  override name = 'OutsideFolderError';
  constructor(root: string, key: string) {
    super(`refused ${printable(key)}: it lies outside ${printable(root)}`);
  }
}

export class FsStore implements Store {
  readonly root: string;
  /** null: opened read-only. */
  #temp: string | null;
  #dirs = new Set<string>();
  /** Folders (as keys name them) and whether each was empty or missing when first looked into. */
  #unseen = new Map<string, boolean>();
  #counter = 0;
  #linkWorks = true;
  #syncPuts = true;
  #slowPutMs = SLOW_PUT_MS;
  #slowPuts = 0;
  #now: () => number = () => performance.now();

  private constructor(root: string, temp: string | null) {
    this.root = root;
    this.#temp = temp;
  }

  /**
   * Opens (creating) the folder and sweeps temporaries left by runs that no longer live.
   * `readOnly` (a dry run) touches nothing: head() and names() only.
   */
  static async open(root: string, o: { readOnly?: boolean; /** tests: below SLOW_PUT_MS */ slowPutMs?: number; /** tests: the clock that times puts (ms) */ now?: () => number } = {}): Promise<FsStore> {
    const absolute = resolve(root);
    if (o.readOnly) return new FsStore(absolute, null);
    const temps = join(absolute, TEMP_DIR);
    await mkdir(temps, { recursive: true });
    for (const name of await readdir(temps)) {
      const pid = Number(name.split('-')[0]);
      if (!Number.isInteger(pid) || !isAlive(pid)) await rm(join(temps, name), { recursive: true, force: true });
    }
    const temp = join(temps, `${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(temp);
    const store = new FsStore(absolute, temp);
    store.#slowPutMs = o.slowPutMs ?? SLOW_PUT_MS;
    if (o.now) store.#now = o.now;
    return store;
  }

  #path(key: string): string {
    // A plain relative key (no empty, "." or ".." segment) needs no resolve(): it is the root's
    // own child as written, which a run's every key is (resolve() costs a few µs a call).
    if (sep === '/' && this.root !== '/' && key.length > 0 && key[0] !== '/' && !key.endsWith('/') && !key.includes('//') && !DOT_SEGMENT.test(key)) return `${this.root}/${key}`;
    const full = resolve(this.root, key);
    if (!full.startsWith(this.root + sep)) throw new OutsideFolderError(this.root, key);
    return full;
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    try {
      // Synchronous: one metadata lookup costs less than a trip through the thread pool, and a
      // missing file (a fresh run's every image) answers undefined instead of building an error.
      const info = fs.statSync(this.#path(key), { throwIfNoEntry: false });
      return info?.isFile() ? { bytes: info.size } : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw error;
    }
  }

  unseenFolder(key: string): boolean {
    const slash = key.lastIndexOf('/');
    const folder = slash < 0 ? '' : key.slice(0, slash);
    let unseen = this.#unseen.get(folder);
    if (unseen === undefined) {
      try {
        unseen = isEmptyFolder(folder === '' ? this.root : this.#path(folder));
      } catch {
        unseen = false; // a key outside the folder: head() and put() refuse it
      }
      if (this.#unseen.size >= 10_000) this.#unseen.clear();
      this.#unseen.set(folder, unseen);
    }
    return unseen;
  }

  /** SHA-256 of the stored file, hex, read as a stream. */
  async sha256(key: string): Promise<string> {
    return fileSha256(this.#path(key));
  }

  /** Removes the stored file, if there is one. */
  async remove(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  async names(folder: string): Promise<Set<string>> {
    try {
      return new Set(await readdir(this.#path(folder)));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return new Set();
      throw error;
    }
  }

  async put(key: string, body: Uint8Array, _meta?: PutMetadata): Promise<boolean> {
    const temp = this.#tempFile();
    // A folder made already costs no await (a promise and a turn of the microtask queue per image).
    let target = this.#path(key);
    if (!this.#dirs.has(dirname(target))) target = await this.#prepare(key);
    if (this.#linkWorks && this.#syncPuts) {
      // Synchronous while the folder answers quickly: an image is a few tens of KiB into the page
      // cache, and the five calls' hand-offs to the thread pool and back cost more CPU than the
      // calls themselves (tmpfs: 0.10-0.13 -> 0.05 CPU s per 1,000 puts). A slow folder (a network
      // mount, a saturated disk) would stall every fetch meanwhile: a few slow puts in a row end this.
      const started = this.#now();
      let stored: boolean | null;
      try {
        stored = this.#linkNow(temp, target, body);
      } finally {
        if (this.#now() - started <= this.#slowPutMs) this.#slowPuts = 0;
        else if (++this.#slowPuts >= SLOW_PUTS_IN_A_ROW) this.#syncPuts = false;
      }
      if (stored !== null) return stored;
    } else {
      await writeFile(temp, body, { flag: 'wx' });
      if (this.#linkWorks) {
        try {
          await link(temp, target);
          await unlink(temp);
          return true;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') {
            await unlink(temp);
            return false;
          }
          if (!noHardLinks(code)) {
            await unlink(temp).catch(() => {});
            throw error;
          }
        }
      }
    }
    // Filesystems without hard links (FAT, some network mounts): rename, after a look.
    this.#linkWorks = false;
    if (await this.head(key)) {
      await unlink(temp);
      return false;
    }
    await rename(temp, target);
    return true;
  }

  /** Whether puts are still made with synchronous calls (see put()); for tests and reports. */
  get synchronousPuts(): boolean {
    return this.#syncPuts && this.#linkWorks;
  }

  /** put()'s write and link, synchronous. null: the folder has no hard links, `temp` is written. */
  #linkNow(temp: string, target: string, body: Uint8Array): boolean | null {
    const fd = fs.openSync(temp, 'wx');
    try {
      for (let at = 0; at < body.length; ) at += fs.writeSync(fd, body, at, body.length - at);
    } catch (error) {
      fs.closeSync(fd);
      fs.rmSync(temp, { force: true });
      throw error;
    }
    fs.closeSync(fd);
    try {
      fs.linkSync(temp, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (noHardLinks(code)) return null;
      fs.rmSync(temp, { force: true });
      if (code === 'EEXIST') return false;
      throw error;
    }
    fs.unlinkSync(temp);
    return true;
  }

  async replace(key: string, body: Uint8Array): Promise<void> {
    const temp = this.#tempFile();
    const target = await this.#prepare(key);
    try {
      await writeFile(temp, body, { flag: 'wx' });
      await rename(temp, target);
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
  }

  #tempFile(): string {
    if (this.#temp === null) throw new Error(`${this.root} was opened read-only`);
    return `${this.#temp}${sep}${++this.#counter}.part`;
  }

  /** The key's path, its folder created (once per folder). */
  async #prepare(key: string): Promise<string> {
    const target = this.#path(key);
    const dir = dirname(target);
    if (!this.#dirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.#dirs.add(dir);
    }
    return target;
  }

  /** Removes this process's temporary folder, and the shared one when no other run uses it. */
  async close(): Promise<void> {
    if (this.#temp === null) return;
    await rm(this.#temp, { recursive: true, force: true });
    await rmdir(dirname(this.#temp)).catch(() => {});
  }
}

/** What link() answers where a filesystem has no hard links. */
function noHardLinks(code: string | undefined): boolean {
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EMLINK';
}

/** Whether a folder is missing or has no entries (one entry read, whatever its size). */
function isEmptyFolder(path: string): boolean {
  let dir: fs.Dir;
  try {
    dir = fs.opendirSync(path);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
  try {
    return dir.readSync() === null;
  } finally {
    dir.closeSync();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
