/**
 * The small interfaces the pipeline depends on. kafkajs (`kafka.ts`) and the in-memory broker
 * (`memory_broker.ts`) both implement them, so the pipeline, the demo and the tests share code.
 */

/** Version of the record value schema, sent in the `schema-version` header. */
export const SCHEMA_VERSION = "1";

/** One record ready for a topic. */
export interface OutRecord {
  /** Partitioning key: the symbol for spread records. */
  key: string;
  /** The record value, JSON text. */
  value: string;
  /** Record timestamp in ms since the epoch: the exchange time `t` for spread records. */
  timestamp: number;
  /** Header values; spread records carry `schema-version`. */
  headers?: Record<string, string>;
}

/** Where records go. `send` resolves only when every record is acknowledged. */
export interface RecordSink {
  /** Sends the records to the topic; resolves once all are acknowledged, rejects otherwise. */
  send(topic: string, records: readonly OutRecord[]): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

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
