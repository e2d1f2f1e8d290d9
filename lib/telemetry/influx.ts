/**
 * InfluxDB push: line-protocol encoding, a batched writer with a bounded buffer that drops the
 * oldest points while InfluxDB is down (like Telegraf's output buffer), and a push loop that
 * snapshots a prom-client registry on an interval. The data path never calls any of this: the
 * loop reads the registry the pipeline already updates.
 *
 * @example
 * ```ts
 * const push = startInfluxPush(metrics.registry, {
 *   ...telemetryConfig.influx!,
 *   tags: { service: "producer", instance: "quotes-1:4242" },
 *   counters: {
 *     written: metrics.telemetryPointsWritten,
 *     dropped: metrics.telemetryPointsDropped,
 *     errors: metrics.telemetryWriteErrors,
 *   },
 * });
 * // on shutdown:
 * await push.stop();
 * ```
 */
import type { MetricObjectWithValues, MetricValue, Registry } from "prom-client";
import { delay, REAL_TIMERS, type Timers } from "../async.ts";
import { bucketQuantile } from "./quantile.ts";

/** A value that cannot be written as line protocol (a newline, a trailing backslash, …). */
export class LineProtocolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LineProtocolError";
  }
}

const NEWLINE_RE = /[\n\r]/;

function checkIdentifier(what: string, value: string): void {
  if (value === "") throw new LineProtocolError(`Cannot encode an empty ${what}`);
  if (NEWLINE_RE.test(value)) {
    throw new LineProtocolError(
      `Cannot encode ${what} ${JSON.stringify(value)}: line protocol has no newline escape`,
    );
  }
  if (value.endsWith("\\")) {
    throw new LineProtocolError(
      `Cannot encode ${what} ${
        JSON.stringify(value)
      }: a trailing backslash would escape the delimiter`,
    );
  }
}

/** Escapes a measurement name: commas and spaces get a backslash. */
export function escapeMeasurement(name: string): string {
  checkIdentifier("measurement", name);
  return name.replace(/[, ]/g, "\\$&");
}

/** Escapes a tag key, tag value or field key: commas, equals signs and spaces get a backslash. */
export function escapeKey(key: string): string {
  checkIdentifier("tag or field key", key);
  return key.replace(/[,= ]/g, "\\$&");
}

