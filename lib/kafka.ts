/**
 * kafkajs behind the {@linkcode RecordSink} and {@linkcode RecordSource} interfaces: the client
 * built from a {@linkcode KafkaConfig} (plaintext, TLS client certificates, or SASL/SCRAM over
 * TLS), a start-up reachability check with a bounded wait, topic creation, an idempotent
 * producer, an at-least-once consumer and consumer-group lag.
 *
 * @example
 * ```ts
 * await connectWithin(config); // throws KafkaUnreachableError (exit code 5)
 * const kafka = createKafka(config, { clientId: "crypto-producer" });
 * const admin = kafka.admin();
 * await admin.connect();
 * await ensureTopic(admin, config.topic, config.partitions, config.replicationFactor);
 * const sink = new KafkaSink(kafka, { compression: config.compression });
 * await sink.send(config.topic, records);
 * ```
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
import { EXIT, type KafkaConfig } from "./config.ts";
import type { ConsumeOptions, InRecord, OutRecord, RecordSink, RecordSource } from "./sink.ts";

/** Kafka could not be reached at start-up within the time allowed. Exit code 5. */
export class KafkaUnreachableError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.KAFKA_UNREACHABLE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaUnreachableError";
  }
}

/**
 * Kafka answered but refused us: TLS verification failed on either side, or SASL
 * authentication failed. Retrying cannot help, so it is thrown at once. Exit code 5.
 */
export class KafkaAuthError extends KafkaUnreachableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaAuthError";
  }
}

/** How much kafkajs itself logs. */
export type KafkaLogLevel = "nothing" | "error" | "warn" | "info" | "debug";

/** Options for {@linkcode createKafka}. */
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

/** Messages kafkajs logs that do not apply to how we use it (see {@linkcode KafkaSink}). */
const QUIET_MESSAGES = ["Limiting retries for the idempotent producer"];

/** Removes every secret of `config` (SASL password, client key) from a line of text. */
export function redact(text: string, config: KafkaConfig): string {
  let out = text.replace(
    /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
    "(private key hidden)",
  );
  const password = config.sasl?.password;
  if (password) out = out.split(password).join("(hidden)");
  return out;
}

/** Repeats of one log line within this window are counted, not printed. */
const LOG_REPEAT_WINDOW_MS = 10_000;

/**
 * A kafkajs log creator writing one concise, redacted line per entry. During an outage kafkajs
 * logs the same failure on every retry; a line seen within the last 10 s is counted instead, and
 * the count is added to the next line printed for it.
 */
