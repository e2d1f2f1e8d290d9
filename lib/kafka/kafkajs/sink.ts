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
import {
  type DeadLetterSink,
  KafkaRefusedError,
  precheck,
  refusalOf,
  type RefusalReason,
  type TopicLimits,
  zeroDeadLetters,
} from "../refusals.ts";
import type { OutRecord } from "../../sink.ts";

/** The broker error name of a refusal in a kafkajs error chain (`.type`), if there is one. */
export function kafkaJsRefusal(error: unknown): string | undefined {
  let found: string | undefined;
  const visit = (e: unknown, depth: number): void => {
    if (found !== undefined || !e || typeof e !== "object" || depth > 8) return;
    const x = e as { type?: string; cause?: unknown; originalError?: unknown; errors?: unknown[] };
    if (refusalOf(x.type) !== undefined) {
      found = x.type;
      return;
    }
    visit(x.cause, depth + 1);
    visit(x.originalError, depth + 1);
    for (const inner of x.errors ?? []) visit(inner, depth + 1);
  };
  visit(error, 0);
  return found;
}

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
 *
 * A record the broker refuses for good is never resent (issue 24, finding 1): records that
 * break the topic's limits are dead letters before the send; when the broker refuses a send
 * all the same, kafkajs says only the first refusal, not which partitions it wrote, so the
 * batch is sent again in halves down to the refused record, and each such resend counts as a
 * producer reset (the default adapter knows which partitions were written and resends none).
 */
export class KafkaJsSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0, deadLettered: zeroDeadLetters() };
  #producer: Producer;
  #compression: CompressionTypes;
  #ackTimeoutMs: number;
  #connecting: Promise<void> | undefined;
  #closing = new AbortController();
  #onReset: (line: string) => void;
  #log: (line: string) => void;
  #deadLetter: DeadLetterSink;
  #limitsOf: (topic: string) => Promise<TopicLimits>;
  #limits = new Map<string, Promise<TopicLimits>>();
  #now: () => number;
  #compressed: boolean;

  /** `limits` reads a topic's {@linkcode TopicLimits} (once per topic); default none known. */
  constructor(
    kafka: Kafka,
    options: KafkaSinkOptions,
    log: (line: string) => void,
    limits: (topic: string) => Promise<TopicLimits> = () => Promise.resolve({}),
  ) {
    this.#log = log;
    this.#limitsOf = limits;
    this.#now = options.now ?? Date.now;
    this.#compressed = options.compression === "gzip";
    this.#deadLetter = options.deadLetter ?? ((letter) =>
      log(
        `kafka producer: dropped a record for "${letter.topic}" (${letter.reason}): ` +
          `${letter.detail}; no dead-letter file is set`,
      ));
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
    const limits = await this.#limitsFor(topic);
    const now = this.#now();
    const good: OutRecord[] = [];
    for (const r of records) {
      const refusal = precheck(r, limits, { now, compressed: this.#compressed });
      if (refusal) await this.#keepAside(topic, r, refusal.reason, `${refusal.detail}; not sent`);
      else good.push(r);
    }
    if (good.length === 0) return;
    const queue: OutRecord[][] = [good];
    await resendUntilClosed(async () => {
      while (queue.length > 0) {
        const group = queue[0]!;
        try {
          await this.connect();
          await this.#producer.send({
            topic,
            messages: group.map(toMessage),
            acks: -1,
            timeout: this.#ackTimeoutMs,
            compression: this.#compression,
          });
          queue.shift();
          continue;
        } catch (error) {
          const name = kafkaJsRefusal(error);
          const reason = refusalOf(name);
          if (this.#closing.signal.aborted || name === undefined || reason === undefined) {
            throw error;
          }
          queue.shift();
          if (reason === "not_authorized") {
            for (const rest of [group, ...queue.splice(0)]) {
              for (const r of rest) {
                await this.#keepAside(
                  topic,
                  r,
                  reason,
                  `not sent: the broker refuses the topic (${name})`,
                );
              }
            }
            throw new KafkaRefusedError(
              `Cannot send to "${topic}": the broker refuses it (${name}); check the ACLs of ` +
                `this user on the topic; the unwritten records are in the dead letters`,
              name,
              { cause: error },
            );
          }
          if (group.length === 1) {
            await this.#keepAside(topic, group[0]!, reason, `the broker refused it with ${name}`);
            continue;
          }
          // kafkajs does not say which record or partition: halve and send again.
          this.stats.producerResets++;
          const half = Math.ceil(group.length / 2);
          queue.unshift(group.slice(0, half), group.slice(half));
        }
      }
    }, {
      closed: this.#closing.signal,
      minTimeout: 100,
      shouldRetry: (error) => !(error instanceof KafkaRefusedError),
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

  /** The topic's limits, read once; unknown (nothing checked) when they cannot be read. */
  #limitsFor(topic: string): Promise<TopicLimits> {
    let limits = this.#limits.get(topic);
    if (limits === undefined) {
      limits = this.#limitsOf(topic).catch((error) => {
        this.#log(
          `kafka producer: cannot read the settings of "${topic}" (${
            error instanceof Error ? error.message : String(error)
          }), so records are not checked against its limits before sending`,
        );
        return {};
      });
      this.#limits.set(topic, limits);
    }
    return limits;
  }

  /** Counts a refused record and hands it to the dead-letter sink. */
  async #keepAside(
    topic: string,
    record: OutRecord,
    reason: RefusalReason,
    detail: string,
  ): Promise<void> {
    this.stats.deadLettered[reason]++;
    await this.#deadLetter({ topic, record, reason, detail });
  }

  async close(): Promise<void> {
    // A send waiting to resend stops now, rather than after its pause.
    this.#closing.abort();
    this.#connecting = undefined;
    await this.#producer.disconnect();
  }
}
