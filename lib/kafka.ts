/**
 * The Kafka boundary: the project's own small interfaces for a Kafka client (a sink, a source
 * and admin), the errors and diagnoses every adapter shares, and {@linkcode openKafka}, which
 * loads the adapter the config names. No client library type crosses this file: the adapters
 * (`kafka_platformatic.ts` for @platformatic/kafka, `kafka_kafkajs.ts` for kafkajs) are the
 * only files that import a client.
 *
 * @example
 * ```ts
 * const kafka = await openKafka(config, { log });
 * await kafka.connect(); // throws KafkaUnreachableError (exit code 5)
 * await kafka.admin.ensureTopic(config.topic, { partitions: 6, replicationFactor: -1 });
 * const sink = kafka.sink({ compression: "none" });
 * await sink.send(config.topic, records);
 * await sink.close();
 * await kafka.close();
 * ```
 */
import net from "node:net";
import tls from "node:tls";
import { EXIT, type KafkaClientName, type KafkaConfig } from "./config.ts";
import type { RecordSink, RecordSource } from "./sink.ts";

// The adapters' names and the default are declared with the settings (config.ts), once.
export { DEFAULT_KAFKA_CLIENT, KAFKA_CLIENTS, type KafkaClientName } from "./config.ts";

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

/** A send into a sink that was closed, or closed while the send was being retried. */
export class SinkClosedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SinkClosedError";
  }
}

// --- the boundary -----------------------------------------------------------------------------

/** What {@linkcode KafkaAdmin.ensureTopic} found or did. */
export interface EnsureTopicResult {
  /** True when the topic was created now, false when it already existed. */
  created: boolean;
  /** The topic's partition count (the existing one when it already existed). */
  partitions: number;
}

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

/** Options for {@linkcode KafkaAdmin.ensureTopic}. */
export interface EnsureTopicOptions {
  /** Partitions of a new topic. */
  partitions: number;
  /** Replication factor of a new topic; -1 is the broker's default. */
  replicationFactor: number;
}

/** Topic and group administration. */
export interface KafkaAdmin {
  /** The names of the cluster's topics. */
  listTopics(): Promise<string[]>;
  /**
   * Creates the topic when it is missing; an existing topic is left as it is and its partition
   * count returned. Resolves once every partition has a leader (at most 10 s).
   */
  ensureTopic(name: string, options: EnsureTopicOptions): Promise<EnsureTopicResult>;
  /** Each partition's end offset minus the group's committed offset, by partition. */
  lag(groupId: string, topic: string): Promise<PartitionLag[]>;
  /** The partition count and each partition's replica count (for tests and diagnosis). */
  describeTopic(name: string): Promise<{ partitions: number; replicas: number[] }>;
  /**
   * The newest record timestamp (ms) over all partitions of the topic, or undefined when it
   * holds no record. The failover gap starts there (docs/failover.md).
   */
  newestTimestamp(topic: string): Promise<number | undefined>;
}

/** Counters a {@linkcode KafkaSink} keeps about its own retries. */
export interface SinkStats {
  /**
   * Sends that failed inside the client and were retried by it with the same batch and the
   * same sequence numbers (the broker drops what it already wrote).
   */
  retries: number;
  /**
   * Times the producer had to start again under a new producer id (fenced, or the broker lost
   * its sequence state) and resent a batch: records of that batch may be written twice.
   */
  producerResets: number;
}

/** A Kafka producer as a {@linkcode RecordSink}, with the counters of its retries. */
export interface KafkaSink extends RecordSink {
  /** Retries and producer resets so far. */
  readonly stats: SinkStats;
  /** Connects and takes a producer id now; `send` does it when needed. */
  connect(): Promise<void>;
}

/** Options for {@linkcode KafkaClient.sink}. */
export interface KafkaSinkOptions {
  /** Batch compression; default "none". */
  compression?: KafkaConfig["compression"];
  /** Broker-side wait for the acks of one produce request, ms; default 30,000. */
  ackTimeoutMs?: number;
  /**
   * Called on each producer reset (see {@linkcode SinkStats.producerResets}) with a line that
   * says whether duplicates are possible.
   */
  onReset?: (line: string) => void;
}

/** Where a consumer group starts on partitions where it has committed nothing yet. */
export type StartFrom = "earliest" | "latest" | Date;

