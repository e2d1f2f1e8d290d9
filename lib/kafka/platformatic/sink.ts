/**
 * The @platformatic/kafka producer behind {@linkcode KafkaSink}: idempotent, resending a batch
 * until it is acknowledged or the sink is closed, and keeping aside (dead letters) the records
 * the broker refuses for good.
 */
import { ProduceAcks, Producer, type ProducerOptions } from "@platformatic/kafka";
import type { KafkaConfig } from "../../config/kafka.ts";
import {
  type AdapterOptions,
  type KafkaSink,
  type KafkaSinkOptions,
  type SinkStats,
} from "../types.ts";
import { throttledLog } from "../diagnosis.ts";
import { platformaticOptions, reasonOf } from "./options.ts";
import { murmur2 } from "../murmur2.ts";
import { resendUntilClosed } from "../resend.ts";
import { installWireFence, type WireFenceContext } from "./wire_fence.ts";
import {
  type DeadLetterSink,
  KafkaRefusedError,
  precheck,
  refusalName,
  refusalOf,
  type RefusalReason,
  type TopicLimits,
  zeroDeadLetters,
} from "../refusals.ts";
import type { OutRecord } from "../../sink.ts";

const encoder = new TextEncoder();

/**
 * Java's default partitioner (murmur2 of the key, made positive with `& 0x7fffffff`; the
 * client takes it modulo the partition count), remembered per key. The library's own default
 * uses `>>> 0` instead, which sends a key to another partition than kafkajs, the Java client and
 * librdkafka's murmur2_random do.
 */
function javaPartitioner(): (message: { key?: string }) => number {
  const memo = new Map<string, number>();
  return (message) => {
    const key = message.key;
    if (key === undefined) return 0;
    let hash = memo.get(key);
    if (hash === undefined) {
      if (memo.size >= 100_000) memo.clear();
      hash = murmur2(encoder.encode(key)) & 0x7fffffff;
      memo.set(key, hash);
    }
    return hash;
  };
}

/**
 * String serializers that keep the Buffer of each header key and value, and of each key: a
 * record's key is one of a few hundred symbols and its header is the same on every record.
 */
function cachedSerializers() {
  const cache = new Map<string, Buffer>();
  const cached = (text: string | undefined): Buffer | undefined => {
    if (text === undefined) return undefined;
    let buffer = cache.get(text);
    if (buffer === undefined) {
      if (cache.size >= 10_000) cache.clear();
      buffer = Buffer.from(text, "utf8");
      cache.set(text, buffer);
    }
    return buffer;
  };
  return {
    key: cached,
    value: (text: string | undefined) => text === undefined ? undefined : Buffer.from(text, "utf8"),
    headerKey: cached,
    headerValue: cached,
  };
}

type StringProducerOptions = ProducerOptions<string, string, string, string>;

type Outgoing = {
  topic: string;
  key: string;
  value: string;
  timestamp: bigint;
  headers?: Map<string, string>;
};

/** A record on its way, with the message made of it. */
type Item = { record: OutRecord; message: Outgoing };

/** What the broker answered for one partition of a failed send. */
interface PartitionAnswer {
  /** Some attempt of this very batch was written there (error code 0). */
  written: boolean;
  /** The last error code answered, 0 when none. */
  code: number;
  /** The broker's message with the last error, if any. */
  message?: string;
  /** Indexes of the refused records in the partition's batch (INVALID_TIMESTAMP, ...). */
  recordErrors: number[];
}

/**
 * Every partition answer in a failed send's error tree (the client reports a request's
 * per-partition results on its `ResponseError`, and written partitions of other requests on
 * `produced`), by partition of `topic`. Later answers overwrite earlier ones; a partition once
 * written stays written (a retry of the same batch is deduplicated by the broker).
 */
