/**
 * Shared parts of the reliability suite (tests/reliability_*_test.ts): the real entry scripts
 * run as subprocesses with every byte of their output kept, distinctive secrets to grep that
 * output for, synthetic quote frames whose records can be told apart, and an exact read-back of
 * a topic (every record it holds, duplicates included).
 */
import { deepStrictEqual, equal, ok } from "./assert.ts";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { openKafka } from "../../lib/kafka/open.ts";
import {
  type FakePolygon,
  type FakePolygonOptions,
  startFakePolygon,
} from "../../lib/polygon/fake.ts";
import type { InRecord } from "../../lib/sink.ts";
import type { ProducerSummary } from "../../lib/summary.ts";
import {
  brokerConfig,
  type KafkaBroker,
  requireSecure,
  startKafka,
  uniqueTopic,
} from "./kafka_broker.ts";

export type { ProducerSummary };

/** Clients keep timers and sockets past close(); the broker is shared across files. */
export const KAFKA_TEST = { sanitizeOps: false, sanitizeResources: false } as const;

/** The Polygon API key every scenario uses: distinctive, so a grep for it cannot miss. */
export const API_KEY = "pk_reliab_Zq8xW3vN5mK7pL2r";

const ROOT = new URL("../../", import.meta.url).pathname;
/**
 * Exchange time of synthetic quote 0: an hour before the test run, on a whole minute, so records
 * stamped with it stay within the broker's default retention and producer-id expiry.
 */
export const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000;
const PAIRS = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD"];

/**
 * Synthetic quote frame `i`: one XQ event whose exchange time `T0 + i` makes its record value
 * unique, so a read-back can name every missing or repeated record.
 */
export function quoteFrame(i: number): string {
  const bp = 100 + (i % 1000);
  const cents = (i % 99) + 1;
  return `[{"ev":"XQ","pair":"${PAIRS[i % PAIRS.length]}","lp":0,"ls":0,"bp":${bp},"bs":1,` +
    `"ap":${bp}.${String(cents).padStart(2, "0")},"as":2,"t":${T0 + i},"x":1,"r":${T0 + i + 3}}]`;
}

/** The record value {@linkcode quoteFrame} `i` becomes, written out independently. */
export function quoteValue(i: number): string {
  const spread = String(((i % 99) + 1) / 100);
  return `{"timestamp":"${new Date(T0 + i).toISOString()}","symbol":"${
    PAIRS[i % PAIRS.length]
  }","spread":${spread}}`;
}

/** Index of the synthetic frame a record value came from (its exchange time minus T0). */
export function quoteIndex(value: string): number {
  return Date.parse((JSON.parse(value) as { timestamp: string }).timestamp) - T0;
}

/**
 * Synthetic frames 0, 1, 2, … ({@linkcode quoteFrame}) until `limit.at` is set, then up to that
 * index: an endless feed for the fake Polygon server that the test ends when it chooses.
 */
export function* endlessQuotes(limit: { at?: number }): Generator<string> {
  for (let i = 0; limit.at === undefined || i < limit.at; i++) yield quoteFrame(i);
}

/** `count` synthetic frames from `start`. */
export function quoteFrames(count: number, start = 0): string[] {
  return Array.from({ length: count }, (_, i) => quoteFrame(start + i));
}

/** An entry script run as a subprocess, its whole stdout and stderr kept. */
export class ScriptProcess {
  readonly name: string;
  readonly pid: number;
  readonly startedAt = performance.now();
  #child: Deno.ChildProcess;
  #stdout: string[] = [];
  #stderr: string[] = [];
  #reading: Promise<void>;
  #status: Promise<Deno.CommandStatus>;
  #exitedAt: number | undefined;

