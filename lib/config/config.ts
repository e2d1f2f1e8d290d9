/**
 * Configuration: flags, environment and `.env` (read by {@linkcode entryEnv}) become one
 * typed object per entry script. Flags win over the environment. Bad input throws
 * {@linkcode ConfigError}, which entry scripts turn into exit code 2.
 *
 * Every setting is declared once in {@linkcode SETTINGS}; `--help` text and `.env.example`
 * are checked against that table by the tests.
 */
import { parseArgs } from "node:util";

/** Exit codes shared by every entry script (listed in the README). */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  AUTH_FAILED: 3,
  MAX_CONNECTIONS: 4,
  KAFKA_UNREACHABLE: 5,
  /** The Polygon plan does not include what we asked for (a refused subscription, no WebSocket). */
  NOT_IN_PLAN: 6,
} as const;

/** The Kafka client adapters, by setting value (`--kafka-client`, `KAFKA_CLIENT`). */
export const KAFKA_CLIENTS = ["platformatic", "kafkajs"] as const;

/** A Kafka client adapter's name. */
export type KafkaClientName = (typeof KAFKA_CLIENTS)[number];

/** The client used when none is set: the faster producer on `deno task bench` (docs/kafka_client.md). */
export const DEFAULT_KAFKA_CLIENT: KafkaClientName = "platformatic";

/**
 * Defaults that the settings table and the modules' own options share, each stated here once:
 * the table's defaults are made from them, and a module used without the table (a test, the
 * demo) falls back to the same values.
 */
export const DEFAULTS = {
  /** Most records per send (`--batch-max`). */
  batchMax: 1000,
  /** Bound of the producer's frame queue (`--queue-max`). */
  queueMax: 100_000,
  /** No frame for this long: the socket is dead (`--stale-after`); /healthz uses it too. */
  staleAfterMs: 30_000,
  /** A live socket without a quote for this long is reconnected (`--quiet-after`). */
  quietAfterMs: 300_000,
  /** Cap of the reconnect backoff (`--backoff-max`). */
  backoffMaxMs: 30_000,
  /** Longest flush at shutdown (`--shutdown-timeout`). */
  shutdownTimeoutMs: 10_000,
  /** Consumer group session timeout (`--session-timeout`). */
  sessionTimeoutMs: 6_000,
  /** Partitions of a topic the producer creates (`--partitions`). */
  partitions: 6,
} as const;

/** The gaps topic of a records topic, unless `--gaps-topic` names another: `<topic>.gaps`. */
export function gapsTopicFor(topic: string): string {
  return `${topic}.gaps`;
}

/** Seconds as setting text, from a default in ms. */
function seconds(ms: number): string {
  return String(ms / 1000);
}

/** A usage or configuration error: names the flag or variable. Exit code 2. */
export class ConfigError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.USAGE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

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
export type Script = "producer" | "consumer" | "replay" | "demo";

const P = ["producer"] as const;
const PC = ["producer", "consumer"] as const;
const PCR = ["producer", "consumer", "replay"] as const;
const PR = ["producer", "replay"] as const;
const C = ["consumer"] as const;
const R = ["replay"] as const;
const D = ["demo"] as const;

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
    scripts: P,
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
] as const satisfies readonly Setting[];

/**
 * Reads the `KEY=value` lines of a dotenv file, as `deno run --env-file` does: `#` comments, an
 * optional `export `, values in single quotes (literal) or double quotes (`\n` escapes), and
 * unquoted values up to a ` #` comment. A missing file is normal and gives `{}`; a line that is
 * not `KEY=value` is a {@linkcode ConfigError} naming the file and the line.
 */
export function readEnvFile(
  path: string,
  readTextFile: (path: string) => string = Deno.readTextFileSync,
): Record<string, string> {
  let text: string;
  try {
    text = readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new ConfigError(`Cannot read the settings file "${path}": ${fileErrorReason(error)}`, {
      cause: error,
    });
  }
  const vars: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    const value = m ? envFileValue(m[2]!) : undefined;
    if (!m || value === undefined) {
      throw new ConfigError(
        `Cannot read the settings file "${path}": line ${i + 1} is not KEY=value`,
      );
    }
    if (!(m[1]! in vars)) vars[m[1]!] = value;
  }
  return vars;
}

