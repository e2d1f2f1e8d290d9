/**
 * The @platformatic/kafka adapter behind the Kafka boundary (`kafka.ts`): plaintext, TLS client
 * certificates or SASL/SCRAM over TLS; start-up reachability with the same diagnoses as the
 * other adapter; topics and lag; an idempotent producer that retries inside the client with the
 * same batch and sequence numbers; an at-least-once consumer in a group.
 */
import {
  Admin,
  AuthenticationError,
  type BaseOptions,
  Consumer,
  type Message,
  type MessagesStream,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  ProduceAcks,
  Producer,
  type ProducerOptions,
  type SASLOptions,
} from "@platformatic/kafka";
import type { KafkaConfig } from "./config.ts";
import {
  type AdapterOptions,
  connectLoop,
  type ConnectOptions,
  DEFAULT_SESSION_TIMEOUT_MS,
  type ElectionOptions,
  type EnsureTopicOptions,
  type EnsureTopicResult,
  errorChain,
  explainFailure,
  type KafkaAdmin,
  type KafkaClient,
  type KafkaSink,
  type KafkaSinkOptions,
  type KafkaSourceOptions,
  lagRows,
  type LeaderElection,
  type PartitionLag,
  PendingCommits,
  probeTls,
  securitySettings,
  SinkClosedError,
  type SinkStats,
  throttledLog,
  waitForLeaders,
  within,
} from "./kafka.ts";
import { murmur2 } from "./memory_broker.ts";
import { newestTimestamp, PlatformaticElection } from "./kafka_platformatic_election.ts";
import type { ConsumeOptions, InRecord, OutRecord, RecordSource } from "./sink.ts";

/** The client library, for logs and benchmarks. */
export const PLATFORMATIC_LIBRARY = "@platformatic/kafka 2.12.1";

const SASL_MECHANISMS = {
  "scram-sha-256": "SCRAM-SHA-256",
  "scram-sha-512": "SCRAM-SHA-512",
  plain: "PLAIN",
} as const;

/** Options for {@linkcode platformaticOptions}. */
export interface PlatformaticOptions {
  clientId: string;
  /** TCP (and TLS) connect timeout per broker, ms; default 10,000. */
  connectTimeoutMs?: number;
  /** Request timeout, ms; default 30,000. */
  requestTimeoutMs?: number;
  /** Retries of one operation; default unbounded (until the client is closed). */
  retries?: number;
}

/**
 * Pause before retry `attempt` of an operation: doubling from 100 ms to 2 s, with full jitter
 * so that clients restarted together do not retry in step.
 */
function retryDelay(_client: unknown, _operation: string, attempt: number): number {
  const ceiling = Math.min(100 * 2 ** Math.min(attempt, 10), 2_000);
  return Math.max(20, Math.floor(Math.random() * ceiling));
}

/** The @platformatic/kafka base options for a config (exported for tests; never log it). */
export function platformaticOptions(
  config: KafkaConfig,
  options: PlatformaticOptions,
): BaseOptions {
  const out: BaseOptions = {
    clientId: options.clientId,
    bootstrapBrokers: config.brokers,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    timeout: options.requestTimeoutMs ?? 30_000,
    retries: options.retries ?? Number.MAX_SAFE_INTEGER,
    retryDelay,
    autocreateTopics: false,
  };
  const { tls, sasl } = securitySettings(config);
  if (tls) out.tls = tls;
  if (sasl) {
    const { mechanism, username, password } = sasl;
    out.sasl = { mechanism: SASL_MECHANISMS[mechanism], username, password } as SASLOptions;
  }
  return out;
}

/** The SASL failure in an error chain, in the broker's words, if there is one. */
function saslFailure(error: unknown): string | undefined {
  let found: string | undefined;
  let isSasl = false;
  const visit = (e: unknown, depth: number): void => {
    if (!e || typeof e !== "object" || depth > 8) return;
    const x = e as {
      code?: string;
      message?: string;
      errors?: unknown[];
      cause?: unknown;
      apiId?: string;
      serverErrorMessage?: string | null;
    };
    if (x.code === AuthenticationError.code) isSasl = true;
    if (x.apiId === "SASL_AUTHENTICATION_FAILED") {
      isSasl = true;
      found = x.serverErrorMessage || x.message;
    }
    for (const inner of x.errors ?? []) visit(inner, depth + 1);
    visit(x.cause, depth + 1);
  };
  visit(error, 0);
  return isSasl ? found ?? "authentication failed" : undefined;
}

