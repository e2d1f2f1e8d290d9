/**
 * Builds the two Grafana dashboards from one panel list, so they always show the same panels:
 * `crypto_prometheus.json` (PromQL) and `crypto_influxdb.json` (InfluxQL).
 *
 * Run: `deno run --allow-write=dashboards dashboards/build_dashboards.ts`
 * (`tests/dashboards_test.ts` fails if the committed JSON differs from what this builds.)
 */

/** One query of a panel, in both languages. */
export interface PanelQuery {
  /** PromQL; may use `$symbol` (a regex) and `$__rate_interval`. */
  promql: string;
  /** Grafana legend for the PromQL query. */
  legend: string;
  /** InfluxQL; may use `$symbol` (a regex), `$timeFilter` and `$__interval`. */
  influxql: string;
  /** Grafana alias for the InfluxQL query. */
  alias: string;
}

/** One panel. */
export interface PanelSpec {
  title: string;
  description: string;
  /** Grafana unit id. */
  unit: string;
  queries: PanelQuery[];
}

const SYM_PROM = `symbol=~"$symbol"`;
const SYM_INFLUX = `"symbol" =~ /^$symbol$/`;
const RI = "$__rate_interval";

function influxRate(measurement: string, where = "", by = ""): string {
  return `SELECT non_negative_derivative(last("value"), 1s) FROM "${measurement}" WHERE ` +
    `${where ? where + " AND " : ""}$timeFilter GROUP BY time($__interval)${
      by ? `, "${by}"` : ""
    } fill(none)`;
}

function influxIncrease(measurement: string, by = ""): string {
  return `SELECT non_negative_difference(last("value")) FROM "${measurement}" WHERE $timeFilter ` +
    `GROUP BY time($__interval)${by ? `, "${by}"` : ""} fill(none)`;
}

function influxLast(measurement: string, field: string, where = "", by = "", fn = "last"): string {
  return `SELECT ${fn}("${field}") FROM "${measurement}" WHERE ` +
    `${where ? where + " AND " : ""}$timeFilter GROUP BY time($__interval)${
      by ? `, "${by}"` : ""
    } fill(none)`;
}

function promQuantile(q: number, metric: string, by: string, match = ""): string {
  const sel = match ? `{${match}}` : "";
  return `histogram_quantile(${q}, sum by (${by}) (rate(${metric}_bucket${sel}[${RI}])))`;
}

