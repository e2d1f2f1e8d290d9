/**
 * End to end, as processes, against a real Apache Kafka broker (tests/helpers/kafka_broker.ts):
 * fake Polygon server → `producer.ts` → Kafka → `consumer.ts`, over each auth path Aiven offers
 * (plaintext, TLS client certificate, SCRAM-SHA-256/512 over SASL_SSL), plus `replay.ts --to
 * kafka`. The scripts run as subprocesses with the permissions of their deno tasks and only the
 * environment given here, so a developer's `.env` or shell settings cannot leak in.
 *
 * With KAFKA_BROKERS set, the TLS and SCRAM tests are skipped. The capture tests need the real
 * capture (tests/helpers/capture.ts) and are ignored without it.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import {
  brokerConfig,
  EXTERNAL_KAFKA,
  type KafkaBroker,
  requireSecure,
  startKafka,
  uniqueTopic,
} from "./helpers/kafka_broker.ts";
import { KAFKA_CLIENTS, openKafka, type PartitionLag } from "../lib/kafka.ts";
import { withAdmin } from "./helpers/kafka_check.ts";
import type { KafkaConfig } from "../lib/config.ts";
import { startFakePolygon } from "../lib/polygon_fake.ts";
import { readAllFrames } from "../lib/recording.ts";
import { partitionFor } from "../lib/memory_broker.ts";
import { type InRecord, type OutRecord, SCHEMA_VERSION } from "../lib/sink.ts";
import type { ProducerSummary, ReplaySummary } from "../lib/summary.ts";
import { RECORD_HEADERS, transform } from "../transform.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "./helpers/capture.ts";

// Clients keep timers and sockets past close(); the broker is shared across files.
const KAFKA_TEST = { sanitizeOps: false, sanitizeResources: false } as const;

const ROOT = new URL("..", import.meta.url).pathname;
const API_KEY = "test-polygon-key";
/** The longest any one process may run before the test kills it and fails. */
const PROCESS_LIMIT_MS = 180_000;

/** Permissions of each entry script, as in its deno task (without --env-file). */
const PERMISSIONS: Record<string, string[]> = {
  "producer.ts": ["--allow-net", "--allow-read", "--allow-write", "--allow-env"],
  "consumer.ts": ["--allow-net", "--allow-read", "--allow-env"],
  "replay.ts": ["--allow-read", "--allow-env", "--allow-net", "--allow-write"],
};

// --- processes --------------------------------------------------------------------------------

interface Finished {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms. */
  ms: number;
}

/** A running entry script whose output is collected as it comes. */
class ScriptProcess {
  readonly name: string;
  readonly finished: Promise<Finished>;
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #exited = false;
  #guard: ReturnType<typeof setTimeout>;

  constructor(script: string, args: string[], env: Record<string, string>) {
    this.name = `${script} ${args.join(" ")}`;
    const started = performance.now();
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...PERMISSIONS[script]!, script, ...args],
      cwd: ROOT,
      clearEnv: true,
      env: { ...baseEnv(), ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#guard = setTimeout(() => this.kill("SIGKILL"), PROCESS_LIMIT_MS);
    const read = async (stream: ReadableStream<Uint8Array>, add: (text: string) => void) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
    };
    const child = this.#child;
    const guard = this.#guard;
    this.finished = (async () => {
      const [status] = await Promise.all([
        child.status,
        read(child.stdout, (t) => this.#stdout += t),
        read(child.stderr, (t) => this.#stderr += t),
      ]);
      this.#exited = true;
      clearTimeout(guard);
      return {
        code: status.code,
        signal: status.signal,
        stdout: this.#stdout,
        stderr: this.#stderr,
        ms: performance.now() - started,
      };
    })();
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Sends a signal unless the process has exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // Exited in between.
    }
  }

