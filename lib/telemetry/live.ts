/**
 * The live page: `GET /` serves a single page (`web/`) with the uPlot chart library (npm
 * `uplot`, imported as text, so it is pinned by deno.lock and served offline), and
 * `GET /events` streams Server-Sent Events with what the page shows, once a second.
 *
 * Every number comes from the process's own prom-client registry (the same values `/metrics`
 * serves), the health report from `checkHealth` (what `/healthz` says) and the recent gaps from a
 * {@linkcode GapLog}. The data path is never touched: the feed samples the registry on a timer
 * that runs only while at least one page is open, so with no page open it costs nothing.
 *
 * A slow or stalled browser cannot grow memory: each client's stream holds at most
 * `clientBufferBytes` of unsent updates (plus the one update being queued); past that, updates
 * for that client are dropped and counted (`crypto_ui_updates_dropped_total`).
 *
 * @example
 * ```ts
 * const live = new LiveFeed({ registry: metrics.registry, health: pipeline, gaps });
 * const server = serveTelemetry({ registry: metrics.registry, live, port: 9464 });
 * ```
 */
import { Counter, Gauge, type Registry } from "prom-client";
import UPLOT_JS from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import UPLOT_CSS from "uplot/dist/uPlot.min.css" with { type: "text" };
import INDEX_HTML from "../../web/index.html" with { type: "text" };
import APP_JS from "../../web/app.js" with { type: "text" };
import STYLE_CSS from "../../web/style.css" with { type: "text" };
import FAVICON_SVG from "../../web/favicon.svg" with { type: "text" };
import { DEFAULTS } from "../config/defaults.ts";
import type { Gap } from "../gap.ts";
import { type Bucket, bucketQuantile } from "./quantile.ts";
import { checkHealth, type HealthReport, type HealthSource } from "./health.ts";

/** The most recent gaps, newest last, bounded. */
export class GapLog {
  #gaps: Gap[] = [];
  #max: number;

  /** `max`: gaps kept; default 50. */
  constructor(max = 50) {
    this.#max = max;
  }

