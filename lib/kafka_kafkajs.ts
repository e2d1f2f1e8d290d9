/**
 * The kafkajs adapter behind the Kafka boundary (`kafka.ts`): the client built from a
 * {@linkcode KafkaConfig} (plaintext, TLS client certificates, or SASL/SCRAM over TLS), start-up
 * reachability, topics, lag, an idempotent producer and an at-least-once consumer.
 *
 * kafkajs 2.2.4 is unmaintained and its idempotent producer can write a record twice (see
 * RELIABILITY.md); it stays as the second adapter because the user's design card names it.
 */
import net from "node:net";
import process from "node:process";
import tls from "node:tls";
import {
  type Admin,
  CompressionTypes,
  type Consumer,
  type EachBatchPayload,
  type ICustomPartitioner,
  type ISocketFactory,
  Kafka,
  type KafkaConfig as KafkaJsConfig,
  type LogEntry,
  logLevel as KafkaJsLogLevel,
  type Message,
  Partitioners,
  type Producer,
  type SASLOptions,
} from "kafkajs";
import { ConfigError, type KafkaConfig } from "./config.ts";
import {
  type AdapterOptions,
  connectLoop,
  type ConnectOptions,
  DEFAULT_SESSION_TIMEOUT_MS,
  type EnsureTopicOptions,
  type EnsureTopicResult,
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
  securitySettings,
  SinkClosedError,
  type SinkStats,
  throttledLog,
  waitForLeaders,
  within,
} from "./kafka.ts";
import type { ConsumeOptions, InRecord, OutRecord, RecordSource } from "./sink.ts";

/** How much kafkajs itself logs. */
export type KafkaLogLevel = "nothing" | "error" | "warn" | "info" | "debug";

/** Options for {@linkcode kafkaJsConfig}. */
export interface CreateKafkaOptions {
  /** Client id sent to the broker; default "crypto-quotes". */
  clientId?: string;
  /** kafkajs log level; default "error". */
  logLevel?: KafkaLogLevel;
  /** Where kafkajs log lines go; default `console.error`. Lines never hold secrets. */
  log?: (line: string) => void;
  /** TCP (and TLS) connect timeout per broker, ms; default 10,000. */
  connectionTimeoutMs?: number;
  /** Request timeout, ms; default 30,000. */
  requestTimeoutMs?: number;
  /** Retries of one kafkajs operation (connect, metadata, produce); default 5. */
  retries?: number;
}

const LOG_LEVELS: Record<KafkaLogLevel, KafkaJsLogLevel> = {
  nothing: KafkaJsLogLevel.NOTHING,
  error: KafkaJsLogLevel.ERROR,
  warn: KafkaJsLogLevel.WARN,
  info: KafkaJsLogLevel.INFO,
  debug: KafkaJsLogLevel.DEBUG,
};

/** Log fields worth a user's attention; everything else kafkajs attaches is dropped. */
const LOG_FIELDS = ["broker", "topic", "partition", "groupId", "error", "retryCount", "retryTime"];

/**
 * Messages kafkajs logs that are expected and handled: retries are ours to report, and a fresh
 * broker's "coordinator is loading" is retried by kafkajs itself.
 */
const QUIET_MESSAGES = [
  "Limiting retries for the idempotent producer",
  "The group coordinator is loading",
  "The coordinator is loading",
];

/**
 * A kafkajs log creator writing one concise, redacted line per entry, with repeats within 10 s
 * counted instead of printed (see {@linkcode throttledLog}).
 */
