/**
 * The small interfaces the pipeline depends on: a transform (frame text → records) and a sink
 * (records → a topic). The Kafka adapters (`kafka.ts`) and the in-memory broker
 * (`memory_broker.ts`) implement the sink and source; `transform.ts` implements the transform for
 * crypto quotes. The pipeline, the demo and the tests share code through them.
 */

/** Version of the record value schema, sent in the `schema-version` header. */
export const SCHEMA_VERSION = "1";

/**
 * Which time becomes a record's Kafka timestamp (CreateTime):
 * - `now`: the local wall clock when the pipeline builds the batch (live and replay). The
 *   broker's idempotent-producer state (kept while now − the last record's timestamp <
 *   `producer.id.expiration.ms`) and time-based retention then work as for any producer.
 * - `exchange`: the exchange time `t`. A replay of a recording older than
 *   `producer.id.expiration.ms` (24 h) loses its producer state at the next broker start or
 *   expiry check (a retried batch can then be stored twice), and one older than `retention.ms`
 *   is deleted at the next retention check.
 */
export type TimestampPolicy = "now" | "exchange";

/** The timestamp policies, the default first. */
export const TIMESTAMP_POLICIES = ["now", "exchange"] as const satisfies readonly TimestampPolicy[];

/** One record ready for a topic. */
export interface OutRecord {
  /** Partitioning key: the symbol for spread records. */
  key: string;
  /** The record value, JSON text. */
  value: string;
  /**
   * The Kafka record timestamp (CreateTime), ms since the epoch. A transform sets the exchange
   * time `t`; the pipeline then stamps it by its {@linkcode TimestampPolicy} before sending
   * (by default the local clock). The exchange time stays in the value.
   */
  timestamp: number;
  /** Header values; spread records carry `schema-version`. */
  headers?: Record<string, string>;
}

/**
 * Frame text in, records out, for one Polygon channel. Pure: no I/O, no clock. Each instance
 * keeps its own caches, so make one per pipeline.
 */
export interface FrameTransform<R extends OutRecord = OutRecord> {
  /** The Polygon channel whose events it maps (`XQ`): what the client subscribes to. */
  readonly channel: string;
  /** Events that made no record, by reason; every reason present from the start. */
  readonly skipped: Readonly<Record<string, number>>;
  /**
   * Appends the records of one frame to `records`, in frame order, and counts skips. Returns
   * the number of events seen. Never throws on bad input.
   */
  frame(text: string, records: R[]): number;
}

/** Where records go. `send` resolves only when every record is acknowledged. */
export interface RecordSink {
  /** Sends the records to the topic; resolves once all are acknowledged, rejects otherwise. */
  send(topic: string, records: readonly OutRecord[]): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

/**
 * Where a consumer group starts on partitions where it has committed nothing yet; a time starts
 * at the first record at or after it.
 */
export type StartFrom = "earliest" | "latest" | Date;

/** One consumed record with its coordinates. */
export interface InRecord {
  topic: string;
  partition: number;
  /** Offset as a decimal string (Kafka offsets are 64-bit). */
  offset: string;
  key: string | null;
  /** Raw value text, or null for a tombstone. */
  value: string | null;
  timestamp: number;
  headers: Record<string, string>;
}

/** Options for {@linkcode RecordSource.consume}. */
export interface ConsumeOptions {
  /** Stops consuming when aborted; pending offsets are committed first. */
  signal: AbortSignal;
}

/** Where records come from, with at-least-once delivery. */
export interface RecordSource {
  /**
   * Calls `onBatch` with records in partition order and commits their offsets only after it
   * resolves. If it resolves to a number n, only the first n records count as handled and only
   * their offsets are committed (a consumer that stops mid-batch loses nothing). Returns when
   * the signal aborts, after the final commit.
   */
  consume(
    onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
    options: ConsumeOptions,
  ): Promise<void>;
  /** Leaves the group and releases connections. */
  close(): Promise<void>;
}
