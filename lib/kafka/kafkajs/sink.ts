/** The kafkajs producer behind {@linkcode KafkaSink}: idempotent, resending until closed. */
import {
  CompressionTypes,
  type ICustomPartitioner,
  type Kafka,
  type Message,
  Partitioners,
  type Producer,
} from "kafkajs";
import { type KafkaSink, type KafkaSinkOptions, type SinkStats } from "../types.ts";
import { resendUntilClosed } from "../resend.ts";
import type { OutRecord } from "../../sink.ts";

/** Maps an {@linkcode OutRecord} to a kafkajs message (kafkajs only reads the headers). */
export function toMessage(record: OutRecord): Message {
  const message: Message = {
    key: record.key,
    value: record.value,
    timestamp: String(record.timestamp),
  };
  if (record.headers) message.headers = record.headers;
  return message;
}

/**
 * kafkajs's DefaultPartitioner (murmur2 on the key, as the Java client) with the partition of
 * each string key remembered: the same partitions, without hashing every record with 64-bit
 * `Long` arithmetic and a Buffer per key. Other messages go to the DefaultPartitioner.
 */
export function memoizedDefaultPartitioner(): ICustomPartitioner {
  return () => {
    const inner = Partitioners.DefaultPartitioner();
    const memo = new Map<string, number>();
    return (args) => {
      const { message, partitionMetadata } = args;
      const key = message.key;
      if (
        typeof key !== "string" || (message.partition !== undefined && message.partition !== null)
      ) {
        return inner(args);
      }
      const memoKey = partitionMetadata.length + ":" + key;
      let partition = memo.get(memoKey);
      if (partition === undefined) {
        if (memo.size >= 100_000) memo.clear();
        partition = inner(args);
        memo.set(memoKey, partition);
      }
      return partition;
    };
  };
}

/**
 * An idempotent kafkajs producer (acks all, one request in flight) as a {@linkcode KafkaSink}.
 *
 * kafkajs retries a failed produce a bounded number of times inside `send`; after that this
 * sink sends the same batch again until it is acknowledged or the sink is closed. kafkajs rolls
 * back its sequence numbers on failure, so the resend reuses them, but it also regroups the
 * batch and a request written on some partitions counts as wholly failed: a resend can then
 * write records twice (RELIABILITY.md). Each resend is counted as a producer reset.
 */
export class KafkaJsSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0 };
  #producer: Producer;
  #compression: CompressionTypes;
  #ackTimeoutMs: number;
  #connecting: Promise<void> | undefined;
  #closing = new AbortController();
  #onReset: (line: string) => void;

  constructor(kafka: Kafka, options: KafkaSinkOptions, log: (line: string) => void) {
    this.#producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // murmur2 on the key, as the Java client: a symbol maps to the same partition either way.
      createPartitioner: memoizedDefaultPartitioner(),
      allowAutoTopicCreation: false,
      // kafkajs retries a produce inside send, reusing the sequence numbers; bounded retries
      // would make us resend under new ones (kafkajs warns that limiting them breaks EoS).
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 2_000 },
    });
    this.#compression = options.compression === "gzip"
      ? CompressionTypes.GZIP
      : CompressionTypes.None;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
    this.#onReset = options.onReset ?? log;
  }

  connect(): Promise<void> {
    this.#connecting ??= this.#producer.connect().catch((error) => {
      this.#connecting = undefined;
      throw error;
    });
    return this.#connecting;
  }

  async send(topic: string, records: readonly OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    const messages = records.map(toMessage);
    await resendUntilClosed(async () => {
      await this.connect();
      await this.#producer.send({
        topic,
        messages,
        acks: -1,
        timeout: this.#ackTimeoutMs,
        compression: this.#compression,
      });
    }, {
      closed: this.#closing.signal,
      minTimeout: 100,
      onRetry: (error, attempt) => {
        this.stats.producerResets++;
        if (attempt === 1 || attempt % 10 === 0) {
          const reason = error instanceof Error ? error.message : String(error);
          this.#onReset(
            `kafka producer: send of ${records.length} records failed after kafkajs's own ` +
              `retries (attempt ${attempt}): ${reason}; sending the batch again, duplicates ` +
              `are possible with kafkajs`,
          );
        }
      },
    });
  }

  async close(): Promise<void> {
    // A send waiting to resend stops now, rather than after its pause.
    this.#closing.abort();
    this.#connecting = undefined;
    await this.#producer.disconnect();
  }
}