  /** Resolves once `ready()` holds; rejects if the process exits first or after `timeoutMs`. */
  async waitFor(what: string, ready: () => boolean, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      if (this.#exited) {
        throw new Error(`${this.name} exited before ${what}\n${this.#stderr}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: no ${what} after ${timeoutMs} ms\n${this.#stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs an entry script to its end. */
function run(script: string, args: string[], env: Record<string, string>): Promise<Finished> {
  return new ScriptProcess(script, args, env).finished;
}

/** The lines of a process's stdout (none for empty output). */
function lines(text: string): string[] {
  return text === "" ? [] : text.replace(/\n$/, "").split("\n");
}

// --- broker, settings and data ----------------------------------------------------------------

let broker: KafkaBroker | undefined;
async function kafka(): Promise<KafkaBroker> {
  broker ??= await startKafka();
  return broker;
}

type Auth = "plaintext" | "ssl" | "scram-sha-256" | "scram-sha-512";

/** The environment that points an entry script at one listener of the test broker. */
function kafkaEnv(b: KafkaBroker, auth: Auth, topic: string): Record<string, string> {
  if (auth === "plaintext") {
    return { KAFKA_BROKERS: b.plaintext, KAFKA_SECURITY: "plaintext", KAFKA_TOPIC: topic };
  }
  const s = requireSecure(b, `the ${auth} environment`);
  if (auth === "ssl") {
    return {
      KAFKA_BROKERS: s.ssl,
      KAFKA_SECURITY: "ssl",
      KAFKA_SSL_CA: s.caPem,
      KAFKA_SSL_CERT: s.certPem,
      KAFKA_SSL_KEY: s.keyPem,
      KAFKA_TOPIC: topic,
    };
  }
  const user = auth === "scram-sha-256" ? s.scramSha256 : s.scramSha512;
  return {
    KAFKA_BROKERS: s.saslSsl,
    KAFKA_SECURITY: "sasl_ssl",
    KAFKA_SSL_CA: s.caPem,
    KAFKA_SASL_MECHANISM: auth,
    KAFKA_SASL_USERNAME: user.username,
    KAFKA_SASL_PASSWORD: user.password,
    KAFKA_TOPIC: topic,
  };
}

/**
 * Quote frames with exchange times of the last minute, so no retention rule of the broker can
 * delete them while a test runs. Every third frame holds two events (a batched frame).
 */
function freshFrames(count: number, pairs = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]) {
  const t0 = Date.now() - 60_000;
  const event = (i: number) => {
    const pair = pairs[i % pairs.length]!;
    const bid = `${1000 + i}.${String(i % 97).padStart(2, "0")}`;
    const ask = `${1001 + i}.${String((i * 7) % 89).padStart(2, "0")}5`;
    return `{"ev":"XQ","pair":"${pair}","lp":0,"ls":0,"bp":${bid},"bs":1.5,"ap":${ask},` +
      `"as":2,"t":${t0 + i},"x":1,"r":${t0 + i + 3}}`;
  };
  const frames: string[] = [];
  for (let i = 0; i < count; i++) {
    frames.push(i % 3 === 2 ? `[${event(i)},${event(count + i)}]` : `[${event(i)}]`);
  }
  return frames;
}

/** The record values the transform makes of `frames`, in order. */
function expectedValues(frames: readonly string[]): string[] {
  return frames.flatMap((f) => transform(f).records.map((r) => r.value));
}

/** Records with known exchange times `t0 + i * stepMs`, keyed by symbol, as the producer sends. */
function spreadRecords(
  count: number,
  t0: number,
  symbols: readonly string[],
  stepMs = 1,
): OutRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const symbol = symbols[i % symbols.length]!;
    const timestamp = t0 + i * stepMs;
    return {
      key: symbol,
      value: `{"timestamp":"${new Date(timestamp).toISOString()}","symbol":"${symbol}",` +
        `"spread":${i}.25}`,
      timestamp,
      headers: { ...RECORD_HEADERS },
    };
  });
}

/** The group's lag per partition, read through our Kafka boundary. */
async function partitionLag(
  config: KafkaConfig,
  groupId: string,
  topic: string,
): Promise<PartitionLag[]> {
  const kafka = await openKafka(config, { log: () => {} });
  try {
    return await kafka.admin.lag(groupId, topic);
  } finally {
    await kafka.close();
  }
}

/**
 * Creates a topic that keeps records of any age. The capture's exchange times are from 2023 and
 * a record's timestamp is its exchange time, so under the default 7-day `retention.ms` the
 * broker deletes such records at its next retention check (every 5 minutes).
 */
async function createKeepingTopic(config: KafkaConfig, topic: string, partitions: number) {
  await withAdmin(config, async (admin) => {
    await admin.createTopics({
      topics: [{
        topic,
        numPartitions: partitions,
        replicationFactor: -1,
        configEntries: [{ name: "retention.ms", value: "-1" }],
      }],
      waitForLeaders: true,
    });
  });
}

/** Sends records to a topic (created with `partitions` unless it exists). */
async function produce(config: KafkaConfig, topic: string, records: OutRecord[], partitions = 3) {
  const kafka = await openKafka(config, { log: () => {} });
  const sink = kafka.sink();
  try {
    await kafka.admin.ensureTopic(topic, { partitions, replicationFactor: -1 });
    await sink.send(topic, records);
  } finally {
    await sink.close();
    await kafka.close();
  }
}

/** Reads `count` records of a topic from the start with a fresh group, in-process. */
async function readTopic(config: KafkaConfig, topic: string, count: number): Promise<InRecord[]> {
  const kafka = await openKafka(config, { log: () => {} });
  const source = kafka.source({
    groupId: `reader-${crypto.randomUUID()}`,
    topic,
    from: "earliest",
  });
  const got: InRecord[] = [];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 90_000);
  try {
    await source.consume((batch) => {
      got.push(...batch);
      if (got.length >= count) controller.abort();
    }, { signal: controller.signal });
  } finally {
    clearTimeout(timer);
    await source.close();
    await kafka.close();
  }
  return got;
}

/** Groups record values (JSON lines) by symbol, keeping their order. */
function bySymbol(values: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const v of values) (out[JSON.parse(v).symbol as string] ??= []).push(v);
  return out;
}

function sorted(values: readonly string[]): string[] {
  return [...values].sort();
}

/**
 * Runs the producer against a fake Polygon server replaying `frames`; SIGTERM once all are sent.
 * Returns its output and the summary it wrote (`--summary`).
 */
async function produceThroughFake(
  frames: readonly string[],
  env: Record<string, string>,
  args: string[] = [],
): Promise<Finished & { framesSent: number; summary: ProducerSummary }> {
  const fake = startFakePolygon({ frames, apiKey: API_KEY });
  const dir = await Deno.makeTempDir({ prefix: "e2e_summary_" });
  try {
    const producer = new ScriptProcess(
      "producer.ts",
      ["--url", fake.url, "--pairs", "*", "--summary", `${dir}/summary.json`, ...args],
      { POLYGON_API_KEY: API_KEY, ...env },
    );
    // If the producer dies early, the fake never finishes: stop waiting then.
    await Promise.race([fake.done, producer.finished]);
    producer.kill("SIGTERM");
    const finished = await producer.finished;
    const summary = await Deno.readTextFile(`${dir}/summary.json`).then(
      (text) => JSON.parse(text) as ProducerSummary,
      (error) => {
        throw new Error(`the producer wrote no summary (${error}):\n${finished.stderr}`);
      },
    );
    return { ...finished, framesSent: fake.stats.framesSent, summary };
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Asserts that none of the secrets (a password, PEM files) shows in the output. */
function assertNoSecrets(output: string, secrets: { password?: string; pemFiles?: string[] }) {
  if (secrets.password) ok(!output.includes(secrets.password), "the SASL password was printed");
  for (const file of secrets.pemFiles ?? []) {
    const body = Deno.readTextFileSync(file).split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("-----"));
    ok(body.length > 0, `no PEM body in "${file}"`);
    for (const line of body) ok(!output.includes(line), `a line of "${file}" was printed`);
  }
}

let replayCache: Promise<string[]> | undefined;
/** `replay.ts CAPTURE` on stdout: the reference records, computed once. */
function replayOfCapture(): Promise<string[]> {
  replayCache ??= run("replay.ts", [CAPTURE], {}).then((r) => {
    equal(r.code, 0, r.stderr);
    return lines(r.stdout);
  });
  return replayCache;
}

// --- the real capture -------------------------------------------------------------------------

captureTest({
  name: "every quote of the real capture goes from the fake server through Kafka to the consumer " +
    "exactly once, in order per symbol, byte-identical to replay",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-capture");
    const frames = await readAllFrames(CAPTURE);
    equal(frames.length, 9857);
    const replayed = await replayOfCapture();
    equal(replayed.length, 10795);
    deepStrictEqual(replayed, expectedValues(frames));
    await createKeepingTopic(config, topic, 6);

    const env = kafkaEnv(b, "plaintext", topic);
    const producer = await produceThroughFake(frames, env);
    equal(producer.framesSent, 9857);
    equal(producer.code, 0, producer.stderr);
    match(producer.stderr, new RegExp(`topic "${topic}" exists with 6 partitions; left as it is`));
    // The 9857 frames plus the server's "subscribed to" status frame, whose event is skipped.
    const counts = producer.summary;
    deepStrictEqual({ ...counts, reconnects: counts.reconnects.length }, {
      summary: 1,
      frames: 9858,
      events: 10796,
      records: 10795,
      acked: 10795,
      skipped: 1,
      skippedByReason: { status: 1 },
      framesDropped: 0,
      gaps: 0,
      sendErrors: 0,
      produceRetries: 0,
      producerResets: 0,
      framesRecorded: null,
      reconnects: 0,
      topics: ["XQ.*"],
      error: null,
      exitCode: 0,
    });
    equal(counts.events, counts.records + counts.skipped);

    const consumer = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "10795", "--group", `g-${topic}`],
      env,
    );
    equal(consumer.code, 0, consumer.stderr);
    const consumed = lines(consumer.stdout);
    equal(consumed.length, counts.records);
    match(
      consumer.stderr,
      new RegExp(`consumed 10795 records, 0 malformed \\(skipped\\), group "g-${topic}"`),
    );
    deepStrictEqual(sorted(consumed), sorted(replayed));
    deepStrictEqual(bySymbol(consumed), bySymbol(replayed));

    // The Kafka records themselves: key = symbol, timestamp = exchange t, schema-version header.
    const records = await readTopic(config, topic, 10795);
    const expected = frames.flatMap((f) => transform(f).records);
    const tuple = (key: string | null, value: string | null, ts: number, h: object) =>
      JSON.stringify([key, value, ts, h]);
    deepStrictEqual(
      sorted(records.map((r) => tuple(r.key, r.value, r.timestamp, r.headers))),
      sorted(expected.map((r) => tuple(r.key, r.value, r.timestamp, r.headers ?? {}))),
    );
    deepStrictEqual(records[0]!.headers, { "schema-version": SCHEMA_VERSION });
    // One symbol, one partition.
    const partitionsOf = new Map<string, Set<number>>();
    for (const r of records) {
      let set = partitionsOf.get(r.key!);
      if (!set) partitionsOf.set(r.key!, set = new Set());
      set.add(r.partition);
    }
    for (const [symbol, set] of partitionsOf) equal(set.size, 1, `${symbol} in ${[...set]}`);
  },
});

captureTest({
  name: "replay --to kafka writes the same records as replay to stdout",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-replay");
    await createKeepingTopic(config, topic, 6);
    const dir = await Deno.makeTempDir({ prefix: "e2e_replay_" });
    const result = await run(
      "replay.ts",
      [CAPTURE, "--to", "kafka", "--summary", `${dir}/summary.json`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(result.code, 0, result.stderr);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as ReplaySummary;
    await Deno.remove(dir, { recursive: true });
    deepStrictEqual(
      [summary.frames, summary.events, summary.records, summary.acked, summary.skipped],
      [9857, 10795, 10795, 10795, 0],
    );
    equal(result.stdout, "");
    const replayed = await replayOfCapture();
    const records = await readTopic(config, topic, 10795);
    const values = records.map((r) => r.value!);
    deepStrictEqual(sorted(values), sorted(replayed));
    // Per partition, offset order; per symbol, that is the replay's order.
    const inOrder = [...records].sort((x, y) =>
      x.partition - y.partition || Number(BigInt(x.offset) - BigInt(y.offset))
    );
    deepStrictEqual(bySymbol(inOrder.map((r) => r.value!)), bySymbol(replayed));
    for (const r of records) {
      const v = JSON.parse(r.value!);
      equal(r.key, v.symbol);
      equal(r.timestamp, Date.parse(v.timestamp));
    }
  },
});

// --- auth paths -------------------------------------------------------------------------------

for (
  const [client, auth] of KAFKA_CLIENTS.flatMap((c) =>
    (["ssl", "scram-sha-256", "scram-sha-512"] as const).map((a) => [c, a] as const)
  )
) {
  Deno.test({
    name: `${client}: producer and consumer processes work end to end over ${auth} and print ` +
      "no secret",
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const s = requireSecure(b, "an auth test");
      const topic = uniqueTopic(`e2e-${auth}`);
      const env: Record<string, string> = { ...kafkaEnv(b, auth, topic), KAFKA_CLIENT: client };
      const frames = freshFrames(150);
      const want = expectedValues(frames);
      equal(want.length, 200);

      const producer = await produceThroughFake(frames, env, ["--partitions", "2"]);
      equal(producer.code, 0, producer.stderr);
      match(producer.stderr, new RegExp(`created topic "${topic}" with 2 partitions`));
      const counts = producer.summary;
      equal(counts.records, 200);
      equal(counts.acked, 200);

      const consumer = await run(
        "consumer.ts",
        ["--from", "earliest", "--max-messages", "200", "--group", `g-${topic}`],
        env,
      );
      equal(consumer.code, 0, consumer.stderr);
      deepStrictEqual(sorted(lines(consumer.stdout)), sorted(want));
      deepStrictEqual(bySymbol(lines(consumer.stdout)), bySymbol(want));

      const output = [producer, consumer].map((r) => r.stdout + r.stderr).join("\n");
      assertNoSecrets(output, {
        password: env.KAFKA_SASL_PASSWORD,
        pemFiles: [s.keyPem, s.certPem],
      });
    },
  });
}

interface AuthFailure {
  what: string;
  env: (b: KafkaBroker, topic: string) => Record<string, string>;
  /** Text stderr must hold, naming the problem. */
  says: (b: KafkaBroker) => string[];
  secrets: (b: KafkaBroker, env: Record<string, string>) => Parameters<typeof assertNoSecrets>[1];
}

const WRONG_PASSWORD = `wrong-${crypto.randomUUID()}`;
const AUTH_FAILURES: AuthFailure[] = [
  {
    what: "a CA that did not sign the broker certificate",
    env: (b, topic) => ({
      ...kafkaEnv(b, "ssl", topic),
      KAFKA_SSL_CA: requireSecure(b, "TLS").untrustedCaPem,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.ssl}" (ssl): TLS handshake failed`,
      "the broker's certificate is not signed by the CA in KAFKA_SSL_CA",
    ],
    secrets: (b) => ({ pemFiles: [b.secure!.keyPem, b.secure!.certPem] }),
  },
  {
    what: "a client certificate the broker does not trust",
    env: (b, topic) => ({
      ...kafkaEnv(b, "ssl", topic),
      KAFKA_SSL_CERT: requireSecure(b, "TLS").untrustedCertPem,
      KAFKA_SSL_KEY: requireSecure(b, "TLS").untrustedKeyPem,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.ssl}" (ssl): TLS handshake failed`,
      "the broker rejected the client certificate (KAFKA_SSL_CERT, KAFKA_SSL_KEY)",
    ],
    secrets: (b) => ({ pemFiles: [b.secure!.untrustedKeyPem, b.secure!.untrustedCertPem] }),
  },
  {
    what: "a wrong SCRAM password",
    env: (b, topic) => ({
      ...kafkaEnv(b, "scram-sha-256", topic),
      KAFKA_SASL_PASSWORD: WRONG_PASSWORD,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.saslSsl}" (sasl_ssl): ` +
      `SCRAM-SHA-256 authentication failed for user "${b.secure!.scramSha256.username}"`,
      "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
    ],
    secrets: () => ({ password: WRONG_PASSWORD }),
  },
];

for (
  const [client, failure] of KAFKA_CLIENTS.flatMap((c) => AUTH_FAILURES.map((f) => [c, f] as const))
) {
  Deno.test({
    name: `${client}: ${failure.what} makes producer and consumer exit 5 at once, saying so on ` +
      "stderr",
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const topic = uniqueTopic("e2e-refused");
      // A long connect timeout: exiting well before it proves the failure is not retried.
      const env = { ...failure.env(b, topic), KAFKA_CONNECT_TIMEOUT: "120", KAFKA_CLIENT: client };
      const runs = {
        // Kafka is checked before Polygon is dialled, so the URL is never used.
        producer: await run("producer.ts", ["--url", "ws://127.0.0.1:9/crypto"], {
          ...env,
          POLYGON_API_KEY: API_KEY,
        }),
        consumer: await run("consumer.ts", ["--group", `g-${topic}`], env),
      };
      for (const [name, r] of Object.entries(runs)) {
        equal(r.code, 5, `${name}: ${r.stderr}`);
        for (const text of failure.says(b)) {
          ok(r.stderr.includes(text), `${name} stderr lacks ${JSON.stringify(text)}:\n${r.stderr}`);
        }
        ok(r.ms < 60_000, `${name} took ${Math.round(r.ms)} ms`);
        equal(r.stdout, "");
        assertNoSecrets(r.stdout + r.stderr, failure.secrets(b, env));
      }
    },
  });
}

