/**
 * Benchmark: what the Prometheus JMX exporter agent costs the broker. Two local brokers run side
 * by side (scripts/kafka_local.sh): one plain (`KAFKA_JMX_EXPORTER=off`), one with the agent and
 * its rules (scripts/kafka/jmx_exporter.yml), whose /metrics is fetched every `--scrape-s`
 * seconds for the whole run, as Prometheus would. Each broker in turn takes `--rate` spread
 * records per second from kcat (idempotent, acks=all, keyed by symbol, ~80 bytes: what the
 * producer sends for 20,000 quotes/s), and its CPU time is read from /proc over the middle of
 * each run, after one warm-up run each. The order alternates every round, so drift on a shared
 * machine hits both alike. Because two JVMs on a busy machine differ by more than the exporter
 * costs, the cost of one scrape is also measured on its own (the idle exporter broker's CPU with
 * and without 4 scrapes a second) and set against the plain broker's CPU at `--rate`.
 *
 *   deno run -A bench/broker_exporter.ts [--rate 20000] [--seconds 10] [--rounds 5] [--scrape-s 1]
 *
 * Prints a table and one `BENCH_RESULT {...}` line (see {@linkcode ExporterResult}).
 * Permissions: -A (the broker script, kcat, /proc, the Kafka admin client on 127.0.0.1).
 */
import { parseArgs } from "node:util";
import { openKafka } from "../lib/kafka/open.ts";
import { benchKafkaConfig, emitResult, quantile } from "./common.ts";

