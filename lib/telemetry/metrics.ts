/**
 * The one place the pipeline counts things: a prom-client registry with every producer and
 * consumer metric. The pipeline updates these handles (per batch where it can, never per byte);
 * `telemetry.ts` serves the registry as `/metrics` and pushes it to InfluxDB.
 */
import {
  Counter,
  Gauge,
  Histogram,
  type Metric,
  type MetricValueWithName,
  Registry,
} from "prom-client";

/** The pipeline's hop of `crypto_hop_latency_seconds`: local receive → the sink's ack. */
export const RECEIVE_TO_ACK = "receive_to_ack";

/** The consumer's hop of `crypto_hop_latency_seconds`. */
export const CONSUMER_HOP = "kafka_to_consumer";

/** Latency buckets in seconds, 0.5 ms to 60 s. */
export const LATENCY_BUCKETS = [
  0.0005,
  0.001,
  0.002,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];
const BATCH_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/** One labelled series of a {@linkcode FastHistogram}: observe is a bucket search and 3 adds. */
export interface HistogramChild {
  observe(value: number): void;
}

/**
 * A histogram for values observed once per record (hop latencies, spreads): the same
 * exposition as prom-client's Histogram (`_bucket{le}`, `_sum`, `_count`), registered on the
 * same registry, but a labelled child is a plain bucket array. prom-client's own `observe`
 * validates and hashes the labels on every call; at 100,000 records/s with four observations
 * each that was 8 % of the producer's CPU.
 */
