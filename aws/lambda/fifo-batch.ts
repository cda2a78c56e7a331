// A batch from the FIFO jobs queue, processed as its message groups require. A group is a share of
// one host's slots (aws/fifo.ts): at most its width of records run at once, so the fleet never has
// more than hostConcurrency requests at one origin however SQS batched them; different groups run
// at once. When a record fails, it and the group's records not yet started go back
// (ReportBatchItemFailures), those due at the same moment as the failed one: a delayed message
// holds its group, and so a host that asked us to wait waits. At the deadline, records not started
// go back at once.

import type { SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { groupWidth } from '../fifo.ts';

/** How one record ended: done (deleted), or failed and due again in `seconds` (unknown: the queue's visibility timeout). */
export type Settled = { ok: true } | { ok: false; seconds?: number };

export interface GroupOptions {
  /** Aborts at the invocation's deadline: no record starts after it. */
  signal: AbortSignal;
  /**
   * Makes records visible again in `seconds` (ChangeMessageVisibility); answers the ids of those it
   * sent anew instead (redelivery.ts: requeue), which count as done.
   */
  hold: (records: SQSRecord[], seconds: number) => Promise<ReadonlySet<string> | void>;
}

/** The group a record belongs to; a record without one (not from a FIFO queue) is a group of its own. */
const groupOf = (r: SQSRecord): string => r.attributes.MessageGroupId ?? `message ${r.messageId}`;

export async function processByGroup(records: readonly SQSRecord[], run: (record: SQSRecord) => Promise<Settled>, o: GroupOptions): Promise<SQSBatchResponse> {
  const groups = new Map<string, SQSRecord[]>();
  for (const record of records) {
    const group = groups.get(groupOf(record));
    if (group) group.push(record);
    else groups.set(groupOf(record), [record]);
  }
  const failed = new Set<string>();
  const holds = new Map<number, SQSRecord[]>();
  const holdLater = (rest: SQSRecord[], seconds: number | undefined): void => {
    for (const r of rest) failed.add(r.messageId);
    if (rest.length === 0 || seconds === undefined) return;
    holds.set(seconds, [...(holds.get(seconds) ?? []), ...rest]);
  };
  await Promise.all([...groups.entries()].map(async ([id, group]) => {
    // The group's records in order, `width` lanes taking the next one; `next` past the end stops them all.
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < group.length) {
        if (o.signal.aborted) {
          holdLater(group.slice(next), 0);
          next = group.length;
          return;
        }
        const record = group[next++]!;
        const settled = await run(record).catch((): Settled => ({ ok: false }));
        if (!settled.ok) {
          failed.add(record.messageId);
          if (next < group.length) holdLater(group.slice(next), settled.seconds);
          next = group.length;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(groupWidth(id), group.length) }, lane));
  }));
  for (const taken of await Promise.all([...holds].map(([seconds, held]) => o.hold(held, seconds)))) {
    for (const id of taken ?? []) failed.delete(id);
  }
  return { batchItemFailures: records.filter((r) => failed.has(r.messageId)).map((r) => ({ itemIdentifier: r.messageId })) };
}
