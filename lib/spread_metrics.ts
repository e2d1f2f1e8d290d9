/**
 * The spread transform's telemetry, beside it: per symbol the records acked, the last spread, the
 * spread in basis points of mid, crossed and locked quotes and the time of the last quote, and
 * the two Polygon hops of a quote (exchange → Polygon, Polygon → us). The pipeline hands it each
 * acknowledged batch ({@linkcode BatchObserver}); it registers on the producer's registry.
 */
import type { Counter, Gauge } from "prom-client";
import { createSpreadTransform, type SpreadRecord, type SpreadTransform } from "../transform.ts";
import type { SpreadValue } from "./consumer_output.ts";
import {
  type ConsumerMetrics,
  factories,
  type FastHistogram,
  type HistogramChild,
  type ProducerMetrics,
} from "./telemetry/metrics.ts";
import type { BatchObserver } from "./pipeline.ts";

/** Hop exchange time `t` → Polygon receive time `r`. */
export const EXCHANGE_TO_POLYGON = "exchange_to_polygon";
/** Hop Polygon receive time `r` → local receive time. */
export const POLYGON_TO_RECEIVE = "polygon_to_receive";

/** Spread buckets in basis points of mid. */
const SPREAD_BPS_BUCKETS = [0, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 500];

/** Per symbol within one batch: one label lookup per symbol and batch, not per record. */
interface SymbolTally {
  n: number;
  last: SpreadRecord;
  crossed: number;
  locked: number;
  bps: HistogramChild;
}

/** Spread metrics, fed one acknowledged batch at a time. */
export class SpreadMetrics implements BatchObserver<SpreadRecord> {
  readonly lastQuoteTime: Gauge<"symbol">;
  readonly crossed: Counter<"symbol">;
  readonly locked: Counter<"symbol">;
  readonly recordsBySymbol: Counter<"symbol">;
  readonly spreadLast: Gauge<"symbol">;
  readonly spreadBps: FastHistogram<"symbol">;
  #hopLatency: FastHistogram<"hop">;
  #negativeHops: Counter<"hop">;

  /** Registers on `producer`'s registry and observes the Polygon hops into its hop histogram. */
  constructor(producer: ProducerMetrics) {
    const { c, g, fh } = factories(producer.registry);
    this.#hopLatency = producer.hopLatency;
    this.#negativeHops = producer.negativeHops;
    this.lastQuoteTime = g(
      "crypto_last_quote_timestamp_seconds",
      "local time of the last quote, per symbol (seconds since it: time() - this)",
      ["symbol"],
    );
    this.crossed = c("crypto_quotes_crossed_total", "quotes with ask below bid", ["symbol"]);
    this.locked = c("crypto_quotes_locked_total", "quotes with ask equal to bid", ["symbol"]);
    this.recordsBySymbol = c("crypto_quotes_total", "records acknowledged, per symbol", [
      "symbol",
    ]);
    this.spreadLast = g("crypto_spread_last", "last spread, per symbol", ["symbol"]);
    this.spreadBps = fh(
      "crypto_spread_bps",
      "spread in basis points of mid, per symbol",
      SPREAD_BPS_BUCKETS,
      ["symbol"],
    );
    // Known label values start at 0: a series that exists reads as "none yet", not "no data".
    for (const hop of [EXCHANGE_TO_POLYGON, POLYGON_TO_RECEIVE]) {
      this.#negativeHops.inc({ hop }, 0);
    }
  }