function envFileValue(raw: string): string | undefined {
  const quote = raw[0];
  if (quote === "'" || quote === '"') {
    const end = raw.indexOf(quote, 1);
    if (end < 0 || !/^\s*(#.*)?$/.test(raw.slice(end + 1))) return undefined;
    const inner = raw.slice(1, end);
    return quote === "'" ? inner : inner.replaceAll("\\n", "\n");
  }
  return raw.replace(/\s+#.*$/, "").trim();
}

/**
 * The environment of an entry script: the process environment, then the settings file named by
 * `ENV_FILE` (the deno tasks set `ENV_FILE=.env`; a missing file is normal and says nothing).
 * Like `deno run --env-file`, a variable set in the environment wins over the file.
 */
export function entryEnv(): (name: string) => string | undefined {
  const file = Deno.env.get("ENV_FILE");
  const vars = file ? readEnvFile(file) : {};
  return (name) => Deno.env.get(name) ?? vars[name];
}

/** Every setting of every entry script (drives `--help`, `.env.example` and the README table). */
export const SETTINGS: readonly Setting[] = SETTING_TABLE;
const TABLE = SETTINGS;

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

/** The result of reading flags and environment for one script. */
export interface Parsed<S extends Script> {
  settings: SettingsOf<S>;
  positionals: string[];
  help: boolean;
}

/** Options for {@linkcode parseSettings}. */
export interface ParseOptions {
  /** Environment lookup; default none. Entry scripts pass `Deno.env.get`. */
  env?: (name: string) => string | undefined;
  /** Whether positional arguments are accepted; default false. */
  allowPositionals?: boolean;
}

function settingsFor(script: Script): Setting[] {
  return TABLE.filter((s) => s.scripts.includes(script));
}

/**
 * Parses the flags and environment of one entry script into typed settings.
 * Throws {@linkcode ConfigError} naming the flag or variable at fault.
 */
export function parseSettings<S extends Script>(
  script: S,
  args: string[],
  options: ParseOptions = {},
): Parsed<S> {
  const env = options.env ?? (() => undefined);
  const own = settingsFor(script);
  const flagOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const s of own) {
    if (s.flag) flagOptions[s.flag] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  const { values, positionals } = readArgs(args, flagOptions, options.allowPositionals ?? false);
  const settings: Record<string, SettingValue | undefined> = {};
  for (const s of own) {
    const flagValue = s.flag ? values[s.flag] : undefined;
    let raw: string | undefined;
    let source: string;
    if (flagValue !== undefined) {
      raw = String(flagValue);
      source = `--${s.flag}`;
    } else if (s.env && env(s.env) !== undefined && env(s.env) !== "") {
      raw = env(s.env);
      source = `"${s.env}" environment variable`;
    } else {
      raw = s.default;
      source = s.flag ? `--${s.flag}` : `"${s.env}"`;
    }
    settings[s.key] = raw === undefined ? undefined : convert(s, raw, source);
  }
  return { settings: settings as SettingsOf<S>, positionals, help: values.help === true };
}

/**
 * Reads the command line with `node:util` `parseArgs` tokens, and answers a mistake with one line
 * of our own that names the flag (parseArgs's own messages span lines and suggest its syntax).
 * A value that looks like a negative number (`--replication-factor -1`) is taken as a value.
 */
function readArgs(
  args: string[],
  flagOptions: Record<string, { type: "string" | "boolean"; short?: string }>,
  allowPositionals: boolean,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  const { tokens } = parseArgs({
    args,
    options: flagOptions,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, string | boolean | undefined> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") {
      if (!allowPositionals) {
        throw new ConfigError(
          `Unexpected argument "${token.value}": this command takes no positional arguments; ` +
            "see --help",
        );
      }
      positionals.push(token.value);
    } else if (token.kind === "option") {
      const option = flagOptions[token.name];
      if (!option) throw new ConfigError(`Unknown option "${token.rawName}"; see --help`);
      const flag = token.name === "help" ? token.rawName : `--${token.name}`;
      if (option.type === "boolean") {
        if (token.inlineValue) {
          throw new ConfigError(`${flag} takes no value, got "${token.value}"; see --help`);
        }
        values[token.name] = true;
        continue;
      }
      const value = token.value;
      if (value === undefined) throw new ConfigError(`${flag} needs a value; see --help`);
      if (!token.inlineValue && value.startsWith("-") && !/^-\d/.test(value)) {
        throw new ConfigError(
          `${flag} needs a value, got the option "${value}"; write ${flag}=${value} if that is ` +
            "the value",
        );
      }
      values[token.name] = value;
    }
  }
  return { values, positionals };
}

/** A parsed setting value. */
type SettingValue = string | number | boolean | string[];

function convert(s: Setting, raw: string, source: string): SettingValue {
  const value = convertType(s, raw, source);
  if (s.choices && !s.choices.includes(value as string)) {
    throw new ConfigError(`${source} must be one of ${s.choices.join(", ")}, got "${raw}"`);
  }
  if (typeof value === "number") {
    if (s.min !== undefined && s.max !== undefined && (value < s.min || value > s.max)) {
      throw new ConfigError(`${source} must be between ${s.min} and ${s.max}, got "${raw}"`);
    }
    if (s.min !== undefined && value < s.min) {
      throw new ConfigError(`${source} must be at least ${s.min}, got "${raw}"`);
    }
  }
  return value;
}

function convertType(s: Setting, raw: string, source: string): SettingValue {
  const quoted = s.type === "secret" ? "(hidden)" : `"${raw}"`;
  switch (s.type) {
    case "string":
    case "secret":
      return raw;
    case "number": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n < 0) {
        throw new ConfigError(`${source} must be a number of at least 0, got ${quoted}`);
      }
      return n;
    }
    case "list": {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      if (items.length === 0) throw new ConfigError(`${source} must list at least one value`);
      return items;
    }
    case "boolean": {
      const v = raw.toLowerCase();
      if (["true", "1", "yes"].includes(v)) return true;
      if (["false", "0", "no"].includes(v)) return false;
      throw new ConfigError(`${source} must be true or false, got ${quoted}`);
    }
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) {
        throw new ConfigError(`${source} must be a whole number, got ${quoted}`);
      }
      return Number.parseInt(raw, 10);
    }
    case "seconds": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n < 0) {
        throw new ConfigError(`${source} must be a number of seconds, got ${quoted}`);
      }
      return n;
    }
  }
}