/** A short reason for a client error: the distinct messages of its chain, innermost last. */
function reasonOf(error: unknown): string {
  const chain = [...new Set(errorChain(error))];
  return chain.slice(-2).join(": ") || String(error);
}

/** @platformatic/kafka behind the {@linkcode KafkaClient} boundary. */
export class PlatformaticClient implements KafkaClient {
  readonly name = "platformatic" as const;
  readonly library = PLATFORMATIC_LIBRARY;
  #config: KafkaConfig;
  #options: AdapterOptions;
  #admin: Admin | undefined;
  readonly admin: KafkaAdmin;

  constructor(config: KafkaConfig, options: AdapterOptions) {
    this.#config = config;
    this.#options = options;
    // Admin calls are bounded: a caller (start-up, the lag timer) decides what a failure means.
    const admin = () =>
      this.#admin ??= new Admin(
        platformaticOptions(config, { clientId: options.clientId, retries: 5 }),
      );
    this.admin = {
      listTopics: () => admin().listTopics(),
      ensureTopic: (name, o) => ensureTopic(admin(), name, o),
      lag: (groupId, topic) => partitionLag(admin(), groupId, topic),
      describeTopic: async (name) => {
        const meta = await admin().metadata({ topics: [name] });
        const topic = meta.topics.get(name);
        return {
          partitions: topic?.partitionsCount ?? 0,
          replicas: (topic?.partitions ?? []).map((p) => p.replicas.length),
        };
      },
      newestTimestamp: (topic) => newestTimestamp(admin(), topic),
    };
  }

  connect(options: ConnectOptions = {}): Promise<void> {
    const config = this.#config;
    return connectLoop(
      config,
      async (remaining) => {
        const admin = new Admin(platformaticOptions(config, {
          clientId: this.#options.clientId,
          retries: 0,
          connectTimeoutMs: Math.min(remaining, 10_000),
          requestTimeoutMs: Math.min(remaining, 30_000),
        }));
        try {
          await within(admin.metadata({ topics: [] }), remaining, "Connecting");
        } catch (error) {
          // The client reports a TLS alert after the handshake (a rejected client certificate)
          // as a closed connection: ask the broker once more, ourselves, to learn the alert.
          if (config.security !== "plaintext" && /closed/i.test(errorChain(error).join(" "))) {
            const alert = await probeTls(config, Math.min(remaining, 3_000));
            if (alert) {
              throw new Error(`TLS connection closed by the broker: ${alert}`, {
                cause: error,
              });
            }
          }
          throw error;
        } finally {
          within(admin.close(), 2_000, "Disconnecting").catch(() => {});
        }
      },
      (error) => explainFailure(error, config, saslFailure(error)),
      options,
    );
  }

  sink(options: KafkaSinkOptions = {}): KafkaSink {
    return new PlatformaticSink(this.#config, this.#options, options);
  }

  source(options: KafkaSourceOptions): RecordSource {
    return new PlatformaticSource(this.#config, this.#options, options, this.admin);
  }

  elect(options: ElectionOptions): LeaderElection {
    const base = platformaticOptions(this.#config, { clientId: this.#options.clientId });
    return new PlatformaticElection(base, options, this.#options.log);
  }

  async close(): Promise<void> {
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.close().catch(() => {});
  }
}

// --- topics and lag ---------------------------------------------------------------------------

async function ensureTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<EnsureTopicResult> {
  let created = false;
  if (!(await admin.listTopics()).includes(name)) {
    try {
      await admin.createTopics({
        topics: [name],
        partitions: options.partitions,
        replicas: options.replicationFactor,
      });
      created = true;
    } catch (error) {
      // Another client created it between our list and create calls.
      if (!errorChain(error).some((m) => /already exists/i.test(m))) throw error;
    }
  }
  const partitions = await waitForLeaders(name, async () => {
    const meta = await admin.metadata({ topics: [name], forceUpdate: true });
    const topic = meta.topics.get(name);
    return topic && {
      partitions: topic.partitionsCount,
      leaders: topic.partitions.every((p) => p.leader >= 0),
    };
  });
  return { created, partitions };
}

/** Each partition's earliest or latest offset (`timestamp` -2n or -1n), or the offset at a time. */
async function offsetsAt(
  admin: Admin,
  topic: string,
  partitions: number[],
  timestamp: bigint,
): Promise<Map<number, bigint>> {
  const listed = await admin.listOffsets({
    topics: [{
      name: topic,
      partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })),
    }],
  });
  const out = new Map<number, bigint>();
  for (const t of listed) {
    for (const p of t.partitions) out.set(p.partitionIndex, p.offset);
  }
  return out;
}

