/**
 * `deno task bench`: every benchmark, side by side with its reference in the same run, written
 * to BENCHMARKS.md. Starts a real local Kafka broker (scripts/kafka_local.sh, in a temp folder,
 * removed at the end), generates the recordings into .cache/bench/ (seeded, never committed),
 * and runs each measurement in child processes so none shares an event loop with another.
 *
 *   deno task bench [--quick] [--out BENCHMARKS.md]
 *
 * The producer and consumer figures are taken for both Kafka client adapters (@platformatic/kafka
 * and kafkajs), each against kcat in the same run. Numbers never fail anything: a missed target
 * is reported, with the profile that explains it.
 * Permissions: -A (child processes, the broker script, kcat, files, network on 127.0.0.1).
 */
import { parseArgs } from "node:util";
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";
import { DEFAULT_KAFKA_CLIENT, KAFKA_CLIENTS } from "../lib/kafka/defaults.ts";
import { type KafkaClientName } from "../lib/kafka/types.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { openRecording } from "../lib/recording.ts";
import {
  benchKafkaConfig,
  CACHE_DIR,
  CAPTURE_PATH,
  ensureRecording,
  quantile,
  readTimes,
  RESULT_PREFIX,
  type Spread,
  spreadOf,
} from "./common.ts";
import type { TransformCostResult } from "./transform_cost.ts";
import type { ChannelCostResult } from "./channel_cost.ts";
import type { ProduceResult } from "./produce_recording.ts";
import { exporterReport, type ExporterResult } from "./broker_exporter.ts";

const HELP = `Usage: deno task bench [--quick] [--out FILE]

Runs every benchmark against its reference in the same run and writes BENCHMARKS.md. It first
runs scripts/setup.sh, which installs what a fresh machine lacks (kcat, Java, Maven, the Kafka
jars); it starts its own Kafka broker. The last full run took 7 min (BENCHMARKS.md says).

Options:
  -h, --help      show this help
  --quick         smaller sizes and fewer repetitions
  --out FILE      where to write the report (default BENCHMARKS.md)`;

function readFlags(): { quick: boolean; out: string } {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        help: { type: "boolean", short: "h", default: false },
        quick: { type: "boolean", default: false },
        out: { type: "string", default: new URL("../BENCHMARKS.md", import.meta.url).pathname },
      },
    });
    if (values.help) {
      console.log(HELP);
      Deno.exit(0);
    }
    return { quick: values.quick, out: values.out };
  } catch (error) {
    const first = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    console.error(`bench: ${first}; see deno task bench --help`);
    Deno.exit(2);
  }
}
const flags = readFlags();
const QUICK = flags.quick;
const REPO = new URL("../", import.meta.url).pathname;
const KAFKA_SCRIPT = `${REPO}scripts/kafka_local.sh`;
const BENCH = `${REPO}bench/`;

/** Sizes and repetitions: full, or --quick. */
const PLAN = QUICK
  ? {
    quotes: 200_000,
    produceRuns: 2,
    transformRounds: 5,
    generatedFrames: 50_000,
    rates: [1_000, 5_000, 20_000],
    e2eSeconds: 4,
    e2eRuns: 1,
    memorySeconds: 15,
    tuneQuotes: 50_000,
    tuneSeconds: 3,
    tune: [[100, 0], [1000, 0], [1000, 5], [5000, 0]] as [number, number][],
  }
  : {
    quotes: 1_000_000,
    produceRuns: 3,
    transformRounds: 9,
    generatedFrames: 200_000,
    rates: [1_000, 5_000, 20_000],
    e2eSeconds: 10,
    e2eRuns: 3,
    memorySeconds: 60,
    tuneQuotes: 200_000,
    tuneSeconds: 6,
    tune: [[100, 0], [500, 0], [1000, 0], [1000, 5], [1000, 20], [5000, 0], [5000, 20]] as [
      number,
      number,
    ][],
  };

const TARGETS = {
  transformRatio: 1.5,
  producerRatio: 0.5,
  consumerRatio: 0.5,
  p99At5000Ms: 25,
  sustained: 20_000,
  rssMb: 200,
};

function log(line: string): void {
  console.error(`bench: ${line}`);
}

// --- child processes ----------------------------------------------------------------------------

interface Child {
  /** Resolves with the line after `BENCH_READY` (may be empty). */
  ready: Promise<string>;
  /** Resolves with the parsed result line once the process has exited. */
  result: Promise<unknown>;
  kill(): void;
}