export function kafkaLogCreator(
  config: KafkaConfig,
  write: (line: string) => void,
  now: () => number = Date.now,
) {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return () => ({ namespace, label, log }: LogEntry) => {
    const { message } = log;
    if (QUIET_MESSAGES.some((q) => message.startsWith(q))) return;
    const fields = LOG_FIELDS
      .filter((f) => log[f] !== undefined && log[f] !== null)
      .map((f) => `${f}=${JSON.stringify(String(log[f]))}`);
    const where = namespace ? ` [${namespace}]` : "";
    const key = `${label}${where} ${message} ${String(log.broker ?? "")}`;
    const last = seen.get(key);
    const t = now();
    if (last && t - last.at < LOG_REPEAT_WINDOW_MS) {
      last.suppressed++;
      return;
    }
    if (seen.size > 1000) seen.clear();
    seen.set(key, { at: t, suppressed: 0 });
    const repeats = last?.suppressed ? ` (${last.suppressed} more like it not shown)` : "";
    const line = `kafka ${label.toLowerCase()}${where} ${message}` +
      (fields.length ? ` ${fields.join(" ")}` : "") + repeats;
    write(redact(line, config));
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
  if (config.security !== "plaintext") {
    if (!config.ssl) {
      throw new TypeError(`Kafka security "${config.security}" needs the CA certificate`);
    }
    const { ca, cert, key, rejectUnauthorized } = config.ssl;
    out.ssl = { ca: [ca], rejectUnauthorized };
    if (config.security === "ssl") {
      if (!cert || !key) {
        throw new TypeError(`Kafka security "ssl" needs a client certificate and key`);
      }
      out.ssl.cert = cert;
      out.ssl.key = key;
    }
  }
  if (config.security === "sasl_ssl") {
    if (!config.sasl) throw new TypeError(`Kafka security "sasl_ssl" needs SASL settings`);
    const { mechanism, username, password } = config.sasl;
    out.sasl = { mechanism, username, password } as SASLOptions;
  }
  return out;
}

/** A kafkajs client for the config, logging concise redacted lines to stderr. */
export function createKafka(config: KafkaConfig, options: CreateKafkaOptions = {}): Kafka {
  hideTimeoutNegativeWarning();
  return new Kafka(kafkaJsConfig(config, options));
}

// --- start-up reachability ------------------------------------------------------------------

/** Options for {@linkcode connectWithin}. */
export interface ConnectWithinOptions {
  /** Total time to keep trying, ms; default `config.connectTimeoutMs`. */
  timeoutMs?: number;
  /** Client id; default "crypto-quotes". */
  clientId?: string;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (message: string) => void;
}

const TLS_SERVER_UNTRUSTED = [
  "self-signed certificate",
  "self signed certificate",
  "unable to verify",
  "unable to get local issuer",
  "UnknownIssuer",
  "certificate signature failure",
];
const TLS_CLIENT_REJECTED = [
  "CertificateUnknown",
  "BadCertificate",
  "UnknownCA",
  "CertificateRequired",
  "certificate unknown",
  "bad certificate",
  "unknown ca",
  "certificate required",
  "AccessDenied",
];
const TLS_OTHER = [
  "certificate has expired",
  "CERT_HAS_EXPIRED",
  "does not match certificate",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "NotValidForName",
  "fatal alert",
  "HandshakeFailure",
];

/** The innermost kafkajs error message (kafkajs wraps causes in retry errors). */
function rootMessage(error: unknown): string {
  let e = error as { message?: string; cause?: unknown; originalError?: unknown } | undefined;
  for (let i = 0; i < 5 && e; i++) {
    const next = (e.cause ?? e.originalError) as typeof e;
    if (!next || typeof next !== "object") break;
    e = next;
  }
  return e?.message ?? String(error);
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

/** Explains an attempt's failure; `fatal` when retrying cannot help. */
function explain(error: unknown, config: KafkaConfig): { fatal: boolean; text: string } {
  const sasl = saslFailure(error);
  if (sasl !== undefined) {
    const user = config.sasl?.username ?? "";
    const mech = config.sasl?.mechanism.toUpperCase() ?? "SASL";
    return {
      fatal: true,
      text: `${mech} authentication failed for user "${user}": ${sasl}; check ` +
        `KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM`,
    };
  }
  const cause = rootMessage(error);
  const has = (words: string[]) => words.some((w) => cause.includes(w));
  if (config.security !== "plaintext") {
    if (has(TLS_SERVER_UNTRUSTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${cause}; the broker's certificate is not signed by the ` +
          `CA in KAFKA_SSL_CA`,
      };
    }
    if (has(TLS_CLIENT_REJECTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${cause}; the broker rejected the client certificate ` +
          `(KAFKA_SSL_CERT, KAFKA_SSL_KEY): is it signed by the CA the broker trusts?`,
      };
    }
    if (has(TLS_OTHER)) {
      return { fatal: true, text: `TLS handshake failed: ${cause}` };
    }
  }
  if (config.security === "plaintext" && /closed connection/i.test(cause)) {
    return {
      fatal: false,
      text: `${cause}; if this port expects TLS, set KAFKA_SECURITY to ssl or sasl_ssl`,
    };
  }
  return { fatal: false, text: cause };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with `promise`, or rejects after `ms` with a timeout error; clears its timer. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Tries to reach the brokers (connect, authenticate, describe the cluster) until
 * `config.connectTimeoutMs` runs out. Throws {@linkcode KafkaAuthError} at once when TLS or SASL
 * rejects us, else {@linkcode KafkaUnreachableError} naming the brokers and the last cause.
 */
export async function connectWithin(
  config: KafkaConfig,
  options: ConnectWithinOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? config.connectTimeoutMs;
  const where = `Kafka at "${config.brokers.join(",")}" (${config.security})`;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let delay = 250;
  let last = "no attempt was made";
  let lastError: unknown;
  let attempts = 0;
  while (attempts === 0 || Date.now() < deadline) {
    attempts++;
    const remaining = Math.max(1, deadline - Date.now());
    const kafka = createKafka(config, {
      clientId: options.clientId,
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
      await within(admin.disconnect(), 2_000, "Disconnecting").catch(() => {});
      return;
    } catch (error) {
      lastError = error;
      const { fatal, text } = explain(error, config);
      last = text;
      within(admin.disconnect(), 2_000, "Disconnecting").catch(() => {});
      if (fatal) {
        throw new KafkaAuthError(`Cannot connect to ${where}: ${redact(text, config)}`, {
          cause: error,
        });
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    options.onRetry?.(`Cannot reach ${where} yet (${redact(last, config)}); retrying`);
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, 2_000);
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  throw new KafkaUnreachableError(
    `Cannot reach ${where} within ${seconds} s after ${attempts} attempt(s): ` +
      `${redact(last, config)}; check KAFKA_BROKERS, the network and that the broker is up`,
    { cause: lastError },
  );
}

// --- topics -----------------------------------------------------------------------------------

/** What {@linkcode ensureTopic} found or did. */
export interface EnsureTopicResult {
  /** True when the topic was created now, false when it already existed. */
  created: boolean;
  /** The topic's partition count (the existing one when it already existed). */
  partitions: number;
}

/**
 * Creates the topic when it is missing, with `partitions` and `replicationFactor` (-1: the
 * broker's default). An existing topic is left as it is, and its partition count returned.
 */
export async function ensureTopic(
  admin: Admin,
  name: string,
  partitions: number,
  replicationFactor: number,
): Promise<EnsureTopicResult> {
  const topics = await admin.listTopics();
  let created = false;
  if (!topics.includes(name)) {
    try {
      // false: another client created it between our list and create calls.
      created = await admin.createTopics({
        topics: [{ topic: name, numPartitions: partitions, replicationFactor }],
        waitForLeaders: true,
      });
    } catch (error) {
      // Right after creation the broker may not host the new partitions yet, and kafkajs's
      // wait for leaders gives up on that answer; the metadata wait below covers it.
      if ((error as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
      created = true;
    }
  }
  // Wait until every partition has a leader (at most 10 s), so the first send does not fail.
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [name] });
      const topic = metadata.topics.find((t) => t.name === name);
      if (topic && topic.partitions.every((p) => p.leader >= 0)) {
        return { created, partitions: topic.partitions.length };
      }
      if (Date.now() > deadline) {
        throw new Error(`Cannot find topic "${name}" with leaders in the broker's metadata`);
      }
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// --- producer ---------------------------------------------------------------------------------

/** Options for {@linkcode KafkaSink}. */
export interface KafkaSinkOptions {
  /** Batch compression; default "none". */
  compression?: KafkaConfig["compression"];
  /** Broker-side wait for the acks of one send, ms; default 30,000. */
  ackTimeoutMs?: number;
  /** kafkajs retries within one send before it rejects; default 5 (about 10 s). */
  retries?: number;
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
 * An idempotent kafkajs producer (acks all, one request in flight) as a {@linkcode RecordSink}.
 * `send` sends exactly the records given, in one request per broker, and resolves when acked.
 *
 * A failed send rejects after a bounded number of retries, so the caller can log and retry. Send
 * the same batch again: kafkajs rolls back its sequence numbers on failure, so the retry reuses
 * them and the broker drops any copy it had already written (no duplicates).
 */
export class KafkaSink implements RecordSink {
  #producer: Producer;
  #compression: CompressionTypes;
  #ackTimeoutMs: number;
  #connecting: Promise<void> | undefined;

  constructor(kafka: Kafka, options: KafkaSinkOptions = {}) {
    this.#producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // murmur2 on the key, as the Java client: a symbol maps to the same partition either way.
      createPartitioner: memoizedDefaultPartitioner(),
      allowAutoTopicCreation: false,
      retry: { retries: options.retries ?? 5, initialRetryTime: 300, maxRetryTime: 5_000 },
    });
    this.#compression = options.compression === "gzip"
      ? CompressionTypes.GZIP
      : CompressionTypes.None;
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 30_000;
  }

  /** Connects the producer (and gets its producer id); `send` calls it when needed. */
  connect(): Promise<void> {
    this.#connecting ??= this.#producer.connect().catch((error) => {
      this.#connecting = undefined;
      throw error;
    });
    return this.#connecting;
  }

  /** Sends the records in one request; resolves once all are acknowledged by all replicas. */
  async send(topic: string, records: readonly OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.connect();
    await this.#producer.send({
      topic,
      messages: records.map(toMessage),
      acks: -1,
      timeout: this.#ackTimeoutMs,
      compression: this.#compression,
    });
  }

  /** Disconnects the producer. */
  async close(): Promise<void> {
    this.#connecting = undefined;
    await this.#producer.disconnect();
  }
}

