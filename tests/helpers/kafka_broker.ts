/**
 * A real Apache Kafka broker for tests, run by `scripts/kafka_local.sh` (KRaft, one JVM, jars
 * from Maven Central). Listeners: PLAINTEXT, SSL with client certificates, SASL_SSL with
 * SCRAM-SHA-256 and SCRAM-SHA-512.
 *
 * `deno test` runs every test file in its own isolate of one process, so a module-level value is
 * not shared between files. The shared broker is therefore keyed by the process: the first file
 * to call {@linkcode startKafka} starts it in `$TMPDIR/kafka-deno-<pid>-<start time>`, later
 * files (and parallel ones) find it there. A watchdog started by the script removes it when
 * this process exits, however it exits; `scripts/kafka_local.sh down-all` is the CI backstop.
 *
 * With `KAFKA_BROKERS` set, tests use that broker for plaintext instead, and
 * {@linkcode KafkaBroker.secure} is undefined: TLS and SCRAM tests, and outage tests that
 * stop the broker, are skipped (see {@linkcode EXTERNAL_KAFKA}).
 *
 * @example
 * ```ts
 * const broker = await startKafka();
 * const config = brokerConfig(broker, "ssl", { topic: uniqueTopic("quotes") });
 * ```
 */
import type { KafkaConfig } from "../../lib/config/kafka.ts";

/** A test broker that did not start, or cannot do what was asked. */
export class KafkaBrokerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaBrokerError";
  }
}

/** A SCRAM user created when the broker's storage was formatted. */
export interface ScramUser {
  username: string;
  password: string;
}

/** The TLS and SASL side of a broker this helper started (absent for an external one). */
export interface SecureListeners {
  /** SSL listener with `ssl.client.auth=required`, "127.0.0.1:port". */
  ssl: string;
  /** SASL_SSL listener (SCRAM-SHA-256 and SCRAM-SHA-512), "127.0.0.1:port". */
  saslSsl: string;
  /** Folder with every PEM file below. */
  certsDir: string;
  /** CA that signed the broker and client certificates (Aiven's `ca.pem`). */
  caPem: string;
  /** Client certificate the broker trusts (Aiven's `service.cert`). */
  certPem: string;
  /** Its key, unencrypted PKCS#8 (Aiven's `service.key`). */
  keyPem: string;
  /** A second CA the broker's certificate does not chain to. */
  untrustedCaPem: string;
  /** A client certificate signed by the untrusted CA. */
  untrustedCertPem: string;
  /** Its key. */
  untrustedKeyPem: string;
  /** A user with SCRAM-SHA-256 credentials only. */
  scramSha256: ScramUser;
  /** A user with SCRAM-SHA-512 credentials only. */
  scramSha512: ScramUser;
  /**
   * A SCRAM-SHA-512 user that is no super user: on a broker started with `authorizer: "acl"` it
   * may do nothing until an ACL allows it (on other brokers it may do everything).
   */
  limited: ScramUser;
}

/** A running broker for tests. */
export interface KafkaBroker {
  /** PLAINTEXT bootstrap servers: "127.0.0.1:port", or `KAFKA_BROKERS` as given. */
  plaintext: string;
  /** True when the broker is the user's (`KAFKA_BROKERS`), not one this helper started. */
  external: boolean;
  /** TLS and SCRAM listeners and files; undefined for an external broker. */
  secure?: SecureListeners;
  /** The broker's folder (config, data, logs, certs); undefined for an external broker. */
  dir?: string;
  /** "127.0.0.1:port" of the broker's Prometheus /metrics (the JMX exporter); undefined for an
   * external broker or one started with `KAFKA_JMX_EXPORTER=off`. */
  metrics?: string;
  /**
   * The PROXIED listener, for a fault proxy between clients and the broker: the broker listens
   * on `target` and advertises `127.0.0.1:<listenPort>`, where the proxy must listen (clients
   * bootstrap there and, from the metadata, connect there again). Undefined for an external
   * broker.
   */
  proxy?: { listenPort: number; target: string };
  /** Stops a private broker and removes its folder; a no-op for shared or external ones. */
  stop(): Promise<void>;
  /**
   * Stops the broker process (SIGTERM), keeping its data; `crash: true` sends SIGKILL. Resolves
   * with `killed: true` when the broker was SIGKILLed: asked to, or because it did not stop
   * within 20 s of SIGTERM (an unclean shutdown either way).
   */
  pause(options?: { crash?: boolean }): Promise<{ killed: boolean }>;
  /** Starts the paused broker again with the same ports and data; resolves once it answers. */
  resume(): Promise<void>;
}