/** Runs `deno run -A bench/<script> ...args`, stderr passed through with a prefix. */
function spawnDeno(script: string, args: string[], denoFlags: string[] = []): Child {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...denoFlags, `${BENCH}${script}`, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const ready = Promise.withResolvers<string>();
  const lines: string[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, onLine: (l: string) => void) => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      parts.forEach(onLine);
    }
    if (rest) onLine(rest);
  };
  const out = pump(proc.stdout, (l) => {
    if (l.startsWith("BENCH_READY")) ready.resolve(l.slice("BENCH_READY".length).trim());
    else lines.push(l);
  });
  const err = pump(proc.stderr, (l) => {
    if (l.trim() !== "") console.error(`  [${script}] ${l}`);
  });
  const result = (async () => {
    const status = await proc.status;
    await Promise.all([out, err]);
    ready.reject(new Error(`${script} exited (code ${status.code}) before it was ready`));
    const line = lines.find((l) => l.startsWith(RESULT_PREFIX));
    if (!line) throw new Error(`${script} exited (code ${status.code}) without a result`);
    return JSON.parse(line.slice(RESULT_PREFIX.length));
  })();
  ready.promise.catch(() => {});
  result.catch(() => {});
  return {
    ready: ready.promise,
    result,
    kill: () => {
      try {
        proc.kill("SIGTERM");
      } catch {
        // already gone
      }
    },
  };
}

async function runText(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder();
  return { code: o.code, out: text.decode(o.stdout) + text.decode(o.stderr) };
}

// --- machine ------------------------------------------------------------------------------------

async function machine(): Promise<Record<string, string>> {
  const mem = Deno.systemMemoryInfo();
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.+)/)?.[1];
  const libDir = `${Deno.env.get("KAFKA_CACHE") ?? `${REPO}.cache/kafka`}/lib`;
  let kafka = "?";
  for await (const e of Deno.readDir(libDir)) {
    const m = /^kafka_2\.13-(.+)\.jar$/.exec(e.name);
    if (m) kafka = m[1]!;
  }
  const kcat = (await runText("kcat", ["-V"])).out;
  const java = (await runText("java", ["-version"])).out.split("\n")[0] ?? "?";
  return {
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    cpu: `${navigator.hardwareConcurrency} cores${cpu ? ` (${cpu.trim()})` : ""}`,
    memory: `${(mem.total / 2 ** 30).toFixed(1)} GiB`,
    load: Deno.loadavg().map((l) => l.toFixed(2)).join(", "),
    deno: `Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`,
    kafka: `Apache Kafka ${kafka} (KRaft, one node, scripts/kafka_local.sh), ${java.trim()}`,
    clients: "@platformatic/kafka 2.12.1 (default), kafkajs 2.2.4",
    kcat: `kcat ${/Version ([^\s]+)/.exec(kcat)?.[1] ?? "?"}, librdkafka ${
      /librdkafka ([^\s]+)/.exec(kcat)?.[1] ?? "?"
    } (Debian)`,
  };
}

// --- broker -------------------------------------------------------------------------------------

interface Broker {
  dir: string;
  brokers: string;
}

async function brokerUp(): Promise<Broker> {
  const dir = await Deno.makeTempDir({ prefix: "bench-kafka-" });
  log(`starting a Kafka broker in ${dir}`);
  const r = await runText(KAFKA_SCRIPT, ["up", dir, "--owner-pid", String(Deno.pid)]);
  const brokers = /KAFKA_PLAINTEXT=(\S+)/.exec(r.out)?.[1];
  if (r.code !== 0 || !brokers) throw new Error(`Cannot start the Kafka broker:\n${r.out}`);
  return { dir, brokers };
}

async function brokerDown(broker: Broker): Promise<void> {
  await runText(KAFKA_SCRIPT, ["down", broker.dir]);
}

async function freshTopic(broker: Broker, prefix: string): Promise<string> {
  const name = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  const kafka = await openKafka(benchKafkaConfig(broker.brokers, name), { log: () => {} });
  try {
    await kafka.admin.ensureTopic(name, { partitions: 6, replicationFactor: 1 });
  } finally {
    await kafka.close();
  }
  return name;
}

/**
 * The real capture repeated `times` times (215,900 quotes for 20), the issue's throughput input,
 * written once into the cache; the generated recording of `fallbackQuotes` when the capture is
 * not here. Returns the path and how many quotes it holds.
 */
async function throughputRecording(
  times: number,
  fallbackQuotes: number,
): Promise<{ path: string; quotes: number; what: string }> {
  let capture: string;
  try {
    capture = await Deno.readTextFile(CAPTURE_PATH);
  } catch {
    return {
      path: await ensureRecording(fallbackQuotes),
      quotes: fallbackQuotes,
      what: `generated (24 pairs; the real capture is not here)`,
    };
  }
  const frames = capture.split("\n").filter((l) => l.startsWith("["));
  const quotes = frames.reduce((n, f) => n + (f.match(/"ev":"XQ"/g)?.length ?? 0), 0) * times;
  const path = `${CACHE_DIR}capture-x${times}.jsonl`;
  try {
    if ((await Deno.stat(path)).size > 0) return { path, quotes, what: `real capture × ${times}` };
  } catch {
    // not yet
  }
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const body = frames.join("\n") + "\n";
  await Deno.writeTextFile(`${path}.tmp`, body.repeat(times));
  await Deno.rename(`${path}.tmp`, path);
  return { path, quotes, what: `real capture × ${times}` };
}