/** The group's committed offset per partition of the topic (-1n where none). */
async function committedOffsets(
  admin: Admin,
  groupId: string,
  topic: string,
  partitions: number[],
): Promise<Map<number, bigint>> {
  const groups = await admin.listConsumerGroupOffsets({
    groups: [{ groupId, topics: [{ name: topic, partitionIndexes: partitions }] }],
  });
  const out = new Map<number, bigint>(partitions.map((p) => [p, -1n]));
  for (const g of groups) {
    for (const t of g.topics) {
      if (t.name !== topic) continue;
      for (const p of t.partitions) out.set(p.partitionIndex, p.committedOffset);
    }
  }
  return out;
}

async function partitionIndexes(admin: Admin, topic: string): Promise<number[]> {
  const meta = await admin.metadata({ topics: [topic] });
  const count = meta.topics.get(topic)?.partitionsCount ?? 0;
  return Array.from({ length: count }, (_, i) => i);
}

async function partitionLag(admin: Admin, groupId: string, topic: string): Promise<PartitionLag[]> {
  const partitions = await partitionIndexes(admin, topic);
  const [ends, starts, committed] = await Promise.all([
    offsetsAt(admin, topic, partitions, -1n),
    offsetsAt(admin, topic, partitions, -2n),
    committedOffsets(admin, groupId, topic, partitions),
  ]);
  return lagRows(partitions.map((partition) => ({
    partition,
    end: ends.get(partition) ?? 0n,
    start: starts.get(partition) ?? 0n,
    committed: committed.get(partition) ?? -1n,
  })));
}

// --- producer ---------------------------------------------------------------------------------

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
class PlatformaticSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0 };
  #producer: Producer<string, string, string, string>;
  #closed = false;
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
        if (this.#closed) return;
        this.#log(
          `failed ${where(payload)}`,
          `kafka producer: cannot connect to ${where(payload)}`,
        );
      },
    );
    this.#producer.on(
      "client:broker:disconnect",
      (payload: { broker?: { host: string; port: number } }) => {
        if (this.#closed) return;
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
    for (let attempt = 1;; attempt++) {
      if (this.#closed) throw new SinkClosedError("Cannot send to Kafka: the sink is closed");
      const retriesBefore = this.stats.retries;
      try {
        await this.#producer.send({ messages });
        this.#noteProducerId();
        const retried = this.stats.retries - retriesBefore;
        if (retried > 0) {
          this.#write(
            `kafka producer: ${records.length} records acknowledged after ${retried} ` +
              `retr${retried === 1 ? "y" : "ies"}; sending normally again`,
          );
        }
        return;
      } catch (error) {
        if (this.#closed) {
          throw new SinkClosedError("Cannot send to Kafka: the sink was closed while retrying", {
            cause: error,
          });
        }
        // The client only gives up on errors it cannot retry, and then drops its producer id
        // and sequence numbers: the resend below goes out under a new id.
        this.stats.producerResets++;
        this.#producerId = undefined;
        this.#onReset(
          `kafka producer: send of ${records.length} records to "${topic}" failed for good ` +
            `(attempt ${attempt}): ${reasonOf(error)}; sending it again under a new producer ` +
            `id: records the broker wrote before the failure would be written twice`,
        );
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 5_000)));
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#producer.close();
  }
}

// --- consumer ---------------------------------------------------------------------------------

/** Records read at most per `onBatch` call. */
const BATCH_MAX = 2_000;

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
}

