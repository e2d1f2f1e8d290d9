/**
 * Builds the two Grafana dashboards from one panel list, so they always show the same panels:
 * `crypto_prometheus.json` (PromQL) and `crypto_influxdb.json` (InfluxQL); and, with the same
 * panel builder, the broker dashboard `crypto_broker.json` (PromQL, Aiven's metric names).
 *
 * Run: `deno run --allow-write=dashboards dashboards/build_dashboards.ts`
 * (`tests/dashboards_test.ts` fails if the committed JSON differs from what this builds.)
 */

/** What a counter query shows: the rate of one counter, summed over every process. */
export interface CounterRate {
  /** The counter's metric (Prometheus) and measurement (InfluxDB) name. */
  metric: string;
  /** Per how many seconds: 1 (per second) or 60 (per minute). */
  perSeconds: 1 | 60;
  /** The labels (tags) the query keeps apart, if any; every other label is summed over. */
  by?: readonly string[];
}

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
  /** Grafana unit of this query when it differs from the panel's (then on the right axis). */
  unit?: string;
  /** Set when the query is a counter's rate; the value tests check these against true rates. */
  rate?: CounterRate;
}

/** One panel. */
export interface PanelSpec {
  title: string;
  description: string;
  /** Grafana unit id of the panel's (left) axis. */
  unit: string;
  queries: PanelQuery[];
}

const SYM_PROM = `symbol=~"$symbol"`;
const SYM_INFLUX = `"symbol" =~ /^$symbol$/`;
const RI = "$__rate_interval";
const TIME = "GROUP BY time($__interval)";

function where(condition: string): string {
  return `WHERE ${condition ? condition + " AND " : ""}$timeFilter`;
}

function groupBy(by: string | readonly string[]): string {
  const labels = typeof by === "string" ? (by ? [by] : []) : by;
  return labels.length > 0 ? `${TIME}, ${labels.map((l) => `"${l}"`).join(", ")}` : TIME;
}

/**
 * A counter's rate, summed over processes, in both languages.
 * - PromQL: `sum by (by) (rate(metric[$__rate_interval]))`, times 60 for per minute.
 * - InfluxQL: a per-series `non_negative_derivative` first (`GROUP BY *` keeps every process's
 *   `instance` and `service` apart, so two processes' counters are never subtracted from each
 *   other), summed per `$__interval` after. Empty buckets are null, so gaps show.
 */
function counterRate(
  metric: string,
  options: {
    perSeconds?: 1 | 60;
    by?: string | readonly string[];
    match?: "symbol";
    legend: string;
    unit?: string;
  },
): PanelQuery {
  const per = options.perSeconds ?? 1;
  const by = typeof options.by === "string" ? [options.by] : options.by ?? [];
  const sel = options.match ? `{${SYM_PROM}}` : "";
  const promRate = `rate(${metric}${sel}[${RI}])`;
  const promSum = by.length > 0 ? `sum by (${by.join(", ")}) (${promRate})` : `sum(${promRate})`;
  const inner = `SELECT non_negative_derivative(last("value"), ${per === 60 ? "1m" : "1s"}) ` +
    `AS "rate" FROM "${metric}" ${where(options.match ? SYM_INFLUX : "")} ${TIME}, * fill(none)`;
  return {
    promql: per === 60 ? `${promSum} * 60` : promSum,
    legend: options.legend,
    influxql: `SELECT sum("rate") FROM (${inner}) ${where("")} ${groupBy(by)} fill(null)`,
    alias: options.legend.replaceAll(/\{\{(\w+)\}\}/g, "$$tag_$1"),
    ...(options.unit ? { unit: options.unit } : {}),
    rate: { metric, perSeconds: per, ...(by.length > 0 ? { by } : {}) },
  };
}

/**
 * A gauge (or a histogram's per-push field) over processes: each process's last value per
 * `$__interval` first, then `fn` (max or min) over processes. PromQL applies the same `fn`.
 */