/** Every panel of both dashboards, top to bottom. */
export const PANELS: readonly PanelSpec[] = [
  {
    title: "Quotes per second, per symbol",
    description: "Spread records acknowledged by Kafka per second (crypto_quotes_total).",
    unit: "ops",
    queries: [{
      promql: `sum by (symbol) (rate(crypto_quotes_total{${SYM_PROM}}[${RI}]))`,
      legend: "{{symbol}}",
      influxql: influxRate("crypto_quotes_total", SYM_INFLUX, "symbol"),
      alias: "$tag_symbol",
    }],
  },
  {
    title: "Spread per symbol (last)",
    description: "Last spread (ask − bid) per symbol, in quote currency (crypto_spread_last).",
    unit: "none",
    queries: [{
      promql: `max by (symbol) (crypto_spread_last{${SYM_PROM}})`,
      legend: "{{symbol}}",
      influxql: influxLast("crypto_spread_last", "value", SYM_INFLUX, "symbol"),
      alias: "$tag_symbol",
    }],
  },
  {
    title: "Spread in basis points of mid, p50 per symbol",
    description: "Median spread over the interval, in basis points of the mid price " +
      "(crypto_spread_bps; InfluxDB: p50 per push interval).",
    unit: "none",
    queries: [{
      promql: promQuantile(0.5, "crypto_spread_bps", "symbol, le", SYM_PROM),
      legend: "{{symbol}}",
      influxql: influxLast("crypto_spread_bps", "p50", SYM_INFLUX, "symbol", "max"),
      alias: "$tag_symbol",
    }],
  },
  {
    title: "Latency hop by hop, p50 and p99",
    description: "exchange_to_polygon (t→r), polygon_to_receive (r→local receive), " +
      "receive_to_ack (local receive→Kafka ack), kafka_to_consumer (Kafka timestamp→consumer). " +
      "Clock skew can make a hop negative: those are counted in the next panel, not hidden.",
    unit: "s",
    queries: [
      {
        promql: promQuantile(0.5, "crypto_hop_latency_seconds", "hop, le"),
        legend: "{{hop}} p50",
        influxql: influxLast("crypto_hop_latency_seconds", "p50", "", "hop", "max"),
        alias: "$tag_hop p50",
      },
      {
        promql: promQuantile(0.99, "crypto_hop_latency_seconds", "hop, le"),
        legend: "{{hop}} p99",
        influxql: influxLast("crypto_hop_latency_seconds", "p99", "", "hop", "max"),
        alias: "$tag_hop p99",
      },
    ],
  },
  {
    title: "Negative hops (clock skew)",
    description:
      "Hops whose end came before their start by the clocks involved (crypto_hop_negative_total).",
    unit: "short",
    queries: [{
      promql: `sum by (hop) (increase(crypto_hop_negative_total[${RI}]))`,
      legend: "{{hop}}",
      influxql: influxIncrease("crypto_hop_negative_total", "hop"),
      alias: "$tag_hop",
    }],
  },
  {
    title: "Seconds since last quote",
    description: "Per symbol: now minus the local time of the last quote " +
      "(PromQL: time() − crypto_last_quote_timestamp_seconds; InfluxDB: its age_seconds field).",
    unit: "s",
    queries: [{
      promql: `time() - max by (symbol) (crypto_last_quote_timestamp_seconds{${SYM_PROM}})`,
      legend: "{{symbol}}",
      influxql: influxLast(
        "crypto_last_quote_timestamp_seconds",
        "age_seconds",
        SYM_INFLUX,
        "symbol",
      ),
      alias: "$tag_symbol",
    }],
  },
  {
    title: "Reconnects and gaps",
    description: "WebSocket reconnects by reason, gaps (also published on the gaps topic) and " +
      "seconds spent not listening.",
    unit: "short",
    queries: [
      {
        promql: `sum by (reason) (increase(crypto_ws_reconnects_total[${RI}]))`,
        legend: "reconnects {{reason}}",
        influxql: influxIncrease("crypto_ws_reconnects_total", "reason"),
        alias: "reconnects $tag_reason",
      },
      {
        promql: `sum(increase(crypto_ws_gaps_total[${RI}]))`,
        legend: "gaps",
        influxql: influxIncrease("crypto_ws_gaps_total"),
        alias: "gaps",
      },
      {
        promql: `sum(increase(crypto_ws_gap_seconds_total[${RI}]))`,
        legend: "gap seconds",
        influxql: influxIncrease("crypto_ws_gap_seconds_total"),
        alias: "gap seconds",
      },
      {
        promql: `max(crypto_ws_connection_state)`,
        legend: "connection state (4 = streaming)",
        influxql: influxLast("crypto_ws_connection_state", "value"),
        alias: "connection state (4 = streaming)",
      },
    ],
  },
  {
    title: "Queue depth and drops",
    description: "Frames waiting between the socket and the transform, and frames dropped " +
      "per second because the queue was full.",
    unit: "short",
    queries: [
      {
        promql: `max(crypto_queue_depth)`,
        legend: "depth",
        influxql: influxLast("crypto_queue_depth", "value", "", "", "max"),
        alias: "depth",
      },
      {
        promql: `sum(rate(crypto_queue_dropped_total[${RI}]))`,
        legend: "drops/s",
        influxql: influxRate("crypto_queue_dropped_total"),
        alias: "drops/s",
      },
    ],
  },
  {
    title: "Kafka ack latency, p50 and p99",
    description: "Time from send to acknowledgement, per batch (crypto_kafka_ack_latency_seconds).",
    unit: "s",
    queries: [
      {
        promql: promQuantile(0.5, "crypto_kafka_ack_latency_seconds", "le"),
        legend: "p50",
        influxql: influxLast("crypto_kafka_ack_latency_seconds", "p50", "", "", "max"),
        alias: "p50",
      },
      {
        promql: promQuantile(0.99, "crypto_kafka_ack_latency_seconds", "le"),
        legend: "p99",
        influxql: influxLast("crypto_kafka_ack_latency_seconds", "p99", "", "", "max"),
        alias: "p99",
      },
    ],
  },
  {
    title: "Kafka records per second and send errors",
    description: "Records handed to Kafka and acknowledged per second, and failed sends " +
      "(retried) per second.",
    unit: "ops",
    queries: [
      {
        promql: `sum(rate(crypto_kafka_records_sent_total[${RI}]))`,
        legend: "sent",
        influxql: influxRate("crypto_kafka_records_sent_total"),
        alias: "sent",
      },
      {
        promql: `sum(rate(crypto_kafka_records_acked_total[${RI}]))`,
        legend: "acked",
        influxql: influxRate("crypto_kafka_records_acked_total"),
        alias: "acked",
      },
      {
        promql: `sum(rate(crypto_kafka_send_errors_total[${RI}]))`,
        legend: "send errors",
        influxql: influxRate("crypto_kafka_send_errors_total"),
        alias: "send errors",
      },
    ],
  },
  {
    title: "Consumer lag per partition",
    description: "End offset minus committed offset, per partition (crypto_consumer_lag).",
    unit: "short",
    queries: [
      {
        promql: `sum by (partition) (crypto_consumer_lag)`,
        legend: "partition {{partition}}",
        influxql: influxLast("crypto_consumer_lag", "value", "", "partition"),
        alias: "partition $tag_partition",
      },
      {
        promql: `sum(rate(crypto_consumer_records_total[${RI}]))`,
        legend: "consumed/s",
        influxql: influxRate("crypto_consumer_records_total"),
        alias: "consumed/s",
      },
    ],
  },
  {
    title: "Skips by reason",
    description: "Events that made no record, per second, by reason (status messages, other " +
      "channels, one-sided quotes, bad JSON…).",
    unit: "ops",
    queries: [{
      promql: `sum by (reason) (rate(crypto_transform_skipped_total[${RI}]))`,
      legend: "{{reason}}",
      influxql: influxRate("crypto_transform_skipped_total", "", "reason"),
      alias: "$tag_reason",
    }],
  },
  {
    title: "Telemetry points written and dropped",
    description: "InfluxDB points written per second, and points dropped while InfluxDB was down.",
    unit: "short",
    queries: [
      {
        promql: `sum(rate(crypto_telemetry_points_written_total[${RI}]))`,
        legend: "written/s",
        influxql: influxRate("crypto_telemetry_points_written_total"),
        alias: "written/s",
      },
      {
        promql: `sum(increase(crypto_telemetry_points_dropped_total[${RI}]))`,
        legend: "dropped",
        influxql: influxIncrease("crypto_telemetry_points_dropped_total"),
        alias: "dropped",
      },
    ],
  },
];