/** Quotes a string field value: backslashes and double quotes get a backslash. */
export function quoteString(value: string): string {
  if (NEWLINE_RE.test(value)) {
    throw new LineProtocolError(
      `Cannot encode string field ${JSON.stringify(value)}: line protocol has no newline escape`,
    );
  }
  return '"' + value.replace(/["\\]/g, "\\$&") + '"';
}

/** A field value: a number is a float, a bigint an integer (`i`), also strings and booleans. */
export type FieldValue = number | bigint | string | boolean;

/** One point. */
export interface Point {
  measurement: string;
  /** Tags; empty values are left out, as line protocol requires. */
  tags?: Record<string, string>;
  /** At least one field. Non-finite numbers are left out (line protocol cannot carry them). */
  fields: Record<string, FieldValue>;
  /** Time in ms since the epoch (the writer uses `precision=ms`). */
  timeMs?: number;
}

function formatField(value: FieldValue): string | undefined {
  switch (typeof value) {
    case "number":
      return Number.isFinite(value) ? String(value) : undefined;
    case "bigint":
      return `${value}i`;
    case "boolean":
      return value ? "true" : "false";
    default:
      return quoteString(value);
  }
}

/**
 * Formats one point as a line of line protocol (no newline), tags sorted by key.
 * Throws {@linkcode LineProtocolError} if it cannot be encoded or has no finite field.
 * @example
 * ```ts
 * formatPoint({ measurement: "weather", tags: { location: "us,midwest" }, fields: { temperature: 82 }, timeMs: 1465839830100 });
 * // weather,location=us\,midwest temperature=82 1465839830100
 * ```
 */
export function formatPoint(point: Point): string {
  let line = escapeMeasurement(point.measurement);
  if (point.tags) {
    for (const key of Object.keys(point.tags).sort()) {
      const value = point.tags[key];
      if (value === undefined || value === "") continue;
      line += "," + escapeKey(key) + "=" + escapeKey(value);
    }
  }
  let fields = "";
  for (const [key, value] of Object.entries(point.fields)) {
    const text = formatField(value);
    if (text === undefined) continue;
    fields += (fields === "" ? "" : ",") + escapeKey(key) + "=" + text;
  }
  if (fields === "") {
    throw new LineProtocolError(
      `Cannot encode a point of "${point.measurement}" with no finite field value`,
    );
  }
  line += " " + fields;
  if (point.timeMs !== undefined) line += " " + Math.round(point.timeMs);
  return line;
}

/** Quantiles written for each histogram series, as fields `p50`, `p90`, `p99`. */
export const HISTOGRAM_QUANTILES: readonly number[] = [0.5, 0.9, 0.99];

/** Options for {@linkcode MetricsConverter}. */
export interface MetricsConverterOptions {
  /** Tags added to every point (for example `{ service: "producer" }`); default none. */
  tags?: Record<string, string>;
}

interface HistogramSeries {
  tags: Record<string, string>;
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

function labelTags(
  labels: Partial<Record<string, string | number>>,
  base: Record<string, string>,
  skip?: string,
): Record<string, string> {
  const tags: Record<string, string> = { ...base };
  for (const [k, v] of Object.entries(labels)) {
    if (k !== skip && v !== undefined) tags[k] = String(v);
  }
  return tags;
}

function seriesKey(tags: Record<string, string>): string {
  return JSON.stringify(Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Turns prom-client registry snapshots (`getMetricsAsJSON()`) into points: one measurement per
 * metric, tags from labels.
 * - Counters and gauges: field `value`.
 * - Gauges named `*_timestamp_seconds` also get `age_seconds` (snapshot time minus the value):
 *   the InfluxDB twin of PromQL's `time() - metric`.
 * - Histograms: fields `count` and `sum` (cumulative, like the counters), and `p50`, `p90`,
 *   `p99` over the observations since the previous snapshot (the twin of
 *   `histogram_quantile(q, rate(metric_bucket[interval]))`), when there were any.
 * - Summaries: field `value` per quantile tag, plus `count` and `sum`.
 */
export class MetricsConverter {
  readonly #tags: Record<string, string>;
  #previous = new Map<string, number[]>();

  constructor(options: MetricsConverterOptions = {}) {
    this.#tags = options.tags ?? {};
  }

  /** Converts one snapshot taken at `timeMs`. Series that cannot be encoded are counted in `skipped`. */
  convert(metrics: readonly MetricObjectWithValues<MetricValue<string>>[], timeMs: number): {
    points: Point[];
    skipped: number;
  } {
    const points: Point[] = [];
    const next = new Map<string, number[]>();
    for (const metric of metrics) {
      const type = String(metric.type);
      if (type === "histogram") {
        this.#histogram(metric, timeMs, points, next);
        continue;
      }
      const isTimestamp = type === "gauge" && metric.name.endsWith("_timestamp_seconds");
      const bySeries = new Map<string, Point>();
      for (const v of metric.values) {
        const name = (v as { metricName?: string }).metricName ?? metric.name;
        const tags = labelTags(v.labels, this.#tags);
        const key = name + seriesKey(tags);
        const fields: Record<string, FieldValue> = { value: v.value };
        if (isTimestamp) fields.age_seconds = timeMs / 1000 - v.value;
        if (type === "summary" && name !== metric.name) {
          // prom-client reports a summary's _sum and _count as extra values; fold them in.
          const base = labelTags(v.labels, this.#tags);
          const baseKey = metric.name + seriesKey(base);
          const target = bySeries.get(baseKey) ??
            { measurement: metric.name, tags: base, fields: {}, timeMs };
          target.fields[name.endsWith("_sum") ? "sum" : "count"] = v.value;
          bySeries.set(baseKey, target);
          continue;
        }
        bySeries.set(key, { measurement: metric.name, tags, fields, timeMs });
      }
      points.push(...bySeries.values());
    }
    this.#previous = next;
    return this.#validate(points);
  }

  #histogram(
    metric: MetricObjectWithValues<MetricValue<string>>,
    timeMs: number,
    points: Point[],
    next: Map<string, number[]>,
  ): void {
    const series = new Map<string, HistogramSeries>();
    for (const v of metric.values) {
      const tags = labelTags(v.labels, this.#tags, "le");
      const key = seriesKey(tags);
      let s = series.get(key);
      if (!s) series.set(key, s = { tags, buckets: [], sum: 0, count: 0 });
      const name = (v as { metricName?: string }).metricName ?? "";
      if (name.endsWith("_bucket")) {
        const le = v.labels.le;
        s.buckets.push({ le: le === "+Inf" ? Infinity : Number(le), count: v.value });
      } else if (name.endsWith("_sum")) s.sum = v.value;
      else if (name.endsWith("_count")) s.count = v.value;
    }
    for (const [key, s] of series) {
      s.buckets.sort((a, b) => a.le - b.le);
      const counts = s.buckets.map((b) => b.count);
      const fullKey = metric.name + key;
      next.set(fullKey, counts);
      const before = this.#previous.get(fullKey);
      const reset = !before || before.length !== counts.length ||
        counts.some((c, i) => c < before[i]!);
      const delta = s.buckets.map((b, i) => ({
        le: b.le,
        count: reset ? b.count : b.count - before[i]!,
      }));
      const fields: Record<string, FieldValue> = { count: s.count, sum: s.sum };
      for (const q of HISTOGRAM_QUANTILES) {
        const value = bucketQuantile(q, delta);
        if (value !== undefined) fields[`p${Math.round(q * 100)}`] = value;
      }
      points.push({ measurement: metric.name, tags: s.tags, fields, timeMs });
    }
  }

  #validate(points: Point[]): { points: Point[]; skipped: number } {
    const ok: Point[] = [];
    let skipped = 0;
    for (const p of points) {
      try {
        formatPoint(p);
        ok.push(p);
      } catch (error) {
        if (!(error instanceof LineProtocolError)) throw error;
        skipped++;
      }
    }
    return { points: ok, skipped };
  }
}

/** Something that counts, such as a prom-client `Counter`. */
export interface CounterLike {
  inc(value?: number): void;
}

// The push loop's timers are the shared ones; tests pass controllable ones.
export type { Timers } from "../async.ts";

/** Where and how to write: the `influx` part of `TelemetryConfig`, plus options. */
export interface InfluxWriterOptions {
  /** Base URL, e.g. `http://127.0.0.1:8086`; user info in it is used as v1 credentials. */
  url: string;
  /** `v1` (`/write?db=`) or `v2` (`/api/v2/write`, also InfluxDB 3); default `v1`. */
  api?: "v1" | "v2";
  /** v1 database; default `crypto`. */
  db?: string;
  /** v1 retention policy; default the database's default. */
  rp?: string;
  /** v1 user name (sent with the password as HTTP basic auth). */
  user?: string;
  /** v1 password; never logged. */
  password?: string;
  /** v2/v3 token, or a v1 token: `Authorization: Token …`; never logged. */
  token?: string;
  /** v2 organisation. */
  org?: string;
  /** v2 bucket. */
  bucket?: string;
  /** Most points per request; default 1,000. */
  batchSize?: number;
  /** Most points buffered while InfluxDB is down; the oldest beyond it are dropped; default 10,000. */
  bufferMax?: number;
  /** Per-request timeout in ms; default 5,000. */
  timeoutMs?: number;
  /** Counters for points written and dropped and failed writes; default none. */
  counters?: { written?: CounterLike; dropped?: CounterLike; errors?: CounterLike };
  /** Log sink; default `console.error`. Lines never contain credentials. */
  log?: (line: string) => void;
  /** Clock in ms; default `Date.now`. */
  now?: () => number;
  /** HTTP client; default the global `fetch`. */
  fetch?: typeof fetch;
}

/** A write InfluxDB refused or that did not reach it. */
export class InfluxWriteError extends Error {
  /** HTTP status, or undefined when there was no answer. */
  readonly status: number | undefined;
  constructor(message: string, status: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.name = "InfluxWriteError";
    this.status = status;
  }
}

/** Measurement of the point written once InfluxDB is back after points were dropped. */
export const DROP_REPORT_MEASUREMENT = "crypto_telemetry_drop_report";

/**
 * Batched line-protocol writer with a bounded buffer. {@linkcode enqueue} never waits;
 * {@linkcode flush} writes oldest first in batches and keeps what failed for the next flush.
 */
export class InfluxWriter {
  readonly #endpoint: string;
  readonly #safeEndpoint: string;
  readonly #headers: Headers;
  readonly #batchSize: number;
  readonly #bufferMax: number;
  readonly #timeoutMs: number;
  readonly #counters: NonNullable<InfluxWriterOptions["counters"]>;
  readonly #log: (line: string) => void;
  readonly #now: () => number;
  readonly #fetch: typeof fetch;
  #buffer: string[] = [];
  #flushing: Promise<void> | undefined;
  #written = 0;
  #dropped = 0;
  #errors = 0;
  #droppedSinceReport = 0;
  #downSince: number | undefined;

  constructor(options: InfluxWriterOptions) {
    const base = new URL(options.url);
    let user = options.user;
    let password = options.password;
    if (base.username || base.password) {
      user ??= decodeURIComponent(base.username);
      password ??= decodeURIComponent(base.password);
      base.username = "";
      base.password = "";
    }
    const root = base.href.replace(/\/+$/, "");
    const api = options.api ?? "v1";
    const params = new URLSearchParams();
    let path: string;
    if (api === "v2") {
      if (!options.org || !options.bucket || !options.token) {
        throw new TypeError("InfluxDB v2 writes need org, bucket and token");
      }
      path = "/api/v2/write";
      params.set("org", options.org);
      params.set("bucket", options.bucket);
    } else {
      path = "/write";
      params.set("db", options.db ?? "crypto");
      if (options.rp) params.set("rp", options.rp);
    }
    params.set("precision", "ms");
    this.#endpoint = `${root}${path}?${params}`;
    this.#safeEndpoint = this.#endpoint;
    this.#headers = new Headers({ "content-type": "text/plain; charset=utf-8" });
    if (options.token) this.#headers.set("authorization", `Token ${options.token}`);
    else if (user !== undefined && user !== "") {
      const bytes = new TextEncoder().encode(`${user}:${password ?? ""}`);
      this.#headers.set("authorization", `Basic ${btoa(String.fromCharCode(...bytes))}`);
    }
    this.#batchSize = options.batchSize ?? 1_000;
    this.#bufferMax = options.bufferMax ?? 10_000;
    if (!(this.#batchSize >= 1) || !(this.#bufferMax >= 1)) {
      throw new RangeError(
        `InfluxDB batchSize and bufferMax must be at least 1, got "${this.#batchSize}" and "${this.#bufferMax}"`,
      );
    }
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#counters = options.counters ?? {};
    this.#log = options.log ?? ((line) => console.error(line));
    this.#now = options.now ?? Date.now;
    this.#fetch = options.fetch ?? fetch;
  }

  /** The write URL (it never holds credentials). */
  get endpoint(): string {
    return this.#safeEndpoint;
  }
  /** Points waiting to be written. */
  get buffered(): number {
    return this.#buffer.length;
  }
  /** Points InfluxDB accepted. */
  get written(): number {
    return this.#written;
  }
  /** Points dropped: the oldest, when the buffer was full, and batches InfluxDB rejected as bad. */
  get dropped(): number {
    return this.#dropped;
  }
  /** Failed write requests. */
  get writeErrors(): number {
    return this.#errors;
  }

  /** Adds points (or preformatted lines) to the buffer, dropping the oldest beyond `bufferMax`. */
  enqueue(points: readonly (Point | string)[]): void {
    for (const p of points) this.#buffer.push(typeof p === "string" ? p : formatPoint(p));
    this.#trim();
  }

  #trim(): void {
    const excess = this.#buffer.length - this.#bufferMax;
    if (excess > 0) {
      this.#buffer.splice(0, excess);
      this.#drop(excess);
    }
  }

  #drop(n: number): void {
    this.#dropped += n;
    this.#droppedSinceReport += n;
    this.#counters.dropped?.inc(n);
  }

  /**
   * Writes the buffer, oldest first, in batches of `batchSize`, until it is empty or a write
   * fails. Never rejects. Concurrent calls share one flush.
   */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushAll().finally(() => this.#flushing = undefined);
    return this.#flushing;
  }

  async #flushAll(): Promise<void> {
    while (this.#buffer.length > 0) {
      const batch = this.#buffer.splice(0, this.#batchSize);
      let error: InfluxWriteError | undefined;
      try {
        await this.#post(batch);
      } catch (e) {
        error = e instanceof InfluxWriteError
          ? e
          : new InfluxWriteError(`Cannot write to InfluxDB: ${e}`, undefined, { cause: e });
      }
      if (error === undefined) {
        this.#written += batch.length;
        this.#counters.written?.inc(batch.length);
        this.#recovered();
        continue;
      }
      this.#errors++;
      this.#counters.errors?.inc();
      const status = error.status;
      if (
        status !== undefined && status >= 400 && status < 500 && status !== 429 &&
        status !== 408
      ) {
        // InfluxDB understood and refused the batch; sending it again cannot help.
        this.#drop(batch.length);
        this.#log(`${error.message}; dropped the batch of ${batch.length} points`);
        continue;
      }
      if (this.#downSince === undefined) {
        this.#downSince = this.#now();
        this.#log(`${error.message}; buffering up to ${this.#bufferMax} points, oldest dropped`);
      }
      this.#buffer.unshift(...batch);
      this.#trim();
      return;
    }
  }

  #recovered(): void {
    const downSince = this.#downSince;
    this.#downSince = undefined;
    const dropped = this.#droppedSinceReport;
    if (downSince === undefined && dropped === 0) return;
    this.#droppedSinceReport = 0;
    const now = this.#now();
    const downMs = downSince === undefined ? 0 : now - downSince;
    this.#log(
      downSince === undefined
        ? `InfluxDB writes to ${this.#safeEndpoint}: ${dropped} points were dropped since the last report`
        : `InfluxDB writes to ${this.#safeEndpoint} resumed after ${
          (downMs / 1000).toFixed(1)
        } s; ` +
          `${dropped} points were dropped meanwhile`,
    );
    this.#buffer.push(formatPoint({
      measurement: DROP_REPORT_MEASUREMENT,
      fields: { dropped: BigInt(dropped), down_seconds: downMs / 1000 },
      timeMs: now,
    }));
    this.#trim();
  }

  async #post(batch: string[]): Promise<void> {
    let response: Response;
    try {
      response = await this.#fetch(this.#endpoint, {
        method: "POST",
        headers: this.#headers,
        body: batch.join("\n") + "\n",
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new InfluxWriteError(
        `Cannot write ${batch.length} points to InfluxDB at ${this.#safeEndpoint}: ${reason}`,
        undefined,
        { cause: error },
      );
    }
    if (response.ok) {
      await response.body?.cancel();
      return;
    }
    const text = (await response.text().catch(() => "")).slice(0, 300).trim();
    throw new InfluxWriteError(
      `Cannot write ${batch.length} points to InfluxDB at ${this.#safeEndpoint}: ` +
        `status ${response.status}${text ? `: ${text}` : ""}`,
      response.status,
    );
  }
}

