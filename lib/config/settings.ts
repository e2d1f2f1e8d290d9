/** The one settings table: every flag and variable of every script, with its type, default and help, and the typed settings each script gets from it. */
import { DEFAULT_KAFKA_CLIENT, DEFAULTS, KAFKA_CLIENTS, seconds } from "./defaults.ts";
import { TIMESTAMP_POLICIES } from "../sink.ts";

/** The kind of value a setting holds. */
export type SettingType =
  | "string"
  | "int"
  | "number"
  | "seconds"
  | "boolean"
  | "list"
  | "secret";

/** One setting: its flag, its environment variable, its default and its help line. */
export interface Setting {
  /** Key in the parsed settings object. */
  key: string;
  /** Long flag name without dashes, if the setting has a flag. */
  flag?: string;
  /** Environment variable, if the setting can come from the environment. */
  env?: string;
  type: SettingType;
  /** Default as text, parsed like user input; undefined means unset. */
  default?: string;
  /** One line for `--help` and `.env.example`. */
  help: string;
  /** Which entry scripts accept it. */
  scripts: readonly Script[];
  /** The only values allowed (a string setting), checked when parsed. */
  choices?: readonly string[];
  /** Smallest value allowed (a number setting), checked when parsed. */
  min?: number;
  /** Largest value allowed (a number setting), checked when parsed. */
  max?: number;
}

/** The entry scripts. */
export type Script = "producer" | "consumer" | "replay" | "demo" | "store";

const P = ["producer"] as const;
// The store (store.ts) reads Kafka and exports telemetry as the consumer does.
const PC = ["producer", "consumer", "store"] as const;
const PCR = ["producer", "consumer", "replay", "store"] as const;
const PR = ["producer", "replay"] as const;
const C = ["consumer"] as const;
const R = ["replay"] as const;
const D = ["demo"] as const;
const S = ["store"] as const;