/** The two kinds of dashboard. */
export type DashboardKind = "prometheus" | "influxdb";

const REF_IDS = "ABCDEFGHIJ";

function symbolVariable(kind: DashboardKind): Record<string, unknown> {
  const query = kind === "prometheus"
    ? "label_values(crypto_last_quote_timestamp_seconds, symbol)"
    : `SHOW TAG VALUES FROM "crypto_last_quote_timestamp_seconds" WITH KEY = "symbol"`;
  return {
    name: "symbol",
    label: "Symbol",
    type: "query",
    datasource: { type: kind, uid: "${datasource}" },
    definition: query,
    query: kind === "prometheus" ? { query, refId: "SymbolVariable" } : query,
    multi: true,
    includeAll: true,
    allValue: ".*",
    current: { selected: true, text: ["All"], value: ["$__all"] },
    refresh: 2,
    sort: 1,
    regex: "",
    hide: 0,
    options: [],
  };
}

/** Builds one dashboard as a JSON-ready object. */
export function buildDashboard(kind: DashboardKind): Record<string, unknown> {
  const datasource = { type: kind, uid: "${datasource}" };
  const panels = PANELS.map((p, i) => ({
    id: i + 1,
    type: "timeseries",
    title: p.title,
    description: p.description,
    datasource,
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: {
      defaults: { unit: p.unit, custom: { drawStyle: "line", lineWidth: 1, spanNulls: true } },
      overrides: [],
    },
    options: {
      legend: { displayMode: "list", placement: "bottom", showLegend: true },
      tooltip: { mode: "multi", sort: "desc" },
    },
    targets: p.queries.map((q, j) =>
      kind === "prometheus"
        ? {
          datasource,
          refId: REF_IDS[j],
          expr: q.promql,
          legendFormat: q.legend,
          range: true,
          editorMode: "code",
        }
        : {
          datasource,
          refId: REF_IDS[j],
          query: q.influxql,
          rawQuery: true,
          resultFormat: "time_series",
          alias: q.alias,
        }
    ),
  }));
  const label = kind === "prometheus" ? "Prometheus" : "InfluxDB";
  return {
    uid: `crypto-quotes-${kind}`,
    title: `Crypto quote pipeline (${label})`,
    description: "Polygon XQ → spread transform → Kafka → consumer: freshness, throughput, " +
      "latency hop by hop, drops and errors.",
    tags: ["crypto", "kafka", "polygon", kind],
    timezone: "utc",
    editable: true,
    graphTooltip: 1,
    refresh: "10s",
    schemaVersion: 39,
    version: 1,
    time: { from: "now-1h", to: "now" },
    templating: {
      list: [
        {
          name: "datasource",
          label: "Data source",
          type: "datasource",
          query: kind,
          current: {},
          hide: 0,
          refresh: 1,
          regex: "",
          options: [],
        },
        symbolVariable(kind),
      ],
    },
    annotations: { list: [] },
    panels,
  };
}

/** The JSON text of one dashboard file, as committed. */
export function dashboardText(kind: DashboardKind): string {
  return JSON.stringify(buildDashboard(kind), null, 2) + "\n";
}

if (import.meta.main) {
  const dir = new URL(".", import.meta.url);
  for (const kind of ["prometheus", "influxdb"] as const) {
    const file = new URL(`crypto_${kind}.json`, dir);
    await Deno.writeTextFile(file, dashboardText(kind));
    console.log(`wrote ${file.pathname}`);
  }
}
