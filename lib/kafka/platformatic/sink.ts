/**
 * The @platformatic/kafka producer behind {@linkcode KafkaSink}: idempotent, resending a batch
 * until it is acknowledged or the sink is closed.
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

/**
 * An idempotent @platformatic/kafka producer (acks all) as a {@linkcode KafkaSink}.
 *
 * Transient failures (a broker down, a leader moving, a timeout) are retried inside the client,
 * with the same batch, the same partitions and the same sequence numbers, until the send is
 * acknowledged or the sink is closed: the broker drops what it had already written. Two things
 * start the producer again under a new producer id, and each is logged and counted as a
 * producer reset because records of the batch in flight may then be written twice:
 * - the broker lost the producer's sequence state (`UNKNOWN_PRODUCER_ID`,
 *   `OUT_OF_ORDER_SEQUENCE_NUMBER`): the client takes a new id and resends by itself;
 * - the client gave up on a send with an error it cannot retry: this sink sends the batch again.
 */
export class PlatformaticSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0 };
  #producer: Producer<string, string, string, string>;
  #closing = new AbortController();
  #log: (key: string, line: string) => void;
  #write: (line: string) => void;
  #onReset: (line: string) => void;
  #producerId: bigint | undefined;
  #headers = new Map<Readonly<Record<string, string>>, Map<string, string>>();

  constructor(config: KafkaConfig, adapter: AdapterOptions, options: KafkaSinkOptions) {
    this.#log = throttledLog(config, adapter.log);
    this.#write = adapter.log;
    this.#onReset = options.onReset ?? adapter.log;
    const producerOptions: StringProducerOptions = {
      ...platformaticOptions(config, {
        clientId: adapter.clientId,
        requestTimeoutMs: options.ackTimeoutMs,
      }),
      idempotent: true,
      acks: ProduceAcks.ALL,
      compression: options.compression === "gzip" ? "gzip" : "none",
      // Both work on our strings; the library's types expect Buffers at these two seams.
      partitioner: javaPartitioner() as unknown as StringProducerOptions["partitioner"],
      serializers: cachedSerializers() as unknown as StringProducerOptions["serializers"],
    };
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
    if (this.#producerId !== undefined && id !== this.#producerId) {
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
    const messages: Outgoing[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const m: Outgoing = {
        topic,
        key: r.key,
        value: r.value,
        timestamp: BigInt(r.timestamp),
      };
      if (r.headers) m.headers = this.#headerMap(r.headers);
      messages[i] = m;
    }
    let retriesBefore = 0;
    await resendUntilClosed(async () => {
      retriesBefore = this.stats.retries;
      await this.#producer.send({ messages });
    }, {
      closed: this.#closing.signal,
      minTimeout: 200,
      onRetry: (error, attempt) => {
        // The client only gives up on errors it cannot retry, and then drops its producer id
        // and sequence numbers: the resend goes out under a new id.
        this.stats.producerResets++;
        this.#producerId = undefined;
        this.#onReset(
          `kafka producer: send of ${records.length} records to "${topic}" failed for good ` +
            `(attempt ${attempt}): ${reasonOf(error)}; sending it again under a new producer ` +
            `id: records the broker wrote before the failure would be written twice`,
        );
      },
    });
    this.#noteProducerId();
    const retried = this.stats.retries - retriesBefore;
    if (retried > 0) {
      this.#write(
        `kafka producer: ${records.length} records acknowledged after ${retried} ` +
          `retr${retried === 1 ? "y" : "ies"}; sending normally again`,
      );
    }
  }

  async close(): Promise<void> {
    // A send waiting to resend stops now, rather than after its pause.
    this.#closing.abort();
    await this.#producer.close();
  }
}
