/**
 * The live page in a real browser: `demo.ts --ui` replays a recording with hostile pair names,
 * headless Chromium (Debian package `chromium`) opens the page over the DevTools protocol, and
 * the test compares what the page shows with `/metrics` and `/healthz`, checks that the charts are
 * drawn, that nothing was logged as an error, that hostile names stayed text, and that the page
 * reached for nothing but the process itself. It saves a screenshot to
 * `.cache/screenshots/live_page_test.png`.
 */
import assert from "node:assert/strict";
import { Browser, type Page } from "../helpers/browser.ts";
import { freePort, ServiceProcess, waitForHttp } from "../helpers/service_process.ts";
import { LiveFeed } from "../../lib/telemetry/live.ts";
import { plain } from "../../lib/decimal.ts";
import { bucketQuantile } from "../../lib/telemetry/quantile.ts";
import { ConsumerMetrics, ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { RecordPrinter } from "../../lib/consumer_output.ts";
import type { InRecord } from "../../lib/sink.ts";
import { serveTelemetry } from "../../lib/telemetry/server.ts";
import { ConsumerSpreadMetrics, SpreadMetrics } from "../../lib/spread_metrics.ts";
import type { ElectionOptions, KafkaClient } from "../../lib/kafka/types.ts";
import { Standby } from "../../lib/standby.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const SHOTS = `${ROOT}.cache/screenshots/`;
const HOSTILE_IMG = '<img src=x onerror="window.__xss=1">';
const HOSTILE_SCRIPT = '"><script>window.__xss=2</script>';
const PAIRS = ["BTC-USD", "ETH-USD", HOSTILE_IMG, HOSTILE_SCRIPT];

interface Recording {
  lines: string[];
  frames: number;
  records: number;
}

/** About 8 s of exchange time: 40 frames a second over four pairs, some crossed or locked. */
function recording(): Recording {
  const lines: string[] = [];
  let records = 0;
  const t0 = 1_700_000_000_000;
  for (let i = 0; i < 320; i++) {
    const pair = PAIRS[i % PAIRS.length]!;
    const t = t0 + i * 25;
    const bid = 100 + (i % 17) / 100;
    // Every 11th quote crossed, every 13th locked, the rest a spread of 0.01 to 0.05.
    const ask = i % 11 === 0 ? bid - 0.01 : i % 13 === 0 ? bid : bid + ((i % 5) + 1) / 100;
    lines.push(JSON.stringify([{
      ev: "XQ",
      pair,
      bp: Number(bid.toFixed(2)),
      bs: 1,
      ap: Number(ask.toFixed(2)),
      as: 1,
      t,
      x: 1,
      r: t + 3,
    }]));
    records++;
    if (i === 100) lines.push("{broken frame");
    if (i === 200) lines.push(JSON.stringify([{ ev: "XQ", pair: "ETH-USD", bp: 0, ap: 1, t }]));
  }
  return { lines, frames: lines.length, records };
}

/** Parses Prometheus text into `name{labels}` → value. */
async function readMetrics(base: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The label value as prom-client writes it in the exposition format. */
function label(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function metric(m: Map<string, number>, key: string): number {
  const value = m.get(key);
  assert.notEqual(value, undefined, `no ${key} in /metrics`);
  return value!;
}

/** What the page shows, read from the DOM as text. */
interface Shown {
  t: number;
  framesTotal: string;
  ackedTotal: string;
  queueDepth: string;
  receiveToAck: string;
  health: string;
  healthState: string;
  skips: [string, string][];
  reconnects: [string, string][];
  rows: { symbol: string; spread: string; quotes: string; crossed: string; locked: string }[];
  healthMessage: string;
  failoverShown: boolean;
}

function readPage(page: Page): Promise<Shown> {
  return page.evaluate<Shown>(`(() => {
    const text = (s) => document.querySelector(s).textContent;
    const pairs = (s) => [...document.querySelectorAll(s + " tbody tr")]
      .map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]);
    return {
      t: Number(document.querySelector("#stream").dataset.t),
      framesTotal: text('[data-metric="framesTotal"]'),
      ackedTotal: text('[data-metric="ackedTotal"]'),
      queueDepth: text('[data-metric="queueDepth"]'),
      receiveToAck: text('[data-metric="receiveToAck"]'),
      health: text("#health"),
      healthState: document.querySelector("#health").dataset.state,
      healthMessage: text("#health-message"),
      failoverShown: getComputedStyle(document.querySelector("#failover-card")).display !== "none",
      skips: pairs("#skips"),
      reconnects: pairs("#reconnects"),
      rows: [...document.querySelectorAll("#symbol-table tbody tr")].map((tr) => ({
        symbol: tr.querySelector(".c-symbol").textContent,
        spread: tr.querySelector(".c-spread").textContent,
        quotes: tr.querySelector(".c-quotes").textContent,
        crossed: tr.querySelector(".c-crossed").textContent,
        locked: tr.querySelector(".c-locked").textContent,
      })),
    };
  })()`);
}

const count = (text: string) => Number(text.replace(/[^0-9]/g, ""));
const share = (part: number, whole: number) =>
  whole > 0 ? `${((part / whole) * 100).toFixed(2)}%` : "–";
const ms = (seconds: number | null | undefined) =>
  seconds === null || seconds === undefined ? "–" : (seconds * 1000).toFixed(1);

/** Waits for an update sampled after `after` (epoch ms) and returns what the page shows. */
async function nextShown(page: Page, after: number): Promise<Shown> {
  await page.waitFor(
    `Number(document.querySelector("#stream").dataset.t) > ${after}`,
    "an update sampled after the /metrics read",
    10_000,
  );
  return await readPage(page);
}

/** Counts canvas pixels drawn in the given colour (r, g, b), by CSS selector. */
function strokePixels(page: Page, selector: string, rgb: [number, number, number]) {
  return page.evaluate<number>(`(() => {
    const canvas = document.querySelector(${JSON.stringify(selector)});
    if (!canvas) return -1;
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 128 && Math.abs(data[i] - ${rgb[0]}) < 40 &&
        Math.abs(data[i + 1] - ${rgb[1]}) < 40 && Math.abs(data[i + 2] - ${rgb[2]}) < 40) n++;
    }
    return n;
  })()`);
}

Deno.test({
  name:
    "the live page shows what /metrics says, draws its charts, logs no error and keeps hostile pair names as text",
  async fn() {
    const rec = recording();
    const dir = await Deno.makeTempDir({ prefix: "live-page-" });
    const file = `${dir}/hostile.jsonl`;
    await Deno.writeTextFile(file, rec.lines.join("\n") + "\n");
    const port = freePort();
    const base = `http://127.0.0.1:${port}`;
    const demo = new ServiceProcess("demo --ui", Deno.execPath(), [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      `${ROOT}demo.ts`,
      "--ui",
      "--port",
      String(port),
      "--speed",
      "1",
      "--file",
      file,
    ]);
    let browser: Browser | undefined;
    try {
      await waitForHttp(`${base}/metrics`, demo);
      browser = await Browser.launch({ width: 1280, height: 1200 });
      const page = await browser.open(`${base}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");

      // While the replay runs: counters on the page lie between two /metrics reads around it.
      let liveChecks = 0;
      for (let i = 0; i < 3; i++) {
        const before = await readMetrics(base);
        const readAt = Date.now();
        const shown = await nextShown(page, readAt);
        const after = await readMetrics(base);
        if (metric(after, "crypto_sink_records_acked_total") >= rec.records) break;
        for (
          const [text, name] of [
            [shown.framesTotal, "crypto_ws_frames_received_total"],
            [shown.ackedTotal, "crypto_sink_records_acked_total"],
          ] as const
        ) {
          assert.ok(
            metric(before, name) <= count(text) && count(text) <= metric(after, name),
            `${name}: page ${text}, /metrics ${metric(before, name)}..${metric(after, name)}`,
          );
        }
        liveChecks++;
      }
      assert.ok(liveChecks >= 1, "the replay ended before one live comparison");

      // After the replay: every number equal to /metrics.
      for (let i = 0; i < 200; i++) {
        const m = await readMetrics(base);
        if (m.get("crypto_sink_records_acked_total") === rec.records) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const m = await readMetrics(base);
      const health = await (await fetch(`${base}/healthz`)).json();
      const shown = await nextShown(page, Date.now());
      // Our frames, plus the subscription's status frame.
      assert.equal(count(shown.framesTotal), rec.frames + 1);
      assert.equal(count(shown.ackedTotal), rec.records);
      assert.equal(count(shown.framesTotal), metric(m, "crypto_ws_frames_received_total"));
      assert.equal(count(shown.ackedTotal), metric(m, "crypto_sink_records_acked_total"));
      assert.equal(count(shown.queueDepth), metric(m, "crypto_queue_depth"));
      for (const [reason, text] of shown.skips) {
        assert.equal(count(text), metric(m, `crypto_transform_skipped_total{reason="${reason}"}`));
      }
      assert.deepEqual(
        shown.skips.filter(([, n]) => n !== "0").map(([r]) => r),
        ["invalid_json", "status", "bad_bid"],
      );
      for (const [reason, text] of shown.reconnects) {
        assert.equal(count(text), metric(m, `crypto_ws_reconnects_total{reason="${reason}"}`));
      }
      const hop = 'hop="receive_to_ack"';
      const buckets = [...m]
        .filter(([k]) => k.startsWith("crypto_hop_latency_seconds_bucket{") && k.includes(hop))
        .map(([k, v]) => {
          const le = /le="([^"]+)"/.exec(k)![1]!;
          return { le: le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), count: v };
        });
      assert.equal(
        shown.receiveToAck,
        `${ms(bucketQuantile(0.5, buckets))} / ${ms(bucketQuantile(0.99, buckets))} ms`,
      );
      assert.equal(shown.healthState, health.status);
      // The demo has no Kafka: the page names the sink that is there.
      assert.equal(shown.healthMessage, health.message);
      assert.match(shown.healthMessage, /the in-memory broker/);
      assert.doesNotMatch(shown.healthMessage, /Kafka/);
      // No --standby-group: no failover card at all, not an empty one.
      assert.equal(shown.failoverShown, false);
      assert.equal(
        shown.health,
        health.status === "ok" ? "healthy" : `unhealthy: ${health.reasons.join(", ")}`,
      );

      // Per symbol: every pair, hostile ones included, as text, with /metrics' numbers.
      assert.deepEqual(shown.rows.map((r) => r.symbol).sort(), [...PAIRS].sort());
      for (const row of shown.rows) {
        const l = `{symbol="${label(row.symbol)}"}`;
        const quotes = metric(m, `crypto_quotes_total${l}`);
        assert.equal(count(row.quotes), quotes, row.symbol);
        assert.equal(row.spread, plain(String(metric(m, `crypto_spread_last${l}`))), row.symbol);
        assert.equal(row.crossed, share(m.get(`crypto_quotes_crossed_total${l}`) ?? 0, quotes));
        assert.equal(row.locked, share(m.get(`crypto_quotes_locked_total${l}`) ?? 0, quotes));
      }

      // Pick the hostile pair for the chart: its name appears as text in the chart title too.
      await page.evaluate(`[...document.querySelectorAll("#symbol-table tbody tr")]
        .find((tr) => tr.dataset.symbol === ${JSON.stringify(HOSTILE_IMG)}).click()`);
      await nextShown(page, Date.now());
      const hostile = await page.evaluate<Record<string, unknown>>(`({
        xss: window.__xss ?? null,
        images: document.querySelectorAll("img").length,
        scripts: [...document.scripts].map((s) => s.getAttribute("src")),
        title: document.querySelector("#chart-title").textContent,
        cells: [...document.querySelectorAll(".c-symbol")].map((td) => td.childNodes.length),
      })`);
      assert.deepEqual(hostile, {
        xss: null,
        images: 0,
        scripts: ["/vendor/uPlot.iife.min.js", "/app.js"],
        title: `spread of ${HOSTILE_IMG} over the last 5 minutes`,
        cells: [1, 1, 1, 1], // one text node each, no element
      });

      // The charts are drawn: the spread line, the throughput lines and the sparklines.
      assert.ok(await strokePixels(page, "#spread-chart canvas", [26, 127, 55]) > 50);
      assert.ok(await strokePixels(page, "#rate-chart canvas", [43, 123, 185]) > 20);
      assert.ok(await strokePixels(page, "#symbol-table .c-spark canvas", [43, 123, 185]) > 10);

      await Deno.mkdir(SHOTS, { recursive: true });
      await page.screenshot(`${SHOTS}live_page_test.png`);

      assert.deepEqual(page.problems, []);
      // Offline: every request went to the process itself.
      assert.ok(page.requests.length >= 5);
      assert.deepEqual(page.requests.filter((url) => !url.startsWith(`${base}/`)), []);
      assert.equal(
        metric(await readMetrics(base), "crypto_ui_clients"),
        1,
        "one page open, as the process counts it",
      );
      await page.close();
    } finally {
      await browser?.close();
      await demo.stop(); // SIGTERM: the demo stops serving and exits 0
      const status = await demo.status;
      await Deno.remove(dir, { recursive: true });
      assert.equal(status.code, 0, `demo exit: ${demo.tail()}`);
    }
  },
});

Deno.test({
  name:
    "the consumer's live page shows records, lag per partition and its per-symbol view as /metrics has them",
  async fn() {
    const metrics = new ConsumerMetrics();
    const spreads = new ConsumerSpreadMetrics(metrics);
    const printer = new RecordPrinter({
      line: () => {},
      report: () => {},
      onValues: (values) => spreads.observe(values),
    });
    const records: InRecord[] = [
      ["BTC-USD", 0.5],
      ["BTC-USD", -0.01],
      [HOSTILE_SCRIPT, 0],
      ["ETH-USD", 0.02],
      ["SOL-USD", 1e-7],
    ].map(([symbol, spread], i) => ({
      topic: "t",
      partition: i % 2,
      offset: String(i),
      key: String(symbol),
      value: JSON.stringify({ timestamp: "2024-01-01T00:00:00.000Z", symbol, spread }),
      timestamp: Date.now(),
      headers: {},
    }));
    metrics.recordsConsumed.inc(await printer.handle(records));
    metrics.lag.set({ partition: "0" }, 12);
    metrics.lag.set({ partition: "1" }, 0);
    const live = new LiveFeed({ registry: metrics.registry });
    const server = serveTelemetry({ registry: metrics.registry, live, port: 0 });
    const browser = await Browser.launch();
    try {
      const page = await browser.open(`${server.url}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
      const m = await readMetrics(server.url);
      const shown = await page.evaluate<Record<string, unknown>>(`({
        role: document.querySelector("#role").textContent,
        pipelineHidden: document.querySelector("#pipeline").hidden,
        consumerHidden: document.querySelector("#consumer").hidden,
        records: document.querySelector('[data-metric="recordsTotal"]').textContent,
        lag: [...document.querySelectorAll("#lag tbody tr")]
          .map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]),
        rows: [...document.querySelectorAll("#symbol-table tbody tr")].map((tr) =>
          [...tr.querySelectorAll("td:not(.c-spark)")].map((td) => td.textContent)),
      })`);
      const q = (s: string) => metric(m, `crypto_consumer_quotes_total{symbol="${label(s)}"}`);
      assert.deepEqual(shown, {
        role: "consumer",
        pipelineHidden: true,
        consumerHidden: false,
        records: `${metric(m, "crypto_consumer_records_total")} records`,
        lag: [
          ["0", String(metric(m, 'crypto_consumer_lag{partition="0"}'))],
          ["1", String(metric(m, 'crypto_consumer_lag{partition="1"}'))],
        ],
        // symbol, spread, quotes/s (no earlier sample), quotes, crossed, locked
        rows: [
          [HOSTILE_SCRIPT, "0", "–", String(q(HOSTILE_SCRIPT)), "0.00%", "100.00%"],
          ["BTC-USD", "-0.01", "–", String(q("BTC-USD")), "50.00%", "0.00%"],
          ["ETH-USD", "0.02", "–", String(q("ETH-USD")), "0.00%", "0.00%"],
          // People read 0.0000001, not 1e-7.
          ["SOL-USD", "0.0000001", "–", String(q("SOL-USD")), "0.00%", "0.00%"],
        ],
      });
      assert.equal(q("BTC-USD"), 2);
      assert.equal(
        await page.evaluate("window.__xss ?? null"),
        null,
      );
      assert.deepEqual(page.problems, []);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});

Deno.test({
  name:
    "with 500 symbols the page shows 50 rows a page with sparklines, and filters and sorts them",
  async fn() {
    const metrics = new ProducerMetrics();
    const spreads = new SpreadMetrics(metrics);
    for (let i = 0; i < 500; i++) {
      const symbol = `P${String(i).padStart(3, "0")}-USD`;
      spreads.spreadLast.set({ symbol }, i / 1000);
      spreads.recordsBySymbol.inc({ symbol }, (i * 7919) % 1000 + 1);
    }
    const live = new LiveFeed({ registry: metrics.registry });
    const server = serveTelemetry({ registry: metrics.registry, live, port: 0 });
    const browser = await Browser.launch();
    try {
      const page = await browser.open(`${server.url}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
      const rows = `[...document.querySelectorAll("#symbol-table tbody tr")]`;
      assert.deepEqual(
        await page.evaluate(`({
          count: document.querySelector("#symbol-count").textContent,
          pages: document.querySelector("#page").textContent,
          rows: ${rows}.length,
          sparks: document.querySelectorAll("#symbol-table .c-spark canvas").length,
          first: ${rows}[0].dataset.symbol,
        })`),
        { count: "(500)", pages: "page 1 of 10", rows: 50, sparks: 50, first: "P000-USD" },
      );
      // Sort by quotes, most first: the symbol with the most quotes leads.
      await page.evaluate(`document.querySelector('th[data-sort="2"]').click()`);
      const values = (await spreads.recordsBySymbol.get()).values;
      const most = values.reduce((a, b) => b.value > a.value ? b : a);
      assert.equal(await page.evaluate(`${rows}[0].dataset.symbol`), most.labels.symbol);
      // Filter: only matching symbols remain.
      await page.evaluate(`(() => {
        const input = document.querySelector("#filter");
        input.value = "p42";
        input.dispatchEvent(new Event("input"));
      })()`);
      const filtered = await page.evaluate<string[]>(`${rows}.map((tr) => tr.dataset.symbol)`);
      assert.equal(filtered.length, 10);
      assert.ok(filtered.every((s) => s.startsWith("P42")), filtered.join(","));
      assert.deepEqual(page.problems, []);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});

Deno.test("demo --ui refuses a bad --port or --speed with exit code 2, naming the flag", async () => {
  for (
    const [args, message] of [
      [["--ui", "--port", "70000"], 'ConfigError: --port must be between 0 and 65535, got "70000"'],
      [
        ["--ui", "--speed", "fast"],
        'ConfigError: --speed must be a number of at least 0, got "fast"',
      ],
    ] as const
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net=127.0.0.1", "--allow-read", `${ROOT}demo.ts`, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 2);
    assert.equal(new TextDecoder().decode(out.stderr).trim(), message);
  }
});

Deno.test({
  name: "a producer's live page shows its failover role, takeovers and the last takeover's time",
  async fn() {
    const metrics = new ProducerMetrics();
    let onChange: (leader: boolean) => void = () => {};
    let leader = false;
    const kafka = {
      admin: {
        ensureTopic: () => Promise.resolve({ created: false, partitions: 1 }),
        newestTimestamp: () => Promise.resolve(1_000),
      },
      elect: (options: ElectionOptions) => {
        onChange = options.onChange;
        return {
          join: () => Promise.resolve(),
          isLeader: () => leader,
          leave: () => Promise.resolve(),
          close: () => Promise.resolve(),
        };
      },
    } as unknown as KafkaClient;
    const takeoverAt = Date.UTC(2026, 10, 27, 13, 14, 15);
    const standby = new Standby(kafka, {
      group: "feed",
      leaderTopic: "q.leader",
      sessionTimeoutMs: 6_000,
    }, { registry: metrics.registry, log: () => {}, topic: "q", now: () => takeoverAt });
    await standby.start();
    const live = new LiveFeed({
      registry: metrics.registry,
      health: standby.health(() => undefined),
      intervalMs: 100,
    });
    const server = serveTelemetry({ registry: metrics.registry, live, port: 0 });
    const browser = await Browser.launch();
    const read = (page: Page) =>
      page.evaluate<Record<string, unknown>>(`({
        badge: document.querySelector("#health").textContent,
        cardHidden: document.querySelector("#failover-card").hidden,
        role: document.querySelector('[data-metric="failoverRole"]').textContent,
        takeovers: document.querySelector('[data-metric="failoverTakeovers"]').textContent,
      })`);
    try {
      const page = await browser.open(`${server.url}/`);
      await page.waitFor(`document.querySelector("#stream").dataset.t`, "the first update");
      assert.deepEqual(await read(page), {
        badge: "standby",
        cardHidden: false,
        role: "standby",
        takeovers: "0 takeovers",
      });
      leader = true;
      onChange(true);
      await standby.beginTerm();
      await page.waitFor(
        `document.querySelector('[data-metric="failoverRole"]').textContent === "active"`,
        "the role to change",
      );
      const shown = await read(page);
      assert.equal(shown.role, "active");
      assert.equal(shown.takeovers, "1 takeovers, last 13:14:15 UTC");
      assert.equal(
        await metric(await readMetrics(server.url), "crypto_producer_takeovers_total"),
        1,
      );
      assert.deepEqual(page.problems, []);
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
