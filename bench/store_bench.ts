/**
 * The history store's benchmark: `deno task store` over a backlog of 215,900 records (the real
 * capture × 20) into QuestDB and into PostgreSQL, against `deno task consume --from earliest` into
 * a pipe counted and thrown away, over the same backlog, alternating. Target: store/consume ≥ 0.8,
 * so that the database is not the bottleneck. Peak RSS of each process is sampled from /proc.
 *
 * Two CPU layouts, each measured in full:
 * - shared: every process and server anywhere on the machine's cores. On a 2-core machine the
 *   store's run then also pays for the database's own CPU (QuestDB ~1-1.5 CPU-s over this
 *   backlog), which the consumer's run does not: it measures whether pipeline and database fit
 *   on one small machine together.
 * - servers apart: Kafka, the databases and this observer pinned to the last core (`taskset`),
 *   the measured process to the others, as when the database runs on its own machine (Aiven, a
 *   QuestDB server). Both processes get the same CPU, and a database that cannot keep up with
 *   the pipeline still shows: the store then falls behind consume.
 * Starts its own Kafka broker, QuestDB and PostgreSQL (scripts/*_local.sh, removed at the end),
 * writes bench/store.md, and replaces the store section of BENCHMARKS.md (bench/run.ts includes
 * bench/store.md when it rewrites the file).
 *
 *   deno run -A bench/store_bench.ts [--runs N]
 *
 * Permissions: -A (child processes, the server scripts, files, network on 127.0.0.1).
 */
import { parseArgs } from "node:util";
import { Admin } from "@platformatic/kafka";
import { openKafka } from "../lib/kafka/open.ts";
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";
import { benchKafkaConfig, CAPTURE_PATH } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "2" } },
});
const RUNS = Number(values.runs);
const REPO = new URL("../", import.meta.url).pathname;
const TIMES = 20;
const START = "<!-- store benchmark: bench/store_bench.ts -->";
const END = "<!-- end of store benchmark -->";

function log(line: string): void {
  console.error(`store-bench: ${line}`);
}

