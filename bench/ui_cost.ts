/**
 * What the live page costs the producer: `producer.ts` (a real process, a real local Kafka
 * broker) streams 5,000 quotes/s from the fake Polygon server over 24 pairs, while headless
 * Chromium has the live page open in alternate phases. The producer's CPU time (utime + stime
 * from /proc) is compared between phases with no page and phases with one page, in ABBA order so
 * that a linear drift on a shared machine falls on both equally; then RSS is sampled every second
 * over 60 s with the page open. Also measures, in this process, what one update costs to build
 * (the only work a page adds to the producer besides writing a few KB a second to a socket).
 * Writes bench/ui_cost.md.
 *
 *   deno run -A bench/ui_cost.ts [--rate 5000] [--phase-s 30] [--rounds 8] [--memory-s 60]
 *
 * Needs the Kafka jars (`scripts/kafka_local.sh install`) and Chromium (`apt-get install -y
 * chromium`). Permissions: -A (processes, /proc, network, the output file).
 */
import { parseArgs } from "node:util";
import { LiveFeed } from "../lib/telemetry/live.ts";
import { ProducerMetrics } from "../lib/telemetry/metrics.ts";
import { startFakePolygon } from "../lib/polygon/fake.ts";
import { Browser, type Page } from "../tests/helpers/browser.ts";
import { startKafka, uniqueTopic } from "../tests/helpers/kafka_broker.ts";
import { freePort, ServiceProcess, waitForHttp } from "../tests/helpers/service_process.ts";
import { E2E_API_KEY } from "./common.ts";
import { e2eFrames } from "./e2e_fake.ts";
import { SpreadMetrics } from "../lib/spread_metrics.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rate: { type: "string", default: "5000" },
    "phase-s": { type: "string", default: "30" },
    rounds: { type: "string", default: "8" },
    "memory-s": { type: "string", default: "60" },
    "warm-s": { type: "string", default: "30" },
    out: { type: "string", default: new URL("./ui_cost.md", import.meta.url).pathname },
  },
});
const RATE = Number(values.rate);
const PHASE_S = Number(values["phase-s"]);
const ROUNDS = Number(values.rounds);
const MEMORY_S = Number(values["memory-s"]);
const WARM_S = Number(values["warm-s"]);
const ROOT = new URL("../", import.meta.url).pathname;
const CLOCK_TICKS = 100; // USER_HZ on Linux

