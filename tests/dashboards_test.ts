/**
 * The dashboards: static checks, then the real thing. The real capture is replayed through the
 * real pipeline into the in-memory broker and a consumer; the producer's and the consumer's
 * telemetry go to a real InfluxDB (push) and a real Prometheus (scrape); then every query of
 * every panel of both dashboards, with the variables filled in the way Grafana fills them,
 * must return data.
 */
import assert from "node:assert/strict";
import {
  buildBrokerDashboard,
  buildDashboard,
  type DashboardKind,
  dashboardText,
  PANELS,
} from "../dashboards/build_dashboards.ts";
import { parse as parseYaml } from "yaml";
import { SETTINGS } from "../lib/config/settings.ts";
import { startInfluxPush } from "../lib/telemetry/influx.ts";
import { MemoryBroker } from "../lib/memory_broker.ts";
import {
  CONSUMER_HOP,
  ConsumerMetrics,
  followChannels,
  ProducerMetrics,
} from "../lib/telemetry/metrics.ts";
import { ChannelPipelines } from "../lib/channels/pipelines.ts";
import { channelPlans } from "../lib/channels/registry.ts";
import { REFUSAL_REASONS, zeroDeadLetters } from "../lib/kafka/refusals.ts";
import { serveTelemetry } from "../lib/telemetry/server.ts";
import { type InfluxDbServer, startInfluxDb } from "./helpers/influxdb.ts";
import { type PrometheusServer, startPrometheus } from "./helpers/prometheus.ts";
import { CAPTURE_PATH, captureTest } from "./helpers/capture.ts";
import { BarMetrics, TradeMetrics } from "../lib/channels/metrics.ts";
import { SpreadMetrics } from "../lib/spread_metrics.ts";

const DIR = new URL("../dashboards/", import.meta.url);
/** Quotes in the capture (its README: 10,795 quotes in 9,857 frames, 21 pairs). */
const CAPTURE_QUOTES = 10_795;
const CAPTURE_PAIRS = 21;
const KINDS: readonly DashboardKind[] = ["prometheus", "influxdb"];
/** The channels the replay carries, sorted. */
const CHANNELS = ["XA", "XQ", "XT"];

interface Target {
  refId: string;
  expr?: string;
  query?: string;
}
interface Panel {
  title: string;
  datasource: { type: string; uid: string };
  targets: Target[];
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; allValue?: string }[] };
}

async function readDashboard(kind: DashboardKind): Promise<Dashboard> {
  return JSON.parse(await Deno.readTextFile(new URL(`crypto_${kind}.json`, DIR)));
}

Deno.test("the committed dashboards are exactly what dashboards/build_dashboards.ts builds", async () => {
  for (const kind of [...KINDS, "broker"] as const) {
    assert.equal(
      await Deno.readTextFile(new URL(`crypto_${kind}.json`, DIR)),
      dashboardText(kind),
      `dashboards/crypto_${kind}.json is stale: run deno run --allow-write=dashboards dashboards/build_dashboards.ts`,
    );
  }
});

Deno.test("both dashboards show the same panels, each with its queries, a datasource variable and a symbol variable", async () => {
  const prom = await readDashboard("prometheus");
  const influx = await readDashboard("influxdb");
  const titles = (d: Dashboard) => d.panels.map((p) => `${p.title} (${p.targets.length})`);
  assert.deepEqual(titles(prom), titles(influx));
  for (
    const needed of [
      "Quotes per second, per symbol",
      "Spread per symbol (last)",
      "Latency hop by hop, p50 and p99",
      "Seconds since last quote",
      "Reconnects and gaps, per minute",
      "Queue depth and drops",
      "Kafka ack latency, p50 and p99",
      "Consumer lag per partition",
      "Bars per minute, per symbol",
      "Last bar close and volume per symbol",
      "Events, records and skips per second, by channel",
      "Skips per second, by channel and reason",
      "Dead letters per minute, by reason",
      "Skips by reason",
    ]
  ) {
    assert.ok(prom.panels.some((p) => p.title === needed), `missing panel "${needed}"`);
  }
  for (const [kind, d] of [["prometheus", prom], ["influxdb", influx]] as const) {
    assert.deepEqual(d.templating.list.map((v) => [v.name, v.type]), [
      ["datasource", "datasource"],
      ["symbol", "query"],
    ]);
    assert.equal(d.templating.list[0]!.query, kind);
    for (const p of d.panels) {
      assert.deepEqual(p.datasource, { type: kind, uid: "${datasource}" });
      assert.ok(p.targets.length > 0);
      for (const t of p.targets) assert.ok(kind === "prometheus" ? t.expr : t.query, p.title);
    }
  }
});

