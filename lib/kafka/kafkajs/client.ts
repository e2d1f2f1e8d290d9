/**
 * The kafkajs adapter behind the Kafka boundary (`../types.ts`, picked by `../open.ts`): the
 * client built from a {@linkcode KafkaConfig} (plaintext, TLS client certificates, or SASL/SCRAM
 * over TLS) and start-up reachability. Its parts: topics and lag (`admin.ts`), an idempotent
 * producer (`sink.ts`) and an at-least-once consumer (`source.ts`).
 *
 * kafkajs 2.2.4 is unmaintained and its idempotent producer can write a record twice (see
 * RELIABILITY.md); it stays as the second adapter because the user's design card names it.
 */
import net from "node:net";
import process from "node:process";
import tls from "node:tls";
import {
  type Admin,
  type ISocketFactory,
  Kafka,
  type KafkaConfig as KafkaJsConfig,
  type LogEntry,
  logLevel as KafkaJsLogLevel,
  type SASLOptions,
} from "kafkajs";
import { deadline } from "../../async.ts";
import { ConfigError } from "../../config/errors.ts";
import { type KafkaConfig } from "../../config/kafka.ts";
import type {
  AdapterOptions,
  ConnectOptions,
  KafkaAdmin,
  KafkaClient,
  KafkaSink,
  KafkaSinkOptions,
  KafkaSourceOptions,
  LeaderElection,
} from "../types.ts";
import { explainFailure, throttledLog } from "../diagnosis.ts";
import { ensureTopic, partitionLag, topicConfigs, validateCreateTopic } from "./admin.ts";
import { topicLimits } from "./limits.ts";
import type { TopicLimits } from "../refusals.ts";
import { KafkaJsSink } from "./sink.ts";
import { KafkaJsSource } from "./source.ts";
import { securitySettings } from "../security.ts";
import { connectLoop } from "../startup.ts";
import type { RecordSource } from "../../sink.ts";

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

  /** Each topic's limits, read once for all this client's sinks. */
  #limits = new Map<string, Promise<TopicLimits>>();

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
      topicConfigs: async (name, names) => topicConfigs(await admin(), name, names),
      // kafkajs does not ask for KIP-430's authorized operations.
      topicAccess: () => Promise.resolve(undefined),
      groupAccess: () => Promise.resolve(undefined),
      validateCreateTopic: async (name, o) => validateCreateTopic(await admin(), name, o),
      topicLimits: (topic) => {
        let limits = this.#limits.get(topic);
        if (limits === undefined) {
          limits = admin().then((a) => topicLimits(a, topic));
          this.#limits.set(topic, limits);
          // A failure is not kept: the next sink asks again.
          limits.catch(() => this.#limits.delete(topic));
        }
        return limits;
      },
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
      async (remaining, signal) => {
        const kafka = createKafka(config, {
          clientId: this.#options.clientId,
          logLevel: "nothing",
          retries: 0,
          connectionTimeoutMs: Math.min(remaining, 10_000),
          requestTimeoutMs: Math.min(remaining, 30_000),
        });
        const admin = kafka.admin();
        try {
          await deadline(admin.connect().then(() => admin.describeCluster()), remaining, {
            what: "Connecting",
            signal,
          });
        } finally {
          deadline(admin.disconnect(), 2_000, { what: "Disconnecting" }).catch(() => {});
        }
      },
      (error) => explainFailure(error, config, saslFailure(error)),
      options,
    );
  }

  sink(options: KafkaSinkOptions = {}): KafkaSink {
    if (options.fence) throw notWithKafkaJs("a producer fenced at the wire (--standby-group)");
    return new KafkaJsSink(
      this.#kafka,
      options,
      this.#options.log,
      (topic) => this.admin.topicLimits(topic),
    );
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