// --- topics -----------------------------------------------------------------------------------

Deno.test({
  name: "the producer creates its topic with the configured partitions and replication factor",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-topic");
    const frames = freshFrames(12);
    const producer = await produceThroughFake(frames, kafkaEnv(b, "plaintext", topic), [
      "--partitions",
      "4",
      "--replication-factor",
      "1",
    ]);
    equal(producer.code, 0, producer.stderr);
    ok(producer.stderr.includes(`created topic "${topic}" with 4 partitions`), producer.stderr);
    ok(producer.stderr.includes(`created topic "${topic}.gaps" with 1 partition`));
    equal(producer.summary.acked, 16);
    const meta = await withAdmin(
      config,
      (admin) => admin.fetchTopicMetadata({ topics: [topic, `${topic}.gaps`] }),
    );
    const byName = new Map(meta.topics.map((t) => [t.name, t.partitions]));
    deepStrictEqual(byName.get(topic)!.map((p) => p.partitionId).sort(), [0, 1, 2, 3]);
    deepStrictEqual(byName.get(topic)!.map((p) => p.replicas.length), [1, 1, 1, 1]);
    equal(byName.get(`${topic}.gaps`)!.length, 1);
  },
});

Deno.test({
  name: "the producer leaves an existing topic with another partition count as it is",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-existing");
    await produce(config, topic, [], 2);
    const frames = freshFrames(12);
    const producer = await produceThroughFake(frames, kafkaEnv(b, "plaintext", topic), [
      "--partitions",
      "4",
    ]);
    equal(producer.code, 0, producer.stderr);
    ok(
      producer.stderr.includes(`topic "${topic}" exists with 2 partitions; left as it is`),
      producer.stderr,
    );
    const meta = await withAdmin(config, (admin) => admin.fetchTopicMetadata({ topics: [topic] }));
    equal(meta.topics[0]!.partitions.length, 2);
    const records = await readTopic(config, topic, 16);
    deepStrictEqual(sorted(records.map((r) => r.value!)), sorted(expectedValues(frames)));
  },
});

