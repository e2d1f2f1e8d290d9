/**
 * Offset bookkeeping both Kafka adapters share: lag rows from a partition's end, start and
 * committed offsets, and the handled offsets a source commits at most every interval.
 */
import type { PartitionLag } from "./types.ts";

/** Lag rows from end, start and committed offsets per partition (committed -1: none). */
export function lagRows(
  offsets: { partition: number; end: bigint; start: bigint; committed: bigint }[],
): PartitionLag[] {
  return offsets
    .map(({ partition, end, start, committed }) => {
      const from = committed < 0n ? start : committed;
      const lag = end - from;
      return {
        partition,
        end: end.toString(),
        committed: committed < 0n ? "-1" : committed.toString(),
        lag: Number(lag > 0n ? lag : 0n),
      };
    })
    .sort((a, b) => a.partition - b.partition);
}

/**
 * The commit bookkeeping both sources share: offsets handled but not committed, by partition,
 * committed at most every `intervalMs` (and on demand).
 */
export class PendingCommits {
  #pending = new Map<number, bigint>();
  #lastCommit = 0;
  #intervalMs: number;
  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }
  /** The commit interval, ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }
  /** Notes that `offset` of `partition` was handled (its next offset may be committed). */
  handled(partition: number, offset: bigint): void {
    this.#pending.set(partition, offset + 1n);
  }
  /** True when something is pending and the interval has passed. */
  due(now = Date.now()): boolean {
    return this.#pending.size > 0 && now - this.#lastCommit >= this.#intervalMs;
  }
  /** True when something is pending. */
  get size(): number {
    return this.#pending.size;
  }
  /** Forgets what is pending for partitions not in `partitions` (moved to another member). */
  keep(partitions: ReadonlySet<number>): void {
    for (const p of [...this.#pending.keys()]) if (!partitions.has(p)) this.#pending.delete(p);
  }
  /** Takes what is pending (next offsets by partition) and notes the commit time. */
  take(now = Date.now()): [number, bigint][] {
    const out = [...this.#pending];
    this.#pending.clear();
    this.#lastCommit = now;
    return out;
  }
}