// --- 1. transform -------------------------------------------------------------------------------

async function benchTransform(file: string, maxFrames?: number): Promise<TransformCostResult> {
  const args = [file, "--rounds", String(PLAN.transformRounds)];
  if (maxFrames) args.push("--max-frames", String(maxFrames));
  return (await spawnDeno("transform_cost.ts", args).result) as TransformCostResult;
}

// --- 2. producer vs kcat ------------------------------------------------------------------------

/** The recording's records as `key<TAB>value` lines for kcat (same values as ours). */
async function kcatInput(recordingPath: string, quotes: number): Promise<string> {
  const path = `${CACHE_DIR}kcat-input-${quotes}.tsv`;
  try {
    if ((await Deno.stat(path)).size > 0) return path;
  } catch {
    // not yet
  }
  const recording = await openRecording(recordingPath);
  const file = await Deno.open(`${path}.tmp`, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  const records: SpreadRecord[] = [];
  const spreads = createSpreadTransform();
  let lines: string[] = [];
  const flush = async () => {
    const data = encoder.encode(lines.join(""));
    let off = 0;
    while (off < data.length) off += await file.write(data.subarray(off));
    lines = [];
  };
  for await (const frame of recording.frames) {
    spreads.frame(frame, records);
    for (const r of records) lines.push(r.key + "\t" + r.value + "\n");
    records.length = 0;
    if (lines.length >= 20_000) await flush();
  }
  await flush();
  file.close();
  await Deno.rename(`${path}.tmp`, path);
  return path;
}

interface KcatResult {
  seconds: number;
  perSecond: number;
}

async function runKcat(broker: Broker, topic: string, input: string, n: number) {
  const started = performance.now();
  const r = await runText("kcat", [
    "-P",
    "-b",
    broker.brokers,
    "-t",
    topic,
    "-K",
    "\t",
    "-H",
    "schema-version=1",
    "-X",
    "acks=all",
    "-X",
    "enable.idempotence=true",
    "-X",
    "partitioner=murmur2_random",
    "-l",
    input,
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (r.code !== 0) throw new Error(`kcat failed: ${r.out}`);
  return { seconds, perSecond: n / seconds } satisfies KcatResult;
}

/** Reads a topic's backlog to its end with kcat (`-C -e`), output to a pipe that discards it. */
async function runKcatConsume(broker: Broker, topic: string, n: number): Promise<KcatResult> {
  const started = performance.now();
  const r = await runText("kcat", [
    "-C",
    "-b",
    broker.brokers,
    "-t",
    topic,
    "-o",
    "beginning",
    "-e",
    "-q",
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (r.code !== 0) throw new Error(`kcat -C failed: ${r.out.slice(-500)}`);
  return { seconds, perSecond: n / seconds };
}

/**
 * `deno task consume --from earliest` as a user runs it (consumer.ts, its own process, output to
 * a pipe that this process reads and counts), over a backlog of `n` records, with `client`.
 */
async function runOurConsume(
  broker: Broker,
  topic: string,
  n: number,
  client: KafkaClientName,
): Promise<KcatResult> {
  const started = performance.now();
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      `${REPO}consumer.ts`,
      "--from",
      "earliest",
      "--group",
      `bench-${crypto.randomUUID().slice(0, 8)}`,
      "--max-messages",
      String(n),
      "--timeout",
      "300",
    ],
    env: { KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC: topic, KAFKA_CLIENT: client },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let lines = 0;
  const counting = (async () => {
    for await (const chunk of proc.stdout) {
      for (const b of chunk) if (b === 10) lines++;
    }
  })();
  const err = new Response(proc.stderr).text();
  const status = await proc.status;
  await counting;
  const seconds = (performance.now() - started) / 1000;
  if (status.code !== 0 || lines !== n) {
    throw new Error(`consumer.ts (${client}) printed ${lines} of ${n} lines:\n${await err}`);
  }
  return { seconds, perSecond: n / seconds };
}

// --- 3/4/5. end to end --------------------------------------------------------------------------

interface E2EResult {
  rate: number;
  quotes: number;
  batchMax: number;
  lingerMs: number;
  consumed: number;
  dropped: number;
  /** Quotes per second as received by the producer. */
  achieved: number;
  /** Local receive → Kafka ack, ms. */
  ackP50: number;
  ackP99: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  depthFirst: number;
  depthLast: number;
  depthMax: number;
  growing: boolean;
  sustained: boolean;
  peakRssBytes: number;
  rss: number[];
}

async function runE2E(
  broker: Broker,
  rate: number,
  seconds: number,
  batchMax = 1000,
  lingerMs = 0,
): Promise<E2EResult> {
  const quotes = Math.round(rate * seconds);
  const topic = await freshTopic(broker, `e2e-${rate}`);
  const id = crypto.randomUUID().slice(0, 8);
  const producerTimes = `${CACHE_DIR}e2e-${id}-producer.f64`;
  const consumerTimes = `${CACHE_DIR}e2e-${id}-consumer.f64`;
  const ackTimes = `${CACHE_DIR}e2e-${id}-ack.f64`;
  const timeout = String(Math.ceil(seconds * 4 + 60));
  const consumer = spawnDeno("e2e_consumer.ts", [
    "--brokers",
    broker.brokers,
    "--topic",
    topic,
    "--expect",
    String(quotes),
    "--out",
    consumerTimes,
    "--timeout-s",
    timeout,
  ]);
  const fake = spawnDeno("e2e_fake.ts", ["--rate", String(rate), "--quotes", String(quotes)]);
  let producer: Child | undefined;
  try {
    await consumer.ready;
    const url = await fake.ready;
    producer = spawnDeno("e2e_producer.ts", [
      "--url",
      url,
      "--brokers",
      broker.brokers,
      "--topic",
      topic,
      "--expect",
      String(quotes),
      "--out",
      producerTimes,
      "--out-ack",
      ackTimes,
      "--batch-max",
      String(batchMax),
      "--linger-ms",
      String(lingerMs),
      "--timeout-s",
      timeout,
    ]);
    const p = (await producer.result) as {
      acked: number;
      framesDropped: number;
      depth: number[];
      peakRssBytes: number;
      rss: number[];
    };
    const c = (await consumer.result) as { consumed: number };
    const sent = await readTimes(producerTimes);
    const got = await readTimes(consumerTimes);
    const acks = await readTimes(ackTimes);
    const warm = Math.min(rate, Math.floor(quotes / 5));
    const lat: number[] = [];
    const toAck: number[] = [];
    for (let i = warm; i < quotes; i++) {
      const d = got[i]! - sent[i]!;
      if (Number.isFinite(d)) lat.push(d);
      const a = acks[i]! - sent[i]!;
      if (Number.isFinite(a)) toAck.push(a);
    }
    const sorted = Float64Array.from(lat).sort();
    const ackSorted = Float64Array.from(toAck).sort();
    let first = Number.NaN;
    let last = Number.NaN;
    for (let i = 0; i < quotes; i++) {
      if (Number.isFinite(sent[i]!)) {
        if (Number.isNaN(first)) first = sent[i]!;
        last = sent[i]!;
      }
    }
    const achieved = ((quotes - 1) / (last - first)) * 1000;
    // Queue depth (frames queued + records unacknowledged), 100 ms samples, while quotes flow.
    const flowing = p.depth.slice(Math.ceil(warm / rate * 10), Math.ceil(seconds * 10));
    const third = Math.max(1, Math.floor(flowing.length / 3));
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
    const depthFirst = mean(flowing.slice(0, third));
    const depthLast = mean(flowing.slice(-third));
    const growing = depthLast > 2 * depthFirst + batchMax;
    // Keeping up: no growth, and what is left waiting at the end is under ~100 ms of quotes
    // beyond two batches (a backlog from the start that never drains is not keeping up).
    const sustained = !growing && depthLast <= 2 * batchMax + 0.1 * rate &&
      p.framesDropped === 0 && c.consumed === quotes && achieved >= 0.95 * rate;
    return {
      rate,
      quotes,
      batchMax,
      lingerMs,
      consumed: c.consumed,
      dropped: p.framesDropped,
      achieved,
      ackP50: quantile(ackSorted, 0.5),
      ackP99: quantile(ackSorted, 0.99),
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      p999: quantile(sorted, 0.999),
      max: sorted[sorted.length - 1] ?? Number.NaN,
      depthFirst,
      depthLast,
      depthMax: Math.max(0, ...flowing),
      growing,
      sustained,
      peakRssBytes: p.peakRssBytes,
      rss: p.rss,
    };
  } finally {
    fake.kill();
    consumer.kill();
    producer?.kill();
    await Promise.allSettled([fake.result, consumer.result, producer?.result]);
    await Deno.remove(producerTimes).catch(() => {});
    await Deno.remove(consumerTimes).catch(() => {});
    await Deno.remove(ackTimes).catch(() => {});
  }
}

// --- profile ------------------------------------------------------------------------------------

/** Self time by function of a `--cpu-prof` run, top `n`, as [percent, label]. */
async function profileTop(dir: string, n: number): Promise<[number, string][]> {
  let file: string | undefined;
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".cpuprofile")) file = e.name;
  if (!file) return [];
  const p = JSON.parse(await Deno.readTextFile(`${dir}/${file}`)) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const cf = byId.get(p.samples[i]!)!.callFrame;
    const where = cf.url
      .replace(/^.*\/(node_modules|npm)\/.*?kafkajs\/[^/]+\//, "kafkajs/")
      .replace(/^.*\/@platformatic\/kafka\/[^/]+\//, "@platformatic/kafka/")
      .replace(/^file:\/\/.*?\/(lib|bench|transform)/, "$1").replace(
        /^.*prom-client.*\/lib/,
        "prom-client",
      );
    const key = `${cf.functionName || "(anonymous)"} ${
      where ? `${where}:${cf.lineNumber + 1}` : ""
    }`
      .trim();
    const us = p.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, us]) => [
    (us / total) * 100,
    k,
  ]);
}

// --- report -------------------------------------------------------------------------------------

const f0 = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–";
const f1 = (x: number) => Number.isFinite(x) ? x.toFixed(1) : "–";
const f2 = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "–";
const mb = (b: number) => (b / 2 ** 20).toFixed(0);
const spread = (s: Spread, f: (x: number) => string) =>
  `${f(s.median)} (${f(s.min)}–${f(s.max)}, n=${s.n})`;
const met = (ok: boolean) => ok ? "**met**" : "**missed**";

/** Installs what the benchmarks need (scripts/setup.sh), or exits with its message. */
async function setUp(): Promise<void> {
  const status = await new Deno.Command(`${REPO}scripts/setup.sh`).spawn().status;
  if (!status.success) {
    log("scripts/setup.sh could not install what the benchmarks need (see above)");
    Deno.exit(1);
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  await setUp();
  const info = await machine();
  log(`${QUICK ? "quick" : "full"} run; generating recordings into ${CACHE_DIR}`);
  const recording = await ensureRecording(PLAN.quotes);
  const tuneRecording = await ensureRecording(PLAN.tuneQuotes);

  log("1. transform vs JSON.parse");
  const haveCapture = await Deno.stat(CAPTURE_PATH).then((s) => s.isFile, () => false);
  if (!haveCapture) log(`no real capture at ${CAPTURE_PATH}: its transform row is left out`);
  const capture = haveCapture ? await benchTransform(CAPTURE_PATH) : undefined;
  const generated = await benchTransform(recording, PLAN.generatedFrames);
  log("1b. channel transforms (trades, bars, mixed routed) vs JSON.parse");
  const channels = (await spawnDeno("channel_cost.ts", ["--rounds", QUICK ? "3" : "7"])
    .result) as ChannelCostResult;

  const broker = await brokerUp();
  const sections: string[] = [];
  try {
    const input = await throughputRecording(20, PLAN.quotes);
    const throughputKcat = await kcatInput(input.path, input.quotes);
    log(`2. producer vs kcat: ${input.what}, ${input.quotes} quotes × ${PLAN.produceRuns}`);
    const produced = new Map<KafkaClientName, { ours: ProduceResult[]; kcat: KcatResult[] }>(
      KAFKA_CLIENTS.map((c) => [c, { ours: [], kcat: [] }]),
    );
    // The last topic each client filled: the consumers' backlog in benchmark 6.
    const backlog = new Map<KafkaClientName, string>();
    for (let i = 0; i < PLAN.produceRuns; i++) {
      for (const client of KAFKA_CLIENTS) {
        const k = await runKcat(
          broker,
          await freshTopic(broker, "kcat"),
          throughputKcat,
          input.quotes,
        );
        const topic = await freshTopic(broker, `ours-${client}`);
        const o = (await spawnDeno("produce_recording.ts", [
          "--brokers",
          broker.brokers,
          "--topic",
          topic,
          "--file",
          input.path,
          "--client",
          client,
        ]).result) as ProduceResult;
        if (o.acked !== input.quotes) log(`warning: ${o.acked} of ${input.quotes} acked`);
        log(`  run ${i + 1} ${client}: ours ${f0(o.perSecond)}/s, kcat ${f0(k.perSecond)}/s`);
        produced.get(client)!.ours.push(o);
        produced.get(client)!.kcat.push(k);
        backlog.set(client, topic);
      }
    }
    const ours = produced.get(DEFAULT_KAFKA_CLIENT)!.ours;

    log(`2b. consumer backlog of ${input.quotes} records vs kcat -C -e`);
    const consumed = new Map<KafkaClientName, { ours: KcatResult[]; kcat: KcatResult[] }>(
      KAFKA_CLIENTS.map((c) => [c, { ours: [], kcat: [] }]),
    );
    for (let i = 0; i < PLAN.produceRuns; i++) {
      for (const client of KAFKA_CLIENTS) {
        // Each reads the backlog our default client wrote.
        const topic = backlog.get(DEFAULT_KAFKA_CLIENT)!;
        const k = await runKcatConsume(broker, topic, input.quotes);
        const o = await runOurConsume(broker, topic, input.quotes, client);
        log(`  run ${i + 1} ${client}: ours ${f0(o.perSecond)}/s, kcat ${f0(k.perSecond)}/s`);
        consumed.get(client)!.ours.push(o);
        consumed.get(client)!.kcat.push(k);
      }
    }

    log("   profiling one producer run (--cpu-prof)");
    const profDir = await Deno.makeTempDir({ prefix: "bench-prof-" });
    await spawnDeno("produce_recording.ts", [
      "--brokers",
      broker.brokers,
      "--topic",
      await freshTopic(broker, "prof"),
      "--file",
      input.path,
    ], ["--cpu-prof", `--cpu-prof-dir=${profDir}`]).result;
    const profile = await profileTop(profDir, 15);
    await Deno.remove(profDir, { recursive: true });

    log(`3. end to end at ${PLAN.rates.join(", ")} quotes/s`);
    const e2e = new Map<number, E2EResult[]>();
    for (let run = 0; run < PLAN.e2eRuns; run++) {
      for (const rate of PLAN.rates) {
        const r = await runE2E(broker, rate, PLAN.e2eSeconds);
        log(
          `  ${rate}/s: p50 ${f1(r.p50)} p99 ${f1(r.p99)} p99.9 ${f1(r.p999)} ms, achieved ${
            f0(r.achieved)
          }/s, depth ${f0(r.depthFirst)}→${f0(r.depthLast)}, sustained ${r.sustained}`,
        );
        e2e.set(rate, [...(e2e.get(rate) ?? []), r]);
      }
    }

    log(`4. memory: ${PLAN.memorySeconds} s at 5,000 quotes/s`);
    const memory = await runE2E(broker, 5_000, PLAN.memorySeconds);

    log("5. tuning batch size and linger");
    const tune: { batch: number; linger: number; perSecond: number; p99: number; p50: number }[] =
      [];
    for (const [batch, linger] of PLAN.tune) {
      const t = (await spawnDeno("produce_recording.ts", [
        "--brokers",
        broker.brokers,
        "--topic",
        await freshTopic(broker, "tune"),
        "--file",
        tuneRecording,
        "--batch-max",
        String(batch),
        "--linger-ms",
        String(linger),
      ]).result) as ProduceResult;
      const l = await runE2E(broker, 5_000, PLAN.tuneSeconds, batch, linger);
      log(`  batch ${batch} linger ${linger}: ${f0(t.perSecond)}/s, p99 ${f1(l.p99)} ms`);
      tune.push({ batch, linger, perSecond: t.perSecond, p99: l.p99, p50: l.p50 });
    }

    sections.push(...report({
      capture,
      generated,
      channels,
      input,
      produced,
      consumed,
      ours,
      profile,
      e2e,
      memory,
      tune,
    }));
  } finally {
    await brokerDown(broker);
  }
  // Its own two brokers (with and without the JMX exporter), after ours is down.
  log("6. broker: the JMX exporter's CPU cost at 20,000 records/s");
  const exporterArgs = QUICK ? ["--rounds", "3", "--seconds", "6"] : [];
  const exporter = await spawnDeno("broker_exporter.ts", exporterArgs).result;
  sections.push(...exporterReport(exporter as ExporterResult));
  const minutes = (performance.now() - started) / 60_000;
  const head = [
    "# Benchmarks",
    "",
    `Written by \`deno task bench${QUICK ? " --quick" : ""}\` (bench/run.ts) in ${
      minutes.toFixed(1)
    } min. Every figure is measured against its reference in the same run, as the median of ` +
    "n runs with the min–max range in brackets. The machine is shared with other engineers' " +
    "test runs, so absolute numbers are noisy; the ratios are the figures to compare.",
    "",
    "| | |",
    "|---|---|",
    ...Object.entries(info).map(([k, v]) => `| ${k} | ${v} |`),
    "",
  ];
  // The hand-written reading of the profiles, read now (it may be edited while the run goes).
  const findings = await Deno.readTextFile(`${BENCH}findings.md`).catch(() => "");
  // The store's section, measured by bench/store_bench.ts (its own run: three servers).
  const store = await Deno.readTextFile(`${BENCH}store.md`).catch(() => "");
  await Deno.writeTextFile(flags.out, [...head, ...sections, store, findings].join("\n") + "\n");
  log(`wrote ${flags.out}`);
}

interface Report {
  /** Absent when the real capture is not beside the clone. */
  capture?: TransformCostResult;
  generated: TransformCostResult;
  /** Per channel transform (bench/channel_cost.ts). */
  channels: ChannelCostResult;
  input: { quotes: number; what: string };
  produced: Map<KafkaClientName, { ours: ProduceResult[]; kcat: KcatResult[] }>;
  consumed: Map<KafkaClientName, { ours: KcatResult[]; kcat: KcatResult[] }>;
  /** The default client's producer runs. */
  ours: ProduceResult[];
  profile: [number, string][];
  e2e: Map<number, E2EResult[]>;
  memory: E2EResult;
  tune: { batch: number; linger: number; perSecond: number; p99: number; p50: number }[];
}

const CHANNEL_ROWS: readonly [keyof ChannelCostResult, string][] = [
  ["quotes", "feed quotes (XQ, spread)"],
  ["trades", "feed trades (XT)"],
  ["bars", "feed minute bars (XA)"],
  ["mixedRouted", "feed mixed XQ+XT+XA, routed"],
];

function report(r: Report): string[] {
  const out: string[] = [];
  // 1.
  const tRows = [r.capture, r.generated].filter((t) => t !== undefined).map((t) => {
    const ratio = spreadOf(t.ratios);
    return [
      t === r.capture ? "real capture (2023-07-26)" : "generated (24 pairs)",
      `${f0(t.frames)} / ${f0(t.events)}`,
      spread(spreadOf(t.parseNs), f0),
      spread(spreadOf(t.transformNs), f0),
      spread(ratio, f2),
      met(ratio.median <= TARGETS.transformRatio),
    ];
  });
  out.push(
    "## 1. Transform cost against the JSON.parse floor",
    "",
    "ns per event, CPU time of the process, fastest of 3 alternating passes per round; the ratio " +
      "is per round. Frames are decoded into flat strings as a WebSocket delivers them. Target: " +
      `at most ${TARGETS.transformRatio}×.`,
    "",
    "| input | frames / events | JSON.parse ns/event | transform ns/event | ratio | target |",
    "|---|---|---|---|---|---|",
    ...tRows.map((row) => `| ${row.join(" | ")} |`),
    ...CHANNEL_ROWS.map(([key, what]) => {
      const t = r.channels[key];
      return `| ${what} | ${f0(t.frames)} / ${f0(t.events)} | ${
        spread(spreadOf(t.parseNs), f0)
      } | ${spread(spreadOf(t.transformNs), f0)} | ${spread(spreadOf(t.ratios), f2)} | – |`;
    }),
    "",
    "The last four rows: bench/channel_cost.ts on the seeded multi-channel feed " +
      "(lib/polygon/feed.ts): quotes through the spread transform, trades (XT) and minute bars " +
      "(XA) through their exact transforms, and mixed frames through the router and all three.",
    "",
  );
  // 2.
  const pairRows = (
    m: Map<KafkaClientName, { ours: { perSecond: number }[]; kcat: { perSecond: number }[] }>,
    target: number,
  ) =>
    [...m].map(([client, runs]) => {
      const ratio = spreadOf(runs.ours.map((o, i) => o.perSecond / runs.kcat[i]!.perSecond));
      return `| ${client}${client === DEFAULT_KAFKA_CLIENT ? " (default)" : ""} | ${
        spread(spreadOf(runs.ours.map((o) => o.perSecond)), f0)
      } | ${spread(spreadOf(runs.kcat.map((k) => k.perSecond)), f0)} | ${spread(ratio, f2)} | ${
        met(ratio.median >= target)
      } |`;
    });
  out.push(
    "## 2. Producer throughput into the real broker",
    "",
    `${f0(r.input.quotes)} quotes (${r.input.what}) → replay → transform → ` +
      "Kafka sink (idempotent, acks=all, batch 1000, linger 0 ms (the defaults), " +
      "producer metrics on), as `deno task replay FILE --to kafka` runs it, for each client, " +
      "against kcat producing the same record values with keys and the schema header " +
      "(`-X acks=all -X enable.idempotence=true -X partitioner=murmur2_random -K '\\t' " +
      "-H schema-version=1`), each into a fresh topic of 6 partitions, alternating, on the same " +
      "broker. Both include their process start. " +
      `Target: ours/kcat ≥ ${TARGETS.producerRatio}.`,
    "",
    "| client | ours records acked/s | kcat records/s | ratio ours/kcat | target |",
    "|---|---|---|---|---|",
    ...pairRows(r.produced, TARGETS.producerRatio),
    "",
    "## 2b. Consumer throughput over a backlog",
    "",
    `\`deno task consume --from earliest --max-messages ${r.input.quotes}\` (consumer.ts in its ` +
      "own process, fresh group, JSON lines into a pipe this process reads) against " +
      "`kcat -C -o beginning -e` on the same topic (written by our default producer in " +
      `benchmark 2), alternating. Target: ours/kcat ≥ ${TARGETS.consumerRatio}, aim 0.75.`,
    "",
    "| client | ours records/s | kcat records/s | ratio ours/kcat | target |",
    "|---|---|---|---|---|",
    ...pairRows(r.consumed, TARGETS.consumerRatio),
    "",
    "CPU profile of one producer run (`deno run --cpu-prof`, self time, top 15):",
    "",
    "| self % | function |",
    "|---|---|",
    ...r.profile.map(([pct, name]) => `| ${pct.toFixed(1)} | \`${name}\` |`),
    "",
  );
  // 3.
  const rows: string[] = [];
  let highest = 0;
  for (const [rate, runs] of r.e2e) {
    const s = (k: keyof E2EResult) => spreadOf(runs.map((x) => x[k] as number));
    const sustained = runs.filter((x) => x.sustained).length;
    if (sustained * 2 > runs.length) highest = Math.max(highest, rate);
    rows.push(
      `| ${f0(rate)} | ${spread(s("p50"), f1)} | ${spread(s("p99"), f1)} | ${
        spread(s("p999"), f1)
      } | ${f1(s("ackP50").median)} / ${f1(s("ackP99").median)} | ${spread(s("achieved"), f0)} | ${
        f0(s("depthFirst").median)
      } → ${f0(s("depthLast").median)} (max ${
        f0(s("depthMax").max)
      }) | ${sustained}/${runs.length} |`,
    );
  }
  const p99At5000 = spreadOf((r.e2e.get(5_000) ?? []).map((x) => x.p99)).median;
  out.push(
    "## 3. End to end through a real WebSocket",
    "",
    "Fake Polygon server (own process) → WebSocket → Polygon client → queue → transform → " +
      "KafkaSink → broker → KafkaSource consumer (own process, fresh group). Latency is from " +
      "the producer's local receive of the frame to the consumer's receive of the record, on " +
      "the one host clock, ms; the first second is warm-up and not counted. Queue depth is " +
      "frames queued plus records unacknowledged, sampled every 100 ms, mean of the first and " +
      "last third of the run. Sustained: achieved ≥ 95 % of the rate, all records consumed, " +
      "no drops, depth not growing (last third ≤ 2 × first third + one batch) and left at " +
      "most two batches plus 100 ms of quotes. Receive → ack is the producer's share (Kafka " +
      "acknowledged the batch); the rest is the consumer's fetch and commit.",
    "",
    "| quotes/s | p50 ms | p99 ms | p99.9 ms | of which receive → ack p50 / p99 ms | achieved/s | depth first → last third | sustained |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    `- p99 at 5,000/s: ${f1(p99At5000)} ms, target < ${TARGETS.p99At5000Ms} ms: ${
      met(p99At5000 < TARGETS.p99At5000Ms)
    }`,
    `- highest rate sustained: ${f0(highest)}/s, target ≥ ${f0(TARGETS.sustained)}/s: ${
      met(highest >= TARGETS.sustained)
    }`,
    "",
  );
  // 4.
  const peak2 = spreadOf(r.ours.map((o) => o.peakRssBytes));
  const m = r.memory;
  const tenth = Math.max(1, Math.floor(m.rss.length / 10));
  const early = Math.max(...m.rss.slice(tenth, 3 * tenth));
  const late = Math.max(...m.rss.slice(-2 * tenth));
  const flat = late <= early * 1.1 + 10 * 2 ** 20;
  out.push(
    "## 4. Producer memory",
    "",
    `| run | peak RSS MB | RSS early → late MB | target (flat, < ${TARGETS.rssMb} MB) |`,
    "|---|---|---|---|",
    `| benchmark 2 (${f0(r.ours[0]?.acked ?? 0)} quotes as fast as possible) | ${
      spread({
        ...peak2,
        median: peak2.median / 2 ** 20,
        min: peak2.min / 2 ** 20,
        max: peak2.max / 2 ** 20,
      }, f0)
    } | ${mb(Math.max(...(r.ours[0]?.rss ?? [0]).slice(0, 8)))} → ${
      mb(Math.max(...(r.ours[0]?.rss ?? [0]).slice(-8)))
    } | ${met(peak2.max < TARGETS.rssMb * 2 ** 20)} |`,
    `| ${f0(m.quotes / 5_000)} s at 5,000/s (p99 ${f1(m.p99)} ms, sustained ${m.sustained}) | ${
      mb(m.peakRssBytes)
    } | ${mb(early)} → ${mb(late)} (${flat ? "flat" : "growing"}) | ${
      met(flat && m.peakRssBytes < TARGETS.rssMb * 2 ** 20)
    } |`,
    "",
    "Early: the highest sample in the second and third tenths of the run; late: in the last two tenths.",
    "",
  );
  // 5.
  out.push(
    "## 5. Tuning: batch size and linger",
    "",
    "Throughput: replay of the smaller generated recording into the broker, as in 2. Latency: " +
      "end to end at 5,000/s as in 3. One run per cell.",
    "",
    "| --batch-max | --linger-ms | records acked/s | p50 ms at 5,000/s | p99 ms at 5,000/s |",
    "|---|---|---|---|---|",
    ...r.tune.map((t) =>
      `| ${t.batch} | ${t.linger} | ${f0(t.perSecond)} | ${f1(t.p50)} | ${f1(t.p99)} |`
    ),
    "",
  );
  return out;
}

if (import.meta.main) await main();