// --- consumer behaviour -----------------------------------------------------------------------

Deno.test({
  name:
    "a consumer stopped after N records and started again in its group misses and repeats nothing",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-restart");
    const groupId = `g-${topic}`;
    const sent = spreadRecords(60, Date.now() - 60_000, ["BTC-USD", "ETH-USD", "SOL-USD"]);
    await produce(config, topic, sent, 3);
    const env = kafkaEnv(b, "plaintext", topic);
    const args = ["--from", "earliest", "--group", groupId];
    const first = await run("consumer.ts", [...args, "--max-messages", "25"], env);
    equal(first.code, 0, first.stderr);
    equal(lines(first.stdout).length, 25);
    const lagAfterFirst = await partitionLag(config, groupId, topic);
    equal(lagAfterFirst.reduce((sum, p) => sum + p.lag, 0), 35);

    const second = await run("consumer.ts", [...args, "--max-messages", "35"], env);
    equal(second.code, 0, second.stderr);
    equal(lines(second.stdout).length, 35);
    const all = [...lines(first.stdout), ...lines(second.stdout)];
    deepStrictEqual(sorted(all), sorted(sent.map((r) => r.value)));
    deepStrictEqual(bySymbol(all), bySymbol(sent.map((r) => r.value)));
    const lag = await partitionLag(config, groupId, topic);
    deepStrictEqual(lag.map((p) => p.lag), [0, 0, 0]);
  },
});

