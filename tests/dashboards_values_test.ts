/**
 * The dashboards' counter panels show true values when several processes report at once.
 *
 * Two producer processes and one consumer process (`helpers/telemetry_process.ts`: the real
 * metrics classes, config and telemetry wiring, with counters that grow at known rates) push to
 * a real InfluxDB and are scraped by a real Prometheus. Every counter query of both dashboards,
 * filled in the way Grafana fills it at two `$__interval` values, must return the true total
 * rate of every series it draws, within one push (InfluxDB) or scrape (Prometheus) interval's
 * worth of counts. The consumer's InfluxDB buffer is made too small on purpose, so that the
 * "dropped" line has a known, non-zero rate too.
 */
import assert from "node:assert/strict";
import { type PanelQuery, PANELS } from "../dashboards/build_dashboards.ts";
import { type InfluxDbServer, startInfluxDb } from "./helpers/influxdb.ts";
import { type PrometheusServer, startPrometheus } from "./helpers/prometheus.ts";
import type { DrivenRate } from "./helpers/telemetry_process.ts";

const HELPER = new URL("./helpers/telemetry_process.ts", import.meta.url);
/** Seconds between InfluxDB pushes of each process. */
const PUSH_S = 0.5;
/** Seconds between Prometheus scrapes. */
const SCRAPE_S = 1;
/** The two `$__interval` values the queries are checked at, in seconds. */
const INTERVALS_S = [2, 5];
/** Seconds of steady reporting checked. */
const STEADY_S = 24;

interface ProcessSpec {
  name: string;
  role: "producer" | "consumer";
  /** Unset: the default `<hostname>:<pid>` instance. */
  instance?: string;
  rates: DrivenRate[];
  /** Constant gauges (`perSecond` is the value). */
  gauges?: DrivenRate[];
  dropPerPush?: number;
}

const r = (metric: string, perSecond: number, labels?: Record<string, string>): DrivenRate => ({
  metric,
  perSecond,
  ...(labels ? { labels } : {}),
});