export class FastHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  #bounds: number[];
  #labelNames: L[];
  #series = new Map<
    string,
    { labels: Record<string, string>; counts: Float64Array; sum: number }
  >();

  constructor(options: {
    name: string;
    help: string;
    buckets: number[];
    labelNames?: L[];
    registers: Registry[];
  }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#labelNames = options.labelNames ?? [];
    for (const r of options.registers) r.registerMetric(this as unknown as Metric);
  }

  /** The child for the value of the first label, or for a label object. */
  labels(labels: string | Partial<Record<L, string>>): HistogramChild {
    const values: Record<string, string> = typeof labels === "string"
      ? { [this.#labelNames[0] ?? "label"]: labels }
      : labels as Record<string, string>;
    const key = JSON.stringify(values);
    let series = this.#series.get(key);
    if (series === undefined) {
      series = {
        labels: values,
        counts: new Float64Array(this.#bounds.length + 1),
        sum: 0,
      };
      this.#series.set(key, series);
    }
    const s = series;
    const bounds = this.#bounds;
    return {
      observe(value: number) {
        if (!Number.isFinite(value)) return;
        let i = 0;
        while (i < bounds.length && value > bounds[i]!) i++;
        s.counts[i]!++;
        s.sum += value;
      },
    };
  }

  /** The series in prom-client's exposition shape (what a registry renders and exports). */
  get(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    values: MetricValueWithName<string>[];
    aggregator: "sum";
  }> {
    const values: MetricValueWithName<string>[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({
          labels: { le: this.#bounds[i]!, ...s.labels },
          value: acc,
          metricName: `${this.name}_bucket`,
        });
      }
      acc += s.counts[this.#bounds.length]!;
      values.push({
        labels: { le: "+Inf", ...s.labels },
        value: acc,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: acc, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: "histogram",
      values,
      aggregator: "sum",
    });
  }

  /** Forgets every series. */
  reset(): void {
    this.#series.clear();
  }
}

type CounterFactory = <L extends string>(name: string, help: string, labels?: L[]) => Counter<L>;

/** Metric constructors bound to one registry. */
export function factories(registry: Registry) {
  const registers = [registry];
  const c: CounterFactory = (name, help, labelNames = []) =>
    new Counter({ name, help, labelNames, registers });
  const g = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers });
  const h = <L extends string>(
    name: string,
    help: string,
    buckets: number[],
    labelNames: L[] = [],
  ) => new Histogram<L>({ name, help, buckets, labelNames, registers });
  const fh = <L extends string>(name: string, help: string, buckets: number[], labelNames: L[]) =>
    new FastHistogram<L>({ name, help, buckets, labelNames, registers });
  return { c, g, h, fh };
}

/** `crypto_hop_latency_seconds` and `crypto_hop_negative_total`, by hop; `hops` says which. */
function hopMetrics(
  registry: Registry,
  hops: string,
): [FastHistogram<"hop">, Counter<"hop">] {
  const { c, fh } = factories(registry);
  return [
    fh("crypto_hop_latency_seconds", `latency hop by hop: ${hops}`, LATENCY_BUCKETS, ["hop"]),
    c("crypto_hop_negative_total", "hops with negative latency (clock skew), by hop", ["hop"]),
  ];
}

/** The telemetry sink's own counters: points written, points dropped, failed writes. */
function telemetryCounters(c: CounterFactory): [Counter<string>, Counter<string>, Counter<string>] {
  return [
    c("crypto_telemetry_points_written_total", "InfluxDB points written"),
    c(
      "crypto_telemetry_points_dropped_total",
      "InfluxDB points dropped (buffer full while InfluxDB was down)",
    ),
    c("crypto_telemetry_write_errors_total", "failed InfluxDB writes"),
  ];
}

/** The sink counters {@linkcode ProducerMetrics.followSink} reads. */
export interface SinkStatsLike {
  retries: number;
  producerResets: number;
  /** Records kept aside as dead letters, by reason (every reason present from 0). */
  deadLettered?: Readonly<Record<string, number>>;
}

/**
 * What the pipeline updates: the queue, the sink's sends and acks, skips by reason and the
 * receive → ack hop. Nothing here knows what the records mean.
 */
export class PipelineMetrics {
  readonly registry: Registry;
  readonly framesReceived: Counter<string>;
  readonly eventsReceived: Counter<string>;
  readonly skips: Counter<"reason">;
  readonly queueDepth: Gauge<string>;
  readonly queueDrops: Counter<string>;
  readonly recordsProduced: Counter<string>;
  readonly recordsSent: Counter<string>;
  readonly recordsAcked: Counter<string>;
  readonly sendErrors: Counter<string>;
  readonly ackLatency: Histogram<string>;
  readonly batchSize: Histogram<string>;
  /** Hop latency by hop: the pipeline's receive_to_ack and the transform's own hops. */
  readonly hopLatency: FastHistogram<"hop">;
  /** Negative hops (clock skew), counted, not hidden. */
  readonly negativeHops: Counter<"hop">;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const { c, g, h } = factories(registry);
    this.framesReceived = c("crypto_ws_frames_received_total", "WebSocket frames received");
    this.eventsReceived = c("crypto_ws_events_received_total", "events in received frames");
    this.skips = c("crypto_transform_skipped_total", "events skipped, by reason", ["reason"]);
    this.queueDepth = g("crypto_queue_depth", "frames waiting between socket and transform");
    this.queueDrops = c("crypto_queue_dropped_total", "frames dropped because the queue was full");
    this.recordsProduced = c("crypto_records_produced_total", "records made by the transform");
    this.recordsSent = c("crypto_sink_records_sent_total", "records handed to the sink");
    this.recordsAcked = c("crypto_sink_records_acked_total", "records acknowledged by the sink");
    this.sendErrors = c(
      "crypto_sink_send_errors_total",
      "sends the sink gave up on (the pipeline stops; the sink retries all it can first)",
    );
    this.ackLatency = h(
      "crypto_sink_ack_latency_seconds",
      "time from send to the sink's ack, per batch",
      LATENCY_BUCKETS,
    );
    this.batchSize = h("crypto_sink_batch_size", "records per send to the sink", BATCH_BUCKETS);
    [this.hopLatency, this.negativeHops] = hopMetrics(
      registry,
      "exchange_to_polygon (t→r), polygon_to_receive (r→local), receive_to_ack (local→sink ack)",
    );
    this.negativeHops.inc({ hop: RECEIVE_TO_ACK }, 0);
  }
}

/**
 * Every metric of the producer side but the per-record ones of its transform (for spreads:
 * `spread_metrics.ts`): the pipeline's, the Polygon client's and the Kafka client's, on one
 * registry.
 */
export class ProducerMetrics extends PipelineMetrics {
  /** 0 disconnected, 1 connecting, 2 authenticating, 3 subscribing, 4 streaming. */
  readonly connectionState: Gauge<string>;
  readonly reconnects: Counter<"reason">;
  /** Server statuses that did not end the connection (`error`, unknown), by status. */
  readonly wsStatuses: Counter<"status">;
  /** Liveness probes sent on an idle socket. */
  readonly wsProbes: Counter<string>;
  readonly gapSeconds: Counter<string>;
  readonly gaps: Counter<string>;
  /** Produce requests the Kafka client retried with the same records and sequence numbers. */
  readonly produceRetries: Counter<string>;
  /** Producer restarts under a new producer id: records in flight may be written twice. */
  readonly producerResets: Counter<string>;
  /** Records the broker refuses for good, kept aside as dead letters, by reason. */
  readonly deadLettered: Counter<"reason">;
  /** Where the counters above are read from at each scrape; set by {@linkcode followSink}. */
  #sinkStats: (() => SinkStatsLike) | undefined;
  readonly telemetryPointsWritten: Counter<string>;
  readonly telemetryPointsDropped: Counter<string>;
  readonly telemetryWriteErrors: Counter<string>;

  constructor(registry: Registry = new Registry()) {
    super(registry);
    const { c, g } = factories(registry);
    this.connectionState = g(
      "crypto_ws_connection_state",
      "0 disconnected, 1 connecting, 2 authenticating, 3 subscribing, 4 streaming",
    );
    this.reconnects = c("crypto_ws_reconnects_total", "reconnects by reason", ["reason"]);
    this.wsStatuses = c(
      "crypto_ws_statuses_total",
      "server statuses logged without a reconnect (error, unknown), by status",
      ["status"],
    );
    this.wsProbes = c("crypto_ws_probes_total", "liveness probes sent on an idle socket");
    this.gapSeconds = c("crypto_ws_gap_seconds_total", "seconds spent not listening");
    this.gaps = c("crypto_ws_gaps_total", "gaps in the stream (each is also a gap record)");
    // Counters that follow the sink's own counts: raised to them at each collection.
    const follow = (name: string, help: string, read: (s: SinkStatsLike) => number) => {
      const current = () => this.#sinkStats?.();
      let reported = 0;
      return new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const stats = current();
          if (!stats || read(stats) <= reported) return;
          this.inc(read(stats) - reported);
          reported = read(stats);
        },
      });
    };
    this.produceRetries = follow(
      "crypto_kafka_produce_retries_total",
      "produce requests the Kafka client retried with the same records and sequence numbers",
      (s) => s.retries,
    );
    this.producerResets = follow(
      "crypto_kafka_producer_resets_total",
      "times the Kafka producer started again under a new producer id (records of the batch " +
        "in flight may be written twice)",
      (s) => s.producerResets,
    );
    const current = () => this.#sinkStats?.();
    const reportedDead = new Map<string, number>();
    this.deadLettered = new Counter({
      name: "crypto_kafka_dead_letter_records_total",
      help: "records the broker refuses for good (too large, timestamp out of the topic's " +
        "window, not authorized...), kept aside in the dead-letter file and never resent, " +
        "by reason",
      labelNames: ["reason"],
      registers: [registry],
      collect() {
        for (const [reason, n] of Object.entries(current()?.deadLettered ?? {})) {
          const before = reportedDead.get(reason);
          if (before !== undefined && n <= before) continue;
          this.inc({ reason }, n - (before ?? 0));
          reportedDead.set(reason, n);
        }
      },
    });
    [this.telemetryPointsWritten, this.telemetryPointsDropped, this.telemetryWriteErrors] =
      telemetryCounters(c);
  }

  /** Reads the sink's retry, reset and dead-letter counts at every scrape (and InfluxDB push). */
  followSink(stats: () => SinkStatsLike): void {
    this.#sinkStats = stats;
  }
}