export function kafkaLogCreator(
  config: KafkaConfig,
  write: (line: string) => void,
  now: () => number = Date.now,
) {
  const out = throttledLog(config, write, now);
  return () => ({ namespace, label, log }: LogEntry) => {
    const { message } = log;
    const error = String(log.error ?? "");
    if (QUIET_MESSAGES.some((q) => message.startsWith(q) || error.startsWith(q))) return;
    const fields = LOG_FIELDS
      .filter((f) => log[f] !== undefined && log[f] !== null)
      .map((f) => `${f}=${JSON.stringify(String(log[f]))}`);
    const where = namespace ? ` [${namespace}]` : "";
    const key = `${label}${where} ${message} ${String(log.broker ?? "")}`;
    out(
      key,
      `kafka ${label.toLowerCase()}${where} ${message}` +
        (fields.length ? ` ${fields.join(" ")}` : ""),
    );
  };
}

let warningFilterInstalled = false;

/**
 * kafkajs schedules a timer with a negative delay when it is not throttled (tulios/kafkajs#1751);
 * the runtime clamps it to 1 ms and prints a `TimeoutNegativeWarning` on stderr. Drop only that.
 */
function hideTimeoutNegativeWarning(): void {
  if (warningFilterInstalled) return;
  warningFilterInstalled = true;
  const original = process.emitWarning;
  process.emitWarning = function (warning: string | Error, ...rest: unknown[]) {
    const type = typeof rest[0] === "string"
      ? rest[0]
      : (rest[0] as { type?: string } | undefined)?.type;
    const name = warning instanceof Error ? warning.name : type;
    if (name === "TimeoutNegativeWarning") return;
    return (original as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
}

/**
 * kafkajs's own socket factory, plus `setNoDelay`: without it Nagle's algorithm holds a small
 * request (a fetch, a commit, a produce) until the previous one is acknowledged, which with the
 * peer's delayed acks adds tens of ms per round trip.
 */
const socketFactory: ISocketFactory = ({ host, port, ssl, onConnect }) => {
  const socket = ssl
    ? tls.connect(
      { host, port, ...(net.isIP(host) ? {} : { servername: host }), ...ssl },
      onConnect,
    )
    : net.connect({ host, port }, onConnect);
  socket.setKeepAlive(true, 60_000);
  socket.setNoDelay(true);
  return socket;
};

/** The kafkajs client settings for a config (exported for tests; never log the result). */
export function kafkaJsConfig(
  config: KafkaConfig,
  options: CreateKafkaOptions = {},
): KafkaJsConfig {
  const out: KafkaJsConfig = {
    clientId: options.clientId ?? "crypto-quotes",
    brokers: config.brokers,
    connectionTimeout: options.connectionTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    retry: { retries: options.retries ?? 5, initialRetryTime: 300, maxRetryTime: 5_000 },
    logLevel: LOG_LEVELS[options.logLevel ?? "error"],
    logCreator: kafkaLogCreator(config, options.log ?? ((line) => console.error(line))),
    socketFactory,
  };
  const { tls, sasl } = securitySettings(config);
  if (tls) out.ssl = tls;
  if (sasl) {
    const { mechanism, username, password } = sasl;
    out.sasl = { mechanism, username, password } as SASLOptions;
  }
  return out;
}

function createKafka(config: KafkaConfig, options: CreateKafkaOptions = {}): Kafka {
  hideTimeoutNegativeWarning();
  return new Kafka(kafkaJsConfig(config, options));
}

/** Finds the SASL error in a chain of kafkajs errors, if any. */
function saslFailure(error: unknown): string | undefined {
  let e = error as { name?: string; message?: string; cause?: unknown } | undefined;
  for (let i = 0; i < 5 && e; i++) {
    if (e.name === "KafkaJSSASLAuthenticationError") return e.message;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** kafkajs behind the {@linkcode KafkaClient} boundary. */
export class KafkaJsClient implements KafkaClient {
  readonly name = "kafkajs" as const;
  readonly library = "kafkajs 2.2.4";
  #config: KafkaConfig;
  #options: AdapterOptions;
  #kafka: Kafka;
  #admin: Admin | undefined;
  #adminConnecting: Promise<Admin> | undefined;
  readonly admin: KafkaAdmin;

  constructor(config: KafkaConfig, options: AdapterOptions) {
    this.#config = config;
    this.#options = options;
    this.#kafka = createKafka(config, { clientId: options.clientId, log: options.log });
    const admin = () => this.#connectedAdmin();
    this.admin = {
      listTopics: async () => (await admin()).listTopics(),
      ensureTopic: async (name, o) => ensureTopic(await admin(), name, o),
      lag: async (groupId, topic) => partitionLag(await admin(), groupId, topic),
      describeTopic: async (name) => {
        const meta = await (await admin()).fetchTopicMetadata({ topics: [name] });
        const partitions = meta.topics[0]?.partitions ?? [];
        return {
          partitions: partitions.length,
          replicas: partitions.map((p) => p.replicas.length),
        };
      },
      newestTimestamp: () => Promise.reject(notWithKafkaJs("reading the newest record time")),
    };
  }

  #connectedAdmin(): Promise<Admin> {
    this.#adminConnecting ??= (async () => {
      const admin = this.#kafka.admin();
      await admin.connect();
      this.#admin = admin;
      return admin;
    })().catch((error) => {
      this.#adminConnecting = undefined;
      throw error;
    });
    return this.#adminConnecting;
  }

  connect(options: ConnectOptions = {}): Promise<void> {
    const config = this.#config;
    return connectLoop(
      config,
      async (remaining) => {
        const kafka = createKafka(config, {
          clientId: this.#options.clientId,
          logLevel: "nothing",
          retries: 0,
          connectionTimeoutMs: Math.min(remaining, 10_000),
          requestTimeoutMs: Math.min(remaining, 30_000),
        });
        const admin = kafka.admin();
        try {
          await within(
            admin.connect().then(() => admin.describeCluster()),
            remaining,
            "Connecting",
          );
        } finally {
          within(admin.disconnect(), 2_000, "Disconnecting").catch(() => {});
        }
      },
      (error) => explainFailure(error, config, saslFailure(error)),
      options,
    );
  }

  sink(options: KafkaSinkOptions = {}): KafkaSink {
    return new KafkaJsSink(this.#kafka, options, this.#options.log);
  }

  source(options: KafkaSourceOptions): RecordSource {
    return new KafkaJsSource(this.#kafka, options, () => this.#connectedAdmin());
  }

  elect(): LeaderElection {
    throw notWithKafkaJs("--standby-group (producer failover)");
  }

  async close(): Promise<void> {
    const admin = this.#admin;
    this.#admin = undefined;
    this.#adminConnecting = undefined;
    await admin?.disconnect().catch(() => {});
  }
}

/** What the kafkajs adapter does not do: its admin has no MAX_TIMESTAMP offsets lookup. */
function notWithKafkaJs(what: string): ConfigError {
  return new ConfigError(
    `Cannot use ${what} with KAFKA_CLIENT=kafkajs: only the platformatic adapter supports it; ` +
      `unset KAFKA_CLIENT or set it to platformatic`,
  );
}

// --- topics and lag ---------------------------------------------------------------------------

async function ensureTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<EnsureTopicResult> {
  const topics = await admin.listTopics();
  let created = false;
  if (!topics.includes(name)) {
    try {
      // false: another client created it between our list and create calls.
      created = await admin.createTopics({
        topics: [{
          topic: name,
          numPartitions: options.partitions,
          replicationFactor: options.replicationFactor,
        }],
        waitForLeaders: true,
      });
    } catch (error) {
      // Right after creation the broker may not host the new partitions yet, and kafkajs's
      // wait for leaders gives up on that answer; the metadata wait below covers it.
      if ((error as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
      created = true;
    }
  }
  const partitions = await waitForLeaders(name, async () => {
    const metadata = await admin.fetchTopicMetadata({ topics: [name] });
    const topic = metadata.topics.find((t) => t.name === name);
    return topic && {
      partitions: topic.partitions.length,
      leaders: topic.partitions.every((p) => p.leader >= 0),
    };
  });
  return { created, partitions };
}

async function partitionLag(admin: Admin, groupId: string, topic: string): Promise<PartitionLag[]> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const byPartition = new Map(
    (committed[0]?.partitions ?? []).map((p) => [p.partition, p.offset]),
  );
  return lagRows(ends.map(({ partition, high, low }) => ({
    partition,
    end: BigInt(high),
    start: BigInt(low),
    committed: BigInt(byPartition.get(partition) ?? "-1"),
  })));
}

// --- producer ---------------------------------------------------------------------------------

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
class KafkaJsSink implements KafkaSink {
  readonly stats: SinkStats = { retries: 0, producerResets: 0 };
  #producer: Producer;
  #compression: CompressionTypes;
  #ackTimeoutMs: number;
  #connecting: Promise<void> | undefined;
  #closed = false;
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
    let delay = 100;
    for (let attempt = 1;; attempt++) {
      if (this.#closed) throw new SinkClosedError("Cannot send to Kafka: the sink is closed");
      try {
        await this.connect();
        await this.#producer.send({
          topic,
          messages,
          acks: -1,
          timeout: this.#ackTimeoutMs,
          compression: this.#compression,
        });
        return;
      } catch (error) {
        if (this.#closed) {
          throw new SinkClosedError("Cannot send to Kafka: the sink was closed while retrying", {
            cause: error,
          });
        }
        this.stats.producerResets++;
        if (attempt === 1 || attempt % 10 === 0) {
          const reason = error instanceof Error ? error.message : String(error);
          this.#onReset(
            `kafka producer: send of ${records.length} records failed after kafkajs's own ` +
              `retries (attempt ${attempt}): ${reason}; sending the batch again, duplicates ` +
              `are possible with kafkajs`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#connecting = undefined;
    await this.#producer.disconnect();
  }
}

// --- consumer ---------------------------------------------------------------------------------

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map(headerText).join(",");
  return typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
}

function toInRecord(
  topic: string,
  partition: number,
  message: EachBatchPayload["batch"]["messages"][number],
): InRecord {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = headerText(v);
  return {
    topic,
    partition,
    offset: message.offset,
    key: message.key === null || message.key === undefined ? null : message.key.toString("utf8"),
    value: message.value === null || message.value === undefined
      ? null
      : message.value.toString("utf8"),
    timestamp: Number(message.timestamp),
    headers,
  };
}

/**
 * A kafkajs consumer in a group as a {@linkcode RecordSource}: batches in partition order, with
 * offsets committed only after `onBatch` resolves (at least once).
 */
class KafkaJsSource implements RecordSource {
  #options: KafkaSourceOptions;
  #consumer: Consumer;
  #admin: () => Promise<Admin>;
  #connected = false;

  constructor(kafka: Kafka, options: KafkaSourceOptions, admin: () => Promise<Admin>) {
    this.#options = options;
    this.#admin = admin;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
      // A third of the session timeout, as Kafka's own consumer.
      heartbeatInterval: Math.floor((options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS) / 3),
      allowAutoTopicCreation: false,
    });
  }

  /** Start offsets at `from` for the partitions where the group has committed nothing. */
  async #offsetsAt(from: Date): Promise<Map<number, string>> {
    const { groupId, topic } = this.#options;
    const admin = await this.#admin();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const fresh = new Set(
      (committed?.partitions ?? []).filter((p) => p.offset === "-1").map((p) => p.partition),
    );
    if (fresh.size === 0) return new Map();
    // Past the last record's time, kafkajs answers with the end offset.
    const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, from.getTime());
    return new Map(
      offsets.filter((p) => fresh.has(p.partition)).map((p) => [p.partition, p.offset]),
    );
  }

  async consume(
    onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
    options: ConsumeOptions,
  ): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return;
    const { topic } = this.#options;
    const from = this.#options.from ?? "latest";
    const startAt = from instanceof Date ? await this.#offsetsAt(from) : new Map<number, string>();
    await this.#consumer.connect();
    this.#connected = true;
    await this.#consumer.subscribe({ topics: [topic], fromBeginning: from === "earliest" });

    const pending = new PendingCommits(this.#options.commitIntervalMs ?? 100);
    type Offsets = {
      topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
    };
    const commitPending = async (commit: (offsets: Offsets) => Promise<unknown>) => {
      const partitions = pending.take().map(([partition, offset]) => ({
        partition,
        offset: offset.toString(),
      }));
      await commit({ topics: [{ topic, partitions }] });
    };
    const stopped = Promise.withResolvers<void>();
    let failure: unknown;
    const fail = (error: unknown) => {
      failure ??= error;
      stopped.resolve();
    };
    const onAbort = () => stopped.resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    const removeCrash = this.#consumer.on(this.#consumer.events.CRASH, (event) => {
      if (!event.payload.restart) fail(event.payload.error);
    });
    // kafkajs emits GROUP_JOIN synchronously after the assignment and before the first fetch,
    // so a seek made here is applied to that fetch. Only on the first join: after that the
    // group's committed offsets decide, as they must when partitions move between members.
    let firstJoin = true;
    const removeJoin = this.#consumer.on(this.#consumer.events.GROUP_JOIN, (event) => {
      const assigned = event.payload.memberAssignment[topic] ?? [];
      this.#options.onAssign?.([...assigned].sort((a, b) => a - b));
      if (!firstJoin) return;
      firstJoin = false;
      for (const partition of assigned) {
        const offset = startAt.get(partition);
        if (offset !== undefined) this.#consumer.seek({ topic, partition, offset });
      }
    });

    try {
      await this.#consumer.run({
        autoCommit: false,
        // Partitions are handled side by side (each still in order), so one partition's commit
        // round trip does not hold back the others' records.
        partitionsConsumedConcurrently: 6,
        eachBatchAutoResolve: false,
        eachBatch: async (payload) => {
          const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
          if (batch.isEmpty()) {
            // An idle fetch: commit what is pending once the interval has passed.
            if (pending.due()) {
              await commitPending((offsets) => payload.commitOffsetsIfNecessary(offsets));
            }
            return;
          }
          if (signal.aborted || failure !== undefined) return;
          if (!isRunning() || isStale()) return;
          const records = batch.messages.map((m) => toInRecord(batch.topic, batch.partition, m));
          let handled: void | number;
          try {
            handled = await onBatch(records);
          } catch (error) {
            fail(error);
            return;
          }
          // A number: only that many records were handled; commit just those, now.
          let partial = false;
          if (typeof handled === "number" && handled < records.length) {
            if (handled <= 0) return;
            records.length = handled;
            partial = true;
          }
          const last = records[records.length - 1]!.offset;
          resolveOffset(last);
          pending.handled(batch.partition, BigInt(last));
          // Not consumer.commitOffsets() here: it silently skips the commit once stop() has
          // begun, which would lose the final commit of the batch being finished on shutdown.
          if (partial || signal.aborted || pending.due()) {
            await commitPending((offsets) => payload.commitOffsetsIfNecessary(offsets));
          }
          await heartbeat();
        },
      });
      await stopped.promise;
      // Before stop() begins, while commitOffsets still works: what finished batches left.
      if (pending.size > 0) {
        await commitPending((offsets) =>
          this.#consumer.commitOffsets(offsets.topics.flatMap(
            (t) => t.partitions.map((p) => ({ topic: t.topic, ...p })),
          ))
        );
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      removeCrash();
      removeJoin();
      // Waits for a batch in progress to finish (and commit) before it returns.
      await this.#consumer.stop();
    }
    if (failure !== undefined) throw failure;
  }

  async close(): Promise<void> {
    if (!this.#connected) return;
    this.#connected = false;
    await this.#consumer.disconnect();
  }
}