  /** Counts one acknowledged batch; `receivedAt[i]` is when `batch[i]`'s frame arrived. */
  observe(batch: readonly SpreadRecord[], receivedAt: readonly number[], ackedAt: number): void {
    const hopTR = this.#hopLatency.labels(EXCHANGE_TO_POLYGON);
    const hopRRecv = this.#hopLatency.labels(POLYGON_TO_RECEIVE);
    let negTR = 0;
    let negRRecv = 0;
    const perSymbol = new Map<string, SymbolTally>();
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i]!;
      if (r.r !== undefined) {
        const a = r.r - r.t;
        const b = receivedAt[i]! - r.r;
        if (a < 0) negTR++;
        if (b < 0) negRRecv++;
        hopTR.observe(a / 1000);
        hopRRecv.observe(b / 1000);
      }
      let s = perSymbol.get(r.symbol);
      if (!s) {
        const bps = this.spreadBps.labels({ symbol: r.symbol });
        perSymbol.set(r.symbol, s = { n: 0, last: r, crossed: 0, locked: 0, bps });
      }
      s.n++;
      s.last = r;
      if (r.spread.charCodeAt(0) === 45) s.crossed++;
      else if (r.spread === "0") s.locked++;
      const mid = (r.ap + r.bp) / 2;
      s.bps.observe(((r.ap - r.bp) / mid) * 10_000);
    }
    if (negTR > 0) this.#negativeHops.inc({ hop: EXCHANGE_TO_POLYGON }, negTR);
    if (negRRecv > 0) this.#negativeHops.inc({ hop: POLYGON_TO_RECEIVE }, negRRecv);
    const nowSeconds = ackedAt / 1000;
    for (const [symbol, s] of perSymbol) {
      this.recordsBySymbol.inc({ symbol }, s.n);
      this.spreadLast.set({ symbol }, Number(s.last.spread));
      this.lastQuoteTime.set({ symbol }, nowSeconds);
      if (s.crossed > 0) this.crossed.inc({ symbol }, s.crossed);
      if (s.locked > 0) this.locked.inc({ symbol }, s.locked);
    }
  }
}

/** The consumer's per-symbol spread metrics: what it read, per symbol (the live page's view). */
export class ConsumerSpreadMetrics {
  readonly recordsBySymbol: Counter<"symbol">;
  readonly spreadLast: Gauge<"symbol">;
  readonly crossed: Counter<"symbol">;
  readonly locked: Counter<"symbol">;

  /** Registers on the consumer's registry. */
  constructor(consumer: ConsumerMetrics) {
    const { c, g } = factories(consumer.registry);
    this.recordsBySymbol = c("crypto_consumer_quotes_total", "records consumed, per symbol", [
      "symbol",
    ]);
    this.spreadLast = g("crypto_consumer_spread_last", "last spread consumed, per symbol", [
      "symbol",
    ]);
    this.crossed = c(
      "crypto_consumer_quotes_crossed_total",
      "records consumed with a negative spread (crossed quotes)",
      ["symbol"],
    );
    this.locked = c(
      "crypto_consumer_quotes_locked_total",
      "records consumed with a zero spread (locked quotes)",
      ["symbol"],
    );
  }

  /** Counts one batch of valid records per symbol: one label lookup per symbol and batch. */
  observe(values: readonly SpreadValue[]): void {
    const perSymbol = new Map<
      string,
      { n: number; last: number; crossed: number; locked: number }
    >();
    for (const v of values) {
      let s = perSymbol.get(v.symbol);
      if (!s) perSymbol.set(v.symbol, s = { n: 0, last: v.spread, crossed: 0, locked: 0 });
      s.n++;
      s.last = v.spread;
      if (v.spread < 0) s.crossed++;
      else if (v.spread === 0) s.locked++;
    }
    for (const [symbol, s] of perSymbol) {
      this.recordsBySymbol.inc({ symbol }, s.n);
      this.spreadLast.set({ symbol }, s.last);
      if (s.crossed > 0) this.crossed.inc({ symbol }, s.crossed);
      if (s.locked > 0) this.locked.inc({ symbol }, s.locked);
    }
  }
}

/**
 * What a spread pipeline is handed besides its sink: a new spread transform and, with metrics,
 * the spread observer. `new Pipeline(sink, { ...spreadStages(metrics), topic, metrics })`.
 */
export function spreadStages(
  metrics?: ProducerMetrics,
): { transform: SpreadTransform; observer?: SpreadMetrics } {
  const transform = createSpreadTransform();
  return metrics ? { transform, observer: new SpreadMetrics(metrics) } : { transform };
}