function gaugeAcross(
  metric: string,
  options: {
    fn: "max" | "min";
    field?: string;
    by?: string;
    match?: "symbol";
    legend: string;
    promql?: string;
    unit?: string;
  },
): PanelQuery {
  const by = options.by ?? "";
  const sel = options.match ? `{${SYM_PROM}}` : "";
  const inner = `SELECT last("${options.field ?? "value"}") AS "v" FROM "${metric}" ` +
    `${where(options.match ? SYM_INFLUX : "")} ${TIME}, * fill(none)`;
  return {
    promql: options.promql ??
      (by ? `${options.fn} by (${by}) (${metric}${sel})` : `${options.fn}(${metric}${sel})`),
    legend: options.legend,
    influxql: `SELECT ${options.fn}("v") FROM (${inner}) ${where("")} ${groupBy(by)} fill(null)`,
    alias: options.legend.replaceAll(/\{\{(\w+)\}\}/g, "$$tag_$1"),
    ...(options.unit ? { unit: options.unit } : {}),
  };
}

/** A histogram quantile: PromQL merges every process's buckets; InfluxDB takes the highest
 * process's quantile of each push interval (each process writes p50/p90/p99 per push). */
function quantile(
  q: 0.5 | 0.99,
  metric: string,
  options: { by?: string; match?: "symbol"; legend: string },
): PanelQuery {
  const by = options.by ?? "";
  const sel = options.match ? `{${SYM_PROM}}` : "";
  const le = by ? `${by}, le` : "le";
  return gaugeAcross(metric, {
    fn: "max",
    field: q === 0.5 ? "p50" : "p99",
    by,
    match: options.match,
    legend: options.legend,
    promql: `histogram_quantile(${q}, sum by (${le}) (rate(${metric}_bucket${sel}[${RI}])))`,
  });
}

