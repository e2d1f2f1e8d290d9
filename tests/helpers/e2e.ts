/**
 * What the end-to-end suites share: the entry scripts as subprocesses with the permissions of their
 * deno tasks and only the environment given here (so a developer's `.env` or shell settings cannot
 * leak in), the shared real broker, the settings of each auth path, and the data helpers.
 */
import { equal, ok } from "./assert.ts";
import { type KafkaBroker, requireSecure, startKafka } from "./kafka_broker.ts";
import { openKafka } from "../../lib/kafka/open.ts";
import { type PartitionLag } from "../../lib/kafka/types.ts";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { startFakePolygon } from "../../lib/polygon/fake.ts";
import { type InRecord, type OutRecord } from "../../lib/sink.ts";
import type { ProducerSummary } from "../../lib/summary.ts";
import { RECORD_HEADERS, transform } from "../../transform.ts";
import { CAPTURE_PATH as CAPTURE } from "./capture.ts";

// Clients keep timers and sockets past close(); the broker is shared across files.
export const KAFKA_TEST = { sanitizeOps: false, sanitizeResources: false } as const;

export const ROOT = new URL("../..", import.meta.url).pathname;
export const API_KEY = "test-polygon-key";
/** The longest any one process may run before the test kills it and fails. */
export const PROCESS_LIMIT_MS = 180_000;

/** Permissions of each entry script, as in its deno task (without --env-file). */
export const PERMISSIONS: Record<string, string[]> = {
  "producer.ts": ["--allow-net", "--allow-read", "--allow-write", "--allow-env"],
  "consumer.ts": ["--allow-net", "--allow-read", "--allow-env"],
  "replay.ts": ["--allow-read", "--allow-env", "--allow-net", "--allow-write"],
  "doctor.ts": ["--allow-net", "--allow-read", "--allow-env"],
  "store.ts": ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"],
};

// --- processes --------------------------------------------------------------------------------

export interface Finished {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms. */
  ms: number;
}

/** A running entry script whose output is collected as it comes. */
export class ScriptProcess {
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

export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs an entry script to its end. */
export function run(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<Finished> {
  return new ScriptProcess(script, args, env).finished;
}

/** The lines of a process's stdout (none for empty output). */
export function lines(text: string): string[] {
  return text === "" ? [] : text.replace(/\n$/, "").split("\n");
}

let broker: KafkaBroker | undefined;
export async function kafka(): Promise<KafkaBroker> {
  broker ??= await startKafka();
  return broker;
}

export type Auth = "plaintext" | "ssl" | "scram-sha-256" | "scram-sha-512";

/** The environment that points an entry script at one listener of the test broker. */
export function kafkaEnv(b: KafkaBroker, auth: Auth, topic: string): Record<string, string> {
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
export function freshFrames(count: number, pairs = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]) {
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
export function expectedValues(frames: readonly string[]): string[] {
  return frames.flatMap((f) => transform(f).records.map((r) => r.value));
}

/** Records with known exchange times `t0 + i * stepMs`, keyed by symbol, as the producer sends. */
export function spreadRecords(
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
export async function partitionLag(
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

/** Creates a topic with the broker's default settings (default retention), as users do. */
export async function ensureTopic(config: KafkaConfig, topic: string, partitions: number) {
  const kafka = await openKafka(config, { log: () => {} });
  try {
    await kafka.admin.ensureTopic(topic, { partitions, replicationFactor: -1 });
  } finally {
    await kafka.close();
  }
}

/** Sends records to a topic (created with `partitions` unless it exists). */
export async function produce(
  config: KafkaConfig,
  topic: string,
  records: OutRecord[],
  partitions = 3,
) {
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
export async function readTopic(
  config: KafkaConfig,
  topic: string,
  count: number,
): Promise<InRecord[]> {
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
export function bySymbol(values: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const v of values) (out[JSON.parse(v).symbol as string] ??= []).push(v);
  return out;
}

export function sorted(values: readonly string[]): string[] {
  return [...values].sort();
}

/**
 * Runs the producer against a fake Polygon server replaying `frames`; SIGTERM once all are sent.
 * Returns its output and the summary it wrote (`--summary`).
 */
export async function produceThroughFake(
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
export function assertNoSecrets(
  output: string,
  secrets: { password?: string; pemFiles?: string[] },
) {
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
export function replayOfCapture(): Promise<string[]> {
  replayCache ??= run("replay.ts", [CAPTURE], {}).then((r) => {
    equal(r.code, 0, r.stderr);
    return lines(r.stdout);
  });
  return replayCache;
}