/** Every metric of the consumer side but the per-symbol spread ones (`spread_metrics.ts`). */
export class ConsumerMetrics {
  readonly registry: Registry;
  readonly recordsConsumed: Counter<string>;
  readonly malformed: Counter<string>;
  readonly lag: Gauge<"partition">;
  /** Hop kafka_to_consumer: Kafka record timestamp → consumer receive. */
  readonly hopLatency: FastHistogram<"hop">;
  readonly negativeHops: Counter<"hop">;
  readonly telemetryPointsWritten: Counter<string>;
  readonly telemetryPointsDropped: Counter<string>;
  readonly telemetryWriteErrors: Counter<string>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const { c, g } = factories(registry);
    this.recordsConsumed = c("crypto_consumer_records_total", "records consumed");
    this.malformed = c(
      "crypto_consumer_malformed_total",
      "records whose value is not a valid spread record (skipped)",
    );
    this.lag = g("crypto_consumer_lag", "end offset minus committed offset, per partition", [
      "partition",
    ]);
    [this.hopLatency, this.negativeHops] = hopMetrics(
      registry,
      "kafka_to_consumer (Kafka timestamp → consumer receive)",
    );
    [this.telemetryPointsWritten, this.telemetryPointsDropped, this.telemetryWriteErrors] =
      telemetryCounters(c);
    this.negativeHops.inc({ hop: CONSUMER_HOP }, 0);
  }
}