const log = (line: string) => console.error(`${new Date().toISOString().slice(11, 19)} ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Resident memory of a process, MiB, from /proc/<pid>/status. */
function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** 24 pairs' quotes, cycled forever with fresh exchange times. */
function* endlessFrames(): Generator<string> {
  const base = e2eFrames(20_000).map((text) => JSON.parse(text)[0] as Record<string, unknown>);
  let t = Date.now();
  for (;;) {
    for (const event of base) {
      t++;
      yield JSON.stringify([{ ...event, t, r: t + 5 }]);
    }
  }
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : Number.NaN;
}

/** Mean ms to build and encode one update, and one `/metrics` render, with `symbols` pairs. */
async function updateCost(symbols: number): Promise<[number, number]> {
  const metrics = new ProducerMetrics();
  const spreads = new SpreadMetrics(metrics);
  for (let i = 0; i < symbols; i++) {
    const symbol = `P${i}-USD`;
    spreads.spreadLast.set({ symbol }, i / 7);
    spreads.recordsBySymbol.inc({ symbol }, i + 1);
    spreads.crossed.inc({ symbol });
    spreads.locked.inc({ symbol });
    spreads.spreadBps.labels({ symbol }).observe(3);
    metrics.hopLatency.labels({ hop: "receive_to_ack" }).observe(i / 1e4);
  }
  const feed = new LiveFeed({ registry: metrics.registry });
  const encoder = new TextEncoder();
  for (let i = 0; i < 50; i++) await feed.sample();
  const runs = 300;
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) bytes = encoder.encode(JSON.stringify(await feed.sample())).length;
  const ms = (performance.now() - t0) / runs;
  const s0 = performance.now();
  for (let i = 0; i < 20; i++) await metrics.registry.metrics();
  log(`update with ${symbols} pairs: ${ms.toFixed(3)} ms, ${bytes} bytes`);
  return [ms, (performance.now() - s0) / 20];
}

interface Phase {
  page: boolean;
  seconds: number;
  cpu: number;
  acked: number;
}

const costs = [await updateCost(24), await updateCost(500)];
const broker = await startKafka();
const topic = uniqueTopic("ui-cost");
const fake = startFakePolygon({ frames: endlessFrames(), apiKey: E2E_API_KEY, rate: RATE });
// The API key comes from the environment only (the child inherits it).
Deno.env.set("POLYGON_API_KEY", E2E_API_KEY);
Deno.env.set("NO_COLOR", "1");
const port = freePort();
const base = `http://127.0.0.1:${port}`;
const producer = new ServiceProcess("producer", Deno.execPath(), [
  "run",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  `${ROOT}producer.ts`,
  "--url",
  fake.url,
  "--pairs",
  "*",
  "--metrics-port",
  String(port),
  "--brokers",
  broker.plaintext,
  "--security",
  "plaintext",
  "--topic",
  topic,
], ROOT);
let browser: Browser | undefined;
const phases: Phase[] = [];
let memory: number[] = [];
let dropped = Number.NaN;
try {
  await waitForHttp(`${base}/metrics`, producer, { timeoutMs: 60_000 });
  const pid = producer.pid;
  log(`producer ${pid} up; warming ${WARM_S} s at ${RATE} quotes/s`);
  await sleep(WARM_S * 1000);
  browser = await Browser.launch({ width: 1280, height: 1000 });
  let page: Page | undefined;
  // ABBA: no page, page, page, no page, …
  const order = Array.from(
    { length: ROUNDS },
    (_, i) => i % 2 === 0 ? [false, true] : [true, false],
  )
    .flat();
  for (const withPage of order) {
    if (withPage) {
      page = await browser.open(`${base}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
    }
    const cpu0 = cpuSeconds(pid);
    const acked0 = await metric(base, "crypto_sink_records_acked_total");
    const t0 = performance.now();
    await sleep(PHASE_S * 1000);
    const seconds = (performance.now() - t0) / 1000;
    const phase: Phase = {
      page: withPage,
      seconds,
      cpu: cpuSeconds(pid) - cpu0,
      acked: (await metric(base, "crypto_sink_records_acked_total")) - acked0,
    };
    phases.push(phase);
    log(
      `${withPage ? "page   " : "no page"}: ${(phase.cpu / seconds * 100).toFixed(1)} % CPU, ` +
        `${(phase.acked / seconds).toFixed(0)} records/s`,
    );
    if (page) {
      await page.close();
      page = undefined;
      await sleep(500);
    }
  }
  log(`memory: RSS every second for ${MEMORY_S} s with the page open`);
  page = await browser.open(`${base}/`);
  await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
  for (let i = 0; i <= MEMORY_S; i++) {
    memory.push(rssMiB(pid));
    await sleep(1000);
  }
  dropped = await metric(base, "crypto_ui_updates_dropped_total");
  if (page.problems.length > 0) log(`page problems: ${JSON.stringify(page.problems)}`);
} finally {
  await browser?.close();
  await producer.stop();
  await fake.close();
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const cpuPercent = (ps: Phase[]) => sum(ps.map((p) => p.cpu)) / sum(ps.map((p) => p.seconds)) * 100;
const off = phases.filter((p) => !p.page);
const on = phases.filter((p) => p.page);
const offCpu = cpuPercent(off);
const onCpu = cpuPercent(on);
const diff = (onCpu - offCpu) / offCpu * 100;
const range = (ps: Phase[]) => {
  const xs = ps.map((p) => p.cpu / p.seconds * 100);
  return `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
};
const perSecond = (ps: Phase[]) => sum(ps.map((p) => p.acked)) / sum(ps.map((p) => p.seconds));
// Least-squares slope of RSS over time, MiB per minute.
const n = memory.length;
const mx = (n - 1) / 2;
const my = sum(memory) / n;
const slope = sum(memory.map((y, x) => (x - mx) * (y - my))) /
  sum(memory.map((_, x) => (x - mx) ** 2)) * 60;
memory = memory.map((m) => Math.round(m * 10) / 10);
const cores = navigator.hardwareConcurrency;
const md = `# What the live page costs the producer

Written by \`deno run -A bench/ui_cost.ts\` on ${
  new Date().toISOString().slice(0, 16)
} UTC (${cores}
cores, shared with other work, so single phases are noisy; compare the totals).

\`producer.ts\` as a separate process with \`--metrics-port\`, a local Kafka broker, the fake Polygon
server pacing ${RATE.toLocaleString("en-US")} single-quote frames/s over 24 pairs. Phases of
${PHASE_S} s alternate between no page and one page open in headless Chromium (${ROUNDS} of each,
interleaved), after ${WARM_S} s of warm-up. CPU is the producer's user + system time from /proc.

| phase | page open | CPU (% of one core) | records acked/s |
| --- | --- | --- | --- |
${
  phases.map((p, i) =>
    `| ${i + 1} | ${p.page ? "yes" : "no"} | ${(p.cpu / p.seconds * 100).toFixed(1)} | ${
      (p.acked / p.seconds).toFixed(0)
    } |`
  ).join("\n")
}
| **all, no page** | no | **${offCpu.toFixed(1)}** | ${perSecond(off).toFixed(0)} |
| **all, one page** | yes | **${onCpu.toFixed(1)}** | ${perSecond(on).toFixed(0)} |

CPU with one page open against none: **${diff >= 0 ? "+" : ""}${
  diff.toFixed(1)
} %** (target: under 3 %). Phases of the same kind ranged ${range(off)} % (no page) and ${
  range(on)
} % (one page) of one core.

What a page adds, measured without that noise: building and encoding one update (once a second,
only while a page is open) takes **${costs[0]![0].toFixed(3)} ms with 24 pairs** and **${
  costs[1]![0].toFixed(3)
} ms with 500 pairs**, that is ${(costs[0]![0] / 10).toFixed(4)} % and ${
  (costs[1]![0] / 10).toFixed(3)
} % of one core. For scale, one Prometheus scrape of \`/metrics\` takes ${
  costs[0]![1].toFixed(2)
} ms (24 pairs) and ${costs[1]![1].toFixed(2)} ms (500 pairs).

Memory with the page open, RSS sampled every second for ${MEMORY_S} s: first ${memory[0]} MiB,
last ${memory.at(-1)} MiB, min ${Math.min(...memory)} MiB, max ${Math.max(...memory)} MiB,
least-squares slope ${slope.toFixed(2)} MiB/min (the garbage collector's sawtooth moves it). The
floor after collection, lowest RSS of the first half against the second: ${
  Math.min(...memory.slice(0, memory.length >> 1))
} → ${
  Math.min(...memory.slice(memory.length >> 1))
} MiB. Updates dropped for slow pages: ${dropped}.

RSS samples (MiB): ${memory.join(", ")}
`;
await Deno.writeTextFile(values.out!, md);
log(`CPU no page ${offCpu.toFixed(1)} %, one page ${onCpu.toFixed(1)} % (${diff.toFixed(1)} %)`);
log(`wrote ${values.out}`);
Deno.exit(0);
