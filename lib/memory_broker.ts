/**
 * The in-memory broker (the design card's mock broker): topics, partitions chosen by key hash
 * (Kafka's murmur2, so a key lands on the same partition as with Kafka's default partitioner),
 * per-partition offsets, and consumer groups with committed offsets and partition assignment.
 * Deterministic. Used by the demo and unit tests; never a stand-in for the real-Kafka tests.
 */
import type {
  ConsumeOptions,
  InRecord,
  OutRecord,
  RecordSink,
  RecordSource,
  StartFrom,
} from "./sink.ts";
import { partitionFor } from "./kafka/murmur2.ts";

/** Where a new consumer group starts. */
export type { StartFrom } from "./sink.ts";

/** Options for {@linkcode MemoryBroker.source}. */
export interface MemorySourceOptions {
  topic: string;
  groupId: string;
  /** Where a group with no committed offset starts; default "latest". */
  from?: StartFrom;
  /** Most records per batch; default 500. */
  batchMax?: number;
}

interface Topic {
  partitions: InRecord[][];
}

/** An in-memory Kafka look-alike. */
export class MemoryBroker {
  #topics = new Map<string, Topic>();
  #committed = new Map<string, Map<string, number>>();
  #members = new Map<string, Set<symbol>>();
  #waiters = new Set<() => void>();
  /** Partitions of topics created implicitly by a send; default 6. */
  readonly defaultPartitions: number;

  constructor(options: { defaultPartitions?: number } = {}) {
    this.defaultPartitions = options.defaultPartitions ?? 6;
  }

  /** Creates a topic if it does not exist; returns its partition count. */
  createTopic(name: string, partitions = this.defaultPartitions): number {
    let t = this.#topics.get(name);
    if (t === undefined) {
      t = { partitions: Array.from({ length: partitions }, () => []) };
      this.#topics.set(name, t);
    }
    return t.partitions.length;
  }

  /** Every record of a topic, by partition (tests). */
  records(topic: string): InRecord[][] {
    return this.#topics.get(topic)?.partitions.map((p) => p.slice()) ?? [];
  }

  /** Appends records; returns nothing until "acknowledged" (immediately). */
  append(topic: string, records: readonly OutRecord[]): void {
    this.createTopic(topic);
    const t = this.#topics.get(topic)!;
    const n = t.partitions.length;
    for (const rec of records) {
      const p = partitionFor(rec.key, n);
      const log = t.partitions[p]!;
      log.push({
        topic,
        partition: p,
        offset: String(log.length),
        key: rec.key,
        value: rec.value,
        timestamp: rec.timestamp,
        headers: { ...rec.headers },
      });
    }
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  /** A sink writing to this broker. */
  sink(): RecordSink {
    return {
      send: (topic, records) => {
        this.append(topic, records);
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
  }

  /** The committed offset (next to read) of a group on a partition, if any. */
  committed(groupId: string, topic: string, partition: number): number | undefined {
    return this.#committed.get(groupId)?.get(`${topic}:${partition}`);
  }

  /** End offset minus committed offset, per partition. */
  lag(groupId: string, topic: string): number[] {
    const t = this.#topics.get(topic);
    if (!t) return [];
    return t.partitions.map((log, p) => log.length - (this.committed(groupId, topic, p) ?? 0));
  }

  #commit(groupId: string, topic: string, partition: number, next: number): void {
    let g = this.#committed.get(groupId);
    if (!g) this.#committed.set(groupId, g = new Map());
    g.set(`${topic}:${partition}`, next);
  }

  #startOffset(log: InRecord[], from: StartFrom): number {
    if (from === "earliest") return 0;
    if (from === "latest") return log.length;
    const at = from.getTime();
    const i = log.findIndex((r) => r.timestamp >= at);
    return i === -1 ? log.length : i;
  }

  #assigned(groupId: string, me: symbol, partitions: number): number[] {
    const members = [...(this.#members.get(groupId) ?? [])];
    const index = members.indexOf(me);
    const out: number[] = [];
    for (let p = 0; p < partitions; p++) if (p % members.length === index) out.push(p);
    return out;
  }

  #wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", wake);
        this.#waiters.delete(wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  /** A consumer in a group. Partitions are split among the group's active consumers. */
  source(options: MemorySourceOptions): RecordSource {
    const { topic, groupId } = options;
    const from = options.from ?? "latest";
    const batchMax = options.batchMax ?? 500;
    const me = Symbol(groupId);
    // "latest" is resolved when the consumer starts, as Kafka does.
    this.createTopic(topic);
    return {
      consume: async (onBatch, { signal }: ConsumeOptions) => {
        let members = this.#members.get(groupId);
        if (!members) this.#members.set(groupId, members = new Set());
        members.add(me);
        const t = this.#topics.get(topic)!;
        for (let p = 0; p < t.partitions.length; p++) {
          if (this.committed(groupId, topic, p) === undefined) {
            this.#commit(groupId, topic, p, this.#startOffset(t.partitions[p]!, from));
          }
        }
        try {
          while (!signal.aborted) {
            let delivered = false;
            for (const p of this.#assigned(groupId, me, t.partitions.length)) {
              const log = t.partitions[p]!;
              const pos = this.committed(groupId, topic, p) ?? 0;
              if (pos >= log.length) continue;
              const batch = log.slice(pos, pos + batchMax);
              const handled = await onBatch(batch);
              const n = typeof handled === "number"
                ? Math.min(handled, batch.length)
                : batch.length;
              this.#commit(groupId, topic, p, pos + n);
              delivered = true;
              if (signal.aborted) break;
            }
            if (!delivered && !signal.aborted) await this.#wait(signal);
          }
        } finally {
          members.delete(me);
        }
      },
      close: () => {
        this.#members.get(groupId)?.delete(me);
        return Promise.resolve();
      },
    };
  }
}