Deno.test({
  name: "a consumer started --from an ISO time begins at the first record at or after it",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-from");
    const t0 = Math.floor((Date.now() - 600_000) / 1000) * 1000;
    const sent = spreadRecords(30, t0, ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"], 1000);
    await produce(config, topic, sent, 3);
    const from = new Date(t0 + 20_000).toISOString();
    const r = await run(
      "consumer.ts",
      ["--from", from, "--max-messages", "10", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    deepStrictEqual(sorted(lines(r.stdout)), sorted(sent.slice(20).map((x) => x.value)));
  },
});

Deno.test({
  name: "two consumer processes in one group split the partitions and consume each record once",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-scale");
    const groupId = `g-${topic}`;
    const symbols = Array.from({ length: 16 }, (_, i) => `S${i}-USD`);
    // murmur2 is fixed: these keys cover all four partitions, so both members get records.
    deepStrictEqual([...new Set(symbols.map((s) => partitionFor(s, 4)))].sort(), [0, 1, 2, 3]);
    await produce(config, topic, [], 4);
    const env = kafkaEnv(b, "plaintext", topic);
    const consumers = [0, 1].map(() =>
      new ScriptProcess("consumer.ts", ["--from", "earliest", "--group", groupId], env)
    );
    const assignment = (c: ScriptProcess): number[] => {
      const all = [...c.stderr.matchAll(/joined group "[^"]+": partitions \[([\d,]*)\]/g)];
      const last = all.at(-1)?.[1];
      return last ? last.split(",").map(Number) : [];
    };
    try {
      await consumers[0]!.waitFor("a stable split", () => {
        const [a, b] = consumers.map(assignment);
        return a!.length > 0 && b!.length > 0 && sorted([...a!, ...b!].map(String)).join() ===
            "0,1,2,3";
      });
      const sent = spreadRecords(400, Date.now() - 60_000, symbols);
      await produce(config, topic, sent, 4);
      await consumers[0]!.waitFor(
        "400 records across both",
        () => consumers.reduce((n, c) => n + lines(c.stdout).length, 0) >= 400,
      );
      for (const c of consumers) c.kill("SIGTERM");
      const [one, two] = await Promise.all(consumers.map((c) => c.finished));
      equal(one!.code, 0, one!.stderr);
      equal(two!.code, 0, two!.stderr);
      const got = [lines(one!.stdout), lines(two!.stdout)];
      deepStrictEqual(sorted(got.flat()), sorted(sent.map((r) => r.value)));
      ok(got[0]!.length > 0 && got[1]!.length > 0, `split ${got[0]!.length}/${got[1]!.length}`);
      const symbolsOf = (values: string[]) => new Set(Object.keys(bySymbol(values)));
      for (const s of symbolsOf(got[0]!)) ok(!symbolsOf(got[1]!).has(s), `${s} went to both`);
      match(one!.stderr, new RegExp(`consumed ${got[0]!.length} records, 0 malformed`));
      match(two!.stderr, new RegExp(`consumed ${got[1]!.length} records, 0 malformed`));
    } finally {
      for (const c of consumers) c.kill("SIGKILL");
      await Promise.all(consumers.map((c) => c.finished));
    }
  },
});

Deno.test({
  name: "the consumer reports malformed records with their coordinates, skips them and goes on",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-malformed");
    const groupId = `g-${topic}`;
    const good = spreadRecords(3, Date.now() - 60_000, ["BTC-USD"]);
    const bad = (value: string): OutRecord => ({ ...good[0]!, value });
    await produce(config, topic, [
      good[0]!,
      bad("not json"),
      bad('{"timestamp":"2026-01-02T03:04:05.000Z","symbol":"BTC-USD"}'),
      bad("[1,2]"),
      good[1]!,
      bad('{"timestamp":"yesterday","symbol":"BTC-USD","spread":1}'),
      good[2]!,
    ], 1);
    const r = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "3", "--group", groupId],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    deepStrictEqual(lines(r.stdout), good.map((g) => g.value));
    const reported = r.stderr.split("\n").filter((l) => l.startsWith("malformed record"));
    deepStrictEqual(reported, [
      `malformed record at ${topic}/0/1: the value is not JSON: "not json"; skipped`,
      `malformed record at ${topic}/0/2: "spread" is missing; skipped`,
      `malformed record at ${topic}/0/3: the value is not an object; skipped`,
      `malformed record at ${topic}/0/5: "timestamp" is not an ISO 8601 UTC time: "yesterday"; ` +
      "skipped",
    ]);
    ok(r.stderr.includes(`consumed 3 records, 4 malformed (skipped), group "${groupId}"`));
    // Malformed records count as handled: everything is committed.
    const lag = await partitionLag(config, groupId, topic);
    deepStrictEqual(lag, [{ partition: 0, end: "7", committed: "7", lag: 0 }]);
  },
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test({
    name: `${signal} makes the consumer commit, leave its group and exit 0`,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const config = brokerConfig(b);
      const topic = uniqueTopic("e2e-signal");
      const groupId = `g-${topic}`;
      const sent = spreadRecords(5, Date.now() - 60_000, ["BTC-USD", "ETH-USD"]);
      await produce(config, topic, sent, 1);
      const consumer = new ScriptProcess(
        "consumer.ts",
        ["--from", "earliest", "--group", groupId],
        kafkaEnv(b, "plaintext", topic),
      );
      try {
        await consumer.waitFor("5 records", () => lines(consumer.stdout).length >= 5);
        consumer.kill(signal);
        const r = await consumer.finished;
        equal(r.code, 0, r.stderr);
        equal(r.signal, null);
        deepStrictEqual(lines(r.stdout), sent.map((x) => x.value));
        ok(r.stderr.includes(`consumed 5 records, 0 malformed (skipped), group "${groupId}"`));
      } finally {
        consumer.kill("SIGKILL");
        await consumer.finished;
      }
      await withAdmin(config, async (admin) => {
        deepStrictEqual(await partitionLag(config, groupId, topic), [
          { partition: 0, end: "5", committed: "5", lag: 0 },
        ]);
        const { groups } = await admin.describeGroups([groupId]);
        equal(groups[0]!.state, "Empty");
        deepStrictEqual(groups[0]!.members, []);
      });
    },
  });
}