Deno.test("the README counts the Prometheus panels that use rate or histogram_quantile right", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", DIR));
  const said = /the (\d+) panels that use `rate` or `histogram_quantile`/.exec(readme)?.[1];
  const prom = await readDashboard("prometheus");
  const counted =
    prom.panels.filter((p) =>
      p.targets.some((t) => /\b(rate|histogram_quantile)\(/.test(t.expr ?? ""))
    ).length;
  assert.equal(Number(said), counted);
});

/** The fenced code blocks of a Markdown section, by language. */
function codeBlocks(markdown: string, heading: string, lang: string): string[] {
  const start = markdown.indexOf(`\n${heading}\n`);
  assert.notEqual(start, -1, `no "${heading}" section`);
  const next = markdown.indexOf("\n## ", start + heading.length + 2);
  const section = markdown.slice(start, next === -1 ? undefined : next);
  return [...section.matchAll(new RegExp("^ *```" + lang + "\\n([\\s\\S]*?)^ *```$", "gm"))]
    .map((m) => m[1]!.replace(/^ {2}/gm, ""));
}

/** Grafana's expansion of `$VAR` and `${VAR}` in every string value of a provisioning file;
 * a name the environment lacks fails. */
function expandEnv(value: unknown, env: Record<string, string>): unknown {
  if (typeof value === "string") {
    return value.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, a?: string, b?: string) => {
      const name = (a ?? b)!;
      assert.ok(name in env, `the provisioning file uses \${${name}}, which the env file lacks`);
      return env[name]!;
    });
  }
  if (Array.isArray(value)) return value.map((v) => expandEnv(v, env));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env)]));
  }
  return value;
}

