/**
 * The history store's contract, types only: the rows a store writes and the small interface every
 * database adapter implements (QuestDB in `questdb.ts`, PostgreSQL in `postgres.ts`; `open.ts`
 * picks one). No database client type crosses it.
 */

/** The database adapters, by setting value (`--db`, `STORE_DB`). */
export type StoreName = "questdb" | "postgres";

/** A record's place in Kafka: with the topic's table it is the row's key, so a redelivery is a no-op. */
export interface KafkaCoordinates {
  partition: number;
  /** Offset as a decimal string (64-bit). */
  offset: string;
}

/** One spread record as a row of the spreads table. */
export interface SpreadRow extends KafkaCoordinates {
  /** Exchange time, epoch ms (the designated timestamp). */
  ts: number;
  /** The pair, checked against {@linkcode SYMBOL_RE} by the mapper. */
  symbol: string;
  /** The spread as plain decimal text that fits the column (`-0.000029`, `338.9`), never a float. */
  spread: string;
}

/** One gap record (`<topic>.gaps`) as a row of the gaps table. */
export interface GapRow extends KafkaCoordinates {
  /** When the stream was lost, epoch ms (the designated timestamp). */
  ts: number;
  /** When it was listening again, epoch ms. */
  to: number;
  /** Why, a short word (`reconnect`, `failover`, …). */
  reason: string;
  /** The gap's length in seconds, plain decimal text with at most 3 fraction digits. */
  seconds: string;
}

/** A record that is not ours, kept with why. */
export interface DeadLetter extends KafkaCoordinates {
  /** The topic it came from. */
  topic: string;
  /** The Kafka record timestamp, epoch ms, clamped to the representable range (the row's time). */
  ts: number;
  /** Why it was refused, one sentence. */
  reason: string;
  /** The short reason code counted in the metrics (`not_json`, `out_of_range`, …). */
  code: string;
  /** The raw value, verbatim, or null for a tombstone (or a value the database refused to hold). */
  value: string | null;
}

/** What one write puts into the tables, all or nothing. */
export interface StoreBatch {
  spreads: SpreadRow[];
  gaps: GapRow[];
  dead: DeadLetter[];
}

/** The three table names. */
export interface StoreTables {
  spreads: string;
  gaps: string;
  dead: string;
}

/** Options for {@linkcode HistoryStore.connect}. */
export interface StoreConnectOptions {
  /** Total time to keep trying, ms. */
  timeoutMs: number;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (line: string) => void;
  /** Aborting it stops the attempts. */
  signal?: AbortSignal;
}

/** What {@linkcode HistoryStore.ensureSchema} did, per table. */
export type SchemaAction = "created" | "checked";

/** One database behind the store. */
export interface HistoryStore {
  /** Which adapter this is. */
  readonly name: StoreName;
  /** Where it writes, for logs and errors, with any password left out. */
  readonly address: string;
  /** The tables it writes. */
  readonly tables: StoreTables;
  /**
   * Records per write it works best with (about): the store reads batches of this many. A write
   * has a fixed cost per request or transaction, and a larger batch costs memory.
   */
  readonly batchSize: number;
  /**
   * Reaches the database until the time runs out; then throws `StoreUnreachableError` naming the
   * address (exit code 7).
   */
  connect(options: StoreConnectOptions): Promise<void>;
  /**
   * Creates missing tables, and checks the shape of existing ones: a column of another type, a
   * missing column or another key is a `StoreSchemaError` naming the table and the column.
   */
  ensureSchema(): Promise<Record<keyof StoreTables, SchemaAction>>;
  /**
   * Writes the batch, all or nothing; writing the same rows again changes nothing (their Kafka
   * coordinates are the key). Throws `StoreRejectedError` when the database refuses the data
   * itself (the caller splits the batch to find the row), any other error when it could not be
   * reached (the caller retries).
   */
  write(batch: StoreBatch): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}
