/**
 * The live page's trades and bars sections in a real browser (headless Chromium): a producer's
 * registry fed by the trade and bar transforms' telemetry, read back as the page shows it, with
 * a hostile pair name kept as text.
 */
import assert from "node:assert/strict";
import { Browser } from "../helpers/browser.ts";
import { LiveFeed } from "../../lib/telemetry/live.ts";
import { ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { serveTelemetry } from "../../lib/telemetry/server.ts";
import { BarMetrics, TradeMetrics } from "../../lib/channels/metrics.ts";
import { createTradeTransform, type TradeRecord } from "../../trades.ts";
import { type BarRecord, createBarTransform } from "../../bars.ts";

const HOSTILE = '<img src=x onerror="window.__xss=1">';

Deno.test({
  name:
    "the producer's live page shows trades per symbol with the last price, and the last minute bars",
  async fn() {
    const metrics = new ProducerMetrics();
    const tradeMetrics = new TradeMetrics(metrics.registry);
    const barMetrics = new BarMetrics(metrics.registry);
    const trades: TradeRecord[] = [];
    createTradeTransform().frame(
      JSON.stringify([
        { ev: "XT", pair: "BTC-USD", p: 61000.5, s: 0.1, t: 1, c: [2] },
        { ev: "XT", pair: "BTC-USD", p: 61001.25, s: 0.2, t: 2, c: [1] },
        { ev: "XT", pair: HOSTILE, p: 3, s: 1, t: 3 },
      ]),
      trades,
    );
    tradeMetrics.observe(trades);
    const bars: BarRecord[] = [];
    createBarTransform().frame(
      '[{"ev":"XA","pair":"BCD-USD","v":951.6112,"vw":0.7756,"z":73,"o":0.772,"c":0.784,' +
        '"h":0.784,"l":0.771,"s":1610463240000,"e":1610463300000}]',
      bars,
    );
    barMetrics.observe(bars);
    metrics.framesReceived.inc(2);
    const live = new LiveFeed({ registry: metrics.registry });
    const server = serveTelemetry({ registry: metrics.registry, live, port: 0 });
    const browser = await Browser.launch();
    try {
      const page = await browser.open(`${server.url}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
      const shown = await page.evaluate<Record<string, unknown>>(`({
        tradesHidden: document.querySelector("#trades").hidden,
        barsHidden: document.querySelector("#bars").hidden,
        trades: [...document.querySelectorAll("#trade-table tbody tr")]
          .map((tr) => [...tr.cells].map((td) => td.textContent)),
        bars: [...document.querySelectorAll("#bar-table tbody tr")]
          .map((tr) => [...tr.cells].map((td) => td.textContent)),
        rate: document.querySelector("#trades-rate").textContent,
      })`);
      assert.deepEqual(shown, {
        tradesHidden: false,
        barsHidden: false,
        // symbol, last price, trades/s (no earlier sample yet), trades
        trades: [[HOSTILE, "3", "–", "1"], ["BTC-USD", "61001.25", "–", "2"]],
        bars: [["BCD-USD", "2021-01-12 14:54", "0.784", "951.6112", "1"]],
        rate: "(– trades/s)",
      });
      assert.equal(await page.evaluate("window.__xss ?? null"), null);
      assert.deepEqual(page.problems, []);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