Deno.test("the README's local Grafana steps, run as written, install provisioning that Grafana and systemd can read", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", DIR));
  const [steps] = codeBlocks(readme, "## Local Grafana, provisioned", "sh");
  assert.ok(steps, "no sh block in the local Grafana section");
  const root = await Deno.makeTempDir({ prefix: "grafana_steps_" });
  try {
    const rebase = (text: string) =>
      text.replaceAll(/(?<=[\s=])\/(etc|var\/lib)\//g, `${root}/$1/`);
    const script = [
      "set -euo pipefail",
      'sudo() { "$@"; }',
      `systemctl() { echo "$*" >> ${root}/systemctl.log; }`,
      rebase(steps),
    ].join("\n");
    const run = await new Deno.Command("bash", {
      args: ["-c", script],
      cwd: new URL("..", DIR).pathname,
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    assert.deepEqual(
      (await Deno.readTextFile(`${root}/systemctl.log`)).trim().split("\n"),
      ["daemon-reload", "restart grafana-server"],
    );

    // systemd: the drop-in names the env file, which holds one assignment per line.
    const dropIn = await Deno.readTextFile(
      `${root}/etc/systemd/system/grafana-server.service.d/crypto.conf`,
    );
    const envPath = /^EnvironmentFile=(\S+)$/m.exec(dropIn)?.[1];
    assert.equal(envPath, "/etc/grafana/crypto.env");
    assert.equal((await Deno.stat(`${root}${envPath}`)).mode! & 0o777, 0o600);
    const env: Record<string, string> = {};
    for (const line of (await Deno.readTextFile(`${root}${envPath}`)).split("\n")) {
      if (line.trim() === "" || line.startsWith("#")) continue;
      const m = /^([A-Z_][A-Z0-9_]*)=(\S*)$/.exec(line);
      assert.ok(m, `not one assignment: ${JSON.stringify(line)}`);
      env[m[1]!] = m[2]!;
    }
    assert.deepEqual(Object.keys(env).sort(), [
      "INFLUX_DB",
      "INFLUX_PASSWORD",
      "INFLUX_URL",
      "INFLUX_USER",
      "PROMETHEUS_URL",
    ]);

    // Grafana: the data sources, with the variables expanded.
    const ds = expandEnv(
      parseYaml(
        await Deno.readTextFile(`${root}/etc/grafana/provisioning/datasources/crypto.yaml`),
      ),
      env,
    ) as {
      apiVersion: number;
      datasources: {
        type: string;
        url: string;
        isDefault?: boolean;
        jsonData: Record<string, string>;
      }[];
    };
    assert.equal(ds.apiVersion, 1);
    assert.deepEqual(ds.datasources.map((d) => [d.type, d.url]), [
      ["prometheus", "http://127.0.0.1:9090"],
      ["influxdb", "http://127.0.0.1:8086"],
    ]);
    assert.ok(ds.datasources.every((d) => d.isDefault === undefined), "a data source is default");
    const [promDs, influxDs] = ds.datasources;
    assert.equal(influxDs!.jsonData.dbName, "crypto");
    // Min time interval = the push interval's default.
    const flush = SETTINGS.find((x) => x.key === "influxInterval")!.default;
    assert.equal(influxDs!.jsonData.timeInterval, `${flush}s`);
    // Scrape interval = what the README's prometheus.yml jobs scrape at.
    const [promYaml] = codeBlocks(
      readme,
      "## Intervals: set them, or panels come up empty",
      "yaml",
    );
    const jobs = (parseYaml(promYaml!) as {
      scrape_configs: { job_name: string; scrape_interval: string }[];
    }).scrape_configs;
    assert.deepEqual(jobs.map((j) => j.job_name), ["crypto-producer", "crypto-consumer"]);
    for (const j of jobs) assert.equal(j.scrape_interval, promDs!.jsonData.timeInterval);

    // Grafana: the dashboard provider's folder holds both dashboards, as committed.
    const provider = parseYaml(
      await Deno.readTextFile(`${root}/etc/grafana/provisioning/dashboards/crypto.yaml`),
    ) as { apiVersion: number; providers: { type: string; options: { path: string } }[] };
    assert.equal(provider.apiVersion, 1);
    assert.equal(provider.providers[0]!.type, "file");
    const folder = `${root}${provider.providers[0]!.options.path}`;
    const installed = [];
    for await (const e of Deno.readDir(folder)) installed.push(e.name);
    assert.deepEqual(installed.sort(), [
      "crypto_broker.json",
      "crypto_influxdb.json",
      "crypto_prometheus.json",
    ]);
    for (const kind of [...KINDS, "broker"] as const) {
      const d: Dashboard = JSON.parse(await Deno.readTextFile(`${folder}/crypto_${kind}.json`));
      assert.deepEqual(d, kind === "broker" ? buildBrokerDashboard() : buildDashboard(kind));
      assert.ok(ds.datasources.some((x) => x.type === d.templating.list[0]!.query));
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** Grafana's regex formatting of a multi-value variable, for PromQL and InfluxQL alike. */
function regexValue(values: readonly string[] | "all"): string {
  if (values === "all") return ".*";
  const escaped = values.map((v) => v.replace(/[\\^$*+?.()|{}[\]]/g, "\\$&"));
  return escaped.length === 1 ? escaped[0]! : `(${escaped.join("|")})`;
}

interface Window {
  startMs: number;
  endMs: number;
}

/** Fills in what Grafana would: variables, `$__interval`, `$__rate_interval`, `$timeFilter`. */
function interpolate(text: string, symbols: readonly string[] | "all", window: Window): string {
  const out = text
    .replaceAll("$__rate_interval", "4s")
    .replaceAll("$__interval", "1s")
    .replaceAll("$timeFilter", `time >= ${window.startMs}ms and time <= ${window.endMs}ms`)
    .replaceAll("$symbol", regexValue(symbols));
  const left = out.match(/\$(?:\{|[A-Za-z_])/);
  assert.equal(left, null, `unfilled variable in: ${out}`);
  return out;
}

interface Found {
  /** Series label or tag sets. */
  series: Record<string, string>[];
  /** Every numeric value found. */
  values: number[];
}

async function runPromQL(prom: PrometheusServer, expr: string, window: Window): Promise<Found> {
  const data = await prom.api<
    { resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] }
  >(
    "/api/v1/query_range",
    {
      query: expr,
      start: String(window.startMs / 1000),
      end: String(window.endMs / 1000),
      step: "1",
    },
  );
  assert.equal(data.resultType, "matrix");
  return {
    series: data.result.map((r) => r.metric),
    values: data.result.flatMap((r) => r.values.map(([, v]) => Number(v))).filter(Number.isFinite),
  };
}

async function runInfluxQL(influx: InfluxDbServer, query: string): Promise<Found> {
  const [result] = await influx.query(query, "crypto");
  const series = result?.series ?? [];
  return {
    series: series.map((s) => s.tags ?? {}),
    values: series.flatMap((s) => s.values.flatMap((row) => row.slice(1)))
      .filter((v): v is number => typeof v === "number" && Number.isFinite(v)),
  };
}

/** The frame's quotes as trades (channel XT): one at each quote's bid, of its bid size. */
function tradesOf(frame: string): string {
  return frame.replaceAll('"ev":"XQ"', '"ev":"XT"').replaceAll('"bp":', '"p":')
    .replaceAll('"bs":', '"s":');
}

/** The frame's quotes as minute bars (channel XA): one per quote, its bid as every price and its
 * bid size as the volume (number text as sent), over the minute of its `t`; "" without quotes. */
function barsOf(frame: string): string {
  const bars = [...frame.matchAll(/\{[^{}]*"ev":"XQ"[^{}]*\}/g)].map(([event]) => {
    const field = (k: string) => new RegExp(`"${k}":("[^"]*"|[^,}]+)`).exec(event)?.[1];
    const [pair, bp, bs, t] = [field("pair"), field("bp"), field("bs"), field("t")];
    const start = Math.floor(Number(t) / 60_000) * 60_000;
    return `{"ev":"XA","pair":${pair},"o":${bp},"h":${bp},"l":${bp},"c":${bp},"v":${bs},` +
      `"vw":${bp},"s":${start},"e":${start + 60_000}}`;
  });
  return bars.length > 0 ? `[${bars.join(",")}]` : "";
}

/** A frame with every `t` and `r` moved by `shiftMs`, the rest kept verbatim. */
function rebase(line: string, shiftMs: number): string {
  return line.replace(
    /"([tr])":(\d{13})\b/g,
    (_, k: string, v: string) => `"${k}":${Number(v) + shiftMs}`,
  );
}

async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

captureTest({
  name:
    "every query of every panel of both dashboards returns data from a real InfluxDB and Prometheus fed by the real capture",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const text = await Deno.readTextFile(CAPTURE_PATH);
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    const firstR = lines.map((l) => /"r":(\d{13})/.exec(l)).find((m) => m)![1]!;
    const lastR = Number(
      [...lines].reverse().map((l) => /"r":(\d{13})/.exec(l)).find((m) => m)![1],
    );
    const speed = (lastR - Number(firstR)) / 6_000; // the 112 s capture in about 6 s

    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      const influx = await startInfluxDb();
      cleanups.push(() => influx.close());
      await influx.query("CREATE DATABASE crypto");

      // Producer: the real channel pipelines (quotes, trades, bars) into the in-memory broker,
      // with every series producer.ts registers.
      const broker = new MemoryBroker({ defaultPartitions: 6 });
      broker.createTopic("crypto-topic", 6);
      const producerMetrics = new ProducerMetrics();
      const barMetrics = new BarMetrics(producerMetrics.registry);
      const pipeline = new ChannelPipelines(
        broker.sink(),
        channelPlans(["XQ", "XT", "XA"], { topic: "crypto-topic", gapsTopic: "crypto-gaps" }, {
          observers: {
            XQ: new SpreadMetrics(producerMetrics),
            XT: new TradeMetrics(producerMetrics.registry),
            XA: barMetrics,
          },
        }),
        { metrics: producerMetrics, lingerMs: 5, log: () => {} },
      );
      followChannels(producerMetrics.registry, () => pipeline.countsByChannel());
      // What the Kafka sink reports: every refusal reason from 0; one record refused below.
      const deadLettered = zeroDeadLetters();
      producerMetrics.followSink(() => ({ retries: 0, producerResets: 0, deadLettered }));
      const quotes = () => pipeline.countsByChannel().get("XQ")!;
      const pipelineDone = pipeline.start();
      cleanups.push(async () => {
        await pipeline.close().catch(() => {});
        await pipelineDone;
      });

      // Consumer: counts, hop, lag, the way consumer.ts does.
      const consumerMetrics = new ConsumerMetrics();
      const source = broker.source({
        topic: "crypto-topic",
        groupId: "dashboards",
        from: "earliest",
      });
      const stopConsumer = new AbortController();
      let consumed = 0;
      let malformed = 0;
      const updateLag = () => {
        broker.lag("dashboards", "crypto-topic").forEach((lag, p) =>
          consumerMetrics.lag.set({ partition: String(p) }, lag)
        );
      };
      const consumerDone = source.consume((batch) => {
        const now = Date.now();
        const hop = consumerMetrics.hopLatency.labels(CONSUMER_HOP);
        for (const r of batch) {
          try {
            JSON.parse(r.value ?? "");
          } catch {
            malformed++;
            consumerMetrics.malformed.inc();
            continue;
          }
          const seconds = (now - r.timestamp) / 1000;
          if (seconds < 0) consumerMetrics.negativeHops.inc({ hop: CONSUMER_HOP });
          hop.observe(seconds);
        }
        consumed += batch.length;
        consumerMetrics.recordsConsumed.inc(batch.length);
        updateLag();
      }, { signal: stopConsumer.signal });
      cleanups.push(async () => {
        stopConsumer.abort();
        await consumerDone;
      });
      const lagTimer = setInterval(updateLag, 200);
      cleanups.push(() => Promise.resolve(clearInterval(lagTimer)));

      // Telemetry: /metrics for Prometheus, the push for InfluxDB, for both sides.
      const producerServer = serveTelemetry({
        registry: producerMetrics.registry,
        health: pipeline,
        port: 0,
      });
      cleanups.push(() => producerServer.shutdown());
      const consumerServer = serveTelemetry({ registry: consumerMetrics.registry, port: 0 });
      cleanups.push(() => consumerServer.shutdown());
      const prom = await startPrometheus([
        { job: "producer", port: producerServer.addr.port },
        { job: "consumer", port: consumerServer.addr.port },
      ]);
      cleanups.push(() => prom.close());
      const influxLogs: string[] = [];
      const pushes = ([["producer", producerMetrics], ["consumer", consumerMetrics]] as const).map(
        ([service, m]) =>
          startInfluxPush(m.registry, {
            url: influx.url,
            db: "crypto",
            intervalMs: 500,
            tags: { service, instance: `${service}-1` },
            counters: {
              written: m.telemetryPointsWritten,
              dropped: m.telemetryPointsDropped,
              errors: m.telemetryWriteErrors,
            },
            log: (l) => influxLogs.push(l),
          }),
      );
      cleanups.push(() => Promise.all(pushes.map((p) => p.stop())));

      // Replay, paced by Polygon's `r`, timestamps moved to now (hops keep their real t→r).
      const startMs = Date.now();
      producerMetrics.connectionState.set(4);
      let next = 0;
      let reconnected = false;
      while (next < lines.length) {
        const now = Date.now();
        const due = Number(firstR) + (now - startMs) * speed;
        while (next < lines.length) {
          const line = lines[next]!;
          const r = /"r":(\d{13})/.exec(line);
          if (r && Number(r[1]) > due) break;
          const receivedAt = Date.now();
          const shift = r ? receivedAt - 1 - Number(r[1]) : receivedAt - Number(firstR);
          producerMetrics.eventsReceived.inc((line.match(/"ev":/g) ?? []).length);
          const frame = rebase(line, shift);
          pipeline.push(frame, receivedAt);
          // Trades and bars beside the quotes, for the trade, bar and channel panels.
          pipeline.push(tradesOf(frame), receivedAt);
          const bars = barsOf(frame);
          if (bars !== "") pipeline.push(bars, receivedAt);
          next++;
        }
        if (!reconnected && next > lines.length / 2) {
          // What the Polygon client reports when the server drops the connection mid-stream.
          reconnected = true;
          const from = Date.now();
          producerMetrics.connectionState.set(1);
          producerMetrics.reconnects.inc({ reason: "closed" });
          producerMetrics.connectionState.set(4);
          producerMetrics.gaps.inc();
          producerMetrics.gapSeconds.inc(0.25);
          pipeline.gap({ from: from - 250, to: from, reason: "closed" });
          deadLettered.too_large++;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await until(() => quotes().acked === CAPTURE_QUOTES, "every record to be acked");
      await until(() => consumed === CAPTURE_QUOTES, "every record to be consumed");
      assert.equal(malformed, 0);
      assert.deepEqual(
        [quotes().records, quotes().framesDropped, quotes().byKey.size],
        [CAPTURE_QUOTES, 0, CAPTURE_PAIRS],
      );
      // Every quote made a trade and a bar, each acknowledged.
      for (const channel of ["XT", "XA"]) {
        await until(
          () => pipeline.countsByChannel().get(channel)!.acked === CAPTURE_QUOTES,
          `every ${channel} record to be acked`,
        );
      }

      // Let Prometheus scrape the final values and the pushes write them.
      await until(async () => {
        const data = await prom.api<{ result: { value: [number, string] }[] }>("/api/v1/query", {
          query: "sum(crypto_quotes_total) + sum(crypto_consumer_records_total)",
        });
        return Number(data.result[0]?.value[1]) === 2 * CAPTURE_QUOTES;
      }, "Prometheus to scrape the final counts");
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      await Promise.all(pushes.map((p) => p.stop()));
      const endMs = Date.now();
      const window = { startMs: startMs - 1_000, endMs };

      const targets = await prom.targets();
      assert.deepEqual(targets.map((t) => [t.job, t.health]).sort(), [["consumer", "up"], [
        "producer",
        "up",
      ]]);
      for (const p of pushes) {
        assert.equal(p.writer.writeErrors, 0, influxLogs.join("\n"));
        assert.equal(p.writer.dropped, 0);
        assert.ok(p.writer.written > 0);
      }
      const [sum] = await influx.query(
        `SELECT sum("last") FROM (SELECT last("value") FROM "crypto_quotes_total" GROUP BY "symbol")`,
        "crypto",
      );
      assert.equal(
        sum!.series![0]!.values[0]![1],
        CAPTURE_QUOTES,
        "InfluxDB holds the final count",
      );

      // The symbol variable's own queries.
      const promSymbols = await prom.api<string[]>("/api/v1/label/symbol/values", {
        "match[]": "crypto_last_quote_timestamp_seconds",
        start: String(window.startMs / 1000),
        end: String(window.endMs / 1000),
      });
      assert.equal(promSymbols.length, CAPTURE_PAIRS);
      const symbolVariable = (await readDashboard("influxdb")).templating.list[1]!;
      const [tagValues] = await influx.query(String(symbolVariable.query), "crypto");
      assert.equal(tagValues!.series![0]!.values.length, CAPTURE_PAIRS);
      assert.deepEqual(tagValues!.series![0]!.values.map((v) => v[1]), [...promSymbols].sort());

      // Every query of every panel, for "All" and for a two-symbol selection.
      const picked = ["MKR-USD", "KNC-USD"];
      const failures: string[] = [];
      let ran = 0;
      for (const kind of KINDS) {
        const dashboard = await readDashboard(kind);
        for (const selection of ["all", picked] as const) {
          for (const panel of dashboard.panels) {
            for (const target of panel.targets) {
              const raw = kind === "prometheus" ? target.expr! : target.query!;
              const q = interpolate(raw, selection, window);
              let found: Found;
              try {
                found = kind === "prometheus"
                  ? await runPromQL(prom, q, window)
                  : await runInfluxQL(influx, q);
              } catch (error) {
                failures.push(`${kind} "${panel.title}" ${target.refId}: ${error}\n    ${q}`);
                continue;
              }
              ran++;
              const where = `${kind} "${panel.title}" ${target.refId} (${
                selection === "all" ? "All" : picked.join("+")
              })`;
              if (found.values.length === 0) {
                failures.push(`${where} returned no data:\n    ${q}`);
                continue;
              }
              if (raw.includes("$symbol")) {
                const symbols = [...new Set(found.series.map((s) => s.symbol))].sort();
                const expected = selection === "all" ? [...promSymbols].sort() : [...picked].sort();
                if (JSON.stringify(symbols) !== JSON.stringify(expected)) {
                  failures.push(
                    `${where} returned symbols ${symbols.join(",")}, expected ${
                      expected.join(",")
                    }`,
                  );
                }
              }
              if (panel.title === "Latency hop by hop, p50 and p99") {
                const hops = [...new Set(found.series.map((s) => s.hop))].sort();
                const all = [
                  "exchange_to_polygon",
                  "kafka_to_consumer",
                  "polygon_to_receive",
                  "receive_to_ack",
                ];
                if (JSON.stringify(hops) !== JSON.stringify(all)) {
                  failures.push(
                    `${where} returned hops ${hops.join(",")}, expected ${all.join(",")}`,
                  );
                }
              }
              // The per-channel series: one per channel carried; dead letters: every reason.
              const labelSets: [string, string, readonly string[]][] = [
                ["Events, records and skips per second, by channel", "channel", CHANNELS],
                ["Skips per second, by channel and reason", "channel", CHANNELS],
                ["Dead letters per minute, by reason", "reason", [...REFUSAL_REASONS].sort()],
              ];
              for (const [title, label, all] of labelSets) {
                if (panel.title !== title) continue;
                const got = [...new Set(found.series.map((s) => s[label]))].sort();
                if (JSON.stringify(got) !== JSON.stringify(all)) {
                  failures.push(`${where} returned ${label}s ${got.join(",")}, expected ${all}`);
                }
              }
              if (panel.title === "Seconds since last quote") {
                const bad = found.values.filter((v) => v < 0 || v > 60);
                if (bad.length > 0) {
                  failures.push(`${where} has ages outside 0..60 s: ${bad.slice(0, 5)}`);
                }
              }
              if (
                panel.title === "Quotes per second, per symbol" && !found.values.some((v) => v > 0)
              ) {
                failures.push(`${where} never shows a quote`);
              }
            }
          }
        }
      }
      const queries = PANELS.reduce((n, p) => n + p.queries.length, 0);
      assert.deepEqual(
        failures,
        [],
        `${failures.length} dashboard queries failed:\n${failures.join("\n")}`,
      );
      assert.equal(ran, queries * 2 * 2, "every query ran for both dashboards and both selections");
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    }
  },
});