// --- consumer ---------------------------------------------------------------------------------

/** Where a consumer group starts on partitions where it has committed nothing yet. */
export type StartFrom = "earliest" | "latest" | Date;

/** Options for {@linkcode KafkaSource}. */
export interface KafkaSourceOptions {
  /** Consumer group id. */
  groupId: string;
  /** Topic to consume. */
  topic: string;
  /**
   * Where to start on partitions where the group has no committed offset; committed offsets
   * always win (a restart resumes where it stopped). A time starts at the first record at or
   * after it. Default "latest".
   */
  from?: StartFrom;
  /** Admin client for the seek by time; default one made from the same kafkajs client. */
  admin?: Admin;
  /** Session timeout, ms; default 30,000. */
  sessionTimeoutMs?: number;
  /** Partitions handled at the same time, each in order; default 6. */
  concurrency?: number;
  /**
   * Commit handled offsets at most this often, ms (and always on stop and after a partial
   * batch); default 100. A crash redelivers at most this much (at least once).
   */
  commitIntervalMs?: number;
}

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
export class KafkaSource implements RecordSource {
  #kafka: Kafka;
  #options: KafkaSourceOptions;
  #consumer: Consumer;
  #connected = false;

  constructor(kafka: Kafka, options: KafkaSourceOptions) {
    this.#kafka = kafka;
    this.#options = options;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs ?? 30_000,
      allowAutoTopicCreation: false,
    });
  }

  /** The kafkajs consumer, for its instrumentation events. */
  get consumer(): Consumer {
    return this.#consumer;
  }

  /** Start offsets at `from` for the partitions where the group has committed nothing. */
  async #offsetsAt(from: Date): Promise<Map<number, string>> {
    const { groupId, topic } = this.#options;
    const admin = this.#options.admin ?? this.#kafka.admin();
    if (!this.#options.admin) await admin.connect();
    try {
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
    } finally {
      if (!this.#options.admin) await admin.disconnect();
    }
  }

  /**
   * Consumes until `signal` aborts, calling `onBatch` once per fetched batch (one partition's
   * records in offset order) and committing after it resolves. Rejects if `onBatch` throws (its
   * records stay uncommitted) or the consumer crashes for good.
   */
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

    // Offsets handled but not yet committed, by partition, and when we last committed.
    const commitIntervalMs = this.#options.commitIntervalMs ?? 100;
    const pending = new Map<number, string>();
    let lastCommit = 0;
    type Offsets = {
      topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
    };
    const commitPending = async (commit: (offsets: Offsets) => Promise<unknown>) => {
      const partitions = [...pending].map(([partition, offset]) => ({ partition, offset }));
      pending.clear();
      lastCommit = Date.now();
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
      if (!firstJoin) return;
      firstJoin = false;
      for (const partition of event.payload.memberAssignment[topic] ?? []) {
        const offset = startAt.get(partition);
        if (offset !== undefined) this.#consumer.seek({ topic, partition, offset });
      }
    });

    try {
      await this.#consumer.run({
        autoCommit: false,
        // Partitions are handled side by side (each still in order), so one partition's commit
        // round trip does not hold back the others' records.
        partitionsConsumedConcurrently: this.#options.concurrency ?? 6,
        eachBatchAutoResolve: false,
        eachBatch: async (payload) => {
          const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
          if (batch.isEmpty()) {
            // An idle fetch: commit what is pending once the interval has passed.
            if (pending.size > 0 && Date.now() - lastCommit >= commitIntervalMs) {
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
          pending.set(batch.partition, nextOffset(last));
          // Output is written, so these offsets may be committed (at least once). Committing
          // every batch puts a round trip in every fetch cycle; every commitIntervalMs is enough.
          // Not consumer.commitOffsets() here: it silently skips the commit once stop() has
          // begun, which would lose the final commit of the batch being finished on shutdown.
          if (partial || signal.aborted || Date.now() - lastCommit >= commitIntervalMs) {
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

  /** Leaves the group and disconnects. */
  async close(): Promise<void> {
    if (!this.#connected) return;
    this.#connected = false;
    await this.#consumer.disconnect();
  }
}

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

// --- lag --------------------------------------------------------------------------------------

/** One partition's consumer-group lag. */
export interface PartitionLag {
  partition: number;
  /** The partition's end offset (the next offset to be written). */
  end: string;
  /** The group's committed offset, or "-1" when it has committed nothing. */
  committed: string;
  /** Records not yet consumed: end minus committed (minus the start offset if none). */
  lag: number;
}

/** Each partition's end offset minus the group's committed offset, from the admin client. */
export async function partitionLag(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<PartitionLag[]> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const byPartition = new Map(
    (committed[0]?.partitions ?? []).map((p) => [p.partition, p.offset]),
  );
  return ends
    .map(({ partition, high, low }) => {
      const c = byPartition.get(partition) ?? "-1";
      const from = c === "-1" ? BigInt(low) : BigInt(c);
      const lag = BigInt(high) - from;
      return { partition, end: high, committed: c, lag: Number(lag > 0n ? lag : 0n) };
    })
    .sort((a, b) => a.partition - b.partition);
}