function toInRecord(m: Message<string, string, string, string>): InRecord {
  const headers: Record<string, string> = {};
  for (const [k, v] of m.headers) headers[headerText(k)] = headerText(v);
  return {
    topic: m.topic,
    partition: m.partition,
    offset: m.offset.toString(),
    key: m.key === undefined || m.key === null || m.key === "" ? null : m.key,
    value: m.value === undefined || m.value === null ? null : m.value,
    timestamp: Number(m.timestamp),
    headers,
  };
}

/** Strings for keys, values and headers; `undefined` for a missing key or a tombstone. */
const stringOrUndefined = (data?: Buffer) => data === undefined ? undefined : data.toString("utf8");

/**
 * A @platformatic/kafka consumer in a group as a {@linkcode RecordSource}: records of each
 * partition in order, offsets committed only after `onBatch` resolves (at least once).
 */
class PlatformaticSource implements RecordSource {
  #config: KafkaConfig;
  #adapter: AdapterOptions;
  #options: KafkaSourceOptions;
  #admin: KafkaAdmin;
  #consumer: Consumer<string, string, string, string> | undefined;
  #stream: MessagesStream<string, string, string, string> | undefined;

  constructor(
    config: KafkaConfig,
    adapter: AdapterOptions,
    options: KafkaSourceOptions,
    admin: KafkaAdmin,
  ) {
    this.#config = config;
    this.#adapter = adapter;
    this.#options = options;
    this.#admin = admin;
  }

  /**
   * `--from TIME`: for each partition where the group has committed nothing, commit the offset
   * of the first record at or after the time, before joining; committed offsets then decide.
   */
  async #seedOffsets(from: Date): Promise<void> {
    const { groupId, topic } = this.#options;
    const admin = new Admin(
      platformaticOptions(this.#config, { clientId: this.#adapter.clientId, retries: 5 }),
    );
    try {
      const partitions = await partitionIndexes(admin, topic);
      const committed = await committedOffsets(admin, groupId, topic, partitions);
      const fresh = partitions.filter((p) => (committed.get(p) ?? -1n) < 0n);
      if (fresh.length === 0) return;
      const at = await offsetsAt(admin, topic, fresh, BigInt(from.getTime()));
      // Past the last record's time the broker answers -1: start at the end then.
      const ends = await offsetsAt(admin, topic, fresh, -1n);
      await admin.alterConsumerGroupOffsets({
        groupId,
        topics: [{
          name: topic,
          partitionOffsets: fresh.map((partition) => {
            const offset = at.get(partition) ?? -1n;
            return { partition, offset: offset >= 0n ? offset : ends.get(partition) ?? 0n };
          }),
        }],
      });
    } finally {
      await admin.close().catch(() => {});
    }
  }