/** Column where the help text of an option starts in `--help`. */
const HELP_COLUMN = 34;
/** Width `--help` wraps its text at. */
const HELP_WIDTH = 100;

/** Wraps words into lines of at most `width` characters (a longer word gets a line of its own). */
function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/**
 * One option of `--help`: the names, then the text from {@linkcode HELP_COLUMN}, wrapped. A name
 * too long for its column gets a line of its own, so a name never runs into its text.
 */
function helpEntry(name: string, text: string): string[] {
  const indent = " ".repeat(HELP_COLUMN);
  const wrapped = wrapWords(text, HELP_WIDTH - HELP_COLUMN).map((l) => indent + l);
  const head = `  ${name}`;
  if (head.length + 2 > HELP_COLUMN) return [head, ...wrapped];
  return [head.padEnd(HELP_COLUMN) + (wrapped[0] ?? "").trimStart(), ...wrapped.slice(1)];
}

/** Usage text for one script, built from {@linkcode SETTINGS}. Never shows secret values. */
export function usage(script: Script, synopsis: string, description: string): string {
  const own = settingsFor(script);
  const withEnv = own.some((s) => s.env !== undefined);
  const lines = [
    `Usage: ${synopsis}`,
    "",
    description,
    "",
    withEnv ? "Options (flag / environment variable):" : "Options:",
  ];
  lines.push(...helpEntry("-h, --help", "show this help"));
  for (const s of own) {
    const name = [s.flag ? `--${s.flag}` : "", s.env ?? ""].filter((x) => x).join(" / ");
    const def = s.default !== undefined && s.type !== "secret" ? ` (default ${s.default})` : "";
    lines.push(...helpEntry(name, s.help + def));
  }
  if (withEnv) {
    lines.push("", "Settings load from .env, then the environment, then flags; flags win.");
  }
  return lines.join("\n");
}

/** A key of {@linkcode Settings}. */
type Key = keyof Settings;