/** Every setting of every entry script, with literal types: the scripts' settings types. */
const SETTING_TABLE = [
  // Polygon
  {
    key: "polygonApiKey",
    env: "POLYGON_API_KEY",
    type: "secret",
    help: "Polygon/Massive API key (required by produce; never logged)",
    scripts: P,
  },
  {
    key: "polygonUrl",
    flag: "url",
    env: "POLYGON_URL",
    type: "string",
    default: "wss://socket.massive.com/crypto",
    help: "crypto WebSocket URL (also wss://socket.polygon.io/crypto; other hosts get a warning)",
    scripts: P,
  },
  {
    key: "pairs",
    flag: "pairs",
    env: "POLYGON_PAIRS",
    type: "list",
    default: "BTC-USD",
    help:
      "comma-separated pairs BASE-QUOTE (upper-cased) to subscribe to on channel XQ; * means all",
    scripts: P,
  },
  {
    key: "staleAfter",
    flag: "stale-after",
    env: "STALE_AFTER",
    type: "seconds",
    default: seconds(DEFAULTS.staleAfterMs),
    help: "reconnect when no frame arrived for this many seconds (an idle socket is probed at " +
      "half of it); /healthz uses it too",
    scripts: P,
  },
  {
    key: "quietAfter",
    flag: "quiet-after",
    env: "QUIET_AFTER",
    type: "seconds",
    default: seconds(DEFAULTS.quietAfterMs),
    help: "reconnect when the socket answers but no quote arrived for this many seconds; " +
      "3 sessions in a row without a quote exit with code 2",
    scripts: P,
  },
  {
    key: "backoffMax",
    flag: "backoff-max",
    env: "BACKOFF_MAX",
    type: "seconds",
    default: seconds(DEFAULTS.backoffMaxMs),
    help: "cap of the reconnect backoff (exponential, full jitter), in seconds",
    scripts: P,
  },
  {
    key: "record",
    flag: "record",
    env: "RECORD_FILE",
    type: "string",
    help: "append every frame received, verbatim, to this JSON Lines recording",
    scripts: P,
  },
  {
    key: "summary",
    flag: "summary",
    env: "SUMMARY_FILE",
    type: "string",
    help: "write a JSON summary to this file at exit: counts, error, exit code (produce adds " +
      "reconnects, topics); none if start-up fails",
    scripts: PR,
  },
  {
    key: "deadLetterFile",
    flag: "dead-letter-file",
    env: "DEAD_LETTER_FILE",
    type: "string",
    default: "dead-letters.jsonl",
    help: "append each record the broker refuses for good (too large, timestamp out of the " +
      "topic's window, ACL) to this JSON Lines file, with the reason; it is never resent",
    scripts: PR,
  },
  {
    key: "queueMax",
    flag: "queue-max",
    env: "QUEUE_MAX",
    type: "int",
    default: String(DEFAULTS.queueMax),
    help: "bound of the frame queue between the socket and the transform",
    scripts: P,
    min: 1,
  },
  {
    key: "queuePolicy",
    flag: "queue-policy",
    env: "QUEUE_POLICY",
    type: "string",
    default: "drop-oldest",
    help: "when the queue is full: drop-oldest or drop-newest (both counted)",
    scripts: P,
    choices: ["drop-oldest", "drop-newest"],
  },
  // Kafka
  {
    key: "brokers",
    flag: "brokers",
    env: "KAFKA_BROKERS",
    type: "list",
    help: "Kafka bootstrap servers host:port, comma-separated (the Aiven service URI)",
    scripts: PCR,
  },
  {
    key: "topic",
    flag: "topic",
    env: "KAFKA_TOPIC",
    type: "string",
    default: "crypto-topic",
    help: "topic for spread records",
    scripts: PCR,
  },
  {
    key: "gapsTopic",
    flag: "gaps-topic",
    env: "KAFKA_GAPS_TOPIC",
    type: "string",
    help: "topic for gap records (default: <topic>.gaps)",
    scripts: ["producer", "store"],
  },
  {
    key: "security",
    flag: "security",
    env: "KAFKA_SECURITY",
    type: "string",
    help: "plaintext, ssl or sasl_ssl (default: sasl_ssl if a SASL mechanism is set, " +
      "ssl if the client certificate exists, else plaintext)",
    scripts: PCR,
    choices: ["plaintext", "ssl", "sasl_ssl"],
  },
  {
    key: "sslCa",
    flag: "ssl-ca",
    env: "KAFKA_SSL_CA",
    type: "string",
    default: "certs/ca.pem",
    help: "CA certificate (PEM) for ssl and sasl_ssl",
    scripts: PCR,
  },
  {
    key: "sslCert",
    flag: "ssl-cert",
    env: "KAFKA_SSL_CERT",
    type: "string",
    default: "certs/service.cert",
    help: "client certificate (PEM) for ssl",
    scripts: PCR,
  },
  {
    key: "sslKey",
    flag: "ssl-key",
    env: "KAFKA_SSL_KEY",
    type: "string",
    default: "certs/service.key",
    help: "client private key (PEM) for ssl",
    scripts: PCR,
  },
  {
    key: "saslMechanism",
    flag: "sasl-mechanism",
    env: "KAFKA_SASL_MECHANISM",
    type: "string",
    help: "scram-sha-256, scram-sha-512 or plain",
    scripts: PCR,
    choices: ["scram-sha-256", "scram-sha-512", "plain"],
  },
  {
    key: "saslUsername",
    env: "KAFKA_SASL_USERNAME",
    type: "string",
    help: "SASL user name",
    scripts: PCR,
  },
  {
    key: "saslPassword",
    env: "KAFKA_SASL_PASSWORD",
    type: "secret",
    help: "SASL password (never logged)",
    scripts: PCR,
  },
  {
    key: "partitions",
    flag: "partitions",
    env: "KAFKA_PARTITIONS",
    type: "int",
    default: String(DEFAULTS.partitions),
    help: "partitions when the topic is created (an existing topic is left as it is)",
    scripts: PR,
    min: 1,
  },
  {
    key: "replicationFactor",
    flag: "replication-factor",
    env: "KAFKA_REPLICATION_FACTOR",
    type: "int",
    default: "-1",
    help: "replication factor when the topic is created; -1 means the broker default",
    scripts: PR,
  },
  {
    key: "batchMax",
    flag: "batch-max",
    env: "KAFKA_BATCH_MAX",
    type: "int",
    default: String(DEFAULTS.batchMax),
    help: "most records in one produce request",
    scripts: PR,
    min: 1,
  },
  {
    key: "lingerMs",
    flag: "linger-ms",
    env: "KAFKA_LINGER_MS",
    type: "int",
    default: "0",
    help: "longest wait, in ms, to fill a batch before sending it (0: send at once; records " +
      "that arrive while a send is in flight still form the next batch)",
    scripts: PR,
    min: 0,
  },
  {
    key: "compression",
    flag: "compression",
    env: "KAFKA_COMPRESSION",
    type: "string",
    default: "none",
    help: "none or gzip",
    scripts: PR,
    choices: ["none", "gzip"],
  },
  {
    key: "kafkaTimestamp",
    flag: "kafka-timestamp",
    env: "KAFKA_TIMESTAMP",
    type: "string",
    default: "now",
    help: "each record's Kafka timestamp: now (the local clock when sent, live and replay) or " +
      "exchange (the quote's t; a replay of an old recording then loses the broker's " +
      "duplicate protection and is deleted by time-based retention; see docs/kafka-timestamps.md)",
    scripts: PR,
    choices: TIMESTAMP_POLICIES,
  },
  {
    key: "connectTimeout",
    flag: "connect-timeout",
    env: "KAFKA_CONNECT_TIMEOUT",
    type: "seconds",
    default: "15",
    help: "how long to try reaching Kafka at start-up before exiting with code 5",
    scripts: PCR,
  },
  {
    key: "shutdownTimeout",
    flag: "shutdown-timeout",
    env: "SHUTDOWN_TIMEOUT",
    type: "seconds",
    default: seconds(DEFAULTS.shutdownTimeoutMs),
    help: "on SIGINT/SIGTERM, how long to flush and wait for acks before exiting",
    scripts: PR,
  },
  {
    key: "kafkaClient",
    flag: "kafka-client",
    env: "KAFKA_CLIENT",
    type: "string",
    default: DEFAULT_KAFKA_CLIENT,
    help: "Kafka client library: platformatic (the default, faster) or kafkajs",
    scripts: PCR,
    choices: KAFKA_CLIENTS,
  },
  {
    key: "insecureSkipVerify",
    flag: "insecure-skip-verify",
    env: "KAFKA_INSECURE_SKIP_VERIFY",
    type: "boolean",
    default: "false",
    help: "DANGEROUS: do not verify the broker certificate (prints a warning)",
    scripts: PCR,
  },
  // Consumer
  {
    key: "groupId",
    flag: "group",
    env: "KAFKA_GROUP_ID",
    type: "string",
    default: "crypto-consumer",
    help: "consumer group",
    scripts: C,
  },
  {
    key: "sessionTimeout",
    flag: "session-timeout",
    env: "KAFKA_SESSION_TIMEOUT",
    type: "seconds",
    default: seconds(DEFAULTS.sessionTimeoutMs),
    help: "consumer group session timeout: a crashed consumer's partitions (or a dead active " +
      "producer's leadership, with --standby-group) move after this long",
    scripts: PC,
    min: 1,
  },
  {
    key: "standbyGroup",
    flag: "standby-group",
    env: "STANDBY_GROUP",
    type: "string",
    help: "run as one of a set of producers: the one that holds partition 0 of <topic>.leader " +
      "in this Kafka consumer group is active, the others stand by (off when unset)",
    scripts: P,
  },
  {
    key: "from",
    flag: "from",
    type: "string",
    default: "latest",
    help: "where a new group starts: latest, earliest, or an ISO 8601 time",
    scripts: C,
  },
  {
    key: "format",
    flag: "format",
    type: "string",
    default: "json",
    help: "json (one record per line) or table (live per-symbol view)",
    scripts: C,
    choices: ["json", "table"],
  },
  {
    key: "stallAfter",
    flag: "stall-after",
    env: "CONSUMER_STALL_AFTER",
    type: "seconds",
    default: seconds(DEFAULTS.stallAfterMs),
    help: "exit with code 9 when no record arrived for this long although records wait on this " +
      "consumer's partitions, or when it never joined its group (a stuck client); 0 = off",
    scripts: C,
    min: 0,
  },
  {
    key: "maxMessages",
    flag: "max-messages",
    type: "int",
    help: "stop after this many records",
    scripts: C,
    min: 1,
  },
  {
    key: "timeout",
    flag: "timeout",
    type: "seconds",
    help: "stop after this many seconds",
    scripts: C,
  },
  // Replay
  {
    key: "to",
    flag: "to",
    type: "string",
    default: "stdout",
    help: "stdout (records as JSON lines), kafka, or memory (in-memory broker, counts only)",
    scripts: R,
    choices: ["stdout", "kafka", "memory"],
  },
  {
    key: "speed",
    flag: "speed",
    type: "number",
    default: "0",
    help:
      "pace by exchange time t: 1 is real time, 10 is ten times faster; 0 is as fast as possible",
    scripts: R,
  },
  // Telemetry
  {
    key: "metricsPort",
    flag: "metrics-port",
    env: "METRICS_PORT",
    type: "int",
    help: "serve the live page (/), /metrics and /healthz on this port (off when unset)",
    scripts: PC,
    min: 0,
    max: 65535,
  },
  {
    key: "metricsHost",
    flag: "metrics-host",
    env: "METRICS_HOST",
    type: "string",
    default: "127.0.0.1",
    help: "address for /metrics and /healthz (0.0.0.0 to expose it)",
    scripts: PC,
  },
  {
    key: "instance",
    flag: "instance",
    env: "TELEMETRY_INSTANCE",
    type: "string",
    help: "instance tag on InfluxDB points, unique per process (default <hostname>:<pid>)",
    scripts: PC,
  },
  {
    key: "influxUrl",
    env: "INFLUX_URL",
    type: "string",
    help: "push telemetry to InfluxDB at this base URL (off when unset)",
    scripts: PC,
  },
  {
    key: "influxApi",
    env: "INFLUX_API",
    type: "string",
    default: "v1",
    help: "v1 (/write) or v2 (/api/v2/write, also InfluxDB 3)",
    scripts: PC,
    choices: ["v1", "v2"],
  },
  {
    key: "influxDb",
    env: "INFLUX_DB",
    type: "string",
    default: "crypto",
    help: "v1 database",
    scripts: PC,
  },
  {
    key: "influxRp",
    env: "INFLUX_RP",
    type: "string",
    help: "v1 retention policy (default: the database default)",
    scripts: PC,
  },
  {
    key: "influxUser",
    env: "INFLUX_USER",
    type: "string",
    help: "v1 user name",
    scripts: PC,
  },
  {
    key: "influxPassword",
    env: "INFLUX_PASSWORD",
    type: "secret",
    help: "v1 password (never logged)",
    scripts: PC,
  },
  {
    key: "influxToken",
    env: "INFLUX_TOKEN",
    type: "secret",
    help: "v2/v3 token, or a v1 token (never logged)",
    scripts: PC,
  },
  {
    key: "influxOrg",
    env: "INFLUX_ORG",
    type: "string",
    help: "v2 organisation",
    scripts: PC,
  },
  {
    key: "influxBucket",
    env: "INFLUX_BUCKET",
    type: "string",
    help: "v2 bucket",
    scripts: PC,
  },
  {
    key: "influxInterval",
    env: "INFLUX_FLUSH_INTERVAL",
    type: "seconds",
    default: "10",
    help: "seconds between InfluxDB writes",
    scripts: PC,
  },
  {
    key: "influxBatch",
    env: "INFLUX_BATCH_SIZE",
    type: "int",
    default: "1000",
    help: "most points in one InfluxDB write",
    scripts: PC,
    min: 1,
  },
  {
    key: "influxBufferMax",
    env: "INFLUX_BUFFER_MAX",
    type: "int",
    default: "10000",
    help: "points kept while InfluxDB is down; the oldest are dropped and counted",
    scripts: PC,
    min: 1,
  },
  // Demo
  {
    key: "file",
    flag: "file",
    type: "string",
    help: "the recording the fake Polygon server replays; default fixtures/btc.jsonl",
    scripts: D,
  },
  {
    key: "speed",
    flag: "speed",
    type: "number",
    help: "pace by exchange time t (1 = real time); default 0, as fast as possible (1 with --ui)",
    scripts: D,
  },
  {
    key: "ui",
    flag: "ui",
    type: "boolean",
    default: "false",
    help: "serve the live page on http://127.0.0.1:PORT/, count the records instead of printing " +
      "them, and keep serving after the replay until Ctrl-C",
    scripts: D,
  },
  {
    key: "port",
    flag: "port",
    type: "int",
    default: "9464",
    help: "the live page's port (0 picks a free one)",
    scripts: D,
    min: 0,
    max: 65535,
  },
  // Channels (issue 23): several Polygon channels on the one connection, a topic each
  {
    key: "channels",
    flag: "channels",
    env: "POLYGON_CHANNELS",
    type: "list",
    default: "XQ",
    help: "Polygon channels to carry on the one connection: XQ (quotes → spreads), XT " +
      "(trades), XA (minute bars), comma-separated; the first counts events no channel takes",
    scripts: PR,
  },
  {
    key: "tradesTopic",
    flag: "trades-topic",
    env: "KAFKA_TRADES_TOPIC",
    type: "string",
    help: "topic for trade records (XT) (default: <topic>.trades; gaps to <trades topic>.gaps)",
    scripts: PR,
  },
  {
    key: "barsTopic",
    flag: "bars-topic",
    env: "KAFKA_BARS_TOPIC",
    type: "string",
    help: "topic for minute-bar records (XA) (default: <topic>.bars; gaps to <bars topic>.gaps)",
    scripts: PR,
  },
  // Store (Kafka → QuestDB or PostgreSQL; docs/history.md)
  {
    key: "db",
    flag: "db",
    env: "STORE_DB",
    type: "string",
    default: "questdb",
    help: "the history database: questdb or postgres",
    scripts: S,
    choices: ["questdb", "postgres"],
  },
  {
    key: "questdbUrl",
    flag: "questdb-url",
    env: "QUESTDB_URL",
    type: "string",
    default: "http://127.0.0.1:9000",
    help: "QuestDB's HTTP address (SQL and line protocol); user:password@ for basic auth",
    scripts: S,
  },
  {
    key: "postgresUrl",
    env: "POSTGRES_URL",
    type: "secret",
    help: "postgres://user:password@host:port/db (add ?sslmode=require for Aiven; never logged)",
    scripts: S,
  },
  {
    key: "postgresCa",
    flag: "postgres-ca",
    env: "POSTGRES_SSL_CA",
    type: "string",
    help: "CA certificate (PEM) to verify PostgreSQL with (Aiven's ca.pem)",
    scripts: S,
  },
  {
    key: "table",
    flag: "table",
    env: "STORE_TABLE",
    type: "string",
    default: "spreads",
    help: "the spreads table; gaps go to <table>_gaps, refused records to <table>_dead_letters",
    scripts: S,
  },
  {
    key: "dbConnectTimeout",
    flag: "db-connect-timeout",
    env: "STORE_CONNECT_TIMEOUT",
    type: "seconds",
    default: "15",
    help: "how long to try reaching the database at start-up before exiting with code 7",
    scripts: S,
  },
  {
    key: "groupId",
    flag: "group",
    env: "KAFKA_GROUP_ID",
    type: "string",
    default: "crypto-store",
    help: "consumer group of the store (gaps: <group>.gaps)",
    scripts: S,
  },
  {
    key: "from",
    flag: "from",
    type: "string",
    default: "earliest",
    help: "where a new group starts: earliest, latest, or an ISO 8601 time",
    scripts: S,
  },
  {
    key: "summary",
    flag: "summary",
    env: "SUMMARY_FILE",
    type: "string",
    help: "write a JSON summary to this file at exit: rows written, dead letters, exit code",
    scripts: S,
  },
] as const satisfies readonly Setting[];