/** The processes, each with its own rates; the two producers overlap on BTC-USD and on reasons. */
const PROCESSES: readonly ProcessSpec[] = [
  {
    name: "producer-a",
    role: "producer",
    rates: [
      r("crypto_quotes_total", 3, { symbol: "BTC-USD" }),
      r("crypto_quotes_total", 2, { symbol: "ETH-USD" }),
      r("crypto_hop_negative_total", 0.5, { hop: "receive_to_ack" }),
      r("crypto_ws_reconnects_total", 0.1, { reason: "stale" }),
      r("crypto_ws_gaps_total", 0.1),
      r("crypto_ws_gap_seconds_total", 0.05),
      r("crypto_queue_dropped_total", 1),
      r("crypto_sink_records_sent_total", 5),
      r("crypto_sink_records_acked_total", 5),
      r("crypto_sink_send_errors_total", 0.2),
      r("crypto_transform_skipped_total", 1, { reason: "status" }),
      r("crypto_trades_total", 6, { symbol: "BTC-USD" }),
      r("crypto_bars_total", 0.5, { symbol: "BTC-USD" }),
      // Per channel: events = records + skips.
      r("crypto_channel_events_total", 6, { channel: "XQ" }),
      r("crypto_channel_records_acked_total", 5, { channel: "XQ" }),
      r("crypto_channel_skipped_total", 1, { channel: "XQ", reason: "status" }),
      r("crypto_channel_events_total", 6.5, { channel: "XT" }),
      r("crypto_channel_records_acked_total", 6, { channel: "XT" }),
      r("crypto_channel_skipped_total", 0.5, { channel: "XT", reason: "bad_price" }),
      r("crypto_kafka_dead_letter_records_total", 0.1, { reason: "too_large" }),
    ],
    gauges: [
      r("crypto_trade_price_last", 61000.5, { symbol: "BTC-USD" }),
      r("crypto_bar_close", 61010.25, { symbol: "BTC-USD" }),
      r("crypto_bar_volume", 12.5, { symbol: "BTC-USD" }),
      r("crypto_queue_depth", 5),
      r("crypto_ws_connection_state", 4),
      r("crypto_spread_last", 1.5, { symbol: "BTC-USD" }),
      r("crypto_spread_last", 0.25, { symbol: "ETH-USD" }),
    ],
  },
  {
    name: "producer-b",
    role: "producer",
    instance: "quotes-b",
    rates: [
      r("crypto_quotes_total", 4, { symbol: "BTC-USD" }),
      r("crypto_quotes_total", 1, { symbol: "SOL-USD" }),
      r("crypto_hop_negative_total", 0.25, { hop: "exchange_to_polygon" }),
      r("crypto_ws_reconnects_total", 0.2, { reason: "closed" }),
      r("crypto_ws_reconnects_total", 0.05, { reason: "stale" }),
      r("crypto_ws_gaps_total", 0.25),
      r("crypto_ws_gap_seconds_total", 0.1),
      r("crypto_queue_dropped_total", 2),
      r("crypto_sink_records_sent_total", 5),
      r("crypto_sink_records_acked_total", 4.5),
      r("crypto_sink_send_errors_total", 0.5),
      r("crypto_transform_skipped_total", 2, { reason: "status" }),
      r("crypto_transform_skipped_total", 0.5, { reason: "bad_json" }),
      r("crypto_trades_total", 1.5, { symbol: "BTC-USD" }),
      r("crypto_trades_total", 2, { symbol: "ETH-USD" }),
      r("crypto_bars_total", 0.25, { symbol: "BTC-USD" }),
      r("crypto_bars_total", 0.5, { symbol: "ETH-USD" }),
      // Per channel, overlapping producer-a on XQ and its status reason.
      r("crypto_channel_events_total", 7.5, { channel: "XQ" }),
      r("crypto_channel_records_acked_total", 5, { channel: "XQ" }),
      r("crypto_channel_skipped_total", 2, { channel: "XQ", reason: "status" }),
      r("crypto_channel_skipped_total", 0.5, { channel: "XQ", reason: "bad_json" }),
      r("crypto_channel_events_total", 0.8, { channel: "XA" }),
      r("crypto_channel_records_acked_total", 0.75, { channel: "XA" }),
      r("crypto_channel_skipped_total", 0.05, { channel: "XA", reason: "bad_volume" }),
      r("crypto_kafka_dead_letter_records_total", 0.05, { reason: "too_large" }),
      r("crypto_kafka_dead_letter_records_total", 0.2, { reason: "invalid_timestamp" }),
    ],
    gauges: [
      r("crypto_bar_close", 61020.75, { symbol: "BTC-USD" }),
      r("crypto_bar_close", 3000.5, { symbol: "ETH-USD" }),
      r("crypto_bar_volume", 4, { symbol: "BTC-USD" }),
      r("crypto_bar_volume", 20, { symbol: "ETH-USD" }),
      r("crypto_queue_depth", 7),
      r("crypto_ws_connection_state", 1),
      r("crypto_spread_last", 2.5, { symbol: "BTC-USD" }),
      r("crypto_spread_last", 0.5, { symbol: "SOL-USD" }),
    ],
  },
  {
    name: "consumer",
    role: "consumer",
    instance: "consumer-1",
    dropPerPush: 3,
    rates: [
      r("crypto_consumer_records_total", 9.5),
      r("crypto_hop_negative_total", 1, { hop: "kafka_to_consumer" }),
    ],
  },
];

interface Ready {
  port: number;
  instance: string;
  pid: number;
  pointsPerPush: number;
  droppedPerPush: number;
  intervalMs: number;
  startMs: number;
}

interface Running {
  spec: ProcessSpec;
  ready: Ready;
  child: Deno.ChildProcess;
  stderr: Promise<string>;
}

