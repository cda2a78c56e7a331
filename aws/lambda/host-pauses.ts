// Fleet-wide host pauses in the bucket (engine/host-gate.ts's HostPauses port): one small object
// per paused origin, hosts/<origin hash>.json, written when a host says Retry-After or bans us, read
// by every fetch function before it sends that host anything. A container trusts what it read for a
// second, then reads it again in the background while it goes on with what it knows (a read waits
// only past 5 s): a busy host costs one GET per container a second, not one per image, and another
// function's pause or pace reaches it about a second after it is written, not up to 5 s after.
// The same note carries a pace learnt from a 429: the function that learnt it writes its own pace
// as the fleet's, and every function keeps its share of it, so the fleet together stays under what
// the host allows instead of each function learning it from a 429 of its own.

import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { hostKey, type HostNote } from '../bucket.ts';
import { groupShare, originHash } from '../fifo.ts';
import { hostConcurrency } from './config.ts';

/** Why an origin is paused (engine/host-gate.ts PauseReason). */
type PauseReason = HostNote['reason'];

/** Pauses shared by the fleet (the shape of engine/host-gate.ts's HostPauses port). */
export interface FleetPauses {
  get(origin: string): Promise<number>;
  set(origin: string, untilMs: number, reason: PauseReason): Promise<void>;
  pace(origin: string): Promise<number>;
  learnt(origin: string, perSecond: number): Promise<void>;
  stated(origin: string, quota: number, windowMs: number): Promise<void>;
}

/** A job not tried because its host is paused for the fleet: it waits in the queue until `until`, not failed. */
export class HostPaused extends Error {
  override name = 'HostPaused';
  readonly until: number;
  constructor(what: string, until: number) {
    super(`${what}: its host is paused until ${new Date(until).toISOString()}`);
    this.until = until;
  }
}

/**
 * How long a container trusts what it read before reading it again in the background: another
 * function's pause or pace reaches a busy container about this late. Measured (bench/sim-web-cloud,
 * traces of the gate): at 5 s the other functions adopted a pace learnt from a 429 3-6 s after it,
 * and two of them crossed the host's limit again at +5 s, past its 2 s Retry-After.
 */
export const HOST_NOTE_TTL_MS = 1_000;
/** What was read is used while a read in the background is under way, up to this old; older, a read waits. */
export const HOST_NOTE_STALE_MS = 5_000;
/** How long a pace learnt by the fleet holds before a function may find the host's limit again (engine/host-gate.ts's longest quiet time). */
export const FLEET_PACE_TTL_MS = 15 * 60_000;

interface Known {
  until: number;
  readAt: number;
  reason?: PauseReason;
  /** The fleet's pace (requests a second) and when it was learnt; 0: none. */
  pace: number;
  paceAt: number;
}

export class S3HostPauses implements FleetPauses {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #ttlMs: number;
  readonly #staleMs: number;
  readonly #now: () => number;
  /** This function's share of a host's pace: its group's width ÷ hostConcurrency (the narrowest group's, aws/fifo.ts). */
  readonly #share: number;
  readonly #known = new Map<string, Known>();
  /** One read per origin at a time, however many images of it ask. */
  readonly #reading = new Map<string, Promise<Known>>();
  /** Per origin: the write not yet sent (a later one joins it), and the last one sent (the next waits for it). */
  readonly #queued = new Map<string, Promise<void>>();
  readonly #sending = new Map<string, Promise<void>>();

