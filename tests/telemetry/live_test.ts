import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { GapLog, LiveFeed, type LiveInit, type LiveUpdate } from "../../lib/telemetry/live.ts";
import { MemoryBroker } from "../../lib/memory_broker.ts";
import { ConsumerMetrics, ProducerMetrics, StoreMetrics } from "../../lib/telemetry/metrics.ts";
import { Pipeline } from "../../lib/pipeline.ts";
import { PolygonClient } from "../../lib/polygon/client.ts";
import { RecordPrinter } from "../../lib/consumer_output.ts";
import { serveTelemetry, telemetryHandler } from "../../lib/telemetry/server.ts";
import type { InRecord } from "../../lib/sink.ts";
import { ConsumerSpreadMetrics, SpreadMetrics, spreadStages } from "../../lib/spread_metrics.ts";

function quoteFrame(pair: string, bp: string, ap: string, t: number): string {
  return `[{"ev":"XQ","pair":${JSON.stringify(pair)},"bp":${bp},"bs":1,"ap":${ap},"as":1,` +
    `"t":${t},"x":1,"r":${t + 5}}]`;
}

/** Reads server-sent events from a body: `[event, data]` pairs. */
function eventReader(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    reader,
    async next(): Promise<[string, unknown]> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data !== undefined) return [event, JSON.parse(data)];
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("The event stream ended");
        buffer += value;
      }
    },
  };
}

/** A pipeline with metrics fed `frames`, drained into a memory broker (and a client, not run). */
async function runPipeline(frames: string[]): Promise<[ProducerMetrics, Pipeline]> {
  const metrics = new ProducerMetrics();
  // The Polygon client starts its reconnect series at 0, as in a producer.
  new PolygonClient({ url: "ws://127.0.0.1:9/", apiKey: "k", pairs: ["*"], onFrame() {}, metrics });
  const broker = new MemoryBroker();
  broker.createTopic("t", 1);
  const pipeline = new Pipeline(broker.sink(), { ...spreadStages(metrics), topic: "t", metrics });
  pipeline.start();
  for (const frame of frames) pipeline.push(frame);
  await pipeline.close(5000);
  return [metrics, pipeline];
}

Deno.test("GapLog keeps the newest gaps only", () => {
  const log = new GapLog(2);
  for (let i = 0; i < 5; i++) log.add({ from: i, to: i + 10, reason: `r${i}` });
  assert.deepEqual(log.list(), [
    { from: 3, to: 13, reason: "r3" },
    { from: 4, to: 14, reason: "r4" },
  ]);
});

Deno.test("a producer update holds the registry's numbers: totals, skips, spreads, crossed and locked per symbol, gaps and health", async () => {
  const hostile = '<img src=x onerror="window.__xss=1">';
  const frames = [
    quoteFrame("BTC-USD", "100.01", "100.02", 1000),
    quoteFrame("BTC-USD", "100.02", "100.01", 1001), // crossed
    quoteFrame("BTC-USD", "100.02", "100.02", 1002), // locked
    quoteFrame("BTC-USD", "100.00", "100.05", 1003),
    quoteFrame(hostile, "1.5", "1.5", 1004), // locked
    "{not json",
    '[{"ev":"XQ","pair":"ETH-USD","bp":0,"ap":2,"t":5}]', // bad_bid
  ];
  const [metrics, pipeline] = await runPipeline(frames);
  const gaps = new GapLog();
  gaps.add({ from: 5_000, to: 7_500, reason: "closed" });
  let now = Date.now();
  const feed = new LiveFeed({
    registry: metrics.registry,
    health: pipeline,
    gaps,
    staleAfterMs: 30_000,
    now: () => now,
  });
  const first = await feed.sample();
  assert.equal(first.role, "producer");
  const p = first.pipeline!;
  assert.equal(p.framesTotal, 7);
  assert.equal(p.ackedTotal, 5);
  assert.equal(p.framesPerSec, null); // no earlier sample yet
  assert.equal(p.queueDepth, 0);
  assert.equal(p.skips.invalid_json, 1);
  assert.equal(p.skips.bad_bid, 1);
  assert.equal(p.reconnects.closed, 0);
  assert.deepEqual(p.gaps, [{ from: 5_000, ms: 2_500, reason: "closed" }]);
  assert.ok(p.receiveToAckP50Ms !== null && p.receiveToAckP50Ms > 0);
  assert.deepEqual(first.symbols, [
    [hostile, 0, 1, null, 0, 1],
    ["BTC-USD", 0.05, 4, null, 1, 1],
  ]);
  assert.equal(first.health?.status, "ok");

  now += 2000;
  const second = await feed.sample();
  assert.equal(second.pipeline!.framesPerSec, 0);
  assert.equal(second.symbols[1]![3], 0); // BTC-USD quotes/s over the two samples
});