async function spawn(spec: ProcessSpec, influxUrl: string): Promise<Running> {
  const env: Record<string, string> = {
    METRICS_PORT: "0",
    METRICS_HOST: "127.0.0.1",
    INFLUX_URL: influxUrl,
    INFLUX_API: "v1",
    INFLUX_DB: "crypto",
    INFLUX_FLUSH_INTERVAL: String(PUSH_S),
    TELEMETRY_INSTANCE: spec.instance ?? "",
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      HELPER.pathname,
      "--role",
      spec.role,
      "--rates",
      JSON.stringify(spec.rates),
      "--gauges",
      JSON.stringify(spec.gauges ?? []),
      "--drop-per-push",
      String(spec.dropPerPush ?? 0),
    ],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`${spec.name} exited before it was ready: ${await stderr}`);
    }
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { spec, ready: JSON.parse(text.split("\n")[0]!), child, stderr };
}

/** A drawn series' key: its values of the labels a query keeps apart, comma-joined. */
function seriesKey(by: readonly string[] | undefined, labels: Record<string, string>): string {
  return (by ?? []).map((l) => labels[l] ?? "").join(",");
}

/** The true rate of every series a counter query draws, per the query's time unit. */
function expectedRates(
  q: PanelQuery,
  processes: readonly Running[],
): Map<string, number> {
  const rate = q.rate!;
  const out = new Map<string, number>();
  const add = (key: string, perSecond: number) =>
    out.set(key, (out.get(key) ?? 0) + perSecond * rate.perSeconds);
  for (const p of processes) {
    const { pointsPerPush, droppedPerPush, intervalMs } = p.ready;
    if (rate.metric === "crypto_telemetry_points_written_total") {
      // A push writes what the buffer kept, plus one drop report when it dropped some.
      const written = pointsPerPush - droppedPerPush + (droppedPerPush > 0 ? 1 : 0);
      add("", written / (intervalMs / 1000));
      continue;
    }
    if (rate.metric === "crypto_telemetry_points_dropped_total") {
      add("", droppedPerPush / (intervalMs / 1000));
      continue;
    }
    for (const d of p.spec.rates) {
      if (d.metric !== rate.metric) continue;
      add(seriesKey(rate.by, d.labels ?? {}), d.perSecond);
    }
  }
  return out;
}

/** Grafana's `$__rate_interval`: max(`$__interval` + scrape interval, 4 × scrape interval). */
function rateInterval(intervalS: number): number {
  return Math.max(intervalS + SCRAPE_S, 4 * SCRAPE_S);
}