  async consume(
    onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
    options: ConsumeOptions,
  ): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return;
    const { topic, groupId } = this.#options;
    const from = this.#options.from ?? "latest";
    if (from instanceof Date) await this.#seedOffsets(from);
    const sessionTimeout = this.#options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    const consumer = new Consumer<string, string, string, string>({
      ...platformaticOptions(this.#config, { clientId: this.#adapter.clientId }),
      groupId,
      sessionTimeout,
      // A third of the session timeout, as Kafka's own consumer.
      heartbeatInterval: Math.floor(sessionTimeout / 3),
      rebalanceTimeout: Math.max(sessionTimeout, 30_000),
      autocommit: false,
      maxWaitTime: 100,
      // The library's 50 MB default fetch is parsed into objects in one go: over a backlog that
      // was about 1 GB of heap and 10 s without a heartbeat (the group then rebalanced). Kafka's
      // own consumer asks for at most 1 MB per partition.
      maxBytes: 4 * 1_048_576,
      maxBytesPerPartition: 1_048_576,
      deserializers: {
        key: stringOrUndefined,
        value: stringOrUndefined,
        headerKey: stringOrUndefined,
        headerValue: stringOrUndefined,
      } as never,
    });
    this.#consumer = consumer;
    const log = throttledLog(this.#config, this.#adapter.log);
    // This member's partitions now. A fetch made before a rebalance can still deliver records
    // of a partition that has moved to another member; those are dropped here, uncommitted,
    // and the new owner reads them from the group's committed offset.
    let assigned = new Set<number>();
    let revoked = false;
    consumer.on(
      "consumer:group:join",
      (payload: { assignments?: { topic: string; partitions: number[] }[] }) => {
        const mine = payload.assignments?.find((a) => a.topic === topic)?.partitions ?? [];
        const next = new Set(mine);
        if ([...assigned].some((p) => !next.has(p))) revoked = true;
        assigned = next;
        this.#options.onAssign?.([...mine].sort((a, b) => a - b));
      },
    );
    consumer.on("consumer:heartbeat:error", (payload: { error?: Error }) => {
      const reason = payload?.error ? reasonOf(payload.error) : "unknown";
      // A rebalance in progress answers heartbeats with an error the client handles by rejoining.
      if (/REBALANCE_IN_PROGRESS|rebalance/i.test(reason)) return;
      log("heartbeat", `kafka consumer: heartbeat failed: ${reason}`);
    });

    const stream = await consumer.consume({
      topics: [topic],
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: from === "earliest"
        ? MessagesStreamFallbackModes.EARLIEST
        : MessagesStreamFallbackModes.LATEST,
      autocommit: false,
      sessionTimeout,
      heartbeatInterval: Math.floor(sessionTimeout / 3),
      maxWaitTime: 100,
    });
    this.#stream = stream;

    const pending = new PendingCommits(this.#options.commitIntervalMs ?? 100);
    const epochs = new Map<number, number>();
    const commit = async () => {
      const offsets = pending.take().map(([partition, offset]) => ({
        topic,
        partition,
        offset,
        leaderEpoch: epochs.get(partition) ?? -1,
      }));
      if (offsets.length === 0) return;
      try {
        await consumer.commit({ offsets });
      } catch (error) {
        // After a rebalance the partitions may belong to another member, which reads from the
        // last committed offset: those records are read again (at least once).
        log("commit", `kafka consumer: commit failed: ${reasonOf(error)}`);
      }
    };

    let failure: unknown;
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const onError = (error: unknown) => {
      failure ??= error;
      poke();
    };
    // Flowing mode with pause/resume for backpressure, as the library expects: reading with
    // read() in paused mode starts a new fetch loop on every call that finds the buffer low, and
    // over a large backlog those loops multiplied until the heap ran out.
    let buffered: Message<string, string, string, string>[] = [];
    const onData = (m: Message<string, string, string, string>) => {
      buffered.push(m);
      if (buffered.length >= BATCH_MAX && !stream.isPaused()) stream.pause();
      poke();
    };
    stream.on("data", onData);
    stream.on("error", onError);
    stream.on("close", poke);
    signal.addEventListener("abort", poke, { once: true });
    const ticker = setInterval(() => {
      if (pending.due()) poke();
    }, this.#options.commitIntervalMs ?? 100);
    try {
      while (!signal.aborted && failure === undefined && !stream.destroyed) {
        const batch = buffered;
        buffered = [];
        if (stream.isPaused()) stream.resume();
        if (batch.length === 0) {
          if (pending.due()) await commit();
          await new Promise<void>((resolve) => wake = resolve);
          continue;
        }
        if (revoked) {
          pending.keep(assigned);
          revoked = false;
        }
        const mine = batch.filter((m) => assigned.has(m.partition));
        if (mine.length === 0) continue;
        const records = mine.map(toInRecord);
        const handled = await onBatch(records);
        const n = typeof handled === "number"
          ? Math.max(0, Math.min(handled, records.length))
          : records.length;
        for (let i = 0; i < n; i++) {
          const msg = mine[i]!;
          pending.handled(msg.partition, msg.offset);
          epochs.set(msg.partition, msg.leaderEpoch);
        }
        // A partial batch: the caller stopped; commit just what it handled, now.
        if (n < records.length || signal.aborted || pending.due()) await commit();
        if (n < records.length) break;
      }
      if (pending.size > 0) await commit();
    } finally {
      clearInterval(ticker);
      signal.removeEventListener("abort", poke);
      stream.off("data", onData);
      // Records fetched but not handled stay uncommitted: the group reads them again.
      stream.pause();
    }
    if (failure !== undefined) throw failure;
  }

  async close(): Promise<void> {
    const stream = this.#stream;
    const consumer = this.#consumer;
    this.#stream = undefined;
    this.#consumer = undefined;
    await stream?.close().catch(() => {});
    // Leaves the group, so the partitions move to the other members at once.
    await consumer?.close(true).catch(() => {});
  }
}