  constructor(script: string, args: string[], env: Record<string, string>) {
    this.name = script;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        script,
        ...args,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#reading = Promise.all([
      this.#pump(this.#child.stdout, this.#stdout),
      this.#pump(this.#child.stderr, this.#stderr),
    ]).then(() => {});
    this.#status = this.#child.status.then((s) => {
      this.#exitedAt = performance.now();
      return s;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) into.push(decoder.decode(chunk, { stream: true }));
    into.push(decoder.decode());
  }

  /** Everything printed on stdout so far. */
  get stdout(): string {
    return this.#stdout.join("");
  }

  /** Everything printed on stderr so far. */
  get stderr(): string {
    return this.#stderr.join("");
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exitedAt !== undefined;
  }

  /** Waits until stderr matches `re` (or the process exits, or time runs out). */
  async waitForStderr(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.stderr);
      if (m) return m;
      if (this.exited) {
        throw new Error(`${this.name} exited before printing ${re}:\n${this.stderr.slice(-3000)}`);
      }
      if (performance.now() > deadline) {
        throw new Error(`${this.name} did not print ${re} in ${timeoutMs} ms:\n${this.stderr}`);
      }
      await sleep(50);
    }
  }

  /** Peak resident set size so far (VmHWM), in KiB; undefined once the process is gone. */
  peakRssKb(): number | undefined {
    return procStatusKb(this.pid, "VmHWM");
  }

  /** Current resident set size (VmRSS), in KiB. */
  rssKb(): number | undefined {
    return procStatusKb(this.pid, "VmRSS");
  }

  /** Sends a signal (ignored when the process is gone). */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /**
   * Waits for the exit (SIGKILL after `timeoutMs`) and all output; returns the exit code and the
   * time from `since` (default the start) to the exit, in ms.
   */
  async exit(timeoutMs = 60_000, since = this.startedAt): Promise<{ code: number; ms: number }> {
    const timer = setTimeout(() => this.kill("SIGKILL"), timeoutMs);
    try {
      const status = await this.#status;
      await this.#reading;
      return { code: status.code, ms: this.#exitedAt! - since };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process if it still runs and waits for it: for `finally` blocks. */
  async dispose(): Promise<void> {
    if (!this.exited) this.kill("SIGKILL");
    await this.#status.catch(() => {});
    await this.#reading.catch(() => {});
  }
}

function procStatusKb(pid: number, field: string): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Kafka settings of a producer or consumer subprocess. */
export interface ScriptKafka {
  /** Environment variables: brokers and, for sasl_ssl, the CA and the SCRAM credentials. */
  env: Record<string, string>;
  /** The SASL password, for the secret grep (undefined for plaintext). */
  password?: string;
}

/**
 * Environment for a subprocess to reach `broker` over SASL_SSL with SCRAM-SHA-512 (Aiven's SASL
 * path, TLS verified against the test CA), or over plaintext.
 */
export function scriptKafka(
  broker: KafkaBroker,
  security: "sasl_ssl" | "plaintext" = "sasl_ssl",
): ScriptKafka {
  // The suite runs the default client; KAFKA_CLIENT=kafkajs runs it against the other one.
  const client = Deno.env.get("KAFKA_CLIENT");
  const chosen: Record<string, string> = client ? { KAFKA_CLIENT: client } : {};
  if (security === "plaintext") {
    return { env: { KAFKA_BROKERS: broker.plaintext, KAFKA_SECURITY: "plaintext", ...chosen } };
  }
  const s = requireSecure(broker, "a SASL_SSL producer");
  return {
    env: {
      KAFKA_BROKERS: s.saslSsl,
      KAFKA_SECURITY: "sasl_ssl",
      KAFKA_SSL_CA: s.caPem,
      KAFKA_SASL_MECHANISM: "scram-sha-512",
      KAFKA_SASL_USERNAME: s.scramSha512.username,
      KAFKA_SASL_PASSWORD: s.scramSha512.password,
      ...chosen,
    },
    password: s.scramSha512.password,
  };
}

/** Options for {@linkcode startProducer}. */
export interface StartProducerOptions {
  /** The fake Polygon server's URL. */
  url: string;
  kafka: ScriptKafka;
  topic: string;
  /** More flags, e.g. `["--queue-max", "2000"]`. */
  args?: string[];
  /** More environment, e.g. InfluxDB settings. */
  env?: Record<string, string>;
}

/** `producer.ts` run as a subprocess, with the JSON summary it writes at exit (`--summary`). */
export class ProducerProcess extends ScriptProcess {
  /** Where the producer writes its summary. */
  readonly summaryPath: string;
  #dir: string;

  constructor(args: string[], env: Record<string, string>) {
    const dir = Deno.makeTempDirSync({ prefix: "producer_summary_" });
    const summaryPath = `${dir}/summary.json`;
    super("producer.ts", ["--summary", summaryPath, ...args], env);
    this.#dir = dir;
    this.summaryPath = summaryPath;
  }

  /**
   * The summary the producer wrote when it ended: waits for the exit (SIGKILL after `timeoutMs`)
   * and throws, with the end of its stderr, when there is none (start-up failed).
   */
  async summary(timeoutMs = 60_000): Promise<ProducerSummary> {
    const { code } = await this.exit(timeoutMs);
    let text: string;
    try {
      text = await Deno.readTextFile(this.summaryPath);
    } catch (error) {
      throw new Error(
        `Cannot read the producer's summary "${this.summaryPath}" (exit code ${code}): ` +
          `${error instanceof Error ? error.message : error}; its stderr ends:\n` +
          this.stderr.slice(-3000),
      );
    }
    return JSON.parse(text) as ProducerSummary;
  }

  /** Whether the producer wrote a summary. */
  hasSummary(): boolean {
    try {
      Deno.statSync(this.summaryPath);
      return true;
    } catch {
      return false;
    }
  }

  /** Kills the process if it still runs, waits for it and removes the summary. */
  override async dispose(): Promise<void> {
    await super.dispose();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Starts `producer.ts` with `/metrics` on a free port, pairs `*`, three partitions and a
 * `--summary` file to read with {@linkcode ProducerProcess.summary}.
 */
export function startProducer(options: StartProducerOptions): ProducerProcess {
  return new ProducerProcess(
    [
      "--url",
      options.url,
      "--pairs",
      "*",
      "--topic",
      options.topic,
      "--partitions",
      "3",
      "--metrics-port",
      "0",
      ...(options.args ?? []),
    ],
    { POLYGON_API_KEY: API_KEY, ...options.kafka.env, ...options.env },
  );
}

/** The producer's count of records the broker acknowledged, on `/metrics`. */
export const ACKED_METRIC = "crypto_sink_records_acked_total";

/** Options for {@linkcode startScenario}. */
export interface ScenarioOptions {
  /** Prefix of the scenario's unique topic name, e.g. `"rel-drops"`. */
  topic: string;
  /** The fake Polygon server's options; `apiKey` defaults to {@linkcode API_KEY}. */
  fake?: FakePolygonOptions;
  /** More producer flags, as for {@linkcode startProducer}. */
  args?: string[];
  /** More producer environment, as for {@linkcode startProducer}. */
  env?: Record<string, string>;
  /** The broker; default the shared one ({@linkcode startKafka}). */
  broker?: KafkaBroker;
  /** The producer's Kafka settings; default SASL_SSL to the broker ({@linkcode scriptKafka}). */
  kafka?: ScriptKafka;
}

/**
 * One reliability scenario: a broker, a fresh topic (and its gaps topic), the fake Polygon
 * server, and the real producer streaming from one to the other. Dispose it (`await using`) to
 * kill the producer and close the fake.
 */
export interface Scenario extends AsyncDisposable {
  readonly broker: KafkaBroker;
  readonly kafka: ScriptKafka;
  readonly topic: string;
  readonly fake: FakePolygon;
  readonly producer: ProducerProcess;
  /** The producer's telemetry base URL, once it listens. */
  telemetry(): Promise<string>;
  /** Records acknowledged so far, from `/metrics`. */
  acked(): Promise<number>;
  /** Waits until exactly `count` records are acknowledged. */
  waitAcked(count: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then the exit; asserts exit code 0 and returns the producer's summary. */
  stop(timeoutMs?: number): Promise<ProducerSummary>;
  /**
   * Waits for the producer to end on its own, then closes the fake: once the process is gone and
   * the fake has answered every request in flight, its counts are final, with no wait for
   * something that should not happen. Returns the exit code, the time to it and the summary.
   */
  ended(timeoutMs?: number): Promise<{ code: number; ms: number; summary: ProducerSummary }>;
  /**
   * Asserts that neither the API key nor the Kafka password (nor `secrets`) occurs in the
   * producer's stdout and stderr or in `outputs`.
   */
  assertNoSecrets(outputs?: Record<string, string>, secrets?: readonly string[]): void;
}

/** Starts a {@linkcode Scenario}: topics first, then the fake, then the producer. */
export async function startScenario(options: ScenarioOptions): Promise<Scenario> {
  const broker = options.broker ?? await startKafka();
  const kafka = options.kafka ?? scriptKafka(broker);
  const topic = uniqueTopic(options.topic);
  await prepareTopics(broker, topic);
  const fake = startFakePolygon({ apiKey: API_KEY, ...options.fake });
  const producer = startProducer({
    url: fake.url,
    kafka,
    topic,
    args: options.args,
    env: options.env,
  });
  let base: Promise<string> | undefined;
  const telemetry = () => base ??= telemetryUrl(producer);
  const acked = async () => await metric(await telemetry(), ACKED_METRIC);
  return {
    broker,
    kafka,
    topic,
    fake,
    producer,
    telemetry,
    acked,
    waitAcked: (count, timeoutMs = 30_000) =>
      waitUntil(async () => await acked() === count, `${count} records acked`, timeoutMs),
    async stop(timeoutMs = 20_000) {
      producer.kill("SIGTERM");
      equal((await producer.exit(timeoutMs)).code, 0, producer.stderr);
      return await producer.summary();
    },
    async ended(timeoutMs = 60_000) {
      const { code, ms } = await producer.exit(timeoutMs);
      await fake.close();
      return { code, ms, summary: await producer.summary() };
    },
    assertNoSecrets(outputs = {}, secrets = []) {
      assertNoSecrets(
        { stdout: producer.stdout, stderr: producer.stderr, ...outputs },
        [API_KEY, kafka.password, ...secrets],
      );
    },
    async [Symbol.asyncDispose]() {
      await producer.dispose();
      await fake.close();
    },
  };
}

/**
 * Creates `topic` (3 partitions) and `<topic>.gaps` (1) and waits until the broker serves their
 * metadata, retrying. Why the suite does this before starting a producer: right after KRaft
 * creates a topic, kafkajs' `createTopics({ waitForLeaders: true })` can fail with "This server
 * does not host this topic-partition" (it retries only LEADER_NOT_AVAILABLE), and the producer
 * then exits 5 at start-up. That race is reported in RELIABILITY.md; here it is kept out of
 * scenarios about other faults.
 */
export async function prepareTopics(broker: KafkaBroker, topic: string): Promise<void> {
  const kafka = await openKafka(brokerConfig(broker, "plaintext", { topic }), { log: () => {} });
  try {
    for (const [name, partitions] of [[topic, 3], [`${topic}.gaps`, 1]] as const) {
      for (let attempt = 1;; attempt++) {
        try {
          await kafka.admin.ensureTopic(name, { partitions, replicationFactor: -1 });
          break;
        } catch (error) {
          if (attempt >= 20) throw error;
          await sleep(250);
        }
      }
    }
  } finally {
    await kafka.close();
  }
}

/** The producer's telemetry base URL, once it is listening. */
export async function telemetryUrl(producer: ScriptProcess): Promise<string> {
  // "telemetry: live page at http://127.0.0.1:PORT/, with /metrics and /healthz"
  const m = await producer.waitForStderr(/telemetry: live page at (http:\/\/[^/\s]+)\//);
  return m[1]!;
}

/** Reads one unlabelled (or exactly labelled) sample from `/metrics`. */
export async function metric(base: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const series = labels === "" ? name : `${name}{${labels}}`;
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  throw new Error(`No sample "${series}" in /metrics`);
}

/** The `/healthz` body. */
export async function health(base: string): Promise<Record<string, unknown>> {
  return await (await fetch(`${base}/healthz`)).json();
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Every record `topic` holds, duplicates included: the end offsets say how many there are, and a
 * fresh group reads from the earliest offset until it has that many.
 */
export async function readTopic(
  broker: KafkaBroker,
  topic: string,
  timeoutMs = 180_000,
): Promise<InRecord[]> {
  const config: KafkaConfig = brokerConfig(broker, "plaintext", { topic });
  const kafka = await openKafka(config, { log: () => {} });
  let total = 0;
  for (const p of await kafka.admin.lag("none", topic)) total += p.lag;
  if (total === 0) {
    await kafka.close();
    return [];
  }
  const source = kafka.source({
    groupId: `read-${crypto.randomUUID()}`,
    topic,
    from: "earliest",
  });
  const controller = new AbortController();
  // By partition and offset: a consumer delivers at least once (a rebalance on a loaded machine
  // hands a partition back from its committed offset), and the topic is what is checked here.
  const got = new Map<string, InRecord>();
  let delivered = 0;
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    await source.consume((batch) => {
      delivered += batch.length;
      for (const r of batch) got.set(`${r.partition}:${r.offset}`, r);
      if (got.size >= total) controller.abort();
    }, { signal: controller.signal });
  } finally {
    clearTimeout(timer);
    await source.close();
    await kafka.close();
  }
  if (delivered > got.size) {
    console.log(
      `[reliability] reader of "${topic}": the consumer delivered ${delivered - got.size} ` +
        `records twice (same partition and offset) while reading ${got.size}`,
    );
  }
  equal(got.size, total, `read ${got.size} of the ${total} records of "${topic}"`);
  return [...got.values()];
}

/** One look at a producer under a fault: {@linkcode sample}. */
export interface Sample {
  /** When, from `performance.now()`. */
  at: number;
  /** /healthz: lastQuoteAgeMs, pendingRecords, oldestPendingAgeMs. */
  lastQuoteAgeMs?: number;
  pendingRecords: number;
  oldestPendingAgeMs?: number;
  /** The process's resident set size (VmRSS), KiB. */
  rssKb?: number;
  /** /metrics: crypto_queue_depth and crypto_ws_frames_received_total. */
  queueDepth: number;
  framesReceived: number;
}

/** Samples the producer's /healthz and RSS every 500 ms until `stop.done` is set. */
export async function sample(
  producer: ScriptProcess,
  base: string,
  stop: { done: boolean },
): Promise<Sample[]> {
  const samples: Sample[] = [];
  while (!stop.done) {
    const h = await health(base);
    samples.push({
      at: performance.now(),
      lastQuoteAgeMs: h.lastQuoteAgeMs as number | undefined,
      pendingRecords: h.pendingRecords as number,
      oldestPendingAgeMs: h.oldestPendingAgeMs as number | undefined,
      rssKb: producer.rssKb(),
      queueDepth: await metric(base, "crypto_queue_depth"),
      framesReceived: await metric(base, "crypto_ws_frames_received_total"),
    });
    await sleep(500);
  }
  return samples;
}

/** When an outage of the broker began and ended, from `performance.now()`. */
export interface OutageTimes {
  /** The broker process was gone. */
  stoppedAt: number;
  /** Its start began. */
  startedAt: number;
  /** It answered again. */
  answeredAt: number;
  /** It was SIGKILLed (asked to, or its stop took over 20 s): an unclean shutdown. */
  killed: boolean;
}

/**
 * An outage of the broker: stops it (SIGTERM; SIGKILL when `crash`), waits `downMs`, starts it
 * again with the same data and waits until it answers.
 */
export async function outage(
  broker: KafkaBroker,
  downMs: number,
  crash: boolean,
): Promise<OutageTimes> {
  const { killed } = await broker.pause({ crash });
  const stoppedAt = performance.now();
  await sleep(downMs);
  const startedAt = performance.now();
  await broker.resume();
  return { stoppedAt, startedAt, answeredAt: performance.now(), killed };
}

/** How a topic of synthetic quotes compares with the quotes sent, by {@linkcode quoteIndex}. */
export interface QuoteDelivery {
  /** Distinct quotes on the topic. */
  distinct: number;
  /** Extra copies: records on the topic minus distinct quotes. */
  duplicates: number;
  /** Indexes sent and not on the topic, ascending. */
  missing: number[];
  /** Indexes on the topic that were never sent, ascending. */
  unexpected: number[];
  /** Records whose value is not {@linkcode quoteValue} of their index. */
  altered: number;
}

/** Compares the synthetic quotes on a topic (`records`) with the indexes `sent`. */
function quoteDelivery(
  records: readonly InRecord[],
  sent: Iterable<number>,
): QuoteDelivery {
  const have = new Set<number>();
  let altered = 0;
  for (const r of records) {
    const i = quoteIndex(r.value!);
    have.add(i);
    if (r.value !== quoteValue(i)) altered++;
  }
  const wanted = new Set(sent);
  const ascending = (a: number, b: number) => a - b;
  return {
    distinct: have.size,
    duplicates: records.length - have.size,
    missing: [...wanted].filter((i) => !have.has(i)).sort(ascending),
    unexpected: [...have].filter((i) => !wanted.has(i)).sort(ascending),
    altered,
  };
}

/**
 * Asserts, quote by quote, what a producer of synthetic quotes delivered to `topic` (its records
 * read back in `records`), given the indexes the fake `sent` it and its `summary`: every quote is
 * on the topic exactly once unless the producer's queue dropped it; the drops are exactly the
 * ones it counted (`framesDropped`), one contiguous run (drop-oldest over one outage); the topic
 * holds nothing else, each value as {@linkcode quoteValue} makes it, and `acked` quotes in all. A
 * duplicate fails naming the batches the broker stored twice (`kafka.tools.DumpLogSegments`),
 * with the end of the producer's log (`producerStderr`).
 */
export async function assertQuotesOnce(
  broker: KafkaBroker,
  topic: string,
  records: readonly InRecord[],
  sent: Iterable<number>,
  summary: ProducerSummary,
  producerStderr = "",
): Promise<QuoteDelivery> {
  const d = quoteDelivery(records, sent);
  const log = `; the producer's log ends:\n${producerStderr.slice(-3000)}`;
  if (d.duplicates > 0) {
    const again = reappended(await storedBatches(broker, topic));
    equal(
      d.duplicates,
      0,
      `${d.duplicates} duplicates; the batches the broker stored twice: ` +
        `${describeReappended(again) || "none"}${log}`,
    );
  }
  deepStrictEqual(d.unexpected, [], "the topic holds only quotes that were sent");
  equal(d.altered, 0, "each record's value is the one its quote makes");
  equal(d.missing.length, summary.framesDropped, `missing: what the queue dropped${log}`);
  if (d.missing.length > 0) {
    equal(d.missing.at(-1)! - d.missing[0]! + 1, d.missing.length, "the dropped are contiguous");
  }
  equal(d.distinct, summary.acked, "the topic holds each acked quote");
  return d;
}

/** Values that occur more than once, with their counts. */
export function duplicates(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return new Map([...counts].filter(([, n]) => n > 1));
}

/**
 * Asserts that the topic holds exactly the `expected` values, each exactly once: the producer's
 * retries happen inside the Kafka client with the same sequence numbers, so the broker drops any
 * copy it already had. A duplicate fails the test, naming where it sits, with the end of the
 * producer's log (`producerStderr`) for the diagnosis. Returns the number of extra copies: 0.
 */
export function assertDelivered(
  records: readonly InRecord[],
  expected: readonly string[],
  producerStderr = "",
): number {
  const values = records.map((r) => r.value!);
  deepStrictEqual(
    new Set(values),
    new Set(expected),
    "the topic holds exactly the expected records",
  );
  equal(new Set(expected).size, expected.length, "the expected records are distinct");
  const twice = duplicates(values);
  const where = records.filter((r) => twice.has(r.value!)).map((r) => `${r.partition}/${r.offset}`);
  deepStrictEqual(
    where,
    [],
    `${values.length - new Set(values).size} duplicate(s); the producer's log ends:\n` +
      producerStderr.slice(-3000),
  );
  return values.length - new Set(values).size;
}

/** Asserts that no secret occurs in any of the captured texts, naming where one was found. */
export function assertNoSecrets(
  outputs: Record<string, string>,
  secrets: readonly (string | undefined)[],
): void {
  for (const secret of secrets) {
    if (secret === undefined) continue;
    ok(secret.length >= 16, `secret "${secret.slice(0, 3)}…" is distinctive (16+ characters)`);
    for (const [where, text] of Object.entries(outputs)) {
      ok(!text.includes(secret), `a secret appears in ${where}`);
    }
  }
}

/** The texts of every record, for the secret grep. */
export function recordTexts(records: readonly InRecord[]): string {
  return records.map((r) => `${r.key} ${r.value}`).join("\n");
}

/** One record batch as the broker stored it (kafka.tools.DumpLogSegments). */
export interface StoredBatch {
  partition: number;
  baseOffset: number;
  count: number;
  producerId: string;
  producerEpoch: number;
  baseSequence: number;
  lastSequence: number;
  leaderEpoch: number;
}

/** The record batches of every partition of `topic`, read from the broker's log files. */
export async function storedBatches(broker: KafkaBroker, topic: string): Promise<StoredBatch[]> {
  const lib = `${
    Deno.env.get("KAFKA_CACHE") ?? new URL("../../.cache/kafka", import.meta.url).pathname
  }/lib`;
  const jars = [...Deno.readDirSync(lib)].map((e) => `${lib}/${e.name}`).join(":");
  const out: StoredBatch[] = [];
  for (const entry of Deno.readDirSync(`${broker.dir}/data`)) {
    const m = new RegExp(`^${topic}-(\\d+)$`).exec(entry.name);
    if (!m) continue;
    const dir = `${broker.dir}/data/${entry.name}`;
    const files = [...Deno.readDirSync(dir)].filter((f) => f.name.endsWith(".log"))
      .map((f) => `${dir}/${f.name}`).sort();
    const r = await new Deno.Command("java", {
      args: ["-cp", jars, "kafka.tools.DumpLogSegments", "--files", files.join(",")],
      stdout: "piped",
      stderr: "null",
    }).output();
    for (const line of new TextDecoder().decode(r.stdout).split("\n")) {
      const f = (k: string) => new RegExp(`\\b${k}: (-?\\d+)`).exec(line)?.[1];
      if (f("baseOffset") === undefined) continue;
      out.push({
        partition: Number(m[1]),
        baseOffset: Number(f("baseOffset")),
        count: Number(f("count")),
        producerId: f("producerId")!,
        producerEpoch: Number(f("producerEpoch")),
        baseSequence: Number(f("baseSequence")),
        lastSequence: Number(f("lastSequence")),
        leaderEpoch: Number(f("partitionLeaderEpoch")),
      });
    }
  }
  return out;
}

/**
 * Batches the broker appended a second time with the same producer id, epoch and sequence
 * numbers as a batch it already held: a retry the broker should have dropped as a duplicate.
 */
export function reappended(batches: readonly StoredBatch[]): StoredBatch[] {
  const seen = new Set<string>();
  const again: StoredBatch[] = [];
  for (
    const b of [...batches].sort((x, y) => x.partition - y.partition || x.baseOffset - y.baseOffset)
  ) {
    const id =
      `${b.partition}/${b.producerId}/${b.producerEpoch}/${b.baseSequence}-${b.lastSequence}`;
    if (seen.has(id)) again.push(b);
    seen.add(id);
  }
  return again;
}

/** The batches of {@linkcode reappended}, described for a failure message. */
export function describeReappended(again: readonly StoredBatch[]): string {
  return again.map((b) =>
    `partition ${b.partition} offset ${b.baseOffset}, seq ${b.baseSequence}-${b.lastSequence}, ` +
    `producer ${b.producerId} epoch ${b.producerEpoch}, leader epoch ${b.leaderEpoch}`
  ).join("; ");
}