async function script(name: string, args: string[]): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [`${REPO}scripts/${name}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${name} ${args[0]} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

function envValue(text: string, key: string): string {
  const m = new RegExp(`^${key}=(.*)$`, "m").exec(text);
  if (!m) throw new Error(`no ${key} in:\n${text}`);
  return m[1]!;
}

/** Peak VmRSS of a process, sampled every 100 ms until `stop()`, MB. */
function peakRssOf(pid: number): { stop(): number } {
  let peak = 0;
  const sample = () => {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peak = Math.max(peak, kb / 1024);
    } catch {
      // exited
    }
  };
  const id = setInterval(sample, 100);
  return {
    stop: () => {
      sample();
      clearInterval(id);
      return peak;
    },
  };
}

/** The backlog: the capture's records × 20 in a topic that keeps records of any age. */
async function fillTopic(brokers: string): Promise<{ topic: string; n: number }> {
  const topic = `store-bench-${crypto.randomUUID().slice(0, 8)}`;
  const admin = new Admin({ clientId: "store-bench", bootstrapBrokers: brokers.split(",") });
  await admin.createTopics({
    topics: [topic],
    partitions: 6,
    replicas: 1,
    configs: [{ name: "retention.ms", value: "-1" }],
  });
  await admin.close();
  const transform = createSpreadTransform();
  const records: SpreadRecord[] = [];
  for (const line of Deno.readTextFileSync(CAPTURE_PATH).split("\n")) {
    if (line) transform.frame(line, records);
  }
  const kafka = await openKafka(benchKafkaConfig(brokers, topic), { log: () => {} });
  const sink = kafka.sink();
  for (let i = 0; i < TIMES; i++) {
    for (let j = 0; j < records.length; j += 1000) {
      await sink.send(topic, records.slice(j, j + 1000));
    }
  }
  await sink.close();
  await kafka.close();
  return { topic, n: records.length * TIMES };
}

interface Run {
  seconds: number;
  perSecond: number;
  peakMb: number;
}

/** `taskset`'s CPU list for the measured processes, or none (any core). */
let measuredCpus: string | undefined;

/** Deno with `args`, on the measured processes' cores when the servers are kept apart. */
function denoCommand(args: string[], options: Deno.CommandOptions): Deno.Command {
  return measuredCpus
    ? new Deno.Command("taskset", {
      ...options,
      args: ["-c", measuredCpus, Deno.execPath(), ...args],
    })
    : new Deno.Command(Deno.execPath(), { ...options, args });
}

async function consumeRun(brokers: string, topic: string, n: number): Promise<Run> {
  const started = performance.now();
  const child = denoCommand([
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-env",
    `${REPO}consumer.ts`,
    "--from",
    "earliest",
    "--group",
    `bench-consume-${crypto.randomUUID().slice(0, 8)}`,
    "--max-messages",
    String(n),
    "--timeout",
    "600",
  ], {
    env: { KAFKA_BROKERS: brokers, KAFKA_TOPIC: topic, NO_COLOR: "1" },
    clearEnv: true,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const rss = peakRssOf(child.pid);
  const err = new Response(child.stderr).text();
  const status = await child.status;
  const peakMb = rss.stop();
  const seconds = (performance.now() - started) / 1000;
  if (status.code !== 0) throw new Error(`consumer.ts failed:\n${await err}`);
  return { seconds, perSecond: n / seconds, peakMb };
}

async function storeRun(
  brokers: string,
  topic: string,
  n: number,
  env: Record<string, string>,
  count: (table: string) => Promise<number>,
): Promise<Run> {
  const table = `bench_${crypto.randomUUID().slice(0, 8)}`;
  const group = `bench-store-${crypto.randomUUID().slice(0, 8)}`;
  const kafka = await openKafka(benchKafkaConfig(brokers, topic), { log: () => {} });
  const started = performance.now();
  const child = denoCommand([
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    `${REPO}store.ts`,
    "--from",
    "earliest",
    "--group",
    group,
    "--table",
    table,
  ], {
    env: { KAFKA_BROKERS: brokers, KAFKA_TOPIC: topic, NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const rss = peakRssOf(child.pid);
  const err = new Response(child.stderr).text();
  // Done when the group has committed every offset: the store commits only what the database
  // acknowledged, so that is every row written (counted below once the database shows them all).
  let lag = n;
  const deadline = Date.now() + 600_000;
  while (lag > 0) {
    if (Date.now() > deadline) {
      throw new Error(`the store left a lag of ${lag} of ${n} after 600 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    lag = await kafka.admin.lag(group, topic).then(
      (ps) => ps.length === 0 ? n : ps.reduce((a, p) => a + p.lag, 0),
      () => n,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const peakMb = rss.stop();
  await kafka.close();
  let have = 0;
  while (have < n) {
    if (Date.now() > deadline) throw new Error(`the table shows ${have} of ${n} rows`);
    have = await count(table).catch(() => 0);
    if (have < n) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill("SIGTERM");
  const status = await child.status;
  if (status.code !== 0) throw new Error(`store.ts exited ${status.code}:\n${await err}`);
  return { seconds, perSecond: n / seconds, peakMb };
}

/** Pins `pid` and all its threads to `cpus` (a `taskset -c` list); false when it could not. */
async function pin(pid: number, cpus: string): Promise<boolean> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-c", "-p", cpus, String(pid)],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  return out?.success ?? false;
}

/** The servers' processes: the broker, QuestDB, and PostgreSQL's postmaster with its children. */
async function serverPids(kafkaDir: string, questDir: string, pgDir: string): Promise<number[]> {
  const read = (path: string) =>
    Deno.readTextFile(path).then((t) => Number(t.split("\n")[0]), () => Number.NaN);
  const postmaster = await read(`${pgDir}/data/postmaster.pid`);
  const children = await new Deno.Command("pgrep", { args: ["-P", String(postmaster)] }).output()
    .then(
      (o) => new TextDecoder().decode(o.stdout).split("\n").filter(Boolean).map(Number),
      () => [],
    );
  const pids = [
    await read(`${kafkaDir}/kafka.pid`),
    await read(`${questDir}/questdb.pid`),
    postmaster,
    ...children,
  ];
  return pids.filter((p) => Number.isInteger(p) && p > 0);
}

/** The machine's load average over 1, 5 and 15 minutes (the machine may be shared). */
function loadAverage(): string {
  return Deno.loadavg().map((x) => x.toFixed(2)).join(" / ");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function fmt(runs: Run[]): string {
  const rates = runs.map((r) => r.perSecond);
  return `${Math.round(median(rates)).toLocaleString("en-US")}/s ` +
    `[${Math.round(Math.min(...rates)).toLocaleString("en-US")}–` +
    `${Math.round(Math.max(...rates)).toLocaleString("en-US")}]`;
}

const tmp = await Deno.makeTempDir({ prefix: "store-bench-" });
// PostgreSQL runs as the postgres user, who must reach its folder inside.
await Deno.chmod(tmp, 0o755);
const kafkaDir = `${tmp}/kafka`;
const questDir = `${tmp}/questdb`;
const pgDir = `${tmp}/postgres`;
const started = Date.now();
const loadAtStart = loadAverage();
try {
  log("starting Kafka, QuestDB and PostgreSQL");
  const [k, q, p] = await Promise.all([
    script("kafka_local.sh", ["up", kafkaDir, "--owner-pid", String(Deno.pid)]),
    script("questdb_local.sh", ["up", questDir, "--owner-pid", String(Deno.pid)]),
    script("postgres_local.sh", ["up", pgDir, "--owner-pid", String(Deno.pid)]),
  ]);
  const brokers = envValue(k, "KAFKA_PLAINTEXT");
  const questdbUrl = envValue(q, "QUESTDB_URL");
  const postgresUrl = envValue(p, "POSTGRES_URL");
  const { topic, n } = await fillTopic(brokers);
  log(`topic ${topic}: ${n} records`);
  const { default: postgres } = await import("postgres");
  const sql = postgres(postgresUrl, { max: 1, onnotice: () => {} });
  const questCount = async (table: string) => {
    const r = await fetch(
      `${questdbUrl}/exec?query=${encodeURIComponent(`SELECT count() FROM ${table}`)}`,
    );
    const body = await r.json();
    return body.error ? 0 : Number(body.dataset[0][0]);
  };
  const pgCount = async (table: string) => {
    const r = await sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`);
    return r[0]!.n as number;
  };
  /** The databases, in the order each round stores into them. */
  const databases: {
    name: string;
    env: Record<string, string>;
    count: (table: string) => Promise<number>;
  }[] = [
    {
      name: "QuestDB",
      env: { STORE_DB: "questdb", QUESTDB_URL: questdbUrl },
      count: questCount,
    },
    {
      name: "PostgreSQL",
      env: { STORE_DB: "postgres", POSTGRES_URL: postgresUrl },
      count: pgCount,
    },
  ];
  /** One CPU layout's runs: consume's, and each database's in the order of `databases`. */
  interface Measured {
    layout: string;
    consume: Run[];
    stores: Run[][];
  }
  const cores = navigator.hardwareConcurrency;
  const layouts: { name: string; cpus?: string }[] = [{ name: "shared" }];
  if (cores >= 2) {
    layouts.push({ name: "servers apart", cpus: cores === 2 ? "0" : `0-${cores - 2}` });
  }
  const measured: Measured[] = [];
  for (const layout of layouts) {
    if (layout.cpus) {
      const last = String(cores - 1);
      const pinned = await Promise.all(
        [...await serverPids(kafkaDir, questDir, pgDir), Deno.pid].map((pid) => pin(pid, last)),
      );
      if (pinned.includes(false)) {
        log("taskset could not pin the servers: the layout with the servers apart is left out");
        break;
      }
      measuredCpus = layout.cpus;
      log(`servers and this observer on core ${last}, measured processes on ${layout.cpus}`);
    }
    const m: Measured = { layout: layout.name, consume: [], stores: databases.map(() => []) };
    measured.push(m);
    for (let i = 0; i < RUNS; i++) {
      m.consume.push(await consumeRun(brokers, topic, n));
      log(`${m.layout}: consume ${m.consume.at(-1)!.perSecond.toFixed(0)}/s`);
      for (const [d, db] of databases.entries()) {
        const run = await storeRun(brokers, topic, n, db.env, db.count);
        m.stores[d]!.push(run);
        log(`${m.layout}: store ${db.name.toLowerCase()} ${run.perSecond.toFixed(0)}/s`);
      }
    }
  }
  await sql.end();
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const peak = (runs: Run[]) => `${Math.round(Math.max(...runs.map((r) => r.peakMb)))} MB`;
  const rows: string[] = [];
  for (const m of measured) {
    const base = median(m.consume.map((r) => r.perSecond));
    const ratio = (runs: Run[]) => median(runs.map((r) => r.perSecond)) / base;
    const met = (runs: Run[]) => ratio(runs) >= 0.8 ? "met" : "**missed**";
    rows.push(
      `| ${m.layout} | \`deno task consume\` > pipe | ${fmt(m.consume)} | 1 | | ${
        peak(m.consume)
      } |`,
      ...databases.map((db, d) => {
        const runs = m.stores[d]!;
        return `| ${m.layout} | \`deno task store\` → ${db.name} | ${fmt(runs)} | ${
          ratio(runs).toFixed(2)
        } | ${met(runs)} | ${peak(runs)} |`;
      }),
    );
  }
  const section = [
    START,
    "## Store: Kafka backlog → QuestDB / PostgreSQL vs `deno task consume`",
    "",
    `${n.toLocaleString("en-US")} records (the real capture × ${TIMES}) in a 6-partition topic; ` +
    "each process starts in a fresh group from the earliest offset, its own process, alternating, " +
    `${RUNS} runs each (median [min–max]). The time runs from spawn to the group's last offset ` +
    "committed (store: it commits only what the database acknowledged; every row is then counted " +
    "in the table) or the last line printed (consume, into a pipe thrown away), so both include " +
    "starting and joining the group. Peak RSS sampled from /proc every 100 ms. Target: store/consume ≥ 0.8. " +
    `QuestDB 9.2.2 (ILP over HTTP, 40,000 records per request), PostgreSQL 15 (unnest + ON ` +
    `CONFLICT, 10,000 per transaction), two batches in flight, local, on the same ${cores}-core ` +
    `machine. Two CPU layouts: *shared*, every process anywhere (the store's run also pays for ` +
    `the database's CPU, the consumer's does not); *servers apart*, Kafka, both databases and ` +
    `the observer on the last core, the measured process on the others (\`taskset\`), as with ` +
    `a database on its own machine: both processes get the same CPU, and a database that cannot ` +
    `keep up still shows as a lower ratio. Load average (1, 5, 15 min) ${loadAtStart} at the ` +
    `start, ${loadAverage()} at the end. \`deno run -A bench/store_bench.ts --runs ${RUNS}\`, ` +
    `${minutes} min, ${new Date().toISOString().slice(0, 10)}.`,
    "",
    "| CPU layout | process | records/s | ratio to consume | target | peak RSS |",
    "|---|---|---|---|---|---|",
    ...rows,
    "",
    END,
  ].join("\n");
  await Deno.writeTextFile(`${REPO}bench/store.md`, section + "\n");
  const path = `${REPO}BENCHMARKS.md`;
  const text = await Deno.readTextFile(path).catch(() => "");
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  const next = a >= 0 && b > a
    ? text.slice(0, a) + section + text.slice(b + END.length)
    : text.trimEnd() + "\n\n" + section + "\n";
  await Deno.writeTextFile(path, next);
  console.log(section);
} finally {
  await Promise.allSettled([
    script("kafka_local.sh", ["down", kafkaDir]),
    script("questdb_local.sh", ["down", questDir]),
    script("postgres_local.sh", ["down", pgDir]),
  ]);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
