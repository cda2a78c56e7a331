// Fleet-wide host pauses in the bucket (engine/host-gate.ts's HostPauses port): one small object
// per paused origin, hosts/<origin hash>.json, written when a host says Retry-After or bans us, read
// by every fetch function before it sends that host anything. A container keeps what it read for a
// few seconds, so a busy host costs one GET per container every few seconds, not one per image.

import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { hostKey, type HostNote } from '../bucket.ts';
import { originHash } from '../fifo.ts';

/** Why an origin is paused (engine/host-gate.ts PauseReason). */
type PauseReason = HostNote['reason'];

/** Pauses shared by the fleet (the shape of engine/host-gate.ts's HostPauses port). */
export interface FleetPauses {
  get(origin: string): Promise<number>;
  set(origin: string, untilMs: number, reason: PauseReason): Promise<void>;
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

/** How long a container trusts what it read: another function's pause reaches it this late at most. */
export const HOST_NOTE_TTL_MS = 5_000;

interface Known {
  until: number;
  readAt: number;
}

export class S3HostPauses implements FleetPauses {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #known = new Map<string, Known>();
  /** One read per origin at a time, however many images of it ask. */
  readonly #reading = new Map<string, Promise<number>>();

  constructor(s3: S3Client, bucket: string, o: { ttlMs?: number; now?: () => number } = {}) {
    this.#s3 = s3;
    this.#bucket = bucket;
    this.#ttlMs = o.ttlMs ?? HOST_NOTE_TTL_MS;
    this.#now = o.now ?? Date.now;
  }

  /** ms since the epoch until which `origin` is paused for the fleet; 0 if it is not. */
  async get(origin: string): Promise<number> {
    const now = this.#now();
    const known = this.#known.get(origin);
    if (known && now - known.readAt < this.#ttlMs) return known.until > now ? known.until : 0;
    let reading = this.#reading.get(origin);
    if (!reading) {
      reading = this.#read(origin).finally(() => this.#reading.delete(origin));
      this.#reading.set(origin, reading);
    }
    const until = await reading;
    return until > this.#now() ? until : 0;
  }

  /** Pauses `origin` for the fleet until `untilMs`, unless it is known paused as long already (no write then). */
  async set(origin: string, untilMs: number, reason: PauseReason): Promise<void> {
    if ((await this.get(origin)) >= untilMs) return;
    this.#known.set(origin, { until: untilMs, readAt: this.#now() });
    const note: HostNote = { origin, pausedUntil: untilMs, reason, at: new Date(this.#now()).toISOString() };
    await this.#s3.send(new PutObjectCommand({
      Bucket: this.#bucket, Key: hostKey(originHash(origin)), Body: JSON.stringify(note), ContentType: 'application/json',
    }));
  }

  async #read(origin: string): Promise<number> {
    let until = 0;
    try {
      const answer = await this.#s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: hostKey(originHash(origin)) }));
      const note = JSON.parse(await answer.Body!.transformToString()) as Partial<HostNote>;
      // The key is a hash: a note of another origin (a collision) or a malformed one pauses nothing.
      if (note.origin === origin && typeof note.pausedUntil === 'number' && Number.isFinite(note.pausedUntil)) until = note.pausedUntil;
    } catch (error) {
      // No note: not paused. Any other error: not known, and a fetch goes ahead rather than wait on S3.
      if ((error as { name?: string }).name !== 'NoSuchKey') until = this.#known.get(origin)?.until ?? 0;
    }
    // A pause this container set itself is not forgotten because a read came back older.
    const mine = this.#known.get(origin)?.until ?? 0;
    until = Math.max(until, mine > this.#now() ? mine : 0);
    this.#known.set(origin, { until, readAt: this.#now() });
    return until;
  }
}