/** Options for {@linkcode startInfluxPush}: the writer's, plus the loop's. */
export interface InfluxPushOptions extends InfluxWriterOptions {
  /** Snapshot and write every this many ms; default 10,000. */
  intervalMs?: number;
  /** Tags added to every point, e.g. `{ service: "producer" }`; default none. */
  tags?: Record<string, string>;
  /** Timers for the wait between ticks; default the global `setTimeout` / `clearTimeout`. */
  timers?: Timers;
}

/** A running push loop. */
export interface InfluxPush {
  /** The writer, for its counts. */
  readonly writer: InfluxWriter;
  /** Takes a snapshot now and flushes; resolves when the flush is done. Never rejects. */
  tick(): Promise<void>;
  /** Stops the timer, takes a last snapshot and flushes it (bounded by the request timeout). */
  stop(): Promise<void>;
}

/**
 * Snapshots `registry` every `intervalMs`, converts it to points and writes them, off the data
 * path. A tick that finds the previous flush still running only enqueues.
 */
export function startInfluxPush(registry: Registry, options: InfluxPushOptions): InfluxPush {
  const writer = new InfluxWriter(options);
  const converter = new MetricsConverter({ tags: options.tags });
  const now = options.now ?? Date.now;
  const log = options.log ?? ((line: string) => console.error(line));
  const timers = options.timers ?? REAL_TIMERS;
  let skippedLogged = false;
  const tick = async (): Promise<void> => {
    try {
      const snapshot = await registry.getMetricsAsJSON();
      const { points, skipped } = converter.convert(snapshot, now());
      if (skipped > 0 && !skippedLogged) {
        skippedLogged = true;
        log(`InfluxDB push skipped ${skipped} series that line protocol cannot encode`);
      }
      writer.enqueue(points);
    } catch (error) {
      log(`InfluxDB push could not snapshot the metrics: ${error}`);
    }
    await writer.flush();
  };
  const stopping = new AbortController();
  const loop = async () => {
    const intervalMs = options.intervalMs ?? 10_000;
    for (;;) {
      await delay(intervalMs, { signal: stopping.signal, timers });
      void tick(); // The next wait starts now, as with setInterval: a slow flush only enqueues.
    }
  };
  loop().catch(() => {}); // Ends when stop() aborts the wait.
  let stopped = false;
  return {
    writer,
    tick,
    async stop() {
      if (stopped) return;
      stopped = true;
      stopping.abort();
      await writer.flush();
      await tick();
    },
  };
}