  /** Notes one gap; the oldest is forgotten past `max`. */
  add(gap: Gap): void {
    this.#gaps.push({ from: gap.from, to: gap.to, reason: gap.reason });
    if (this.#gaps.length > this.#max) this.#gaps.shift();
  }

  /** The gaps kept, oldest first. */
  list(): readonly Gap[] {
    return this.#gaps;
  }
}

/** One symbol's row: `[symbol, last spread, quotes, quotes/s, crossed, locked]`. */
export type SymbolRow = [string, number | null, number, number | null, number, number];

/** One symbol's trades: `[symbol, last price, trades, trades/s]` (channel XT). */
export type TradeRow = [string, number | null, number, number | null];

/** One symbol's last minute bar: `[symbol, close, volume, bar start (epoch ms), bars]` (XA). */
export type BarRow = [string, number | null, number | null, number | null, number];

/** The pipeline section of an update (producer side). Totals are since start. */
export interface PipelineView {
  framesTotal: number;
  framesPerSec: number | null;
  ackedTotal: number;
  ackedPerSec: number | null;
  queueDepth: number;
  queueDropped: number;
  /** Receive → Kafka ack, ms, estimated from the histogram buckets since start. */
  receiveToAckP50Ms: number | null;
  receiveToAckP99Ms: number | null;
  /** 0 disconnected … 4 streaming. */
  connectionState: number;
  reconnects: Record<string, number>;
  gapsTotal: number;
  gapSeconds: number;
  /** The most recent gaps: start (epoch ms), length (ms), reason. */
  gaps: { from: number; ms: number; reason: string }[];
  skips: Record<string, number>;
}

/** The consumer section of an update. */
export interface ConsumerView {
  recordsTotal: number;
  recordsPerSec: number | null;
  malformed: number;
  lag: Record<string, number>;
  /** Kafka timestamp → consumer, ms, from the histogram since start. */
  kafkaToConsumerP50Ms: number | null;
  kafkaToConsumerP99Ms: number | null;
}

/** The history store section of an update (store.ts). Totals are since start. */
export interface StoreView {
  /** Records read from Kafka, both topics. */
  recordsTotal: number;
  recordsPerSec: number | null;
  /** Rows the database acknowledged, by table kind (spreads, gaps, dead). */
  rows: Record<string, number>;
  rowsPerSec: number | null;
  /** Dead letters by reason code. */
  deadLetters: Record<string, number>;
  /** Lag by `topic/partition`. */
  lag: Record<string, number>;
  /** One batch write until the database acknowledged it, ms, since start. */
  writeP50Ms: number | null;
  writeP99Ms: number | null;
  /** False while writes are being retried (consuming paused). */
  databaseUp: boolean;
}

/** One update as the page receives it (`event: update`). */
export interface LiveUpdate {
  /** Sample time, epoch ms. */
  t: number;
  role: "producer" | "consumer" | "store" | "other";
  pipeline?: PipelineView;
  consumer?: ConsumerView;
  store?: StoreView;
  health?: HealthReport;
  /** Sorted by symbol. */
  symbols: SymbolRow[];
  /** Symbols beyond `maxSymbols`, left out. */
  symbolsOmitted: number;
  /** With channel XT: per symbol, sorted; absent without trades. */
  trades?: TradeRow[];
  /** With channel XT: trades acknowledged per second, every symbol. */
  tradesPerSec?: number | null;
  /** With channel XA: per symbol, sorted; absent without bars. */
  bars?: BarRow[];
  ui: { clients: number; updatesDropped: number };
}

/** The first message a page gets (`event: init`): the spread history, then updates follow. */
export interface LiveInit {
  /** Samples the history holds when full (one per update). */
  historySamples: number;
  historySeconds: number;
  /** Sample times, epoch ms, oldest first. */
  times: number[];
  /** Per symbol, the spread at each of `times` (null: no value yet). */
  spreads: Record<string, (number | null)[]>;
}

/** Options for {@linkcode LiveFeed}. */
export interface LiveFeedOptions {
  /** The registry to read; the feed also registers its own two metrics on it. */
  registry: Registry;
  /** Health inputs, as for `/healthz`; default none (no health section). */
  health?: HealthSource;
  /** Freshness limit for the health report, ms; default 30,000. */
  staleAfterMs?: number;
  /** Recent gaps to list; default none. */
  gaps?: GapLog;
  /** Update interval, ms; default 1000. */
  intervalMs?: number;
  /** Spread history kept, in samples (one per interval); default 300 (5 minutes). */
  historySamples?: number;
  /** Most symbols shown; default 2000. */
  maxSymbols?: number;
  /** Unsent bytes one client may hold before its updates are dropped; default 1 MiB. */
  clientBufferBytes?: number;
  /**
   * Most pages open at once; default 16. The last one is kept for a page of this server
   * (`Sec-Fetch-Site: same-origin`), so other clients cannot hold every stream.
   */
  maxClients?: number;
  /** Clock in epoch ms; default `Date.now`. */
  now?: () => number;
  /** Reports a sample that failed; default stderr. */
  log?: (line: string) => void;
}

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  dropped: number;
  closed: boolean;
}

type Sample = { value: number; labels: Record<string, string | number>; metricName?: string };

const STATIC: Record<string, [string, string]> = {
  "/": [INDEX_HTML, "text/html; charset=utf-8"],
  "/app.js": [APP_JS, "text/javascript; charset=utf-8"],
  "/style.css": [STYLE_CSS, "text/css; charset=utf-8"],
  "/favicon.svg": [FAVICON_SVG, "image/svg+xml"],
  "/vendor/uPlot.iife.min.js": [UPLOT_JS, "text/javascript; charset=utf-8"],
  "/vendor/uPlot.min.css": [UPLOT_CSS, "text/css; charset=utf-8"],
};

/** Only this origin, no inline script or style: a pair name can never become code. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const EVENT_STREAM = {
  "content-type": "text/event-stream; charset=utf-8",
  "x-accel-buffering": "no",
};

const PRODUCER_SYMBOLS = [
  "crypto_spread_last",
  "crypto_quotes_total",
  "crypto_quotes_crossed_total",
  "crypto_quotes_locked_total",
] as const;
const CONSUMER_SYMBOLS = [
  "crypto_consumer_spread_last",
  "crypto_consumer_quotes_total",
  "crypto_consumer_quotes_crossed_total",
  "crypto_consumer_quotes_locked_total",
] as const;

/** Samples the registry once per interval while pages are open and streams it to them. */
export class LiveFeed {
  /** Updates dropped because a client was not reading. */
  readonly updatesDropped: Counter<string>;
  /** Pages open now. */
  readonly clientsGauge: Gauge<string>;
  #registry: Registry;
  #health: HealthSource | undefined;
  #staleAfterMs: number;
  #gaps: GapLog | undefined;
  #intervalMs: number;
  #historySamples: number;
  #maxSymbols: number;
  #clientBufferBytes: number;
  #maxClients: number;
  #now: () => number;
  #log: (line: string) => void;
  #clients = new Set<Client>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #sampling = false;
  #encoder = new TextEncoder();
  // History ring: sample times and, per symbol, spreads at those times.
  #times: number[] = [];
  #spreads = new Map<string, (number | null)[]>();
  #previous: { t: number; totals: Map<string, number> } | undefined;
  #droppedTotal = 0;
  #closed = false;