Deno.test({
  name: "--format table prints a per-symbol table with the last spread and the count",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-table");
    const sent = spreadRecords(5, Date.now() - 120_000, ["BTC-USD", "ETH-USD"]);
    await produce(config, topic, sent, 1);
    const r = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "5", "--format", "table", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    // The last table printed is the final one.
    const out = lines(r.stdout);
    const start = out.findLastIndex((l) => l.startsWith("symbol"));
    const table = out.slice(start);
    equal(table.length, 3, r.stdout);
    match(table[0]!, /^symbol\s+last spread\s+upd\/s\s+age\s+count$/);
    // BTC-USD: records 0, 2, 4 (spread 4.25); ETH-USD: records 1, 3 (spread 3.25).
    // The records are two minutes old: the age reads as minutes and seconds.
    match(table[1]!, /^BTC-USD {2,}4\.25 {2,}\d+\.\d {2,}\dm\d\ds {2,}3$/);
    match(table[2]!, /^ETH-USD {2,}3\.25 {2,}\d+\.\d {2,}\dm\d\ds {2,}2$/);
    ok(!r.stdout.includes('{"timestamp"'), "table mode printed JSON lines");
  },
});

Deno.test({
  name: "bad consumer flags exit 2 naming the flag, and so do a missing KAFKA_BROKERS and topic",
  ...KAFKA_TEST,
  async fn() {
    const env = { KAFKA_BROKERS: "127.0.0.1:9", KAFKA_SECURITY: "plaintext" };
    const cases: [string[], Record<string, string>, string][] = [
      [["--bogus"], env, 'Unknown option "--bogus"; see --help'],
      [["--from", "yesterday"], env, "--from must be latest, earliest or an ISO 8601 time"],
      [["--format", "xml"], env, '--format must be one of json, table, got "xml"'],
      [["--max-messages", "0"], env, '--max-messages must be at least 1, got "0"'],
      [["--max-messages", "ten"], env, '--max-messages must be a whole number, got "ten"'],
      [["--timeout=soon"], env, '--timeout must be a number of seconds, got "soon"'],
      [[], {}, '"KAFKA_BROKERS" environment variable (or --brokers) must be set; set it in .env'],
    ];
    for (const [args, e, says] of cases) {
      const r = await run("consumer.ts", args, e);
      equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      ok(r.stderr.includes(says), `${args.join(" ")}: ${r.stderr}`);
      equal(r.stdout, "");
    }
    const b = await kafka();
    const topic = uniqueTopic("e2e-missing");
    const r = await run("consumer.ts", ["--group", `g-${topic}`], kafkaEnv(b, "plaintext", topic));
    equal(r.code, 2, r.stderr);
    ok(r.stderr.includes(`Cannot consume topic "${topic}": it does not exist`), r.stderr);
  },
});

Deno.test({
  name: "--timeout stops a consumer that has nothing to read with exit 0",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const topic = uniqueTopic("e2e-timeout");
    await produce(brokerConfig(b), topic, [], 1);
    const r = await run(
      "consumer.ts",
      ["--timeout", "2", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    equal(r.stdout, "");
    ok(r.stderr.includes(`consumed 0 records, 0 malformed (skipped), group "g-${topic}"`));
    ok(r.stderr.includes(`joined group "g-${topic}": partitions [0] of "${topic}"`), r.stderr);
  },
});