/** One channel's counts as {@linkcode followChannels} reads them (cumulative over terms). */
export interface ChannelCountsLike {
  events: number;
  acked: number;
  skipped: Readonly<Record<string, number>>;
}

/**
 * Per-channel series, raised to the channels' own counts at each collection:
 * `crypto_channel_events_total{channel}`, `crypto_channel_records_acked_total{channel}` and
 * `crypto_channel_skipped_total{channel,reason}` (the unlabelled totals stay as they are).
 */
export function followChannels(
  registry: Registry,
  read: () => ReadonlyMap<string, ChannelCountsLike>,
): void {
  const reported = new Map<string, number>();
  const raise = (
    counter: Counter<string>,
    name: string,
    labels: Record<string, string>,
    value: number,
  ) => {
    const key = name + JSON.stringify(labels);
    const before = reported.get(key) ?? 0;
    if (value > before) counter.inc(labels, value - before);
    else if (!reported.has(key)) counter.inc(labels, 0);
    reported.set(key, Math.max(before, value));
  };
  const make = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (c: Counter<string>) => void,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        fill(this);
      },
    });
  make("crypto_channel_events_total", "events received, by Polygon channel", ["channel"], (c) => {
    for (const [channel, counts] of read()) raise(c, "events", { channel }, counts.events);
  });
  make(
    "crypto_channel_records_acked_total",
    "records acknowledged by the sink, by Polygon channel",
    ["channel"],
    (c) => {
      for (const [channel, counts] of read()) raise(c, "acked", { channel }, counts.acked);
    },
  );
  make(
    "crypto_channel_skipped_total",
    "events skipped, by Polygon channel and reason",
    ["channel", "reason"],
    (c) => {
      for (const [channel, counts] of read()) {
        for (const [reason, n] of Object.entries(counts.skipped)) {
          raise(c, "skipped", { channel, reason }, n);
        }
      }
    },
  );
}

/** The history store's metrics (store.ts): rows written, dead letters, lag, write latency. */
export class StoreMetrics {
  readonly registry: Registry;
  /** Records read from Kafka, by topic kind (spreads, gaps). */
  readonly recordsConsumed: Counter<"kind">;
  /** Rows the database acknowledged, by table kind (spreads, gaps, dead). */
  readonly rowsWritten: Counter<"table">;
  /** Records kept as dead letters, by reason code. */
  readonly deadLetters: Counter<"reason">;
  /** End offset minus committed offset, per topic and partition. */
  readonly lag: Gauge<"topic" | "partition">;
  /** One write (a batch, all or nothing) until the database acknowledged it. */
  readonly writeSeconds: Histogram<string>;
  /** 1 while the database answers, 0 while writes are retried (consuming paused). */
  readonly databaseUp: Gauge<string>;
  readonly telemetryPointsWritten: Counter<string>;
  readonly telemetryPointsDropped: Counter<string>;
  readonly telemetryWriteErrors: Counter<string>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const { c, g, h } = factories(registry);
    this.recordsConsumed = c("crypto_store_records_total", "records read from Kafka, by kind", [
      "kind",
    ]);
    this.rowsWritten = c(
      "crypto_store_rows_written_total",
      "rows the database acknowledged, by table (redeliveries included: the key makes them no-ops)",
      ["table"],
    );
    this.deadLetters = c(
      "crypto_store_dead_letters_total",
      "records refused and kept in the dead letters table, by reason",
      ["reason"],
    );
    this.lag = g("crypto_store_lag", "end offset minus the store group's committed offset", [
      "topic",
      "partition",
    ]);
    this.writeSeconds = h(
      "crypto_store_write_seconds",
      "one batch write until the database acknowledged it (Kafka offsets are committed after)",
      LATENCY_BUCKETS,
    );
    this.databaseUp = g("crypto_store_database_up", "1 while the database answers writes");
    [this.telemetryPointsWritten, this.telemetryPointsDropped, this.telemetryWriteErrors] =
      telemetryCounters(c);
    for (const kind of ["spreads", "gaps"]) this.recordsConsumed.inc({ kind }, 0);
    for (const table of ["spreads", "gaps", "dead"]) this.rowsWritten.inc({ table }, 0);
    this.databaseUp.set(1);
  }
}