/** Every panel of both dashboards, top to bottom. */
export const PANELS: readonly PanelSpec[] = [
  {
    title: "Quotes per second, per symbol",
    description:
      "Spread records acknowledged by Kafka per second, summed over producers (crypto_quotes_total).",
    unit: "ops",
    queries: [
      counterRate("crypto_quotes_total", { by: "symbol", match: "symbol", legend: "{{symbol}}" }),
    ],
  },
  {
    title: "Spread per symbol (last)",
    description: "Last spread (ask − bid) per symbol, in quote currency (crypto_spread_last); " +
      "the highest over producers if two publish the same symbol.",
    unit: "none",
    queries: [
      gaugeAcross("crypto_spread_last", {
        fn: "max",
        by: "symbol",
        match: "symbol",
        legend: "{{symbol}}",
      }),
    ],
  },
  {
    title: "Spread in basis points of mid, p50 per symbol",
    description: "Median spread, in basis points of the mid price (crypto_spread_bps). " +
      "Prometheus: over $__rate_interval, all producers merged. InfluxDB: each producer's " +
      "median of one push interval, the highest producer's shown.",
    unit: "none",
    queries: [
      quantile(0.5, "crypto_spread_bps", { by: "symbol", match: "symbol", legend: "{{symbol}}" }),
    ],
  },
  {
    title: "Latency hop by hop, p50 and p99",
    description: "exchange_to_polygon (t→r), polygon_to_receive (r→local receive), " +
      "receive_to_ack (local receive→Kafka ack), kafka_to_consumer (Kafka timestamp→consumer). " +
      "Prometheus: over $__rate_interval, all processes merged. InfluxDB: each process's " +
      "quantile of one push interval, the highest process's shown. " +
      "Clock skew can make a hop negative: those are counted in the next panel, not hidden.",
    unit: "s",
    queries: [
      quantile(0.5, "crypto_hop_latency_seconds", { by: "hop", legend: "{{hop}} p50" }),
      quantile(0.99, "crypto_hop_latency_seconds", { by: "hop", legend: "{{hop}} p99" }),
    ],
  },
  {
    title: "Negative hops (clock skew), per minute",
    description: "Hops whose end came before their start by the clocks involved, per minute, " +
      "summed over processes (crypto_hop_negative_total).",
    unit: "opm",
    queries: [
      counterRate("crypto_hop_negative_total", { perSeconds: 60, by: "hop", legend: "{{hop}}" }),
    ],
  },
  {
    title: "Seconds since last quote",
    description:
      "Per symbol: now minus the local time of the last quote, the freshest producer's " +
      "(PromQL: time() − crypto_last_quote_timestamp_seconds; InfluxDB: its age_seconds field, " +
      "as of the last push).",
    unit: "s",
    queries: [
      gaugeAcross("crypto_last_quote_timestamp_seconds", {
        fn: "min",
        field: "age_seconds",
        by: "symbol",
        match: "symbol",
        legend: "{{symbol}}",
        promql: `time() - max by (symbol) (crypto_last_quote_timestamp_seconds{${SYM_PROM}})`,
      }),
    ],
  },
  {
    title: "Reconnects and gaps, per minute",
    description: "WebSocket reconnects by reason and gaps (also published on the gaps topic), " +
      "per minute, summed over producers; on the right, the share of time spent not listening.",
    unit: "opm",
    queries: [
      counterRate("crypto_ws_reconnects_total", {
        perSeconds: 60,
        by: "reason",
        legend: "reconnects {{reason}}",
      }),
      counterRate("crypto_ws_gaps_total", { perSeconds: 60, legend: "gaps" }),
      counterRate("crypto_ws_gap_seconds_total", {
        legend: "time not listening",
        unit: "percentunit",
      }),
    ],
  },
  {
    title: "Connection state per producer",
    description: "0 disconnected, 1 connecting, 2 authenticating, 3 subscribing, 4 streaming " +
      "(crypto_ws_connection_state), one line per process (Prometheus: its scrape target; " +
      "InfluxDB: its instance tag).",
    unit: "none",
    queries: [
      gaugeAcross("crypto_ws_connection_state", {
        fn: "max",
        by: "instance",
        legend: "{{instance}}",
      }),
    ],
  },
  {
    title: "Queue depth and drops",
    description: "Frames waiting between the socket and the transform (the deepest producer's " +
      "queue), and on the right, frames dropped per second because a queue was full.",
    unit: "short",
    queries: [
      gaugeAcross("crypto_queue_depth", { fn: "max", legend: "depth" }),
      counterRate("crypto_queue_dropped_total", { legend: "drops/s", unit: "ops" }),
    ],
  },
  {
    title: "Kafka ack latency, p50 and p99",
    description: "Time from send to acknowledgement, per batch " +
      "(crypto_sink_ack_latency_seconds). Prometheus: all producers merged. InfluxDB: the " +
      "highest producer's quantile of one push interval.",
    unit: "s",
    queries: [
      quantile(0.5, "crypto_sink_ack_latency_seconds", { legend: "p50" }),
      quantile(0.99, "crypto_sink_ack_latency_seconds", { legend: "p99" }),
    ],
  },
  {
    title: "Kafka records per second and send errors",
    description: "Records handed to Kafka and acknowledged per second, and failed sends " +
      "(retried) per second, summed over producers.",
    unit: "ops",
    queries: [
      counterRate("crypto_sink_records_sent_total", { legend: "sent" }),
      counterRate("crypto_sink_records_acked_total", { legend: "acked" }),
      counterRate("crypto_sink_send_errors_total", { legend: "send errors" }),
    ],
  },
  {
    title: "Consumer lag per partition",
    description: "End offset minus committed offset, per partition (crypto_consumer_lag; every " +
      "consumer of a group reports the group's lag, so the highest report is shown), and on the " +
      "right, records consumed per second, summed over consumers.",
    unit: "short",
    queries: [
      gaugeAcross("crypto_consumer_lag", {
        fn: "max",
        by: "partition",
        legend: "partition {{partition}}",
      }),
      counterRate("crypto_consumer_records_total", { legend: "consumed/s", unit: "ops" }),
    ],
  },
  {
    title: "Trades per second, per symbol",
    description: "Trade records (channel XT, `--channels`) acknowledged by Kafka per second, " +
      "summed over producers (crypto_trades_total).",
    unit: "ops",
    queries: [
      counterRate("crypto_trades_total", { by: "symbol", match: "symbol", legend: "{{symbol}}" }),
    ],
  },
  {
    title: "Last trade price per symbol",
    description: "Price of the last trade per symbol (crypto_trade_price_last), for display: " +
      "the exact price is in the trade record; the highest over producers if two publish it.",
    unit: "none",
    queries: [
      gaugeAcross("crypto_trade_price_last", {
        fn: "max",
        by: "symbol",
        match: "symbol",
        legend: "{{symbol}}",
      }),
    ],
  },
  {
    title: "Bars per minute, per symbol",
    description: "Minute-bar records (channel XA, `--channels`) acknowledged by Kafka per " +
      "minute, summed over producers (crypto_bars_total): one per symbol and minute while the " +
      "pair trades.",
    unit: "opm",
    queries: [
      counterRate("crypto_bars_total", {
        perSeconds: 60,
        by: "symbol",
        match: "symbol",
        legend: "{{symbol}}",
      }),
    ],
  },
  {
    title: "Last bar close and volume per symbol",
    description: "Close of the last minute bar per symbol (crypto_bar_close), and on the right " +
      "its volume in base currency (crypto_bar_volume), for display: the exact values are in " +
      "the bar record; the highest over producers if two publish the same symbol.",
    unit: "none",
    queries: [
      gaugeAcross("crypto_bar_close", {
        fn: "max",
        by: "symbol",
        match: "symbol",
        legend: "close {{symbol}}",
      }),
      gaugeAcross("crypto_bar_volume", {
        fn: "max",
        by: "symbol",
        match: "symbol",
        legend: "volume {{symbol}}",
        unit: "short",
      }),
    ],
  },
  {
    title: "Events, records and skips per second, by channel",
    description: "Per Polygon channel (XQ quotes, XT trades, XA bars), summed over producers: " +
      "events received (crypto_channel_events_total), records acknowledged by Kafka " +
      "(crypto_channel_records_acked_total) and events skipped " +
      "(crypto_channel_skipped_total, every reason). Events = records + skips per channel.",
    unit: "ops",
    queries: [
      counterRate("crypto_channel_events_total", { by: "channel", legend: "events {{channel}}" }),
      counterRate("crypto_channel_records_acked_total", {
        by: "channel",
        legend: "acked {{channel}}",
      }),
      counterRate("crypto_channel_skipped_total", {
        by: "channel",
        legend: "skipped {{channel}}",
      }),
    ],
  },
  {
    title: "Skips per second, by channel and reason",
    description: "Events that made no record, per second, by Polygon channel and reason, " +
      "summed over producers (crypto_channel_skipped_total).",
    unit: "ops",
    queries: [
      counterRate("crypto_channel_skipped_total", {
        by: ["channel", "reason"],
        legend: "{{channel}} {{reason}}",
      }),
    ],
  },
  {
    title: "Dead letters per minute, by reason",
    description: "Records the broker refused for good (too large, timestamp outside the " +
      "topic's window, invalid record, policy violation, not authorized), kept in the " +
      "dead-letter file and never resent, per minute, summed over producers " +
      "(crypto_kafka_dead_letter_records_total).",
    unit: "opm",
    queries: [
      counterRate("crypto_kafka_dead_letter_records_total", {
        perSeconds: 60,
        by: "reason",
        legend: "{{reason}}",
      }),
    ],
  },
  {
    title: "Skips by reason",
    description: "Events that made no record, per second, by reason, summed over producers " +
      "(status messages, other channels, one-sided quotes, bad JSON…).",
    unit: "ops",
    queries: [
      counterRate("crypto_transform_skipped_total", { by: "reason", legend: "{{reason}}" }),
    ],
  },
  {
    title: "Telemetry points written and dropped",
    description: "InfluxDB points written per second, and points dropped per second while " +
      "InfluxDB was down or refused them, summed over processes.",
    unit: "ops",
    queries: [
      counterRate("crypto_telemetry_points_written_total", { legend: "written/s" }),
      counterRate("crypto_telemetry_points_dropped_total", { legend: "dropped/s" }),
    ],
  },
];