Deno.test("the feed reads nothing while no page is open and stops when the last page goes", async () => {
  const metrics = new ProducerMetrics();
  const spreads = new SpreadMetrics(metrics);
  spreads.spreadLast.set({ symbol: "BTC-USD" }, 0.01);
  spreads.recordsBySymbol.inc({ symbol: "BTC-USD" }, 3);
  const registry = metrics.registry;
  const getSingleMetric = registry.getSingleMetric.bind(registry);
  let reads = 0;
  registry.getSingleMetric = (name: string) => {
    reads++;
    return getSingleMetric(name);
  };
  const feed = new LiveFeed({ registry, intervalMs: 10 });
  const handler = telemetryHandler({ registry, live: feed });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(reads, 0);
  assert.equal(feed.sampling, false);

  const response = await handler(new Request("http://x/events"));
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(feed.clients, 1);
  assert.equal(feed.sampling, true);
  const events = eventReader(response.body!);
  const [initName, init] = await events.next();
  assert.equal(initName, "init");
  assert.equal((init as LiveInit).historySamples, 300);
  const [name, update] = await events.next();
  assert.equal(name, "update");
  assert.deepEqual((update as LiveUpdate).symbols[0]!.slice(0, 3), ["BTC-USD", 0.01, 3]);
  await events.next(); // a second update: the timer runs
  await events.reader.cancel();
  assert.equal(feed.clients, 0);
  assert.equal(feed.sampling, false);
  await new Promise((resolve) => setTimeout(resolve, 30)); // a sample in progress finishes
  const after = reads;
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(reads, after);
  feed.close();
});

Deno.test("a page that stops reading gets its updates dropped and counted, and holds no more than its buffer", async () => {
  const metrics = new ProducerMetrics();
  const spreads = new SpreadMetrics(metrics);
  for (let i = 0; i < 300; i++) {
    const symbol = `PAIR-${String(i).padStart(3, "0")}-USD`;
    spreads.spreadLast.set({ symbol }, i / 100);
    spreads.recordsBySymbol.inc({ symbol }, i + 1);
  }
  const limit = 8 * 1024;
  const feed = new LiveFeed({
    registry: metrics.registry,
    intervalMs: 5,
    clientBufferBytes: limit,
  });
  const handler = telemetryHandler({ registry: metrics.registry, live: feed });
  const response = await handler(new Request("http://x/events"));
  try {
    // Nobody reads: after 40 intervals most updates must have been dropped.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const dropped = (await metrics.registry.getSingleMetric("crypto_ui_updates_dropped_total")!
      .get()).values[0]!.value;
    assert.ok(dropped >= 10, `dropped ${dropped}`);
    const held = feed.queuedBytes();
    assert.equal(held.length, 1);
    // The buffer, plus at most the one update that filled it.
    const update = (await feed.sample()) as LiveUpdate;
    const updateBytes = new TextEncoder().encode(JSON.stringify(update)).length + 100;
    assert.ok(held[0]! <= limit + updateBytes, `held ${held[0]} bytes`);
  } finally {
    await response.body!.cancel();
    feed.close();
  }
});