function fill(text: string, intervalS: number, fromMs: number, toMs: number): string {
  const out = text
    .replaceAll("$__rate_interval", `${rateInterval(intervalS)}s`)
    .replaceAll("$__interval", `${intervalS}s`)
    .replaceAll("$timeFilter", `time >= ${fromMs}ms and time <= ${toMs}ms`)
    .replaceAll("$symbol", ".*");
  assert.equal(out.match(/\$(?:\{|[A-Za-z_])/), null, `unfilled variable in: ${out}`);
  return out;
}

/** Points per series key: `[time in ms, value or null]`. */
type Drawn = Map<string, [number, number | null][]>;

async function drawInflux(
  influx: InfluxDbServer,
  query: string,
  by?: readonly string[],
): Promise<Drawn> {
  const [result] = await influx.query(query, "crypto");
  const out: Drawn = new Map();
  for (const s of result?.series ?? []) {
    const key = seriesKey(by, s.tags ?? {});
    out.set(key, s.values.map((row) => [Number(row[0]), row[1] as number | null]));
  }
  return out;
}

async function drawProm(
  prom: PrometheusServer,
  expr: string,
  fromMs: number,
  toMs: number,
  stepS: number,
  by?: readonly string[],
): Promise<Drawn> {
  const data = await prom.api<
    { result: { metric: Record<string, string>; values: [number, string][] }[] }
  >(
    "/api/v1/query_range",
    { query: expr, start: String(fromMs / 1000), end: String(toMs / 1000), step: String(stepS) },
  );
  const out: Drawn = new Map();
  for (const s of data.result) {
    out.set(seriesKey(by, s.metric), s.values.map(([t, v]) => [t * 1000, Number(v)]));
  }
  return out;
}

interface Check {
  /** Points checked. */
  points: number;
  /** The largest error seen, as a share of the tolerance (1 = at the limit). */
  worst: number;
  /** What was wrong, one line each. */
  failures: string[];
}

/**
 * Compares drawn points against the true rates. `window(t)` says whether the point at `t` is
 * computed from steady data only; `tolerance(expected)` is one push or scrape interval's worth
 * of counts over the point's span, as a rate.
 */
function compare(
  what: string,
  drawn: Drawn,
  expected: Map<string, number>,
  inWindow: (t: number) => boolean,
  tolerance: (expected: number) => number,
): Check {
  const failures: string[] = [];
  let points = 0;
  let worst = 0;
  for (const [key, value] of expected) {
    if (value > 0 && !drawn.has(key)) {
      failures.push(`${what} [${key}]: no series, expected ${value}`);
    }
  }
  for (const [key, series] of drawn) {
    const want = expected.get(key) ?? 0;
    const tol = tolerance(want) + 1e-9;
    for (const [t, v] of series) {
      if (!inWindow(t)) continue;
      points++;
      if (v !== null && want > 0) worst = Math.max(worst, Math.abs(v - want) / tol);
      if (v === null || Math.abs(v - want) > tol) {
        failures.push(
          `${what} [${key}] at ${new Date(t).toISOString()}: ${v}, expected ${want} ± ${tol}`,
        );
      }
    }
  }
  return { points, worst, failures };
}

Deno.test({
  name:
    "every counter panel of both dashboards shows the true total of two producers and a consumer, at two intervals, and gauges combine as labelled",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      const influx = await startInfluxDb();
      cleanups.push(() => influx.close());
      await influx.query("CREATE DATABASE crypto");
      const processes = await Promise.all(PROCESSES.map((spec) => spawn(spec, influx.url)));
      for (const p of processes) {
        cleanups.push(async () => {
          try {
            p.child.kill("SIGTERM");
          } catch {
            // Already gone.
          }
          await p.child.status;
        });
      }
      const prom = await startPrometheus(
        processes.map((p) => ({ job: p.spec.name, port: p.ready.port })),
        { scrapeInterval: `${SCRAPE_S}s` },
      );
      cleanups.push(() => prom.close());

      // Every process reports; the default instance is <hostname>:<pid>.
      const [a, b, c] = processes;
      assert.match(a!.ready.instance, new RegExp(`^[A-Za-z0-9._-]+:${a!.ready.pid}$`));
      assert.deepEqual([b!.ready.instance, c!.ready.instance], ["quotes-b", "consumer-1"]);
      assert.equal(c!.ready.droppedPerPush, 3);

      // Steady: every process pushes, and Prometheus has scraped each one at least twice.
      const scrapedTwice = Date.now();
      while (true) {
        const data = await prom.api<{ result: { value: [number, string] }[] }>("/api/v1/query", {
          query: "count_over_time(up[1m])",
        });
        if (
          data.result.length === processes.length &&
          data.result.every((x) => Number(x.value[1]) >= 2)
        ) break;
        if (Date.now() - scrapedTwice > 30_000) throw new Error("Prometheus did not scrape");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const steadyFrom = Math.max(
        ...processes.map((p) => p.ready.startMs + 1_000),
        Date.now(),
      );
      const steadyTo = steadyFrom + STEADY_S * 1_000;
      await new Promise((resolve) => setTimeout(resolve, steadyTo + 1_500 - Date.now()));
      const [tags] = await influx.query(
        `SHOW TAG VALUES FROM "crypto_telemetry_points_written_total" WITH KEY = "instance"`,
        "crypto",
      );
      assert.deepEqual(
        tags!.series![0]!.values.map((v) => v[1]).sort(),
        processes.map((p) => p.ready.instance).sort(),
      );
      assert.deepEqual(
        (await prom.targets()).map((t) => t.health),
        processes.map(() => "up"),
      );

      // "One push interval" is the real one: the longest time between two pushes of a process
      // (a timer can fire late on a busy machine).
      const [pushes] = await influx.query(
        `SELECT "value" FROM "crypto_telemetry_points_written_total" WHERE time >= ${
          steadyFrom - 2_000
        }ms AND time <= ${steadyTo}ms GROUP BY "instance"`,
        "crypto",
      );
      let pushGapS = 0;
      for (const series of pushes!.series!) {
        const times = series.values.map((v) => Number(v[0]));
        for (let k = 1; k < times.length; k++) {
          pushGapS = Math.max(pushGapS, (times[k]! - times[k - 1]!) / 1000);
        }
      }
      assert.ok(
        pushGapS >= PUSH_S && pushGapS < 2 * PUSH_S,
        `the pushes were up to ${pushGapS} s apart, not about ${PUSH_S} s: the machine is too busy`,
      );

      const counterQueries = PANELS.flatMap((p) =>
        p.queries.filter((q) => q.rate).map((q) => ({ panel: p.title, q }))
      );
      const failures: string[] = [];
      const checked: Record<string, number> = {};
      const worst: Record<string, number> = {};
      for (const intervalS of INTERVALS_S) {
        const stepMs = intervalS * 1_000;
        const ri = rateInterval(intervalS) * 1_000;
        for (const { panel, q } of counterQueries) {
          const expected = expectedRates(q, processes);
          const what = `"${panel}" ${q.legend} at ${intervalS}s`;

          // InfluxDB: bucket [t, t + Δ) and the one before it hold steady data only. Each end of
          // the difference is a push at most one push interval before its bucket's end.
          const influxDrawn = await drawInflux(
            influx,
            fill(q.influxql, intervalS, steadyFrom - 2 * stepMs, steadyTo + stepMs),
            q.rate!.by,
          );
          const i = compare(
            `influxdb ${what}`,
            influxDrawn,
            expected,
            (t) => t - stepMs >= steadyFrom && t + stepMs <= steadyTo,
            (e) => e * pushGapS / intervalS,
          );
          // Prometheus: rate over [t − $__rate_interval, t], extrapolated from scrapes one
          // scrape interval apart.
          const promDrawn = await drawProm(
            prom,
            fill(q.promql, intervalS, steadyFrom, steadyTo),
            steadyFrom,
            steadyTo,
            intervalS,
            q.rate!.by,
          );
          const p = compare(
            `prometheus ${what}`,
            promDrawn,
            expected,
            (t) => t - ri >= steadyFrom && t <= steadyTo,
            (e) => e * SCRAPE_S / (ri / 1000),
          );
          failures.push(...i.failures, ...p.failures);
          worst[`influxdb ${intervalS}s`] = Math.max(worst[`influxdb ${intervalS}s`] ?? 0, i.worst);
          worst[`prometheus ${intervalS}s`] = Math.max(
            worst[`prometheus ${intervalS}s`] ?? 0,
            p.worst,
          );
          checked[`influxdb ${intervalS}s`] = (checked[`influxdb ${intervalS}s`] ?? 0) + i.points;
          checked[`prometheus ${intervalS}s`] = (checked[`prometheus ${intervalS}s`] ?? 0) +
            p.points;
          if (i.points === 0 || p.points === 0) {
            failures.push(`${what}: no point in the steady window (${i.points}, ${p.points})`);
          }
        }
      }
      console.log(
        `longest time between pushes: ${pushGapS} s; points checked:`,
        JSON.stringify(checked),
        "worst error, as a share of the tolerance:",
        JSON.stringify(worst, (_, v) => typeof v === "number" ? Number(v.toFixed(3)) : v),
      );
      assert.deepEqual(failures, [], `${failures.length} wrong points:\n${failures.join("\n")}`);
      for (const intervalS of INTERVALS_S) {
        // Every series of every counter query was drawn at every bucket of the window.
        assert.ok(checked[`influxdb ${intervalS}s`]! >= counterQueries.length * 3);
        assert.ok(checked[`prometheus ${intervalS}s`]! >= counterQueries.length * 3);
      }

      // Gauges over processes: the deepest queue, the highest spread, one state per process.
      const gaugeChecks: [string, string, Map<string, number>][] = [
        ["Queue depth and drops", "depth", new Map([["", 7]])],
        [
          "Spread per symbol (last)",
          "{{symbol}}",
          new Map([["BTC-USD", 2.5], ["ETH-USD", 0.25], ["SOL-USD", 0.5]]),
        ],
        ["Last trade price per symbol", "{{symbol}}", new Map([["BTC-USD", 61000.5]])],
        [
          "Last bar close and volume per symbol",
          "close {{symbol}}",
          new Map([["BTC-USD", 61020.75], ["ETH-USD", 3000.5]]),
        ],
        [
          "Last bar close and volume per symbol",
          "volume {{symbol}}",
          new Map([["BTC-USD", 12.5], ["ETH-USD", 20]]),
        ],
      ];
      const gaugeFailures: string[] = [];
      for (const [title, legend, expected] of gaugeChecks) {
        const q = PANELS.find((p) => p.title === title)!.queries.find((x) => x.legend === legend)!;
        const by = legend.includes("{{symbol}}") ? ["symbol"] : undefined;
        for (const intervalS of INTERVALS_S) {
          const stepMs = intervalS * 1_000;
          const drawn = [
            await drawInflux(influx, fill(q.influxql, intervalS, steadyFrom, steadyTo), by),
            await drawProm(
              prom,
              fill(q.promql, intervalS, steadyFrom, steadyTo),
              steadyFrom,
              steadyTo,
              intervalS,
              by,
            ),
          ];
          for (const [k, d] of drawn.entries()) {
            const c = compare(
              `${k === 0 ? "influxdb" : "prometheus"} "${title}" ${legend} at ${intervalS}s`,
              d,
              expected,
              (t) => t >= steadyFrom && t + stepMs <= steadyTo,
              () => 0,
            );
            gaugeFailures.push(...c.failures);
            if (c.points === 0) gaugeFailures.push(`${title}: no point checked`);
          }
        }
      }
      const state = PANELS.find((p) => p.title === "Connection state per producer")!.queries[0]!;
      const statesInflux = await drawInflux(
        influx,
        fill(state.influxql, 2, steadyFrom, steadyTo),
        ["instance"],
      );
      const lastOf = (d: Drawn) =>
        Object.fromEntries(
          [...d].map(([k, v]) => [k, v.filter(([, x]) => x !== null).at(-1)?.[1]]),
        );
      assert.deepEqual(lastOf(statesInflux), { [a!.ready.instance]: 4, "quotes-b": 1 });
      const statesProm = await drawProm(
        prom,
        fill(state.promql, 2, steadyFrom, steadyTo),
        steadyFrom,
        steadyTo,
        2,
        ["instance"],
      );
      assert.deepEqual(lastOf(statesProm), {
        [`127.0.0.1:${a!.ready.port}`]: 4,
        [`127.0.0.1:${b!.ready.port}`]: 1,
      });
      assert.deepEqual(gaugeFailures, [], gaugeFailures.join("\n"));

      // The same data catch the old query: a difference taken across processes' counters.
      const legacy = `SELECT non_negative_derivative(last("value"), 1s) FROM ` +
        `"crypto_telemetry_points_written_total" WHERE $timeFilter GROUP BY time($__interval) fill(none)`;
      const written = counterQueries.find((x) =>
        x.q.rate!.metric === "crypto_telemetry_points_written_total"
      )!.q;
      const stepMs = INTERVALS_S[0]! * 1_000;
      const old = compare(
        "legacy",
        await drawInflux(influx, fill(legacy, INTERVALS_S[0]!, steadyFrom - 2 * stepMs, steadyTo)),
        expectedRates(written, processes),
        (t) => t - stepMs >= steadyFrom && t + stepMs <= steadyTo,
        (e) => e * pushGapS / INTERVALS_S[0]!,
      );
      console.log(
        `the old, ungrouped InfluxQL of "written/s": ${old.failures.length} of ${old.points} ` +
          `points wrong; e.g. ${old.failures[0]}`,
      );
      assert.ok(old.failures.length > old.points / 2, old.failures.join("\n"));
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    }
  },
});