/** What the benchmark found. */
export interface ExporterResult {
  rate: number;
  seconds: number;
  rounds: number;
  scrapeS: number;
  /** Broker CPU, % of one core, per round: without and with the exporter. */
  plainCpu: number[];
  exporterCpu: number[];
  /** Median with / median without, minus 1, in %: the direct comparison (noisy on a shared
   * machine: two JVMs, other work). */
  overheadPct: number;
  /** Broker CPU seconds one scrape costs, measured on the idle exporter broker. */
  cpuPerScrapeS: number;
  /** That cost as % of the plain broker's CPU at `rate`, scraped every 1 s and every 15 s. */
  derivedOverheadPct1s: number;
  derivedOverheadPct15s: number;
  /** Scrapes of the exporter during the run, and their time (ms) and size (bytes). */
  scrapes: number;
  scrapeP50Ms: number;
  scrapeP99Ms: number;
  scrapeBytes: number;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
/** The target: the exporter adds under this share to the broker's CPU. */
export const EXPORTER_TARGET_PCT = 5;

/** The BENCHMARKS.md section for one result. */
export function exporterReport(r: ExporterResult): string[] {
  const med = (xs: number[]) => median(xs).toFixed(1);
  const range = (xs: number[]) => `[${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]`;
  return [
    "## 6. Broker: the JMX exporter's CPU cost",
    "",
    `The local broker with and without the Prometheus JMX exporter agent (bench/broker_exporter.ts), ` +
    `each taking ${
      r.rate.toLocaleString("en")
    } spread records/s from kcat (idempotent, acks=all) ` +
    `for ${r.seconds} s per round, ${r.rounds} rounds in alternating order, broker CPU from /proc ` +
    "(% of one core). The cost of one scrape is measured on the idle exporter broker (CPU with and " +
    "without 4 scrapes/s) and does not depend on the message rate.",
    "",
    "| | broker CPU % | exporter's share |",
    "|---|---|---|",
    `| plain broker | ${med(r.plainCpu)} ${range(r.plainCpu)} | |`,
    `| with the exporter, scraped every ${r.scrapeS} s (direct comparison) | ${
      med(r.exporterCpu)
    } ${range(r.exporterCpu)} | ${r.overheadPct.toFixed(1)} % |`,
    `| one scrape: ${(r.cpuPerScrapeS * 1000).toFixed(1)} ms of CPU, scraped every 1 s | | ${
      r.derivedOverheadPct1s.toFixed(1)
    } % |`,
    `| one scrape, scraped every 15 s (the interval dashboards/README.md sets) | | ${
      r.derivedOverheadPct15s.toFixed(1)
    } % |`,
    "",
    `- target: under ${EXPORTER_TARGET_PCT} % at 20,000/s: ${
      r.derivedOverheadPct15s < EXPORTER_TARGET_PCT ? "met" : "NOT met"
    } at a 15 s scrape interval, ${
      r.derivedOverheadPct1s < EXPORTER_TARGET_PCT ? "met" : "not met"
    } at 1 s. The direct comparison of two JVMs on a shared machine is within its own noise.`,
    `- scrapes: ${r.scrapes}, ${r.scrapeBytes.toLocaleString("en")} bytes each, p50 ${
      r.scrapeP50Ms.toFixed(0)
    } ms, p99 ${r.scrapeP99Ms.toFixed(0)} ms`,
    "",
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rate: { type: "string", default: "20000" },
      seconds: { type: "string", default: "10" },
      rounds: { type: "string", default: "5" },
      "scrape-s": { type: "string", default: "1" },
    },
  });
  const RATE = Number(values.rate);
  const SECONDS = Number(values.seconds);
  const ROUNDS = Number(values.rounds);
  const SCRAPE_S = Number(values["scrape-s"]);
  const SCRIPT = new URL("../scripts/kafka_local.sh", import.meta.url).pathname;
  const CLK_TCK = 100;
  const SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "ADA-USD", "XRP-USD", "LTC-USD"];

  function log(line: string): void {
    console.error(`broker_exporter: ${line}`);
  }

  interface Broker {
    name: string;
    dir: string;
    brokers: string;
    metrics?: string;
    pid: number;
    topic: string;
  }

  async function up(name: string, exporter: boolean): Promise<Broker> {
    const dir = await Deno.makeTempDir({ prefix: `bench-exporter-${name}-` });
    const out = await new Deno.Command("bash", {
      args: [SCRIPT, "up", dir, "--owner-pid", String(Deno.pid)],
      env: { KAFKA_JMX_EXPORTER: exporter ? "on" : "off" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const brokers = /^KAFKA_PLAINTEXT=(\S+)$/m.exec(text)?.[1];
    if (!out.success || !brokers) {
      throw new Error(`Cannot start the ${name} broker: ${new TextDecoder().decode(out.stderr)}`);
    }
    const metrics = /^KAFKA_METRICS=(\S+)$/m.exec(text)?.[1];
    const pid = Number((await Deno.readTextFile(`${dir}/kafka.pid`)).trim());
    const topic = `exporter-${crypto.randomUUID().slice(0, 8)}`;
    const kafka = await openKafka(benchKafkaConfig(brokers, topic), { log: () => {} });
    try {
      await kafka.admin.ensureTopic(topic, { partitions: 6, replicationFactor: 1 });
    } finally {
      await kafka.close();
    }
    return { name, dir, brokers, pid, topic, ...(metrics ? { metrics } : {}) };
  }

  async function down(b: Broker): Promise<void> {
    await new Deno.Command("bash", { args: [SCRIPT, "down", b.dir], stderr: "null" }).output();
  }

  /** The broker JVM's CPU time so far, in seconds (utime + stime from /proc). */
  async function cpuSeconds(pid: number): Promise<number> {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  }

  /** Sends RATE records/s for SECONDS to `b` through kcat; returns the broker's CPU % meanwhile. */
  async function load(b: Broker): Promise<number> {
    const kcat = new Deno.Command("kcat", {
      args: [
        "-P",
        "-b",
        b.brokers,
        "-t",
        b.topic,
        "-K",
        "\t",
        "-X",
        "enable.idempotence=true",
        "-X",
        "acks=all",
        "-X",
        "linger.ms=5",
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const writer = kcat.stdin.getWriter();
    const encoder = new TextEncoder();
    const tickMs = 50;
    const perTick = Math.round(RATE * tickMs / 1000);
    const started = performance.now();
    // Measure the middle: skip the first and last second.
    let cpuFrom: number | undefined;
    let wallFrom = 0;
    let cpuTo = 0;
    let wallTo = 0;
    let sent = 0;
    for (let tick = 0; tick * tickMs < SECONDS * 1000; tick++) {
      const lines: string[] = [];
      const ts = new Date().toISOString();
      for (let i = 0; i < perTick; i++) {
        const symbol = SYMBOLS[(sent + i) % SYMBOLS.length]!;
        lines.push(`${symbol}\t{"timestamp":"${ts}","symbol":"${symbol}","spread":0.0${sent + i}}`);
      }
      sent += perTick;
      await writer.write(encoder.encode(lines.join("\n") + "\n"));
      const elapsed = performance.now() - started;
      if (cpuFrom === undefined && elapsed >= 1000) {
        cpuFrom = await cpuSeconds(b.pid);
        wallFrom = performance.now();
      }
      if (elapsed <= SECONDS * 1000 - 1000) {
        cpuTo = await cpuSeconds(b.pid);
        wallTo = performance.now();
      }
      const wait = (tick + 1) * tickMs - (performance.now() - started);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    await writer.close();
    const status = await kcat.status;
    if (!status.success) throw new Error(`kcat failed: ${await new Response(kcat.stderr).text()}`);
    return 100 * (cpuTo - cpuFrom!) / ((wallTo - wallFrom) / 1000);
  }

  /** The exporter broker's CPU seconds over `seconds` of no load, scraped every `everyMs` (or
   * never), and how many scrapes that was. */
  async function idleCpu(
    b: Broker,
    seconds: number,
    everyMs?: number,
  ): Promise<{ cpu: number; scrapes: number }> {
    const from = await cpuSeconds(b.pid);
    const end = performance.now() + seconds * 1000;
    let scrapes = 0;
    while (performance.now() < end) {
      if (everyMs !== undefined) {
        await (await fetch(`http://${b.metrics}/metrics`)).text();
        scrapes++;
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs ?? 100));
    }
    return { cpu: (await cpuSeconds(b.pid)) - from, scrapes };
  }

  const brokers: Broker[] = [];
  try {
    log("starting a plain broker and one with the JMX exporter");
    const [plain, exporter] = await Promise.all([up("plain", false), up("exporter", true)]);
    brokers.push(plain, exporter);
    if (!exporter.metrics) throw new Error("The exporter broker has no KAFKA_METRICS");

    // The cost of one scrape, on the idle exporter broker: 10 s unscraped, 10 s scraped 4×/s,
    // twice, before any load and before the scraper below starts.
    let idleCpuPlain = 0;
    let idleCpuScraped = 0;
    let idleScrapes = 0;
    await idleCpu(exporter, 15, 250); // warm the exporter's code paths (JIT)
    for (let i = 0; i < 2; i++) {
      idleCpuPlain += (await idleCpu(exporter, 10)).cpu;
      const s = await idleCpu(exporter, 10, 250);
      idleCpuScraped += s.cpu;
      idleScrapes += s.scrapes;
    }
    const cpuPerScrapeS = Math.max(0, idleCpuScraped - idleCpuPlain) / idleScrapes;
    log(`one scrape costs the broker ${(cpuPerScrapeS * 1000).toFixed(2)} ms of CPU`);

    // Scrape like Prometheus, the whole time.
    const scrapeMs: number[] = [];
    let scrapeBytes = 0;
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        const t0 = performance.now();
        const body = await (await fetch(`http://${exporter.metrics}/metrics`)).text();
        scrapeMs.push(performance.now() - t0);
        scrapeBytes = body.length;
        await new Promise((resolve) => setTimeout(resolve, SCRAPE_S * 1000));
      }
    })();

    const plainCpu: number[] = [];
    const exporterCpu: number[] = [];
    for (const b of [plain, exporter]) {
      log(`warm-up: ${b.name} broker ${(await load(b)).toFixed(1)} % CPU (not counted)`);
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [plain, exporter] : [exporter, plain];
      for (const b of order) {
        const cpu = await load(b);
        (b === plain ? plainCpu : exporterCpu).push(cpu);
        log(`round ${round + 1}: ${b.name} broker ${cpu.toFixed(1)} % CPU at ${RATE}/s`);
      }
    }
    scraping = false;
    await scraper;
    const sorted = [...scrapeMs].sort((a, b) => a - b);
    const result: ExporterResult = {
      rate: RATE,
      seconds: SECONDS,
      rounds: ROUNDS,
      scrapeS: SCRAPE_S,
      plainCpu,
      exporterCpu,
      overheadPct: 100 * (median(exporterCpu) / median(plainCpu) - 1),
      cpuPerScrapeS,
      derivedOverheadPct1s: 100 * (cpuPerScrapeS / 1) / (median(plainCpu) / 100),
      derivedOverheadPct15s: 100 * (cpuPerScrapeS / 15) / (median(plainCpu) / 100),
      scrapes: scrapeMs.length,
      scrapeP50Ms: quantile(sorted, 0.5),
      scrapeP99Ms: quantile(sorted, 0.99),
      scrapeBytes,
    };
    console.log(
      `broker CPU at ${RATE} records/s, % of one core, median of ${ROUNDS}: ` +
        `plain ${median(plainCpu).toFixed(1)}, with the exporter scraped every ${SCRAPE_S} s ` +
        `${median(exporterCpu).toFixed(1)} (${
          result.overheadPct.toFixed(1)
        } %); one scrape costs ` +
        `${(cpuPerScrapeS * 1000).toFixed(2)} ms of broker CPU: ` +
        `${result.derivedOverheadPct1s.toFixed(2)} % of the plain broker's CPU at one scrape/s, ` +
        `${result.derivedOverheadPct15s.toFixed(2)} % at one per 15 s`,
    );
    emitResult(result);
  } finally {
    await Promise.all(brokers.map(down));
  }
}

if (import.meta.main) await main();