  constructor(options: LiveFeedOptions) {
    this.#registry = options.registry;
    this.#health = options.health;
    this.#staleAfterMs = options.staleAfterMs ?? DEFAULTS.staleAfterMs;
    this.#gaps = options.gaps;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#historySamples = options.historySamples ?? 300;
    this.#maxSymbols = options.maxSymbols ?? 2000;
    this.#clientBufferBytes = options.clientBufferBytes ?? 1024 * 1024;
    this.#maxClients = options.maxClients ?? 16;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? ((line) => console.error(line));
    const registers = [this.#registry];
    this.updatesDropped = new Counter({
      name: "crypto_ui_updates_dropped_total",
      help: "live page updates dropped because the browser was not reading",
      registers,
    });
    this.clientsGauge = new Gauge({
      name: "crypto_ui_clients",
      help: "live pages open (Server-Sent Events streams)",
      registers,
    });
  }

  /** Pages open now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Unsent bytes each open page holds now (bounded by `clientBufferBytes` + one update). */
  queuedBytes(): number[] {
    return [...this.#clients].map((c) => this.#clientBufferBytes - (c.controller.desiredSize ?? 0));
  }

  /** True while the sampling timer runs (only while a page is open). */
  get sampling(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Answers the page's paths (`/`, its script, styles and chart library, `/events`); undefined
   * for any other path, which the caller handles.
   */
  handle(request: Request): Response | undefined {
    const { pathname } = new URL(request.url);
    const file = STATIC[pathname];
    if (pathname !== "/events" && !file) return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    if (file) {
      const body = request.method === "HEAD" ? null : file[0];
      return new Response(body, { headers: { ...SECURITY_HEADERS, "content-type": file[1] } });
    }
    if (request.method === "HEAD") {
      return new Response(null, { headers: { ...SECURITY_HEADERS, ...EVENT_STREAM } });
    }
    // Fetch metadata, sent by browsers: a page of another site never gets the stream.
    const site = request.headers.get("sec-fetch-site");
    if (site === "cross-site" || site === "same-site") {
      return new Response("Forbidden: the live stream is for this server's own page\n", {
        status: 403,
      });
    }
    return this.#subscribe(site === "same-origin");
  }

  /** Ends every stream and stops the timer (the server can then shut down). */
  close(): void {
    this.#closed = true;
    for (const client of [...this.#clients]) this.#remove(client, true);
  }

  // A page that goes away cancels its stream (the `cancel` callback below).
  #subscribe(sameOrigin: boolean): Response {
    if (this.#closed) return new Response("Shutting down\n", { status: 503 });
    const reserved = sameOrigin || this.#maxClients < 2 ? 0 : 1;
    if (this.#clients.size >= this.#maxClients - reserved) {
      return new Response(
        `Too many live pages open (${this.#maxClients}); close one and reload\n`,
        { status: 503 },
      );
    }
    let client: Client | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = { controller, dropped: 0, closed: false };
      },
      cancel: () => {
        if (client) this.#remove(client, false);
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: this.#clientBufferBytes }));
    const added = client!;
    this.#clients.add(added);
    this.clientsGauge.set(this.#clients.size);
    this.#send(added, `retry: 2000\n\n`);
    this.#send(added, this.#event("init", this.#init()));
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => void this.#tick(), this.#intervalMs);
      void this.#tick();
    } else if (this.#last) {
      this.#send(added, this.#last);
    }
    return new Response(stream, {
      headers: { ...SECURITY_HEADERS, ...EVENT_STREAM },
    });
  }
  #last: string | undefined;

  #remove(client: Client, closeStream: boolean): void {
    if (!this.#clients.delete(client)) return;
    this.clientsGauge.set(this.#clients.size);
    if (closeStream && !client.closed) {
      client.closed = true;
      try {
        client.controller.close();
      } catch {
        // Already closed or errored by the server.
      }
    }
    client.closed = true;
    if (this.#clients.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      // Rates restart with the next page rather than averaging over the time without one.
      this.#previous = undefined;
    }
  }

  #event(name: string, data: unknown): string {
    return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  /** Queues text for one client, or drops it (counted) when the client holds too much. */
  #send(client: Client, text: string): void {
    if (client.closed) return;
    const room = client.controller.desiredSize;
    if (room === null || room <= 0) {
      client.dropped++;
      this.#droppedTotal++;
      this.updatesDropped.inc();
      return;
    }
    try {
      client.controller.enqueue(this.#encoder.encode(text));
    } catch {
      this.#remove(client, false);
    }
  }

  async #tick(): Promise<void> {
    if (this.#sampling) return; // the previous sample is still being read
    this.#sampling = true;
    try {
      const update = await this.sample();
      if (this.#clients.size === 0) return;
      const text = this.#event("update", update);
      this.#last = text;
      for (const client of this.#clients) this.#send(client, text);
    } catch (error) {
      this.#log(`live page: cannot sample the metrics: ${error}`);
    } finally {
      this.#sampling = false;
    }
  }

  #init(): LiveInit {
    return {
      historySamples: this.#historySamples,
      historySeconds: (this.#historySamples * this.#intervalMs) / 1000,
      times: [...this.#times],
      spreads: Object.fromEntries(this.#spreads),
    };
  }

  /** Reads the registry once into an update and appends the spreads to the history. */
  async sample(): Promise<LiveUpdate> {
    const t = this.#now();
    const values = new Map<string, Sample[]>();
    const read = async (name: string): Promise<Sample[]> => {
      let got = values.get(name);
      if (!got) {
        const metric = this.#registry.getSingleMetric(name);
        got = metric ? ((await metric.get()).values as Sample[]) : [];
        values.set(name, got);
      }
      return got;
    };
    const has = (name: string) => this.#registry.getSingleMetric(name) !== undefined;
    const one = async (name: string) => (await read(name))[0]?.value ?? 0;
    const byLabel = async (name: string, label: string) => {
      const out: Record<string, number> = {};
      for (const s of await read(name)) out[String(s.labels[label])] = s.value;
      return out;
    };
    const quantiles = async (name: string, hop?: string) => {
      const buckets: Bucket[] = [];
      for (const s of await read(name)) {
        if (s.metricName !== `${name}_bucket` || (hop !== undefined && s.labels.hop !== hop)) {
          continue;
        }
        const le = s.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(s.labels.le);
        buckets.push({ le, count: s.value });
      }
      const ms = (q: number) => {
        const v = bucketQuantile(q, buckets);
        return v === undefined ? null : v * 1000;
      };
      return [ms(0.5), ms(0.99)] as const;
    };

    const previous = this.#previous;
    const totals = new Map<string, number>();
    const rate = (key: string, total: number): number | null => {
      totals.set(key, total);
      const before = previous?.totals.get(key);
      if (previous === undefined || before === undefined || t <= previous.t) return null;
      return ((total - before) * 1000) / (t - previous.t);
    };

    const role = has("crypto_ws_frames_received_total")
      ? "producer"
      : has("crypto_consumer_records_total")
      ? "consumer"
      : has("crypto_store_rows_written_total")
      ? "store"
      : "other";
    const update: LiveUpdate = {
      t,
      role,
      symbols: [],
      symbolsOmitted: 0,
      ui: { clients: this.#clients.size, updatesDropped: this.#droppedTotal },
    };
    if (role === "producer") {
      const frames = await one("crypto_ws_frames_received_total");
      const acked = await one("crypto_sink_records_acked_total");
      const [p50, p99] = await quantiles("crypto_hop_latency_seconds", "receive_to_ack");
      update.pipeline = {
        framesTotal: frames,
        framesPerSec: rate("frames", frames),
        ackedTotal: acked,
        ackedPerSec: rate("acked", acked),
        queueDepth: await one("crypto_queue_depth"),
        queueDropped: await one("crypto_queue_dropped_total"),
        receiveToAckP50Ms: p50,
        receiveToAckP99Ms: p99,
        connectionState: await one("crypto_ws_connection_state"),
        reconnects: await byLabel("crypto_ws_reconnects_total", "reason"),
        gapsTotal: await one("crypto_ws_gaps_total"),
        gapSeconds: await one("crypto_ws_gap_seconds_total"),
        gaps: (this.#gaps?.list() ?? []).map((g) => ({
          from: g.from,
          ms: g.to - g.from,
          reason: g.reason,
        })),
        skips: await byLabel("crypto_transform_skipped_total", "reason"),
      };
    } else if (role === "consumer") {
      const records = await one("crypto_consumer_records_total");
      const [p50, p99] = await quantiles("crypto_hop_latency_seconds", "kafka_to_consumer");
      update.consumer = {
        recordsTotal: records,
        recordsPerSec: rate("records", records),
        malformed: await one("crypto_consumer_malformed_total"),
        lag: await byLabel("crypto_consumer_lag", "partition"),
        kafkaToConsumerP50Ms: p50,
        kafkaToConsumerP99Ms: p99,
      };
    } else if (role === "store") {
      const byKind = await byLabel("crypto_store_records_total", "kind");
      const records = Object.values(byKind).reduce((a, b) => a + b, 0);
      const rows = await byLabel("crypto_store_rows_written_total", "table");
      const written = Object.values(rows).reduce((a, b) => a + b, 0);
      const [p50, p99] = await quantiles("crypto_store_write_seconds");
      const lag: Record<string, number> = {};
      for (const x of await read("crypto_store_lag")) {
        lag[`${x.labels.topic}/${x.labels.partition}`] = x.value;
      }
      update.store = {
        recordsTotal: records,
        recordsPerSec: rate("records", records),
        rows,
        rowsPerSec: rate("rows", written),
        deadLetters: await byLabel("crypto_store_dead_letters_total", "reason"),
        lag,
        writeP50Ms: p50,
        writeP99Ms: p99,
        databaseUp: (await one("crypto_store_database_up")) === 1,
      };
    }
    if (this.#health) update.health = checkHealth(this.#health, t, this.#staleAfterMs);

    const names = role === "consumer" ? CONSUMER_SYMBOLS : PRODUCER_SYMBOLS;
    const [spreadName, countName, crossedName, lockedName] = names;
    const spreads = await byLabel(spreadName, "symbol");
    const counts = await byLabel(countName, "symbol");
    const crossed = await byLabel(crossedName, "symbol");
    const locked = await byLabel(lockedName, "symbol");
    const symbols = [...new Set([...Object.keys(counts), ...Object.keys(spreads)])].sort();
    update.symbolsOmitted = Math.max(0, symbols.length - this.#maxSymbols);
    for (const symbol of symbols.slice(0, this.#maxSymbols)) {
      const n = counts[symbol] ?? 0;
      update.symbols.push([
        symbol,
        spreads[symbol] ?? null,
        n,
        rate(`s:${symbol}`, n),
        crossed[symbol] ?? 0,
        locked[symbol] ?? 0,
      ]);
    }
    if (role === "producer") {
      const tradeCounts = await byLabel("crypto_trades_total", "symbol");
      const tradeSymbols = Object.keys(tradeCounts).sort().slice(0, this.#maxSymbols);
      if (tradeSymbols.length > 0) {
        const prices = await byLabel("crypto_trade_price_last", "symbol");
        let all = 0;
        update.trades = tradeSymbols.map((symbol) => {
          const n = tradeCounts[symbol] ?? 0;
          all += n;
          return [symbol, prices[symbol] ?? null, n, rate(`t:${symbol}`, n)];
        });
        update.tradesPerSec = rate("trades", all);
      }
      const barCounts = await byLabel("crypto_bars_total", "symbol");
      const barSymbols = Object.keys(barCounts).sort().slice(0, this.#maxSymbols);
      if (barSymbols.length > 0) {
        const close = await byLabel("crypto_bar_close", "symbol");
        const volume = await byLabel("crypto_bar_volume", "symbol");
        const start = await byLabel("crypto_bar_start_seconds", "symbol");
        update.bars = barSymbols.map((symbol) => [
          symbol,
          close[symbol] ?? null,
          volume[symbol] ?? null,
          start[symbol] === undefined ? null : start[symbol]! * 1000,
          barCounts[symbol] ?? 0,
        ]);
      }
    }
    this.#previous = { t, totals };
    this.#remember(t, update.symbols);
    return update;
  }

  /** Appends one sample to the spread history ring. */
  #remember(t: number, rows: SymbolRow[]): void {
    const drop = this.#times.length >= this.#historySamples;
    if (drop) this.#times.shift();
    this.#times.push(t);
    const seen = new Set<string>();
    for (const [symbol, spread] of rows) {
      seen.add(symbol);
      let series = this.#spreads.get(symbol);
      if (!series) {
        series = new Array(this.#times.length - 1).fill(null);
        this.#spreads.set(symbol, series);
      } else if (drop) {
        series.shift();
      }
      series.push(spread);
    }
    for (const [symbol, series] of this.#spreads) {
      if (seen.has(symbol)) continue;
      if (drop) series.shift();
      series.push(null);
    }
  }
}
