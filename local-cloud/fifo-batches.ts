// fauxqs (2.4) hands out at most one message per FIFO message group per ReceiveMessage; SQS does
// the opposite: it "attempts to return as many messages with the same message group ID as
// possible" (ReceiveMessage API reference), so a Lambda batch from a FIFO queue is mostly one
// group. The fleet's parallelism depends on it (aws/fifo.ts: a group is a slot of a host), so the
// embedded emulator is made to batch as SQS does: fill a receive from one group, then the next.

interface FifoQueue {
  fifoMessages: Map<string, Array<{ messageGroupId?: string }>>;
  fifoLockedGroups: Map<string, number>;
  inflightMessages: Map<string, { message: { messageGroupId?: string } }>;
  processTimers(): void;
  dequeueFifo(maxCount: number, visibilityTimeout?: number, dlqResolver?: unknown): Array<{ ReceiptHandle: string }>;
}

let patched: Promise<void> | undefined;

/** Once per process: every embedded fauxqs queue then fills a FIFO receive group by group. */
export function batchFifoAsSqs(): Promise<void> {
  patched ??= (async () => {
    const store = (await import(new URL('./sqs/sqsStore.js', import.meta.resolve('fauxqs')).href)) as { SqsQueue?: { prototype: FifoQueue } };
    const proto = store.SqsQueue?.prototype;
    if (!proto || typeof proto.dequeueFifo !== 'function') throw new Error('this fauxqs has no SqsQueue.dequeueFifo: local-cloud/fifo-batches.ts needs updating');
    const oneEach = proto.dequeueFifo;
    proto.dequeueFifo = function (this: FifoQueue, maxCount, visibilityTimeout, dlqResolver) {
      const count = Math.min(maxCount, 10);
      const taken: ReturnType<FifoQueue['dequeueFifo']> = [];
      while (taken.length < count) {
        // The first message of the next group fauxqs would serve (it locks that group)...
        const first = oneEach.call(this, 1, visibilityTimeout, dlqResolver);
        if (first.length === 0) break;
        taken.push(...first);
        const group = this.inflightMessages.get(first[0]!.ReceiptHandle)?.message.messageGroupId;
        if (group === undefined) continue;
        // ...then more of the same group: fauxqs is shown that group alone, unlocked, and the
        // lock is put back counting what it handed out. Its timers ran in the first call; run
        // again now, one expiring meanwhile would unlock a group whose lock is held aside here.
        while (taken.length < count && this.fifoMessages.get(group)?.length) {
          const all = this.fifoMessages;
          const locks = this.fifoLockedGroups.get(group) ?? 0;
          this.fifoMessages = new Map([[group, all.get(group)!]]);
          this.fifoLockedGroups.delete(group);
          this.processTimers = () => {};
          let more: typeof taken;
          try {
            more = oneEach.call(this, 1, visibilityTimeout, dlqResolver);
          } finally {
            delete (this as Partial<FifoQueue>).processTimers;
            if (!this.fifoMessages.has(group)) all.delete(group);
            this.fifoMessages = all;
            this.fifoLockedGroups.set(group, (this.fifoLockedGroups.get(group) ?? 0) + locks);
          }
          if (more.length === 0) break;
          taken.push(...more);
        }
      }
      return taken;
    };
  })();
  return patched;
}
