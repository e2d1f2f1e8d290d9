/**
 * A stand-in producer or consumer process for the dashboard value tests: the real metrics class,
 * the real config parsing and the real telemetry wiring (`/metrics` and the InfluxDB push), with
 * counters that grow at known rates instead of by live traffic. Every counter named in `--rates`
 * reads exactly `rate × seconds since start` whenever it is scraped or pushed; each gauge named in
 * `--gauges` holds the constant given as its `perSecond`.
 *
 * Usage: `deno run --allow-net --allow-read --allow-env tests/helpers/telemetry_process.ts
 *   --role producer|consumer --rates '[{"metric":"crypto_quotes_total","labels":{"symbol":"BTC-USD"},"perSecond":3}]'
 *   [--gauges '[{"metric":"crypto_queue_depth","perSecond":5}]'] [--drop-per-push N]`
 * plus the usual telemetry settings from the environment (`METRICS_PORT`, `INFLUX_URL`,
 * `INFLUX_FLUSH_INTERVAL`, `TELEMETRY_INSTANCE`, …).
 *
 * `--drop-per-push N` makes the InfluxDB buffer N points too small for one snapshot, so each
 * push drops exactly N points (N padding series registered first, hence the oldest): a known
 * rate of drops.
 *
 * Prints one JSON line when ready: `{"port", "instance", "pid", "pointsPerPush",
 * "droppedPerPush", "intervalMs", "startMs"}`; stops (with a last push) on SIGTERM.
 */
import { parseArgs } from "node:util";
import { type Counter, Gauge, Registry } from "prom-client";
import { buildTelemetryConfig } from "../../lib/config/telemetry.ts";
import { parseSettings } from "../../lib/config/parse.ts";
import { MetricsConverter } from "../../lib/telemetry/influx.ts";
import { ConsumerMetrics, followChannels, ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { ConsumerSpreadMetrics, SpreadMetrics } from "../../lib/spread_metrics.ts";
import { BarMetrics, TradeMetrics } from "../../lib/channels/metrics.ts";
import { defaultInstance, startTelemetry } from "../../lib/telemetry/wiring.ts";

/** One counter series that grows at a known rate. */
export interface DrivenRate {
  metric: string;
  labels?: Record<string, string>;
  perSecond: number;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    role: { type: "string" },
    rates: { type: "string", default: "[]" },
    gauges: { type: "string", default: "[]" },
    "drop-per-push": { type: "string", default: "0" },
  },
  strict: true,
});
const role = values.role;
if (role !== "producer" && role !== "consumer") {
  throw new TypeError(`--role must be producer or consumer, got "${role}"`);
}
const rates = JSON.parse(values.rates!) as DrivenRate[];
const gauges = JSON.parse(values.gauges!) as DrivenRate[];
const dropPerPush = Number(values["drop-per-push"]);

const registry = new Registry();
const startMs = Date.now();
const driven: {
  counter: Counter<string>;
  labels: Record<string, string>;
  perSecond: number;
  added: number;
}[] = [];
/** Brings every driven counter to `perSecond × elapsed` now. */
function advance(): void {
  const elapsed = (Date.now() - startMs) / 1000;
  for (const d of driven) {
    const target = d.perSecond * elapsed;
    if (target > d.added) {
      d.counter.inc(d.labels, target - d.added);
      d.added = target;
    }
  }
}
// Registered first, so that prom-client collects it (and so advances the counters) before it
// reads any other metric, and so that its series are the oldest points of each snapshot.
new Gauge({
  name: "test_driver_padding",
  help: "padding series of the value tests (dropped on purpose)",
  labelNames: ["n"],
  registers: [registry],
  collect() {
    advance();
    for (let n = 0; n < dropPerPush; n++) this.set({ n: String(n) }, n);
  },
});
// Each role's registry as its process has it: the per-symbol spread, trade and bar metrics and
// the per-channel series beside the rest.
let metrics: ProducerMetrics | ConsumerMetrics;
if (role === "producer") {
  const producer = new ProducerMetrics(registry);
  new SpreadMetrics(producer);
  new TradeMetrics(registry);
  new BarMetrics(registry);
  // The per-channel series, as producer.ts registers them; driven by `--rates` here (the
  // channels' own counts are read as none, so the collection adds nothing of its own).
  followChannels(registry, () => new Map());
  metrics = producer;
} else {
  const consumer = new ConsumerMetrics(registry);
  new ConsumerSpreadMetrics(consumer);
  metrics = consumer;
}
for (const r of rates) {
  const counter = registry.getSingleMetric(r.metric) as Counter<string> | undefined;
  if (!counter) throw new TypeError(`No metric "${r.metric}" in the ${role}'s registry`);
  driven.push({ counter, labels: r.labels ?? {}, perSecond: r.perSecond, added: 0 });
  counter.inc(r.labels ?? {}, 0);
}

for (const g of gauges) {
  const gauge = registry.getSingleMetric(g.metric) as Gauge<string> | undefined;
  if (!gauge) throw new TypeError(`No metric "${g.metric}" in the ${role}'s registry`);
  gauge.set(g.labels ?? {}, g.perSecond);
}

const config = buildTelemetryConfig(
  parseSettings(role, [], { env: (n) => Deno.env.get(n) }).settings,
);
if (!config.influx || config.metricsPort === undefined) {
  throw new TypeError("INFLUX_URL and METRICS_PORT must be set");
}
// startTelemetry adds the live page's two series (lib/telemetry/live.ts: crypto_ui_updates_dropped_total,
// crypto_ui_clients) to the registry; checked against the real count once it has started.
const LIVE_PAGE_POINTS = 2;
const pointsPerPush = LIVE_PAGE_POINTS +
  new MetricsConverter().convert(await registry.getMetricsAsJSON(), Date.now()).points.length;
if (dropPerPush > 0) config.influx.bufferMax = pointsPerPush - dropPerPush;
const timer = setInterval(advance, 100);
const telemetry = await startTelemetry(config, {
  registry,
  metrics,
  staleAfterMs: 30_000,
  service: role,
  log: (line) => console.error(line),
});
const counted =
  new MetricsConverter().convert(await registry.getMetricsAsJSON(), Date.now()).points.length;
if (counted !== pointsPerPush) {
  throw new Error(
    `A push holds ${counted} points, not the ${pointsPerPush} the buffer was sized for`,
  );
}
console.log(JSON.stringify({
  port: telemetry.server!.addr.port,
  instance: config.instance ?? defaultInstance(),
  pid: Deno.pid,
  pointsPerPush,
  droppedPerPush: dropPerPush,
  intervalMs: config.influx.intervalMs,
  startMs,
}));
await new Promise<void>((resolve) => Deno.addSignalListener("SIGTERM", resolve));
clearInterval(timer);
await telemetry.stop();
