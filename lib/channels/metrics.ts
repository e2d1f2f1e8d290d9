/**
 * The trade and bar transforms' telemetry, beside them: per symbol the trades acknowledged and
 * the last trade price, the bars acknowledged and the last bar's close and volume. The pipelines
 * of `XT` and `XA` hand it each acknowledged batch ({@linkcode BatchObserver}); it registers on
 * the producer's registry. The gauges are for display: the exact values are in the records.
 */
import type { Counter, Gauge, Registry } from "prom-client";
import type { TradeRecord } from "../../trades.ts";
import type { BarRecord } from "../../bars.ts";
import { factories } from "../telemetry/metrics.ts";
import type { BatchObserver } from "../pipeline.ts";
import type { OutRecord } from "../sink.ts";

/** Trade metrics, fed one acknowledged batch at a time. */
export class TradeMetrics implements BatchObserver<TradeRecord> {
  readonly trades: Counter<"symbol">;
  readonly lastPrice: Gauge<"symbol">;

  /** Registers `crypto_trades_total{symbol}` and `crypto_trade_price_last{symbol}`. */
  constructor(registry: Registry) {
    const { c, g } = factories(registry);
    this.trades = c("crypto_trades_total", "trade records acknowledged, per symbol", ["symbol"]);
    this.lastPrice = g("crypto_trade_price_last", "price of the last trade, per symbol", [
      "symbol",
    ]);
  }

  /** Counts the batch per symbol and keeps each symbol's last price. */
  observe(batch: readonly OutRecord[]): void {
    const last = new Map<string, { n: number; price: string }>();
    for (const r of batch as readonly TradeRecord[]) {
      const s = last.get(r.symbol);
      if (s) {
        s.n++;
        s.price = r.price;
      } else last.set(r.symbol, { n: 1, price: r.price });
    }
    for (const [symbol, s] of last) {
      this.trades.inc({ symbol }, s.n);
      this.lastPrice.set({ symbol }, Number(s.price));
    }
  }
}

/** Bar metrics, fed one acknowledged batch at a time. */
export class BarMetrics implements BatchObserver<BarRecord> {
  readonly bars: Counter<"symbol">;
  readonly close: Gauge<"symbol">;
  readonly volume: Gauge<"symbol">;
  readonly start: Gauge<"symbol">;

  /** Registers `crypto_bars_total`, `crypto_bar_close`, `crypto_bar_volume`, `crypto_bar_start_seconds`. */
  constructor(registry: Registry) {
    const { c, g } = factories(registry);
    this.bars = c("crypto_bars_total", "minute-bar records acknowledged, per symbol", ["symbol"]);
    this.close = g("crypto_bar_close", "close of the last minute bar, per symbol", ["symbol"]);
    this.volume = g("crypto_bar_volume", "volume of the last minute bar, per symbol", ["symbol"]);
    this.start = g("crypto_bar_start_seconds", "start of the last minute bar, per symbol", [
      "symbol",
    ]);
  }

  /** Counts the batch per symbol and keeps each symbol's last bar. */
  observe(batch: readonly OutRecord[]): void {
    for (const r of batch as readonly BarRecord[]) {
      const symbol = r.symbol;
      this.bars.inc({ symbol });
      this.close.set({ symbol }, Number(r.close));
      const v = JSON.parse(r.value) as { volume: number };
      this.volume.set({ symbol }, v.volume);
      this.start.set({ symbol }, r.start / 1000);
    }
  }
}