export function partitionAnswers(error: unknown, topic: string): Map<number, PartitionAnswer> {
  const answers = new Map<number, PartitionAnswer>();
  const note = (partition: number, code: number, message?: string, recordErrors?: number[]) => {
    const before = answers.get(partition);
    const written = (before?.written ?? false) || code === 0;
    answers.set(partition, {
      written,
      code: code === 0 ? before?.code ?? 0 : code,
      message: code === 0 ? before?.message : message ?? undefined,
      recordErrors: code === 0 ? before?.recordErrors ?? [] : recordErrors ?? [],
    });
  };
  const visit = (e: unknown, depth: number): void => {
    if (!e || typeof e !== "object" || depth > 10) return;
    const x = e as {
      errors?: unknown[];
      cause?: unknown;
      produced?: { offsets?: { topic: string; partition: number }[] };
      response?: {
        responses?: {
          name: string;
          partitionResponses?: {
            index: number;
            errorCode: number;
            errorMessage?: string | null;
            recordErrors?: { batchIndex: number }[];
          }[];
        }[];
      };
    };
    for (const t of x.response?.responses ?? []) {
      if (t.name !== topic) continue;
      for (const p of t.partitionResponses ?? []) {
        note(
          p.index,
          p.errorCode,
          p.errorMessage ?? undefined,
          (p.recordErrors ?? []).map((r) => r.batchIndex),
        );
      }
    }
    for (const o of x.produced?.offsets ?? []) if (o.topic === topic) note(o.partition, 0);
    for (const inner of x.errors ?? []) visit(inner, depth + 1);
    visit(x.cause, depth + 1);
  };
  visit(error, 0);
  return answers;
}

/** What to do after a failed send, from the broker's answers. */
interface Sorted {
  /** Groups still to send, in order, in place of the failed one. */
  next: Item[][];
  /** Records refused for good, with why. */
  refused: { item: Item; reason: RefusalReason; detail: string }[];
  /** Some records were split off to find which of them the broker refuses. */
  bisected: boolean;
  /** Some partition gave no answer: its records may have been written. */
  inDoubt: boolean;
  /** The broker refuses the whole topic (an ACL): its error name. */
  fatal?: string;
}

/**
 * An idempotent @platformatic/kafka producer (acks all) as a {@linkcode KafkaSink}.
 *
 * Transient failures (a broker down, a leader moving, a timeout) are retried inside the client,
 * with the same batch, the same partitions and the same sequence numbers, until the send is
 * acknowledged or the sink is closed: the broker drops what it had already written.
 *
 * A record the broker refuses for good is never resent (issue 24, finding 1). Before a send,
 * each record is checked against the topic's own limits (`max.message.bytes`, the timestamp
 * window `message.timestamp.before/after.max.ms`); one that breaks them is a dead letter and is
 * not sent. When the broker refuses a send all the same (an ACL, a limit we could not read):
 * - the partitions it wrote are done, and are not sent again;
 * - the records it names (INVALID_TIMESTAMP, INVALID_RECORD) are dead letters;
 * - a refused partition that names no record (MESSAGE_TOO_LARGE) is split in halves, sent
 *   again half by half, down to the one record it refuses;
 * - the rest is sent again. The client dropped its producer id with the refusal, so that goes
 *   out under a new one, which is harmless: none of it was written.
 * A topic that refuses us altogether (TOPIC_AUTHORIZATION_FAILED) ends the send with
 * {@linkcode KafkaRefusedError} after the unwritten records are kept as dead letters.
 *
 * Two things remain producer resets, logged and counted because records of the batch in flight
 * may then be written twice:
 * - the broker lost the producer's sequence state (`UNKNOWN_PRODUCER_ID`,
 *   `OUT_OF_ORDER_SEQUENCE_NUMBER`): the client takes a new id and resends by itself;
 * - the client gave up on a send with no answer for some partition (they may be written): this
 *   sink sends those records again.
 */