/** Options for {@linkcode startKafka}. */
export interface StartKafkaOptions {
  /**
   * Start a broker of this test file's own instead of the shared one, e.g. for outage tests
   * that pause it; it is removed by `stop()` or when the file unloads. Default false.
   */
  private?: boolean;
  /**
   * Longest wait for the broker to answer, in ms; default `KAFKA_START_TIMEOUT` seconds, else
   * 120,000 (covers the jar install).
   */
  timeoutMs?: number;
  /**
   * "acl": a private broker with ACLs on, like a managed service (StandardAuthorizer, nothing
   * allowed without an ACL; the PLAINTEXT listener, the client certificate and the SCRAM users
   * of {@linkcode SecureListeners.scramSha256} and `scramSha512` are super users,
   * {@linkcode SecureListeners.limited} is not). Default "none" (everything allowed).
   */
  authorizer?: "none" | "acl";
  /**
   * More `server.properties` lines for a private broker, for a test about that setting (e.g.
   * `log.retention.check.interval.ms=2000`); default none: the test broker keeps Kafka's defaults.
   */
  properties?: readonly string[];
}

/** True when `KAFKA_BROKERS` names an external broker; use it as a test's `ignore` for TLS. */
export const EXTERNAL_KAFKA: boolean = (Deno.env.get("KAFKA_BROKERS") ?? "") !== "";

const SCRIPT = new URL("../../scripts/kafka_local.sh", import.meta.url).pathname;
/**
 * Default wait for a broker to answer: `KAFKA_START_TIMEOUT` seconds (also the script's bound
 * for `start` after a pause), else 120 s. A heavily loaded machine needs more.
 */
const START_TIMEOUT_MS = Number(Deno.env.get("KAFKA_START_TIMEOUT") ?? "120") * 1000;

let shared: Promise<KafkaBroker> | undefined;
const privateDirs = new Set<string>();

/** Starts (or joins) the test broker; see the module doc for sharing and `KAFKA_BROKERS`. */
export function startKafka(options: StartKafkaOptions = {}): Promise<KafkaBroker> {
  if (EXTERNAL_KAFKA) return Promise.resolve(externalBroker());
  const timeoutMs = options.timeoutMs ?? START_TIMEOUT_MS;
  if (options.private || options.properties || options.authorizer === "acl") {
    return startPrivate(timeoutMs, options.authorizer ?? "none", options.properties);
  }
  shared ??= joinShared(timeoutMs);
  return shared;
}

