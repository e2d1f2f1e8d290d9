/**
 * What the store does with one batch of a topic's records: map them to rows and dead letters,
 * write them all or nothing, and only then say they were handled (the source commits their
 * offsets after). A database that cannot be reached is retried with backoff until it answers or
 * the store stops: consuming pauses meanwhile, and nothing is committed that is not in the table.
 * Data the database refuses is split in halves until the refused record is found; it becomes a
 * dead letter (`refused_by_database`), and the rest is written.
 */
import { deadline, delay, exponentialBackoff } from "../async.ts";
import type { InRecord } from "../sink.ts";
import { deadLetter, withoutValue } from "./dead_letters.ts";
import { StoreRejectedError } from "./errors.ts";
import { type RecordKind, toBatch } from "./rows.ts";
import type { DeadLetter, GapRow, HistoryStore, SpreadRow, StoreBatch } from "./types.ts";

/** Options for {@linkcode StoreWriter}. */
export interface StoreWriterOptions {
  /** Where log lines go. */
  log: (line: string) => void;
  /** Called after each successful write with the batch and how long the write took, ms. */
  onWritten?: (batch: StoreBatch, ms: number) => void;
  /** Called when the database stops answering (true) and when it answers again (false). */
  onDown?: (down: boolean) => void;
  /** First pause between attempts, ms; default 250. */
  minRetryMs?: number;
  /** Longest pause between attempts, ms; default 5,000. */
  maxRetryMs?: number;
  /**
   * A write not acknowledged within this long counts as failed and is retried (a connection that
   * died mid-request can leave it waiting forever; writing twice is harmless), ms; default 30,000.
   */
  writeTimeoutMs?: number;
  /** Clock, ms; default `performance.now`. */
  now?: () => number;
}

type Item =
  | { kind: "spread"; row: SpreadRow; record: InRecord }
  | { kind: "gap"; row: GapRow; record: InRecord }
  | { kind: "dead"; row: DeadLetter; record: InRecord };

function batchOf(items: readonly Item[]): StoreBatch {
  const batch: StoreBatch = { spreads: [], gaps: [], dead: [] };
  for (const item of items) {
    if (item.kind === "spread") batch.spreads.push(item.row);
    else if (item.kind === "gap") batch.gaps.push(item.row);
    else batch.dead.push(item.row);
  }
  return batch;
}

/**
 * The batch's rows with the records they came from, in the batch's order (spreads, gaps, dead
 * letters): only needed once the database refused the batch.
 */
function itemsOf(records: readonly InRecord[], batch: StoreBatch): Item[] {
  const byKey = new Map(records.map((r) => [`${r.partition}/${r.offset}`, r]));
  const recordOf = (row: { partition: number; offset: string }) =>
    byKey.get(`${row.partition}/${row.offset}`)!;
  const items: Item[] = [];
  for (const row of batch.spreads) items.push({ kind: "spread", row, record: recordOf(row) });
  for (const row of batch.gaps) items.push({ kind: "gap", row, record: recordOf(row) });
  for (const row of batch.dead) items.push({ kind: "dead", row, record: recordOf(row) });
  return items;
}

/** Writes batches of records into a {@linkcode HistoryStore}; see the module doc. */
export class StoreWriter {
  #store: HistoryStore;
  #options: StoreWriterOptions;
  #down = false;

  constructor(store: HistoryStore, options: StoreWriterOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** True while the database does not answer. */
  get down(): boolean {
    return this.#down;
  }

  /**
   * Writes the records of one topic; resolves with how many are handled: all of them once they
   * are in the tables, 0 when `signal` aborted first (nothing of the batch is then committed).
   */
  async handle(
    records: readonly InRecord[],
    kind: RecordKind,
    signal: AbortSignal,
  ): Promise<number> {
    if (records.length === 0) return 0;
    const batch = toBatch(records, kind);
    let written: boolean;
    try {
      written = await this.#writeRetrying(batch, signal);
    } catch (error) {
      if (!(error instanceof StoreRejectedError)) throw error;
      written = await this.#refused(itemsOf(records, batch), error, signal);
    }
    return written ? records.length : 0;
  }

  /** Writes the items, splitting on refusal; false when aborted. */
  async #writeItems(items: Item[], signal: AbortSignal): Promise<boolean> {
    if (items.length === 0) return true;
    try {
      return await this.#writeRetrying(batchOf(items), signal);
    } catch (error) {
      if (!(error instanceof StoreRejectedError)) throw error;
      return await this.#refused(items, error, signal);
    }
  }

  /**
   * The database refused the items: halves are written until the refused one is found, which
   * becomes a dead letter (a dead letter it refuses is kept without its value); false when
   * aborted.
   */
  async #refused(items: Item[], error: StoreRejectedError, signal: AbortSignal): Promise<boolean> {
    if (items.length > 1) {
      const half = Math.ceil(items.length / 2);
      return await this.#writeItems(items.slice(0, half), signal) &&
        await this.#writeItems(items.slice(half), signal);
    }
    const item = items[0]!;
    const why = error.message;
    if (item.kind === "dead") {
      if (item.row.value === null) throw error;
      this.#options.log(
        `dead letter ${item.row.topic}/${item.row.partition}/${item.row.offset}: ${why}`,
      );
      return await this.#writeItems([{ ...item, row: withoutValue(item.row, why) }], signal);
    }
    const letter = deadLetter(item.record, { code: "refused_by_database", reason: why });
    this.#options.log(
      `refused record ${letter.topic}/${letter.partition}/${letter.offset}: ${why}`,
    );
    return await this.#writeItems([{ kind: "dead", row: letter, record: item.record }], signal);
  }

  /**
   * One write, retried while the database cannot be reached; false when aborted first. A
   * refusal of the data is thrown.
   */
  async #writeRetrying(batch: StoreBatch, signal: AbortSignal): Promise<boolean> {
    const now = this.#options.now ?? (() => performance.now());
    for (let attempt = 0;; attempt++) {
      if (signal.aborted) return false;
      const started = now();
      try {
        await deadline(this.#store.write(batch), this.#options.writeTimeoutMs ?? 30_000, {
          what: `A write to ${this.#store.name} at "${this.#store.address}"`,
        });
        if (this.#down) {
          this.#down = false;
          this.#options.log(`${this.#store.name} at "${this.#store.address}" answers again`);
          this.#options.onDown?.(false);
        }
        this.#options.onWritten?.(batch, now() - started);
        return true;
      } catch (error) {
        if (error instanceof StoreRejectedError) throw error;
        if (!this.#down) {
          this.#down = true;
          const reason = error instanceof Error ? error.message : String(error);
          this.#options.log(
            `cannot write to ${this.#store.name} at "${this.#store.address}" (${reason}); ` +
              `consuming paused, retrying until it answers`,
          );
          this.#options.onDown?.(true);
        }
        const ms = exponentialBackoff(attempt, {
          minTimeout: this.#options.minRetryMs ?? 250,
          maxTimeout: this.#options.maxRetryMs ?? 5_000,
          jitter: 0.5,
        });
        try {
          await delay(ms, { signal });
        } catch {
          return false;
        }
      }
    }
  }
}
