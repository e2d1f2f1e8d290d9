/** The Kafka config builder: brokers, security (TLS files, SASL) and producer settings. */
import { DEFAULT_KAFKA_CLIENT, DEFAULTS, gapsTopicFor, type KafkaClientName } from "./defaults.ts";
import { ConfigError, fileErrorReason } from "./errors.ts";
import { requireString } from "./parse.ts";
import { type Settings } from "./settings.ts";
import type { TimestampPolicy } from "../sink.ts";

/** Kafka connection and producer settings, with certificate files already read. */
export interface KafkaConfig {
  brokers: string[];
  topic: string;
  /** Topic for gap records. */
  gapsTopic: string;
  /** Topic for trade records (XT): `--trades-topic`, default `<topic>.trades`. */
  tradesTopic?: string;
  /** Topic for minute-bar records (XA): `--bars-topic`, default `<topic>.bars`. */
  barsTopic?: string;
  security: "plaintext" | "ssl" | "sasl_ssl";
  /** PEM texts, read once at start-up. */
  ssl?: { ca: string; cert?: string; key?: string; rejectUnauthorized: boolean };
  sasl?: {
    mechanism: "scram-sha-256" | "scram-sha-512" | "plain";
    username: string;
    password: string;
  };
  partitions: number;
  replicationFactor: number;
  batchMax: number;
  lingerMs: number;
  compression: "none" | "gzip";
  /** Which time becomes each record's Kafka timestamp (`--kafka-timestamp`). */
  timestamp: TimestampPolicy;
  connectTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** The Kafka client adapter. */
  client: KafkaClientName;
}

/** Options for {@linkcode buildKafkaConfig}. */
export interface BuildKafkaOptions {
  /** Reads a file as text; default `Deno.readTextFileSync`. */
  readTextFile?: (path: string) => string;
  /** Whether a file exists; default a `Deno.statSync` check. */
  exists?: (path: string) => boolean;
  /** Writes a warning; default `console.error`. */
  warn?: (message: string) => void;
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function readNamedFile(
  read: (path: string) => string,
  path: string,
  what: string,
  variable: string,
): string {
  try {
    return read(path);
  } catch (error) {
    const reason = fileErrorReason(error);
    throw new ConfigError(
      `Cannot read ${what} "${path}" (${variable}): ${reason}; put the file there or set ${variable}`,
      { cause: error },
    );
  }
}

/** Builds the Kafka config from parsed settings, reading certificate files once. */
export function buildKafkaConfig(settings: Settings, options: BuildKafkaOptions = {}): KafkaConfig {
  const read = options.readTextFile ?? ((p: string) => Deno.readTextFileSync(p));
  const exists = options.exists ?? fileExists;
  const warn = options.warn ?? ((m: string) => console.error(m));
  const brokersValue = settings.brokers;
  if (!Array.isArray(brokersValue)) {
    throw new ConfigError(
      `"KAFKA_BROKERS" environment variable (or --brokers) must be set; set it in .env ` +
        "(cp .env.example .env, which lists every setting)",
    );
  }
  for (const b of brokersValue) {
    if (!/^[^\s:/]+:\d{1,5}$/.test(b)) {
      throw new ConfigError(
        `"KAFKA_BROKERS" must list host:port pairs, got "${b}"; use the Aiven service URI without a scheme`,
      );
    }
  }
  const topic = requireString(settings, "topic");
  const mechanism = settings.saslMechanism;
  let security: KafkaConfig["security"];
  if (settings.security !== undefined) security = settings.security;
  else if (mechanism) security = "sasl_ssl";
  else if (exists(String(settings.sslCert))) security = "ssl";
  else security = "plaintext";
  const config: KafkaConfig = {
    brokers: brokersValue,
    topic,
    gapsTopic: settings.gapsTopic ?? gapsTopicFor(topic),
    tradesTopic: settings.tradesTopic ?? `${topic}.trades`,
    barsTopic: settings.barsTopic ?? `${topic}.bars`,
    security,
    // Producer-only settings keep their defaults for the consumer, which has no such flags.
    partitions: settings.partitions ?? DEFAULTS.partitions,
    replicationFactor: settings.replicationFactor ?? -1,
    batchMax: settings.batchMax ?? DEFAULTS.batchMax,
    lingerMs: settings.lingerMs ?? 0,
    compression: settings.compression ?? "none",
    timestamp: settings.kafkaTimestamp ?? "now",
    connectTimeoutMs: Number(settings.connectTimeout) * 1000,
    shutdownTimeoutMs: settings.shutdownTimeout === undefined
      ? DEFAULTS.shutdownTimeoutMs
      : settings.shutdownTimeout * 1000,
    client: settings.kafkaClient ?? DEFAULT_KAFKA_CLIENT,
  };
  if (config.replicationFactor === 0 || config.replicationFactor < -1) {
    throw new ConfigError(
      `--replication-factor must be -1 (broker default) or at least 1, got "${config.replicationFactor}"`,
    );
  }
  if (security !== "plaintext") {
    const rejectUnauthorized = settings.insecureSkipVerify !== true;
    if (!rejectUnauthorized) {
      warn(
        "WARNING: --insecure-skip-verify is on: the Kafka broker certificate is NOT verified. " +
          "Anyone on the network path can read and alter this stream.",
      );
    }
    const ca = readNamedFile(read, String(settings.sslCa), "Kafka CA certificate", "KAFKA_SSL_CA");
    config.ssl = { ca, rejectUnauthorized };
    if (security === "ssl") {
      config.ssl.cert = readNamedFile(
        read,
        String(settings.sslCert),
        "Kafka client certificate",
        "KAFKA_SSL_CERT",
      );
      config.ssl.key = readNamedFile(
        read,
        String(settings.sslKey),
        "Kafka client key",
        "KAFKA_SSL_KEY",
      );
    }
  }
  if (security === "sasl_ssl") {
    if (!mechanism) {
      throw new ConfigError(`"KAFKA_SASL_MECHANISM" must be set when KAFKA_SECURITY is sasl_ssl`);
    }
    config.sasl = {
      mechanism,
      username: requireString(settings, "saslUsername"),
      password: requireString(settings, "saslPassword"),
    };
  }
  return config;
}