/** Options for {@linkcode KafkaClient.source}. */
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
  /**
   * Session timeout, ms; default {@linkcode DEFAULT_SESSION_TIMEOUT_MS}. A member that stops
   * heartbeating (a crash) holds its partitions this long before the group moves them.
   */
  sessionTimeoutMs?: number;
  /**
   * Commit handled offsets at most this often, ms (and always on stop and after a partial
   * batch); default 100. A crash redelivers at most this much (at least once).
   */
  commitIntervalMs?: number;
  /** Called with this member's partitions of the topic after each join of the group. */
  onAssign?: (partitions: number[]) => void;
}

/**
 * The default consumer session timeout: 6 s, the smallest a stock broker (and Aiven) accepts
 * (`group.min.session.timeout.ms`). A crashed consumer's partitions move after this long; a
 * consumer that cannot heartbeat for this long (a stalled process) loses them and its
 * uncommitted records are read again by the member that takes over.
 */
export const DEFAULT_SESSION_TIMEOUT_MS = 6_000;

/** Options for {@linkcode KafkaClient.connect}. */
export interface ConnectOptions {
  /** Total time to keep trying, ms; default `config.connectTimeoutMs`. */
  timeoutMs?: number;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (message: string) => void;
}

/** One Kafka client adapter, bound to one config. */
export interface KafkaClient {
  /** Which adapter this is. */
  readonly name: KafkaClientName;
  /** The client library and its version, for logs and benchmarks. */
  readonly library: string;
  /**
   * Reaches the brokers (connect, authenticate, describe the cluster) until the time runs out.
   * Throws {@linkcode KafkaAuthError} at once when TLS or SASL rejects us, else
   * {@linkcode KafkaUnreachableError} naming the brokers and the last cause.
   */
  connect(options?: ConnectOptions): Promise<void>;
  /** Topic and group administration (connected on first use). */
  readonly admin: KafkaAdmin;
  /** An idempotent producer (acks=all) that retries transient failures itself. */
  sink(options?: KafkaSinkOptions): KafkaSink;
  /** A consumer in a group, at least once. */
  source(options: KafkaSourceOptions): RecordSource;
  /**
   * A member of a leader election: a consumer group on a one-partition topic, whose holder of
   * partition 0 is the leader. Joins on {@linkcode LeaderElection.join}.
   */
  elect(options: ElectionOptions): LeaderElection;
  /** Closes the admin connection. Sinks and sources are closed on their own. */
  close(): Promise<void>;
}

/** Options for {@linkcode KafkaClient.elect}. */
export interface ElectionOptions {
  /** The consumer group the candidates join. */
  groupId: string;
  /** The one-partition topic; it must exist. Nothing is read from it or written to it. */
  topic: string;
  /**
   * Session timeout, ms; default {@linkcode DEFAULT_SESSION_TIMEOUT_MS}. A leader that stops
   * heartbeating (dead, paused, cut off) loses partition 0 after this long.
   */
  sessionTimeoutMs?: number;
  /** Heartbeat interval, ms; default {@linkcode ELECTION_HEARTBEAT_MS} (or a third of the session). */
  heartbeatIntervalMs?: number;
  /**
   * Called when this member becomes the leader (true) or stops being it (false): partition 0
   * moved, the member was fenced out of the group, or its lease ran out. Called synchronously,
   * before anything else is done about it.
   */
  onChange: (leader: boolean) => void;
  /** Where the election's log lines go; default the client's log. */
  log?: (line: string) => void;
}

/** One member of a leader election; see {@linkcode KafkaClient.elect}. */
export interface LeaderElection {
  /** Joins the group; resolves after the first assignment (leader or not). */
  join(): Promise<void>;
  /**
   * True while this member holds partition 0 and its lease is still running: the broker cannot
   * have given the partition to another member yet. Check it before each write.
   */
  isLeader(): boolean;
  /** Leaves the group at once, so that another member takes over without waiting. */
  leave(): Promise<void>;
  /** Leaves (if still a member) and closes the connections. */
  close(): Promise<void>;
}

/** The election's default heartbeat interval: a standby learns of a handover this fast. */
export const ELECTION_HEARTBEAT_MS = 500;

/**
 * A leader's lease, for fencing: the broker removes a member `sessionTimeoutMs` after the last
 * heartbeat it received, and it received the last acknowledged one no earlier than that
 * heartbeat was sent. So until `sent + sessionTimeoutMs - marginMs` no other member can hold the
 * partition. A paused process (GC, SIGSTOP) finds its lease expired the moment it runs again.
 */