Deno.test("the page, its script, styles and uPlot come from the process with a strict content security policy", async () => {
  const registry = new ProducerMetrics().registry;
  const feed = new LiveFeed({ registry });
  const handler = telemetryHandler({ registry, live: feed });
  const expected: [string, string][] = [
    ["/", "text/html; charset=utf-8"],
    ["/app.js", "text/javascript; charset=utf-8"],
    ["/style.css", "text/css; charset=utf-8"],
    ["/favicon.svg", "image/svg+xml"],
    ["/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
    ["/vendor/uPlot.min.css", "text/css; charset=utf-8"],
  ];
  for (const [path, type] of expected) {
    const response = await handler(new Request(`http://x${path}`));
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get("content-type"), type, path);
    const csp = response.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self';/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    const text = await response.text();
    if (path === "/vendor/uPlot.iife.min.js") {
      // The npm package's own file, the version deno.lock pins.
      assert.ok(text.startsWith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
    }
    if (path === "/") {
      assert.doesNotMatch(text, /<script>|https?:\/\/(?!www\.w3)/);
    }
  }
  const post = await handler(new Request("http://x/", { method: "POST" }));
  assert.equal(post.status, 405);
  await post.body?.cancel();
  const missing = await handler(new Request("http://x/nope"));
  assert.equal(missing.status, 404);
  assert.equal(await missing.text(), "Not found: try /, /metrics or /healthz\n");
  feed.close();
});

Deno.test("the feed refuses pages beyond maxClients with 503", async () => {
  const registry = new ProducerMetrics().registry;
  const feed = new LiveFeed({ registry, maxClients: 1 });
  const handler = telemetryHandler({ registry, live: feed });
  const first = await handler(new Request("http://x/events"));
  const second = await handler(new Request("http://x/events"));
  assert.equal(second.status, 503);
  assert.equal(await second.text(), "Too many live pages open (1); close one and reload\n");
  await first.body!.cancel();
  feed.close();
});

Deno.test("a page that disconnects is forgotten, and shutdown ends open event streams instead of waiting for them", async () => {
  const registry = new ProducerMetrics().registry;
  const live = new LiveFeed({ registry, intervalMs: 20 });
  const server = serveTelemetry({ registry, live, port: 0 });
  try {
    const leaving = new AbortController();
    const gone = await fetch(`${server.url}/events`, { signal: leaving.signal });
    assert.equal((await eventReader(gone.body!).next())[0], "init");
    assert.equal(live.clients, 1);
    leaving.abort();
    for (let i = 0; i < 100 && live.clients > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(live.clients, 0);
    assert.equal(live.sampling, false);

    const response = await fetch(`${server.url}/events`);
    const events = eventReader(response.body!);
    assert.equal((await events.next())[0], "init");
    await server.shutdown();
    // What was queued still arrives, then the stream ends.
    await assert.rejects(async () => {
      for (let i = 0; i < 10; i++) await events.next();
    }, /The event stream ended/);
    assert.equal(live.clients, 0);
  } finally {
    await server.shutdown().catch(() => {});
  }
});

Deno.test("a consumer update shows records, lag and the per-symbol view of what it read", async () => {
  const metrics = new ConsumerMetrics();
  const spreads = new ConsumerSpreadMetrics(metrics);
  const printer = new RecordPrinter({
    line: () => {},
    report: () => {},
    onValues: (values) => spreads.observe(values),
  });
  const record = (offset: number, symbol: string, spread: number): InRecord => ({
    topic: "t",
    partition: 0,
    offset: String(offset),
    key: symbol,
    value: JSON.stringify({ timestamp: "2024-01-01T00:00:00.000Z", symbol, spread }),
    timestamp: 0,
    headers: {},
  });
  await printer.handle([
    record(0, "BTC-USD", 0.5),
    record(1, "BTC-USD", -0.01),
    record(2, "ETH-USD", 0),
    { ...record(3, "X", 0), value: "not json" },
    record(4, "BTC-USD", 0.25),
  ]);
  metrics.recordsConsumed.inc(4);
  metrics.lag.set({ partition: "0" }, 7);
  const feed = new LiveFeed({ registry: metrics.registry });
  const update = await feed.sample();
  assert.equal(update.role, "consumer");
  assert.equal(update.pipeline, undefined);
  assert.equal(update.consumer!.recordsTotal, 4);
  assert.deepEqual(update.consumer!.lag, { "0": 7 });
  assert.deepEqual(update.symbols, [
    ["BTC-USD", 0.25, 3, null, 1, 0],
    ["ETH-USD", 0, 1, null, 0, 1],
  ]);
});

Deno.test("a registry without pipeline metrics still gets a page (role other)", async () => {
  const feed = new LiveFeed({ registry: new Registry() });
  const update = await feed.sample();
  assert.equal(update.role, "other");
  assert.deepEqual(update.symbols, []);
});

Deno.test("a store update shows records read, rows written, dead letters, write latency and lag", async () => {
  const metrics = new StoreMetrics();
  metrics.recordsConsumed.inc({ kind: "spreads" }, 10);
  metrics.recordsConsumed.inc({ kind: "gaps" }, 1);
  metrics.rowsWritten.inc({ table: "spreads" }, 8);
  metrics.rowsWritten.inc({ table: "gaps" }, 1);
  metrics.rowsWritten.inc({ table: "dead" }, 2);
  metrics.deadLetters.inc({ reason: "not_json" }, 2);
  metrics.lag.set({ topic: "crypto-topic", partition: "3" }, 5);
  metrics.writeSeconds.observe(0.004);
  metrics.databaseUp.set(0);
  const update = await new LiveFeed({ registry: metrics.registry }).sample();
  assert.equal(update.role, "store");
  // One write of 4 ms, in the 2–5 ms bucket: p50 and p99 interpolated inside it.
  const round = (x: number | null | undefined) =>
    x === null || x === undefined ? x : Math.round(x * 100) / 100;
  assert.deepEqual({ ...update.store, writeP99Ms: round(update.store?.writeP99Ms) }, {
    recordsTotal: 11,
    recordsPerSec: null,
    rows: { spreads: 8, gaps: 1, dead: 2 },
    rowsPerSec: null,
    deadLetters: { not_json: 2 },
    lag: { "crypto-topic/3": 5 },
    writeP50Ms: 3.5,
    writeP99Ms: 4.97,
    databaseUp: false,
  });
});