export class PlatformaticSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0, deadLettered: zeroDeadLetters() };
  #producer: Producer<string, string, string, string>;
  #closing = new AbortController();
  #log: (key: string, line: string) => void;
  #write: (line: string) => void;
  #onReset: (line: string) => void;
  #deadLetter: DeadLetterSink;
  #producerId: bigint | undefined;
  #headers = new Map<Readonly<Record<string, string>>, Map<string, string>>();
  #partitioner = javaPartitioner();
  #limitsOf: (topic: string) => Promise<TopicLimits>;
  #limits = new Map<string, Promise<TopicLimits>>();
  #now: () => number;
  #compressed: boolean;
  /** The client dropped its producer id after a refusal: the next id is no reset. */
  #renewing = false;

  /**
   * `limits` reads a topic's {@linkcode TopicLimits} (once per topic); default none known, so
   * only the broker's answers find refused records.
   */
  constructor(
    config: KafkaConfig,
    adapter: AdapterOptions,
    options: KafkaSinkOptions,
    limits: (topic: string) => Promise<TopicLimits> = () => Promise.resolve({}),
  ) {
    this.#log = throttledLog(config, adapter.log);
    this.#write = adapter.log;
    this.#onReset = options.onReset ?? adapter.log;
    this.#deadLetter = options.deadLetter ?? ((letter) =>
      adapter.log(
        `kafka producer: dropped a record for "${letter.topic}" (${letter.reason}): ` +
          `${letter.detail}; no dead-letter file is set`,
      ));
    this.#limitsOf = limits;
    this.#now = options.now ?? Date.now;
    this.#compressed = options.compression === "gzip";
    const producerOptions: StringProducerOptions = {
      ...platformaticOptions(config, {
        clientId: adapter.clientId,
        requestTimeoutMs: options.ackTimeoutMs,
      }),
      idempotent: true,
      acks: ProduceAcks.ALL,
      compression: options.compression === "gzip" ? "gzip" : "none",
      // Both work on our strings; the library's types expect Buffers at these two seams.
      partitioner: this.#partitioner as unknown as StringProducerOptions["partitioner"],
      serializers: cachedSerializers() as unknown as StringProducerOptions["serializers"],
    };
    if (options.fence) {
      // Every connection of this producer carries the fence; the wire fence asks it before each
      // produce request is written (a paused zombie's request is stopped there).
      installWireFence();
      const context: WireFenceContext = {
        mayWrite: options.fence,
        stopped: () =>
          this.#log(
            "fenced",
            "kafka producer: a produce request was stopped at the wire: this producer may no " +
              "longer write (its standby term ended); nothing of it reached the broker",
          ),
      };
      producerOptions.context = context;
    }
    this.#producer = new Producer(producerOptions);
    // The client reports a lost or refused broker connection without the cause; with the
    // retry lines below they say what happened. Repeats within 10 s are counted, not printed.
    const where = (payload: { broker?: { host: string; port: number } }) =>
      payload?.broker ? `${payload.broker.host}:${payload.broker.port}` : "a broker";
    this.#producer.on(
      "client:broker:failed",
      (payload: { broker?: { host: string; port: number } }) => {
        if (this.#closing.signal.aborted) return;
        this.#log(
          `failed ${where(payload)}`,
          `kafka producer: cannot connect to ${where(payload)}`,
        );
      },
    );
    this.#producer.on(
      "client:broker:disconnect",
      (payload: { broker?: { host: string; port: number } }) => {
        if (this.#closing.signal.aborted) return;
        this.#log(
          `lost ${where(payload)}`,
          `kafka producer: the connection to ${where(payload)} closed`,
        );
      },
    );
    this.#producer.on("client:performWithRetry:retry", (operation: string, attempt: number) => {
      if (operation !== "produce") return;
      this.stats.retries++;
      this.#log(
        "produce-retry",
        `kafka producer: a produce request failed; the client retries it with the same ` +
          `records and sequence numbers (attempt ${attempt + 1})`,
      );
    });
  }

  /** One Map per distinct headers object (records share the same `schema-version` object). */
  #headerMap(headers: Readonly<Record<string, string>>): Map<string, string> {
    let map = this.#headers.get(headers);
    if (map === undefined) {
      if (this.#headers.size >= 100) this.#headers.clear();
      map = new Map(Object.entries(headers));
      this.#headers.set(headers, map);
    }
    return map;
  }

  #noteProducerId(): void {
    const id = this.#producer.producerId;
    if (id === undefined) return;
    if (this.#renewing) {
      // A new id after a refusal: nothing of what it sent again was written before.
      this.#renewing = false;
      if (this.#producerId === undefined) {
        this.#write(
          `kafka producer: the client took producer id ${id} after the broker refused a ` +
            `send; only records the broker did not write were sent again`,
        );
      }
    } else if (this.#producerId !== undefined && id !== this.#producerId) {
      this.stats.producerResets++;
      this.#onReset(
        `kafka producer: the broker lost this producer's sequence state, so the client started ` +
          `again as producer id ${id} (was ${this.#producerId}) and resent the batch in flight: ` +
          `records of that batch may be written twice`,
      );
    }
    this.#producerId = id;
  }

  async connect(): Promise<void> {
    await this.#producer.initIdempotentProducer({});
    this.#noteProducerId();
  }

  async send(topic: string, records: readonly OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    const limits = await this.#limitsFor(topic);
    const now = this.#now();
    const items: Item[] = [];
    for (const r of records) {
      const refusal = precheck(r, limits, { now, compressed: this.#compressed });
      if (refusal) {
        await this.#keepAside(topic, r, refusal.reason, `${refusal.detail}; not sent`);
        continue;
      }
      const m: Outgoing = {
        topic,
        key: r.key,
        value: r.value,
        timestamp: BigInt(r.timestamp),
      };
      if (r.headers) m.headers = this.#headerMap(r.headers);
      items.push({ record: r, message: m });
    }
    if (items.length > 0) await this.#deliver(topic, items, records.length);
  }

  /** The topic's limits, read once; unknown (nothing checked) when they cannot be read. */
  #limitsFor(topic: string): Promise<TopicLimits> {
    let limits = this.#limits.get(topic);
    if (limits === undefined) {
      limits = this.#limitsOf(topic).catch((error) => {
        this.#write(
          `kafka producer: cannot read the settings of "${topic}" (${reasonOf(error)}), so ` +
            `records are not checked against its limits before sending; the broker's answer ` +
            `still finds the records it refuses`,
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
    this.#log(
      `dead-letter ${reason}`,
      `kafka producer: a record for "${topic}" (key "${record.key}") is refused for good ` +
        `(${reason}): ${detail}; kept aside as a dead letter, never resent`,
    );
    await this.#deadLetter({ topic, record, reason, detail });
  }

  /**
   * Sends the items until each is written or kept aside. A failed group is replaced by what
   * the broker's answer leaves to send (see the class doc); only a failure that leaves records
   * in doubt pauses and counts as a producer reset.
   */
  async #deliver(topic: string, items: Item[], total: number): Promise<void> {
    const queue: Item[][] = [items];
    let retriesBefore = this.stats.retries;
    let inDoubt = false;
    await resendUntilClosed(async () => {
      while (queue.length > 0) {
        const group = queue[0]!;
        retriesBefore = this.stats.retries;
        try {
          await this.#producer.send({ messages: group.map((i) => i.message) });
          queue.shift();
          this.#noteProducerId();
          continue;
        } catch (error) {
          if (this.#closing.signal.aborted) throw error;
          // The client dropped its producer id and sequence numbers with this failure.
          this.#producerId = undefined;
          this.#renewing = true;
          const sorted = await this.#sortOut(topic, group, error);
          for (const { item, reason, detail } of sorted.refused) {
            await this.#keepAside(topic, item.record, reason, detail);
          }
          queue.shift();
          if (sorted.fatal !== undefined) {
            for (const rest of [...sorted.next, ...queue.splice(0)]) {
              for (const item of rest) {
                await this.#keepAside(
                  topic,
                  item.record,
                  "not_authorized",
                  `not sent: the broker refuses every record of the topic (${sorted.fatal})`,
                );
              }
            }
            throw new KafkaRefusedError(
              `Cannot send to "${topic}": the broker refuses it (${sorted.fatal}); check the ` +
                `ACLs of this user on the topic; the unwritten records are in the dead letters`,
              sorted.fatal,
              { cause: error },
            );
          }
          queue.unshift(...sorted.next.filter((g) => g.length > 0));
          if (sorted.refused.length === 0 && !sorted.bisected) {
            // Nothing refused: a failure the client gave up on. Pause, then resend what is
            // left (never what the broker said it wrote).
            inDoubt = sorted.inDoubt;
            throw error;
          }
        }
      }
    }, {
      closed: this.#closing.signal,
      minTimeout: 200,
      shouldRetry: (error) => !(error instanceof KafkaRefusedError),
      onRetry: (error, attempt) => {
        if (!inDoubt) {
          this.#write(
            `kafka producer: send to "${topic}" failed (attempt ${attempt}): ` +
              `${reasonOf(error)}; sending the records the broker did not write again`,
          );
          return;
        }
        this.stats.producerResets++;
        this.#renewing = false;
        this.#onReset(
          `kafka producer: send of ${total} records to "${topic}" failed for good ` +
            `(attempt ${attempt}): ${reasonOf(error)}; sending the records with no answer ` +
            `again under a new producer id: records the broker wrote before the failure would ` +
            `be written twice`,
        );
      },
    });
    const retried = this.stats.retries - retriesBefore;
    if (retried > 0) {
      this.#write(
        `kafka producer: ${total} records acknowledged after ${retried} ` +
          `retr${retried === 1 ? "y" : "ies"}; sending normally again`,
      );
    }
  }

  /** Splits a failed group by the broker's per-partition answers; see {@linkcode Sorted}. */
  async #sortOut(topic: string, group: Item[], error: unknown): Promise<Sorted> {
    const answers = partitionAnswers(error, topic);
    const sorted: Sorted = { next: [], refused: [], bisected: false, inDoubt: false };
    if (answers.size === 0) {
      // No answer at all (a timeout, a lost connection): everything is in doubt.
      sorted.next.push(group);
      sorted.inDoubt = true;
      return sorted;
    }
    let count = 0;
    try {
      const meta = await this.#producer.metadata({ topics: [topic] });
      count = meta.topics.get(topic)?.partitionsCount ?? 0;
    } catch {
      // Unknown partitions: resend the group as it is (below).
    }
    if (count === 0) {
      sorted.next.push(group);
      sorted.inDoubt = true;
      return sorted;
    }
    // The client's own grouping: each record's partition, in send order.
    const byPartition = new Map<number, Item[]>();
    for (const item of group) {
      const p = this.#partitioner({ key: item.record.key }) % count;
      let list = byPartition.get(p);
      if (list === undefined) byPartition.set(p, list = []);
      list.push(item);
    }
    const again: Item[] = [];
    for (const [partition, list] of byPartition) {
      const answer = answers.get(partition);
      if (answer?.written) continue;
      const name = answer === undefined ? undefined : refusalName(answer.code);
      const reason = refusalOf(name);
      if (answer === undefined || reason === undefined) {
        // Not refused: not written (a retriable error), or no answer (in doubt).
        if (answer === undefined) sorted.inDoubt = true;
        again.push(...list);
        continue;
      }
      if (reason === "not_authorized") {
        sorted.fatal = name;
        again.push(...list);
        continue;
      }
      const detail = `the broker refused it with ${name}` +
        (answer.message ? ` ("${answer.message}")` : "") + ` on partition ${partition}`;
      const named = new Set(answer.recordErrors.filter((i) => i >= 0 && i < list.length));
      if (named.size > 0) {
        list.forEach((item, i) => {
          if (named.has(i)) sorted.refused.push({ item, reason, detail });
          else again.push(item);
        });
      } else if (list.length === 1) {
        sorted.refused.push({ item: list[0]!, reason, detail });
      } else {
        // The broker names no record: halve the partition's batch until it does.
        const half = Math.ceil(list.length / 2);
        sorted.bisected = true;
        sorted.next.push(list.slice(0, half), list.slice(half));
      }
    }
    // Records of other partitions first; a partition's halves keep their order.
    sorted.next.unshift(again);
    return sorted;
  }

  async close(): Promise<void> {
    // A send waiting to resend stops now, rather than after its pause.
    this.#closing.abort();
    await this.#producer.close();
  }
}