export class Lease {
  #sessionTimeoutMs: number;
  #marginMs: number;
  #until = -Infinity;
  #now: () => number;
  constructor(sessionTimeoutMs: number, marginMs: number, now = () => performance.now()) {
    this.#sessionTimeoutMs = sessionTimeoutMs;
    this.#marginMs = marginMs;
    this.#now = now;
  }
  /** A heartbeat (or join) sent at `sentAt` (from `now`) was acknowledged. */
  renew(sentAt: number): void {
    this.#until = Math.max(this.#until, sentAt + this.#sessionTimeoutMs - this.#marginMs);
  }
  /** Ends the lease now. */
  end(): void {
    this.#until = -Infinity;
  }
  /** Whether the lease still runs. */
  valid(): boolean {
    return this.#now() < this.#until;
  }
  /** The current time on the lease's clock. */
  now(): number {
    return this.#now();
  }
}

/** Options for {@linkcode openKafka}. */
export interface OpenKafkaOptions {
  /** The adapter; default `config.client` ({@linkcode DEFAULT_KAFKA_CLIENT} unless set). */
  client?: KafkaClientName;
  /** Client id sent to the broker; default "crypto-quotes". */
  clientId?: string;
  /** Where the client's own log lines go, concise and redacted; default `console.error`. */
  log?: (line: string) => void;
}

/** Loads the adapter for `config.client` (or `options.client`) and binds it to the config. */
export async function openKafka(
  config: KafkaConfig,
  options: OpenKafkaOptions = {},
): Promise<KafkaClient> {
  const name = options.client ?? config.client;
  const adapterOptions = {
    clientId: options.clientId ?? "crypto-quotes",
    log: options.log ?? ((line: string) => console.error(line)),
  };
  // Loaded on demand: a process pays for one client library only.
  if (name === "kafkajs") {
    const { KafkaJsClient } = await import("./kafka_kafkajs.ts");
    return new KafkaJsClient(config, adapterOptions);
  }
  const { PlatformaticClient } = await import("./kafka_platformatic.ts");
  return new PlatformaticClient(config, adapterOptions);
}

/** What every adapter's constructor takes besides the config. */
export interface AdapterOptions {
  clientId: string;
  log: (line: string) => void;
}

// --- shared by the adapters -------------------------------------------------------------------

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

/** What both adapters hand their client for TLS and SASL, from a config (never log it). */
export interface SecuritySettings {
  tls?: { ca: string[]; cert?: string; key?: string; rejectUnauthorized: boolean };
  sasl?: NonNullable<KafkaConfig["sasl"]>;
}

/** The TLS and SASL settings of a config, checked: a TypeError names what a security mode lacks. */
export function securitySettings(config: KafkaConfig): SecuritySettings {
  const out: SecuritySettings = {};
  if (config.security !== "plaintext") {
    if (!config.ssl) {
      throw new TypeError(`Kafka security "${config.security}" needs the CA certificate`);
    }
    const { ca, cert, key, rejectUnauthorized } = config.ssl;
    out.tls = { ca: [ca], rejectUnauthorized };
    if (config.security === "ssl") {
      if (!cert || !key) {
        throw new TypeError(`Kafka security "ssl" needs a client certificate and key`);
      }
      out.tls.cert = cert;
      out.tls.key = key;
    }
  }
  if (config.security === "sasl_ssl") {
    if (!config.sasl) throw new TypeError(`Kafka security "sasl_ssl" needs SASL settings`);
    out.sasl = config.sasl;
  }
  return out;
}

/** Repeats of one log line within this window are counted, not printed. */
export const LOG_REPEAT_WINDOW_MS = 10_000;

/**
 * A writer of client log lines: redacted, and during an outage (when a client logs the same
 * failure on every retry) a line seen within the last 10 s is counted instead of printed; the
 * count is added to the next line printed for it. `key` groups lines that repeat.
 */