/** Reads a required string setting or throws a {@linkcode ConfigError} naming it. */
export function requireString(settings: Settings, key: Key): string {
  const value = settings[key];
  if (typeof value === "string" && value !== "") return value;
  const s = TABLE.find((x) => x.key === key);
  const name = s?.env ? `"${s.env}" environment variable` : `--${s?.flag ?? key}`;
  const alt = s?.env && s.flag ? ` (or --${s.flag})` : "";
  const hint = s?.env ? "; set it in .env (cp .env.example .env, which lists every setting)" : "";
  throw new ConfigError(`${name}${alt} must be set${hint}`);
}

/** Kafka connection and producer settings, with certificate files already read. */
export interface KafkaConfig {
  brokers: string[];
  topic: string;
  /** Topic for gap records. */
  gapsTopic: string;
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

/** Why a file operation failed, in a few words ("file not found", "permission denied", …). */
export function fileErrorReason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "file not found";
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "permission denied";
  }
  return error instanceof Error ? error.message : String(error);
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
    security,
    // Producer-only settings keep their defaults for the consumer, which has no such flags.
    partitions: settings.partitions ?? DEFAULTS.partitions,
    replicationFactor: settings.replicationFactor ?? -1,
    batchMax: settings.batchMax ?? DEFAULTS.batchMax,
    lingerMs: settings.lingerMs ?? 0,
    compression: settings.compression ?? "none",
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

/** Polygon connection and read-path settings. */
export interface PolygonConfig {
  url: string;
  apiKey: string;
  /** Upper-cased `BASE-QUOTE` pairs, or `["*"]`. */
  pairs: string[];
  staleAfterMs: number;
  quietAfterMs: number;
  backoffMaxMs: number;
  recordPath?: string;
  queueMax: number;
  queuePolicy: "drop-oldest" | "drop-newest";
}

/** Hosts documented to carry crypto quotes (XQ); the first is the default. */
export const XQ_HOSTS: readonly string[] = ["socket.massive.com", "socket.polygon.io"];

/** Options for {@linkcode buildPolygonConfig}. */
export interface BuildPolygonOptions {
  /** Writes a warning; default `console.error`. */
  warn?: (message: string) => void;
}

/**
 * Checks and upper-cases the `--pairs` list: each pair is `BASE-QUOTE` as Polygon lists them
 * (`btc-usd` becomes `BTC-USD`), or `*` for every pair.
 */