/** One query of a broker panel: PromQL only (broker metrics reach Prometheus, not InfluxDB). */
export interface BrokerQuery {
  /** PromQL over the metric names of Aiven's Prometheus integration; may use `$topic`. */
  promql: string;
  /** Grafana legend. */
  legend: string;
  /** Grafana unit of this query when it differs from the panel's (then on the right axis). */
  unit?: string;
  /** Aiven has the metric, the local broker's exporter cannot: no data locally. */
  aivenOnly?: true;
}

/** One broker panel. */
export interface BrokerPanelSpec {
  title: string;
  description: string;
  /** Grafana unit id of the panel's (left) axis. */
  unit: string;
  queries: BrokerQuery[];
}

const TOPIC = `topic=~"$topic", topic!=""`;

/**
 * The broker dashboard's panels, top to bottom, in the metric names of Aiven's Prometheus
 * integration for Apache Kafka. The local broker exports the same names
 * (`scripts/kafka/jmx_exporter.yml`), except where a query is `aivenOnly`.
 */
export const BROKER_PANELS: readonly BrokerPanelSpec[] = [
  {
    title: "Messages in per second, per topic",
    description: "Records appended per second, per topic, summed over brokers " +
      "(kafka_server_BrokerTopicMetrics_MessagesInPerSec_Count).",
    unit: "ops",
    queries: [{
      promql:
        `sum by (topic) (rate(kafka_server_BrokerTopicMetrics_MessagesInPerSec_Count{${TOPIC}}[${RI}]))`,
      legend: "{{topic}}",
    }],
  },
  {
    title: "Bytes in and out per topic",
    description: "Bytes from producers and to consumers per second, per topic, summed over " +
      "brokers; replication traffic not included (kafka_server_BrokerTopicMetrics_BytesInPerSec_Count, " +
      "_BytesOutPerSec_Count).",
    unit: "Bps",
    queries: [
      {
        promql:
          `sum by (topic) (rate(kafka_server_BrokerTopicMetrics_BytesInPerSec_Count{${TOPIC}}[${RI}]))`,
        legend: "in {{topic}}",
      },
      {
        promql:
          `sum by (topic) (rate(kafka_server_BrokerTopicMetrics_BytesOutPerSec_Count{${TOPIC}}[${RI}]))`,
        legend: "out {{topic}}",
      },
    ],
  },
  {
    title: "Produce and fetch requests per second",
    description: "Requests per second by type, summed over brokers and API versions " +
      "(kafka_network_RequestMetrics_RequestsPerSec_Count).",
    unit: "reqps",
    queries: [{
      promql:
        `sum by (request) (rate(kafka_network_RequestMetrics_RequestsPerSec_Count{request=~"Produce|Fetch|FetchConsumer|FetchFollower"}[${RI}]))`,
      legend: "{{request}}",
    }],
  },
  {
    title: "Produce and fetch total time, p99",
    description: "99th percentile of the time from request to response, by type, the slowest " +
      "broker's (kafka_network_RequestMetrics_TotalTimeMs_99thPercentile). The broker computes it " +
      "over its recent requests (a decaying sample of about 5 minutes), not over the panel's " +
      "interval. A fetch waits up to the consumer's fetch.max.wait.ms when there is nothing new.",
    unit: "ms",
    queries: [{
      promql:
        `max by (request) (kafka_network_RequestMetrics_TotalTimeMs_99thPercentile{request=~"Produce|FetchConsumer|FetchFollower"})`,
      legend: "{{request}}",
    }],
  },
  {
    title: "Partition health and running brokers",
    description: "Under-replicated, offline and under-min-ISR partitions (all should be 0), " +
      "summed over brokers, and the brokers that report themselves running (should be the " +
      "service's broker count) " +
      "(kafka_server_ReplicaManager_UnderReplicatedPartitions_Value, " +
      "kafka_controller_KafkaController_OfflinePartitionsCount_Value, " +
      "kafka_server_ReplicaManager_UnderMinIsrPartitionCount_Value, " +
      "kafka_server_KafkaServer_BrokerState_Value = 3, RUNNING). The running count reads each " +
      "broker's own BrokerState (MBean kafka.server:type=KafkaServer,name=BrokerState; Aiven " +
      "lists kafka_server_KafkaServer_BrokerState_Value among its broker metrics), not a " +
      "controller metric: on Aiven's KRaft services (Kafka 3.9 and later, every Standard " +
      "service) the controller is a process of Aiven's own whose controller and Raft metrics " +
      "are mostly not exposed, ActiveControllerCount not at all. A broker that cannot be " +
      "scraped has no BrokerState: the count drops, as it should. Offline partitions is the " +
      "one controller metric here, which Aiven lists as available in KRaft mode.",
    unit: "short",
    queries: [
      {
        promql: "sum(kafka_server_ReplicaManager_UnderReplicatedPartitions_Value)",
        legend: "under-replicated",
      },
      {
        promql: "sum(kafka_controller_KafkaController_OfflinePartitionsCount_Value)",
        legend: "offline",
      },
      {
        promql: "sum(kafka_server_ReplicaManager_UnderMinIsrPartitionCount_Value)",
        legend: "under min ISR",
      },
      {
        // Each broker reports its own state: 3 is RUNNING (starting, recovering and shutting
        // down are not). `== bool 3` gives 0 or 1 per broker, so the sum is 0, not empty,
        // while brokers are scraped but none runs.
        promql: "sum(kafka_server_KafkaServer_BrokerState_Value == bool 3)",
        legend: "running brokers",
      },
    ],
  },
  {
    title: "Log size per topic",
    description: "Bytes on disk per topic, every replica on every broker counted " +
      "(kafka_log_Log_Size_Value).",
    unit: "bytes",
    queries: [{
      promql: `sum by (topic) (kafka_log_Log_Size_Value{${TOPIC}})`,
      legend: "{{topic}}",
    }],
  },
  {
    title: "JVM heap and GC time",
    description: "Heap in use per broker (java_lang_Memory_used), and on the right, the share " +
      "of time spent in G1's young and old collections " +
      "(java_lang_GarbageCollector_G1_Young_Generation_CollectionTime, _G1_Old_Generation_, ms).",
    unit: "bytes",
    queries: [
      { promql: "sum by (instance) (java_lang_Memory_used)", legend: "heap {{instance}}" },
      {
        promql:
          `sum by (instance) (rate(java_lang_GarbageCollector_G1_Young_Generation_CollectionTime[${RI}])) / 1000`,
        legend: "young GC {{instance}}",
        unit: "percentunit",
      },
      {
        promql:
          `sum by (instance) (rate(java_lang_GarbageCollector_G1_Old_Generation_CollectionTime[${RI}])) / 1000`,
        legend: "old GC {{instance}}",
        unit: "percentunit",
      },
    ],
  },
  {
    title: "Consumer group lag: the broker's view and ours",
    description: "Records not yet consumed. Broker view: Aiven's kafka_consumer_group_rep_lag, " +
      "per group (Aiven computes it from offsets; no broker MBean has it, so the local broker's " +
      "exporter shows no such line). Ours: crypto_consumer_lag from the consumer, summed over " +
      "partitions (needs the consumer's /metrics in the same Prometheus).",
    unit: "short",
    queries: [
      {
        promql: `sum by (name) (kafka_consumer_group_rep_lag{${TOPIC}})`,
        legend: "broker view, group {{name}}",
        aivenOnly: true,
      },
      {
        promql: "sum(max by (partition) (crypto_consumer_lag))",
        legend: "our consumer",
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

/** What every panel has, whichever list it comes from. */
interface PanelShape {
  title: string;
  description: string;
  unit: string;
  queries: readonly { unit?: string }[];
}

/** One time series panel; `targets` are the data source's own query objects. */
function panelJson(
  p: PanelShape,
  i: number,
  datasource: { type: string; uid: string },
  targets: Record<string, unknown>[],
): Record<string, unknown> {
  return {
    id: i + 1,
    type: "timeseries",
    title: p.title,
    description: p.description,
    datasource,
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: {
      // spanNulls false: a missing scrape or push breaks the line instead of hiding an outage.
      defaults: { unit: p.unit, custom: { drawStyle: "line", lineWidth: 1, spanNulls: false } },
      overrides: p.queries.flatMap((q, j) =>
        q.unit === undefined ? [] : [{
          matcher: { id: "byFrameRefID", options: REF_IDS[j]! },
          properties: [
            { id: "unit", value: q.unit },
            { id: "custom.axisPlacement", value: "right" },
          ],
        }]
      ),
    },
    options: {
      legend: { calcs: [], displayMode: "list", placement: "bottom", showLegend: true },
      tooltip: { mode: "multi", sort: "desc" },
    },
    targets,
  };
}

function promTarget(
  datasource: { type: string; uid: string },
  j: number,
  expr: string,
  legend: string,
): Record<string, unknown> {
  return {
    datasource,
    refId: REF_IDS[j]!,
    expr,
    legendFormat: legend,
    range: true,
    editorMode: "code",
  };
}

function datasourceVariable(kind: DashboardKind): Record<string, unknown> {
  return {
    name: "datasource",
    label: "Data source",
    type: "datasource",
    query: kind,
    hide: 0,
    refresh: 1,
    regex: "",
    options: [],
  };
}

/** Builds one dashboard as a JSON-ready object. */
export function buildDashboard(kind: DashboardKind): Record<string, unknown> {
  const datasource = { type: kind, uid: "${datasource}" };
  const panels = PANELS.map((p, i) =>
    panelJson(
      p,
      i,
      datasource,
      p.queries.map((q, j) =>
        kind === "prometheus" ? promTarget(datasource, j, q.promql, q.legend) : {
          datasource,
          refId: REF_IDS[j]!,
          query: q.influxql,
          rawQuery: true,
          resultFormat: "time_series",
          alias: q.alias,
        }
      ),
    )
  );
  const label = kind === "prometheus" ? "Prometheus" : "InfluxDB";
  return {
    uid: `crypto-quotes-${kind}`,
    title: `Crypto quote pipeline (${label})`,
    description: "Polygon XQ → spread transform → Kafka → consumer: freshness, throughput, " +
      "latency hop by hop, drops and errors.",
    tags: ["crypto", "kafka", "polygon", kind],
    ...DASHBOARD_SETTINGS,
    templating: {
      list: [
        datasourceVariable(kind),
        symbolVariable(kind),
      ],
    },
    annotations: { list: [] },
    panels,
  };
}

/** What every dashboard here shares: UTC, shared crosshair, 10 s refresh, the last hour. */
const DASHBOARD_SETTINGS = {
  timezone: "utc",
  editable: true,
  graphTooltip: 1,
  refresh: "10s",
  schemaVersion: 39,
  version: 1,
  time: { from: "now-1h", to: "now" },
};

/** Builds the broker dashboard (Prometheus) from {@linkcode BROKER_PANELS}. */
export function buildBrokerDashboard(): Record<string, unknown> {
  const datasource = { type: "prometheus", uid: "${datasource}" };
  const query = "label_values(kafka_server_BrokerTopicMetrics_MessagesInPerSec_Count, topic)";
  return {
    uid: "crypto-quotes-broker",
    title: "Crypto quote pipeline: Kafka broker (Prometheus)",
    description: "The Kafka broker's own health, in the metric names of Aiven's Prometheus " +
      "integration; the local broker (scripts/kafka_local.sh) exports the same names through the " +
      "Prometheus JMX exporter. Not available locally: kafka_consumer_group_rep_lag (Aiven only).",
    tags: ["crypto", "kafka", "broker", "prometheus"],
    ...DASHBOARD_SETTINGS,
    templating: {
      list: [
        datasourceVariable("prometheus"),
        {
          name: "topic",
          label: "Topic",
          type: "query",
          datasource,
          query: { query, refId: "TopicVariable" },
          multi: true,
          includeAll: true,
          allValue: ".*",
          current: { selected: true, text: ["All"], value: ["$__all"] },
          refresh: 2,
          sort: 1,
          regex: "",
          hide: 0,
          options: [],
        },
      ],
    },
    annotations: { list: [] },
    panels: BROKER_PANELS.map((p, i) =>
      panelJson(
        p,
        i,
        datasource,
        p.queries.map((q, j) => promTarget(datasource, j, q.promql, q.legend)),
      )
    ),
  };
}

/** The JSON text of one dashboard file, as committed. */
export function dashboardText(kind: DashboardKind | "broker"): string {
  const dashboard = kind === "broker" ? buildBrokerDashboard() : buildDashboard(kind);
  return JSON.stringify(dashboard, null, 2) + "\n";
}

if (import.meta.main) {
  const dir = new URL(".", import.meta.url);
  for (const kind of ["prometheus", "influxdb", "broker"] as const) {
    const file = new URL(`crypto_${kind}.json`, dir);
    await Deno.writeTextFile(file, dashboardText(kind));
    console.log(`wrote ${file.pathname}`);
  }
}