/** A topic name no other test uses: `<prefix>-<random>`. */
export function uniqueTopic(prefix = "test"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Options for {@linkcode brokerConfig}: any {@linkcode KafkaConfig} field to override. */
export type BrokerConfigOverrides = Partial<KafkaConfig>;

/**
 * A {@linkcode KafkaConfig} for one listener of the broker, with the PEM files read, as
 * `buildKafkaConfig` would make it. `sasl_ssl` uses the SCRAM-SHA-512 user unless overridden.
 */
export function brokerConfig(
  broker: KafkaBroker,
  security: KafkaConfig["security"] = "plaintext",
  overrides: BrokerConfigOverrides = {},
): KafkaConfig {
  const base: KafkaConfig = {
    brokers: broker.plaintext.split(",").map((b) => b.trim()),
    topic: "crypto-topic",
    gapsTopic: "crypto-topic.gaps",
    security: "plaintext",
    partitions: 3,
    replicationFactor: -1,
    batchMax: 1000,
    lingerMs: 5,
    compression: "none",
    timestamp: "now",
    connectTimeoutMs: 15_000,
    shutdownTimeoutMs: 10_000,
    client: "platformatic",
  };
  if (security !== "plaintext") {
    const s = requireSecure(broker, `a ${security} config`);
    const ca = Deno.readTextFileSync(s.caPem);
    base.security = security;
    if (security === "ssl") {
      base.brokers = [s.ssl];
      base.ssl = {
        ca,
        cert: Deno.readTextFileSync(s.certPem),
        key: Deno.readTextFileSync(s.keyPem),
        rejectUnauthorized: true,
      };
    } else {
      base.brokers = [s.saslSsl];
      base.ssl = { ca, rejectUnauthorized: true };
      base.sasl = { mechanism: "scram-sha-512", ...s.scramSha512 };
    }
  }
  const config = { ...base, ...overrides };
  if (overrides.topic && !overrides.gapsTopic) config.gapsTopic = `${overrides.topic}.gaps`;
  return config;
}

/** The secure listeners, or a {@linkcode KafkaBrokerError} saying what needs them. */
export function requireSecure(broker: KafkaBroker, what: string): SecureListeners {
  if (broker.secure) return broker.secure;
  throw new KafkaBrokerError(
    `Cannot make ${what}: the external broker "${broker.plaintext}" (KAFKA_BROKERS) has no ` +
      `test TLS/SCRAM listeners`,
  );
}

function externalBroker(): KafkaBroker {
  const plaintext = Deno.env.get("KAFKA_BROKERS") ?? "";
  const refuse = () =>
    Promise.reject(
      new KafkaBrokerError(`Cannot stop or start the external broker "${plaintext}"`),
    );
  return {
    plaintext,
    external: true,
    stop: () => Promise.resolve(),
    pause: refuse,
    resume: refuse,
  };
}

function tmpDir(): string {
  return (Deno.env.get("TMPDIR") ?? "/tmp").replace(/\/+$/, "");
}

async function runScript(args: string[], env: Record<string, string> = {}): Promise<string> {
  return (await runScriptOutput(args, env)).stdout;
}

async function runScriptOutput(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string }> {
  const output = await new Deno.Command("bash", {
    args: [SCRIPT, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (!output.success) {
    throw new KafkaBrokerError(
      `Cannot run "kafka_local.sh ${args.join(" ")}": exit code ${output.code}\n${stderr}`,
    );
  }
  return { stdout, stderr };
}

function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

async function up(
  dir: string,
  timeoutMs: number,
  authorizer = "none",
  properties: readonly string[] = [],
): Promise<void> {
  const [plaintext, ssl, saslSsl, controller, proxy] = freePorts(5);
  await runScript(["up", dir, "--owner-pid", String(Deno.pid)], {
    KAFKA_PLAINTEXT_PORT: String(plaintext),
    KAFKA_SSL_PORT: String(ssl),
    KAFKA_SASL_SSL_PORT: String(saslSsl),
    KAFKA_CONTROLLER_PORT: String(controller),
    KAFKA_PROXY_PORT: String(proxy),
    KAFKA_START_TIMEOUT: String(Math.ceil(timeoutMs / 1000)),
    KAFKA_AUTHORIZER: authorizer,
    KAFKA_EXTRA_PROPERTIES: properties.join("\n"),
  });
}

async function joinShared(timeoutMs: number): Promise<KafkaBroker> {
  const dir = `${tmpDir()}/kafka-deno-${processTag()}`;
  let starter = false;
  try {
    Deno.mkdirSync(dir);
    starter = true;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  if (starter) {
    try {
      await up(dir, timeoutMs);
      Deno.writeTextFileSync(`${dir}/ready`, "");
    } catch (error) {
      Deno.writeTextFileSync(`${dir}/failed`, error instanceof Error ? error.message : "");
      throw error;
    }
  } else {
    await waitForShared(dir, timeoutMs);
  }
  return brokerAt(dir, false);
}

/**
 * Names this process for the shared folder: its pid and, on Linux, its start time, so a stale
 * folder left by an earlier process with the same pid is never taken for ours.
 */
function processTag(): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${Deno.pid}/stat`);
    const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    return startTime ? `${Deno.pid}-${startTime}` : String(Deno.pid);
  } catch {
    return String(Deno.pid);
  }
}

async function waitForShared(dir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exists(`${dir}/ready`)) return;
    if (exists(`${dir}/failed`)) {
      throw new KafkaBrokerError(
        `Cannot use the shared test broker in "${dir}": another test file failed to start it: ` +
          Deno.readTextFileSync(`${dir}/failed`),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new KafkaBrokerError(
    `Cannot use the shared test broker in "${dir}": not ready after ${timeoutMs} ms`,
  );
}

async function startPrivate(
  timeoutMs: number,
  authorizer: string,
  properties?: readonly string[],
): Promise<KafkaBroker> {
  const dir = Deno.makeTempDirSync({ prefix: `kafka-deno-${Deno.pid}-` });
  privateDirs.add(dir);
  if (privateDirs.size === 1) globalThis.addEventListener("unload", removePrivateBrokers);
  try {
    await up(dir, timeoutMs, authorizer, properties);
  } catch (error) {
    await runScript(["down", dir]).catch(() => {});
    privateDirs.delete(dir);
    throw error;
  }
  return brokerAt(dir, true);
}

/** Unload cannot await: remove what this file left running, synchronously. */
function removePrivateBrokers(): void {
  for (const dir of privateDirs) {
    new Deno.Command("bash", { args: [SCRIPT, "down", dir], stdout: "null", stderr: "null" })
      .outputSync();
  }
  privateDirs.clear();
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function readEnvFile(path: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

function brokerAt(dir: string, isPrivate: boolean): KafkaBroker {
  const env = readEnvFile(`${dir}/broker.env`);
  const get = (key: string): string => {
    const value = env[key];
    if (value === undefined) {
      throw new KafkaBrokerError(`Cannot find "${key}" in "${dir}/broker.env"`);
    }
    return value;
  };
  return {
    plaintext: get("KAFKA_PLAINTEXT"),
    external: false,
    dir,
    ...(env.KAFKA_METRICS ? { metrics: env.KAFKA_METRICS } : {}),
    ...(env.KAFKA_PROXY && env.KAFKA_PROXIED
      ? {
        proxy: {
          listenPort: Number(env.KAFKA_PROXY.slice(env.KAFKA_PROXY.lastIndexOf(":") + 1)),
          target: env.KAFKA_PROXIED,
        },
      }
      : {}),
    secure: {
      ssl: get("KAFKA_SSL"),
      saslSsl: get("KAFKA_SASL_SSL"),
      certsDir: get("KAFKA_CERTS_DIR"),
      caPem: get("KAFKA_SSL_CA"),
      certPem: get("KAFKA_SSL_CERT"),
      keyPem: get("KAFKA_SSL_KEY"),
      untrustedCaPem: get("KAFKA_UNTRUSTED_CA"),
      untrustedCertPem: get("KAFKA_UNTRUSTED_CERT"),
      untrustedKeyPem: get("KAFKA_UNTRUSTED_KEY"),
      scramSha256: {
        username: get("KAFKA_SCRAM_SHA_256_USERNAME"),
        password: get("KAFKA_SCRAM_SHA_256_PASSWORD"),
      },
      scramSha512: {
        username: get("KAFKA_SCRAM_SHA_512_USERNAME"),
        password: get("KAFKA_SCRAM_SHA_512_PASSWORD"),
      },
      limited: {
        username: get("KAFKA_SCRAM_LIMITED_USERNAME"),
        password: get("KAFKA_SCRAM_LIMITED_PASSWORD"),
      },
    },
    async stop() {
      if (!isPrivate || !privateDirs.has(dir)) return;
      privateDirs.delete(dir);
      await runScript(["down", dir]);
    },
    async pause(options = {}) {
      const { stderr } = await runScriptOutput([options.crash ? "kill" : "stop", dir]);
      return { killed: options.crash === true || stderr.includes("sending SIGKILL") };
    },
    async resume() {
      await runScript(["start", dir]);
    },
  };
}

/** One idempotent producer the broker keeps state for on a partition (KIP-664). */
export interface ProducerState {
  producerId: number;
  producerEpoch: number;
  lastSequence: number;
  /** The largest record timestamp of the producer's last batch, ms. */
  lastTimestamp: number;
}

/**
 * The producers the broker keeps sequence state for on `topic`/`partition`, as Kafka's own
 * `TransactionsCommand describe-producers` lists them (kafka-tools, installed on first use).
 */
export async function describeProducers(
  broker: KafkaBroker,
  topic: string,
  partition: number,
): Promise<ProducerState[]> {
  if (!broker.dir) {
    throw new KafkaBrokerError(
      `Cannot describe the producers of "${topic}": the external broker "${broker.plaintext}" ` +
        `has no kafka_local.sh folder`,
    );
  }
  const out = await runScript(["describe-producers", broker.dir, topic, String(partition)]);
  const lines = out.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const header = lines.findIndex((l) => l.startsWith("ProducerId"));
  if (header < 0) {
    throw new KafkaBrokerError(`Cannot read describe-producers output for "${topic}": ${out}`);
  }
  const names = lines[header]!.split(/\s+/);
  const column = (row: string[], name: string) => Number(row[names.indexOf(name)]);
  return lines.slice(header + 1).map((line) => {
    const row = line.split(/\s+/);
    return {
      producerId: column(row, "ProducerId"),
      producerEpoch: column(row, "ProducerEpoch"),
      lastSequence: column(row, "LastSequence"),
      lastTimestamp: column(row, "LastTimestamp"),
    };
  });
}