/** Every setting of every entry script (drives `--help`, `.env.example` and the README table). */
export const SETTINGS: readonly Setting[] = SETTING_TABLE;
export const TABLE = SETTINGS;

/** One entry of the settings table, with its literal types. */
type Entry = (typeof SETTING_TABLE)[number];

/** The value type of a setting type. */
type ValueOfType<E extends Entry> = E extends { choices: readonly (infer C)[] } ? C
  : E["type"] extends "int" | "number" | "seconds" ? number
  : E["type"] extends "boolean" ? boolean
  : E["type"] extends "list" ? string[]
  : string;

/** A setting's parsed value: present when it has a default, else possibly undefined. */
type ValueOf<E extends Entry> = E extends { default: string } ? ValueOfType<E>
  : ValueOfType<E> | undefined;

/**
 * The parsed settings of one entry script, typed from the settings table: every key the
 * script accepts, with its value type (`"stdout" | "kafka" | "memory"` for replay's `to`, a
 * number for `batchMax`, …).
 */
export type SettingsOf<S extends Script> = {
  readonly [E in Entry as S extends E["scripts"][number] ? E["key"] : never]: ValueOf<E>;
};

/** Any script's settings, as the builders read them: every key optional. */
export type Settings = Partial<{ readonly [E in Entry as E["key"]]: ValueOf<E> }>;