export function throttledLog(
  config: KafkaConfig,
  write: (line: string) => void,
  now: () => number = Date.now,
): (key: string, line: string) => void {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return (key, line) => {
    const last = seen.get(key);
    const t = now();
    if (last && t - last.at < LOG_REPEAT_WINDOW_MS) {
      last.suppressed++;
      return;
    }
    if (seen.size > 1000) seen.clear();
    seen.set(key, { at: t, suppressed: 0 });
    const repeats = last?.suppressed ? ` (${last.suppressed} more like it not shown)` : "";
    write(redact(line + repeats, config));
  };
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

/** The messages of an error and of everything it wraps (`cause`, `errors`, `originalError`). */
export function errorChain(error: unknown, depth = 0): string[] {
  if (depth > 6 || error === null || error === undefined) return [];
  if (typeof error !== "object") return [String(error)];
  const e = error as {
    message?: string;
    cause?: unknown;
    errors?: unknown[];
    originalError?: unknown;
  };
  const out = e.message ? [e.message] : [];
  for (const inner of e.errors ?? []) out.push(...errorChain(inner, depth + 1));
  out.push(...errorChain(e.cause, depth + 1), ...errorChain(e.originalError, depth + 1));
  return out;
}

/** The innermost message of an error chain (the cause a user can act on). */
export function rootMessage(error: unknown): string {
  const chain = errorChain(error);
  return chain[chain.length - 1] ?? String(error);
}

/**
 * Explains a failed connection attempt; `fatal` when retrying cannot help. `saslFailure` is
 * the adapter's reading of a SASL authentication error in the chain, if there is one.
 */
export function explainFailure(
  error: unknown,
  config: KafkaConfig,
  saslFailure: string | undefined,
): { fatal: boolean; text: string } {
  if (saslFailure !== undefined) {
    const user = config.sasl?.username ?? "";
    const mech = config.sasl?.mechanism.toUpperCase() ?? "SASL";
    return {
      fatal: true,
      text: `${mech} authentication failed for user "${user}": ${saslFailure}; check ` +
        `KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM`,
    };
  }
  const chain = errorChain(error);
  const cause = rootMessage(error);
  const has = (words: string[]) => chain.some((m) => words.some((w) => m.includes(w)));
  const which = (words: string[]) => chain.find((m) => words.some((w) => m.includes(w))) ?? cause;
  if (config.security !== "plaintext") {
    if (has(TLS_SERVER_UNTRUSTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${which(TLS_SERVER_UNTRUSTED)}; the broker's certificate ` +
          `is not signed by the CA in KAFKA_SSL_CA`,
      };
    }
    if (has(TLS_CLIENT_REJECTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${which(TLS_CLIENT_REJECTED)}; the broker rejected the ` +
          `client certificate (KAFKA_SSL_CERT, KAFKA_SSL_KEY): is it signed by the CA the ` +
          `broker trusts?`,
      };
    }
    if (has(TLS_OTHER)) {
      return { fatal: true, text: `TLS handshake failed: ${which(TLS_OTHER)}` };
    }
  }
  if (config.security === "plaintext" && chain.some((m) => /closed connection|closed/i.test(m))) {
    return {
      fatal: false,
      text: `${cause}; if this port expects TLS, set KAFKA_SECURITY to ssl or sasl_ssl`,
    };
  }
  return { fatal: false, text: cause };
}

/** "Kafka at "host:port" (security)", as start-up errors name the brokers. */
export function brokersText(config: KafkaConfig): string {
  return `Kafka at "${config.brokers.join(",")}" (${config.security})`;
}

/**
 * The start-up loop both adapters share: calls `attempt` until it succeeds or the time runs
 * out, with a doubling pause (250 ms to 2 s) between attempts. `explain` turns an attempt's
 * failure into text and says whether it is fatal (TLS or SASL refused us).
 */
export async function connectLoop(
  config: KafkaConfig,
  attempt: (remainingMs: number) => Promise<void>,
  explain: (error: unknown) => { fatal: boolean; text: string },
  options: ConnectOptions = {},
): Promise<void> {
  const where = brokersText(config);
  const started = Date.now();
  const deadline = started + (options.timeoutMs ?? config.connectTimeoutMs);
  let delay = 250;
  let last = "no attempt was made";
  let lastError: unknown;
  let attempts = 0;
  while (attempts === 0 || Date.now() < deadline) {
    attempts++;
    try {
      await attempt(Math.max(1, deadline - Date.now()));
      return;
    } catch (error) {
      lastError = error;
      const { fatal, text } = explain(error);
      last = text;
      if (fatal) {
        throw new KafkaAuthError(`Cannot connect to ${where}: ${redact(text, config)}`, {
          cause: error,
        });
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    options.onRetry?.(`Cannot reach ${where} yet (${redact(last, config)}); retrying`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
    delay = Math.min(delay * 2, 2_000);
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  throw new KafkaUnreachableError(
    `Cannot reach ${where} within ${seconds} s after ${attempts} attempt(s): ` +
      `${redact(last, config)}; check KAFKA_BROKERS, the network and that the broker is up`,
    { cause: lastError },
  );
}

/** Resolves with `promise`, or rejects after `ms` with a timeout error; clears its timer. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
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
 * Polls `describe` until the topic has leaders for every partition, for at most 10 s, so the
 * first send after creating a topic does not fail.
 */
export async function waitForLeaders(
  name: string,
  describe: () => Promise<{ partitions: number; leaders: boolean } | undefined>,
): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const topic = await describe();
      if (topic && topic.leaders) return topic.partitions;
      if (Date.now() > deadline) {
        throw new Error(`Cannot find topic "${name}" with leaders in the broker's metadata`);
      }
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Lag rows from end, start and committed offsets per partition (committed -1: none). */
export function lagRows(
  offsets: { partition: number; end: bigint; start: bigint; committed: bigint }[],
): PartitionLag[] {
  return offsets
    .map(({ partition, end, start, committed }) => {
      const from = committed < 0n ? start : committed;
      const lag = end - from;
      return {
        partition,
        end: end.toString(),
        committed: committed < 0n ? "-1" : committed.toString(),
        lag: Number(lag > 0n ? lag : 0n),
      };
    })
    .sort((a, b) => a.partition - b.partition);
}

/**
 * The commit bookkeeping both sources share: offsets handled but not committed, by partition,
 * committed at most every `intervalMs` (and on demand).
 */
export class PendingCommits {
  #pending = new Map<number, bigint>();
  #lastCommit = 0;
  #intervalMs: number;
  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }
  /** Notes that `offset` of `partition` was handled (its next offset may be committed). */
  handled(partition: number, offset: bigint): void {
    this.#pending.set(partition, offset + 1n);
  }
  /** True when something is pending and the interval has passed. */
  due(now = Date.now()): boolean {
    return this.#pending.size > 0 && now - this.#lastCommit >= this.#intervalMs;
  }
  /** True when something is pending. */
  get size(): number {
    return this.#pending.size;
  }
  /** Forgets what is pending for partitions not in `partitions` (moved to another member). */
  keep(partitions: ReadonlySet<number>): void {
    for (const p of [...this.#pending.keys()]) if (!partitions.has(p)) this.#pending.delete(p);
  }
  /** Takes what is pending (next offsets by partition) and notes the commit time. */
  take(now = Date.now()): [number, bigint][] {
    const out = [...this.#pending];
    this.#pending.clear();
    this.#lastCommit = now;
    return out;
  }
}

/**
 * Opens one TLS connection to the first broker with the config's certificates and sends a Kafka
 * ApiVersions request, to learn why a TLS connection was closed: with TLS 1.3 a broker rejects a
 * client certificate only after the handshake, and some clients report just "Connection
 * closed". Resolves with the TLS error's message, or undefined when the broker answered (or
 * nothing was learnt within `timeoutMs`).
 */
export function probeTls(config: KafkaConfig, timeoutMs = 3_000): Promise<string | undefined> {
  const broker = config.brokers[0];
  if (!broker || !config.ssl) return Promise.resolve(undefined);
  const i = broker.lastIndexOf(":");
  const host = broker.slice(0, i);
  const port = Number(broker.slice(i + 1));
  const { ca, cert, key, rejectUnauthorized } = config.ssl;
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const socket = tls.connect({
      host,
      port,
      ca: [ca],
      rejectUnauthorized,
      ...(config.security === "ssl" && cert && key ? { cert, key } : {}),
      ...(net.isIP(host) ? {} : { servername: host }),
    }, () => {
      // ApiVersions v0: size, api key 18, version 0, correlation id 1, client id "probe".
      const clientId = new TextEncoder().encode("probe");
      const body = new Uint8Array(2 + 2 + 4 + 2 + clientId.length);
      const view = new DataView(body.buffer);
      view.setInt16(0, 18);
      view.setInt16(2, 0);
      view.setInt32(4, 1);
      view.setInt16(8, clientId.length);
      body.set(clientId, 10);
      const frame = new Uint8Array(4 + body.length);
      new DataView(frame.buffer).setInt32(0, body.length);
      frame.set(body, 4);
      socket.write(frame);
    });
    socket.on("data", () => finish(undefined));
    socket.on("error", (error: Error) => finish(error.message));
    socket.on("close", () => finish(undefined));
  });
}