export function normalizePairs(pairs: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of pairs) {
    const p = raw.toUpperCase();
    if (p === "*") return ["*"];
    if (/^X[QT]\./.test(p)) {
      throw new ConfigError(
        `--pairs must list pairs without the channel, got "${raw}"; use "${p.slice(3)}"`,
      );
    }
    if (!/^[A-Z0-9]+-[A-Z0-9]+$/.test(p)) {
      throw new ConfigError(
        `--pairs must list pairs as BASE-QUOTE, like BTC-USD, or *, got "${raw}"`,
      );
    }
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** Builds the Polygon config from parsed settings; warns on a host not known to carry XQ. */
export function buildPolygonConfig(
  settings: SettingsOf<"producer">,
  options: BuildPolygonOptions = {},
): PolygonConfig {
  const warn = options.warn ?? ((m: string) => console.error(m));
  const apiKey = requireString(settings, "polygonApiKey");
  const url = requireString(settings, "polygonUrl");
  let parsedUrl: URL | undefined;
  try {
    parsedUrl = new URL(url);
  } catch {
    // Reported below.
  }
  if (!/^wss?:\/\//.test(url) || parsedUrl === undefined) {
    throw new ConfigError(`--url must be a ws:// or wss:// URL, got "${url}"`);
  }
  const host = parsedUrl.hostname;
  const loopback = host === "localhost" || host === "[::1]" || host.startsWith("127.");
  if (!loopback && (!XQ_HOSTS.includes(host) || parsedUrl.pathname !== "/crypto")) {
    warn(
      `WARNING: --url "${url}" is not known to carry crypto quotes (XQ): they are documented ` +
        `on ${XQ_HOSTS.map((h) => `wss://${h}/crypto`).join(" and ")}; the delayed and ` +
        `business hosts do not carry XQ`,
    );
  }
  const pairs = normalizePairs(settings.pairs);
  const staleAfterMs = settings.staleAfter * 1000;
  if (staleAfterMs <= 0) throw new ConfigError(`--stale-after must be above 0, got "0"`);
  const quietAfterMs = settings.quietAfter * 1000;
  if (quietAfterMs < staleAfterMs) {
    throw new ConfigError(
      `--quiet-after must be at least --stale-after (${staleAfterMs / 1000}), got ` +
        `"${quietAfterMs / 1000}"`,
    );
  }
  const config: PolygonConfig = {
    url,
    apiKey,
    pairs,
    staleAfterMs,
    quietAfterMs,
    backoffMaxMs: settings.backoffMax * 1000,
    queueMax: settings.queueMax,
    queuePolicy: settings.queuePolicy,
  };
  if (settings.record !== undefined) config.recordPath = settings.record;
  return config;
}

/** Telemetry exposure settings. */
export interface TelemetryConfig {
  metricsPort?: number;
  metricsHost: string;
  /** `instance` tag on InfluxDB points; unset means `<hostname>:<pid>`, chosen at start-up. */
  instance?: string;
  influx?: {
    url: string;
    api: "v1" | "v2";
    db: string;
    rp?: string;
    user?: string;
    password?: string;
    token?: string;
    org?: string;
    bucket?: string;
    intervalMs: number;
    batchSize: number;
    bufferMax: number;
  };
}

/** Builds the telemetry config from parsed settings. */
export function buildTelemetryConfig(
  settings: Pick<
    SettingsOf<"producer">,
    keyof SettingsOf<"producer"> & keyof SettingsOf<"consumer">
  >,
): TelemetryConfig {
  const config: TelemetryConfig = { metricsHost: settings.metricsHost };
  if (settings.metricsPort !== undefined) config.metricsPort = settings.metricsPort;
  const instance = settings.instance;
  if (instance !== undefined && instance !== "") {
    if (!/^[A-Za-z0-9._:@\/-]{1,128}$/.test(instance)) {
      throw new ConfigError(
        `--instance must be 1 to 128 letters, digits or . _ : @ / -, got "${instance}"`,
      );
    }
    config.instance = instance;
  }
  const url = settings.influxUrl;
  if (url) {
    if (!/^https?:\/\//.test(url)) {
      throw new ConfigError(`"INFLUX_URL" must be an http:// or https:// URL, got "${url}"`);
    }
    const api = settings.influxApi;
    if (api === "v2") {
      requireString(settings, "influxOrg");
      requireString(settings, "influxBucket");
      requireString(settings, "influxToken");
    }
    config.influx = {
      url: url.replace(/\/+$/, ""),
      api,
      db: String(settings.influxDb),
      intervalMs: settings.influxInterval * 1000,
      batchSize: settings.influxBatch,
      bufferMax: settings.influxBufferMax,
    };
    const optional = {
      rp: settings.influxRp,
      user: settings.influxUser,
      password: settings.influxPassword,
      token: settings.influxToken,
      org: settings.influxOrg,
      bucket: settings.influxBucket,
    };
    for (const [k, v] of Object.entries(optional)) {
      if (v) config.influx[k as keyof typeof optional] = v;
    }
  }
  return config;
}

/** Producer failover settings (`--standby-group`); see docs/failover.md. */
export interface StandbyConfig {
  /** The Kafka consumer group the producers join to elect the active one. */
  group: string;
  /** The one-partition topic whose partition 0 is the leadership: `<topic>.leader`. */
  leaderTopic: string;
  /** The group's session timeout, ms: a dead active producer is replaced after this long. */
  sessionTimeoutMs: number;
}

/** The failover settings, or undefined when `--standby-group` is unset. */
export function buildStandbyConfig(
  settings: SettingsOf<"producer">,
  topic: string,
): StandbyConfig | undefined {
  const group = settings.standbyGroup;
  if (group === undefined || group === "") return undefined;
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(group)) {
    throw new ConfigError(
      `--standby-group must be 1 to 200 letters, digits or . _ -, got "${group}"`,
    );
  }
  if (settings.kafkaClient === "kafkajs") {
    throw new ConfigError(
      `--standby-group needs the platformatic Kafka client (the kafkajs adapter has no leader ` +
        `election); unset KAFKA_CLIENT (--kafka-client) or set it to platformatic`,
    );
  }
  return {
    group,
    leaderTopic: `${topic}.leader`,
    sessionTimeoutMs: settings.sessionTimeout * 1000,
  };
}