  constructor(s3: S3Client, bucket: string, o: { ttlMs?: number; staleMs?: number; now?: () => number; share?: number } = {}) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#ttlMs = o.ttlMs ?? HOST_NOTE_TTL_MS;
    this.#staleMs = Math.max(this.#ttlMs, o.staleMs ?? HOST_NOTE_STALE_MS);
    this.#now = o.now ?? Date.now;
    this.#share = o.share ?? groupShare(hostConcurrency());
  }

  /** ms since the epoch until which `origin` is paused for the fleet; 0 if it is not. */
  async get(origin: string): Promise<number> {
    const { until } = await this.#note(origin);
    return until > this.#now() ? until : 0;
  }

  /** Requests a second this function may send `origin`: its share of the fleet's pace; 0 when none was learnt (or it is old). */
  async pace(origin: string): Promise<number> {
    const { pace, paceAt } = await this.#note(origin);
    return pace > 0 && this.#now() - paceAt < FLEET_PACE_TTL_MS ? pace * this.#share : 0;
  }

  /** Pauses `origin` for the fleet until `untilMs`, unless it is known paused as long already (no write then). */
  async set(origin: string, untilMs: number, reason: PauseReason): Promise<void> {
    if ((await this.get(origin)) >= untilMs) return;
    await this.#write(origin, { ...(await this.#note(origin)), until: untilMs, reason });
  }

  /**
   * This function learnt that `perSecond` of its own requests a second are what `origin` allows
   * (the margin kept): that is the fleet's pace, unless the note already holds one as slow. Not
   * that ÷ its share: the 429 says the host counted too many with whatever the other functions sent,
   * which may have been nothing (measured: a function alone at a host 7 a second learnt 4.9, and
   * the fleet at twice that crossed again), so only this function's own pace is known to be safe.
   */
  async learnt(origin: string, perSecond: number): Promise<void> {
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) return;
    const known = await this.#note(origin);
    if (known.pace > 0 && this.#now() - known.paceAt < FLEET_PACE_TTL_MS && known.pace <= perSecond) return;
    await this.#write(origin, { ...known, pace: perSecond, paceAt: this.#now() });
  }

  /**
   * `origin` stated a quota per window: the fleet's pace keeps the functions at it together within
   * it. Each function spaces its share evenly, and an evenly spaced function can fit one start more
   * into a window than its pace (measured: two functions at a host stating 7 a second, each at 90%
   * of half, crossed it), so the fleet's pace leaves one start a window per function that may send
   * there at once (its groups, aws/fifo.ts), and 10% besides.
   */
  async stated(origin: string, quota: number, windowMs: number): Promise<void> {
    if (!(quota > 0) || !(windowMs > 0)) return;
    const members = Math.max(1, Math.round(1 / this.#share));
    const perWindow = quota > 2 * members ? Math.min(0.9 * quota, quota - members) : quota / (2 * members);
    await this.learnt(origin, (1000 * perWindow) / windowMs);
  }

  /**
   * What is known of `origin`'s note: read again when older than the TTL (one read at a time), in
   * the background while what was read is younger than the stale limit, else waited for.
   */
  async #note(origin: string): Promise<Known> {
    const known = this.#known.get(origin);
    const age = known ? this.#now() - known.readAt : Infinity;
    if (known && age < this.#ttlMs) return known;
    let reading = this.#reading.get(origin);
    if (!reading) {
      reading = this.#read(origin).finally(() => this.#reading.delete(origin));
      this.#reading.set(origin, reading);
    }
    // #read never rejects (an error keeps what was known), so a read nobody waits for is not an unhandled rejection.
    if (known && age < this.#staleMs) return known;
    return reading;
  }

  /**
   * Writes what this container knows of `origin` (set as `known` at once). One PUT at a time per
   * origin, each sending what is known when it starts: two writes in a row (a 429's pace, then its
   * pause) never race, so the note is never left with the first of them only.
   */
  #write(origin: string, known: Known): Promise<void> {
    this.#known.set(origin, { ...known, readAt: this.#now() });
    const queued = this.#queued.get(origin);
    if (queued) return queued;
    const previous = this.#sending.get(origin) ?? Promise.resolve();
    const put = previous.then(() => {
      this.#queued.delete(origin);
      return this.#put(origin);
    });
    this.#queued.set(origin, put);
    const settled = put.catch(() => {}).finally(() => {
      if (this.#sending.get(origin) === settled) this.#sending.delete(origin);
    });
    this.#sending.set(origin, settled);
    return put;
  }

  async #put(origin: string): Promise<void> {
    const known = this.#known.get(origin)!;
    const note: HostNote = {
      origin, pausedUntil: known.until, reason: known.reason ?? 'throttled', at: new Date(this.#now()).toISOString(),
      ...(known.pace > 0 ? { pace: known.pace, paceAt: known.paceAt } : {}),
    };
    await this.#s3.send(new PutObjectCommand({
      Bucket: this.#bucket, Key: hostKey(originHash(origin)), Body: JSON.stringify(note), ContentType: 'application/json',
    }));
  }

  async #read(origin: string): Promise<Known> {
    // What is known when the answer comes (not when it was asked: a write of ours may come between).
    let before: Known | undefined;
    let read: Known = { until: 0, readAt: 0, pace: 0, paceAt: 0 };
    try {
      const answer = await this.#s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: hostKey(originHash(origin)) }));
      const note = JSON.parse(await answer.Body!.transformToString()) as Partial<HostNote>;
      before = this.#known.get(origin);
      // The key is a hash: a note of another origin (a collision) or a malformed one pauses nothing, paces nothing.
      if (note.origin === origin) {
        if (typeof note.pausedUntil === 'number' && Number.isFinite(note.pausedUntil)) read.until = note.pausedUntil;
        if (note.reason === 'retry-after' || note.reason === 'ban' || note.reason === 'throttled') read.reason = note.reason;
        // A pace is a number of requests a second, at least one a minute; anything else is ignored.
        if (typeof note.pace === 'number' && note.pace >= 1 / 60 && note.pace < 1e6 && typeof note.paceAt === 'number' && Number.isFinite(note.paceAt)) {
          [read.pace, read.paceAt] = [note.pace, note.paceAt];
        }
      }
    } catch (error) {
      before = this.#known.get(origin);
      // No note: not paused. Any other error: not known, and a fetch goes ahead rather than wait on S3.
      if ((error as { name?: string }).name !== 'NoSuchKey' && before) read = { ...before };
    }
    // A pause or a pace this container set itself is not forgotten because a read came back older.
    const now = this.#now();
    if (before && before.until > now && before.until > read.until) [read.until, read.reason] = [before.until, before.reason];
    if (before && before.pace > 0 && (read.pace === 0 || before.pace < read.pace) && now - before.paceAt < FLEET_PACE_TTL_MS) [read.pace, read.paceAt] = [before.pace, before.paceAt];
    read.readAt = now;
    this.#known.set(origin, read);
    return read;
  }
}
