import assert from "node:assert/strict";
import { MemoryBroker } from "../../lib/memory_broker.ts";
import { FastHistogram, ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { Histogram, Registry } from "prom-client";
import { Pipeline } from "../../lib/pipeline.ts";
import { PolygonClient } from "../../lib/polygon/client.ts";
import { createSpreadTransform } from "../../transform.ts";
import type { OutRecord, RecordSink } from "../../lib/sink.ts";
import { checkHealth, type HealthSource } from "../../lib/telemetry/health.ts";
import { allowedHosts, serveTelemetry, telemetryHandler } from "../../lib/telemetry/server.ts";
import { LiveFeed } from "../../lib/telemetry/live.ts";
import { buildTelemetryConfig } from "../../lib/config/telemetry.ts";
import { parseSettings } from "../../lib/config/parse.ts";
import { defaultInstance, startTelemetry } from "../../lib/telemetry/wiring.ts";
import { SpreadMetrics, spreadStages } from "../../lib/spread_metrics.ts";

/** A health source whose answers the test sets. */
function fakeHealth(): HealthSource & {
  quote?: number;
  ack?: number;
  pending: number;
  oldest?: number;
} {
  return {
    pending: 0,
    lastQuoteAt() {
      return this.quote;
    },
    lastAckAt() {
      return this.ack;
    },
    pendingRecords() {
      return this.pending;
    },
    oldestPendingAt() {
      return this.oldest;
    },
  };
}

async function getJson(url: string): Promise<[number, Record<string, unknown>]> {
  const response = await fetch(url);
  assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
  return [response.status, await response.json()];
}

Deno.test("/healthz turns 503 when quotes go stale or acks stall, and 200 again when they flow, by the injected clock", async () => {
  const health = fakeHealth();
  let now = 1_000_000;
  const metrics = new ProducerMetrics();
  const server = serveTelemetry({
    registry: metrics.registry,
    health,
    staleAfterMs: 30_000,
    now: () => now,
    port: 0,
  });
  try {
    const url = `${server.url}/healthz`;
    let [status, body] = await getJson(url);
    assert.equal(status, 503);
    assert.deepEqual(body, {
      status: "unhealthy",
      reasons: ["no_quotes_yet"],
      message: "Unhealthy: no quote has arrived since start-up (limit 30000 ms)",
      staleAfterMs: 30_000,
      pendingRecords: 0,
    });

    health.quote = now - 1_000;
    health.ack = now - 900;
    health.pending = 3;
    health.oldest = now - 500;
    [status, body] = await getJson(url);
    assert.equal(status, 200);
    assert.deepEqual(body, {
      status: "ok",
      reasons: [],
      message: "Quotes are fresh and acks from Kafka are flowing",
      staleAfterMs: 30_000,
      lastQuoteAgeMs: 1_000,
      lastAckAgeMs: 900,
      pendingRecords: 3,
      oldestPendingAgeMs: 500,
    });

    now += 29_000; // quote 30,000 ms old: still within the limit
    [status] = await getJson(url);
    assert.equal(status, 200);
    now += 1; // 30,001 ms: stale, and the pending records have waited 29,501 ms
    [status, body] = await getJson(url);
    assert.equal(status, 503);
    assert.deepEqual(body.reasons, ["quotes_stale"]);
    assert.equal(body.message, "Unhealthy: the last quote is 30001 ms old (limit 30000 ms)");

    now += 1_000; // both problems at once
    [status, body] = await getJson(url);
    assert.equal(status, 503);
    assert.deepEqual(body.reasons, ["quotes_stale", "acks_stalled"]);
    assert.equal(
      body.message,
      "Unhealthy: the last quote is 31001 ms old; 3 records are waiting for an ack from Kafka, " +
        "the oldest for 30501 ms (limit 30000 ms)",
    );

    health.quote = now; // quotes resume, acks still stuck
    [status, body] = await getJson(url);
    assert.equal(status, 503);
    assert.deepEqual(body.reasons, ["acks_stalled"]);

    health.ack = now; // the acks arrive and nothing is pending any more
    health.pending = 0;
    health.oldest = undefined;
    [status, body] = await getJson(url);
    assert.equal(status, 200);
    assert.deepEqual(body.reasons, []);
  } finally {
    await server.shutdown();
  }
});

Deno.test("/metrics serves the registry in the Prometheus text format", async () => {
  const metrics = new ProducerMetrics();
  // The owners of the skip reasons and the reconnect reasons start their series at 0.
  new Pipeline(new MemoryBroker().sink(), {
    transform: createSpreadTransform(),
    topic: "t",
    metrics,
  });
  new PolygonClient({ url: "ws://127.0.0.1:9/", apiKey: "k", pairs: ["*"], onFrame() {}, metrics });
  const spreads = new SpreadMetrics(metrics);
  spreads.recordsBySymbol.inc({ symbol: "ETH-USD" }, 4);
  spreads.lastQuoteTime.set({ symbol: "ETH-USD" }, 1690409119.5);
  const server = serveTelemetry({ registry: metrics.registry, port: 0 });
  try {
    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(
      response.headers.get("content-type"),
      "text/plain; version=0.0.4; charset=utf-8",
    );
    const text = await response.text();
    assert.match(text, /^# TYPE crypto_quotes_total counter$/m);
    assert.match(text, /^crypto_quotes_total\{symbol="ETH-USD"\} 4$/m);
    assert.match(text, /^crypto_last_quote_timestamp_seconds\{symbol="ETH-USD"\} 1690409119\.5$/m);
    assert.match(text, /^crypto_transform_skipped_total\{reason="invalid_json"\} 0$/m);
    assert.match(text, /^crypto_ws_reconnects_total\{reason="stale"\} 0$/m);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200, "without health inputs /healthz only says the process is up");
    assert.equal((await health.json()).message, "Process is up (no health inputs)");
  } finally {
    await server.shutdown();
  }
});

Deno.test("the telemetry handler answers 404 for other paths and 405 for other methods", async () => {
  const handler = telemetryHandler({ registry: new ProducerMetrics().registry });
  const notFound = await handler(new Request("http://x/"));
  assert.equal(notFound.status, 404);
  assert.equal(await notFound.text(), "Not found: try /metrics or /healthz\n");
  const post = await handler(new Request("http://x/metrics", { method: "POST" }));
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  const head = await handler(new Request("http://x/healthz", { method: "HEAD" }));
  assert.equal(head.status, 200);
  await head.body?.cancel();
});

Deno.test("checkHealth ignores an old ack while nothing is pending", () => {
  const health = fakeHealth();
  health.quote = 100_000;
  health.ack = 0;
  const report = checkHealth(health, 100_500, 1_000);
  assert.equal(report.status, "ok");
  assert.equal(report.lastAckAgeMs, 100_500);
});

/** A sink whose sends resolve only when the test says so. */
class GatedSink implements RecordSink {
  open = true;
  #waiting: (() => void)[] = [];
  sent: OutRecord[] = [];
  async send(_topic: string, records: readonly OutRecord[]): Promise<void> {
    while (!this.open) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.sent.push(...records);
  }
  release(): void {
    this.open = true;
    for (const w of this.#waiting.splice(0)) w();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("/healthz follows the real pipeline: 200 while quotes are acked, 503 when the sink stops acking or quotes stop", async () => {
  let now = 1_690_409_119_000;
  const sink = new GatedSink();
  const metrics = new ProducerMetrics();
  const pipeline = new Pipeline(sink, {
    ...spreadStages(metrics),
    topic: "t",
    lingerMs: 0,
    metrics,
    now: () => now,
  });
  const done = pipeline.start();
  const server = serveTelemetry({
    registry: metrics.registry,
    health: pipeline,
    staleAfterMs: 10_000,
    now: () => now,
    port: 0,
  });
  const frame = (pair: string) =>
    JSON.stringify([{ ev: "XQ", pair, bp: 1.5, ap: 1.75, t: now - 20, r: now - 10 }]);
  try {
    const url = `${server.url}/healthz`;
    assert.equal((await getJson(url))[0], 503);
    pipeline.push(frame("ETH-USD"), now);
    await until(() => pipeline.counts.acked === 1, "the first ack");
    let [status, body] = await getJson(url);
    assert.equal(status, 200);
    assert.equal(body.lastQuoteAgeMs, 0);

    sink.open = false; // Kafka stops acknowledging
    now += 1_000;
    pipeline.push(frame("BTC-USD"), now);
    await until(() => pipeline.counts.records === 2, "the second send");
    now += 10_001;
    [status, body] = await getJson(url);
    assert.equal(status, 503);
    // The pipeline stamps lastQuoteAt when it sends a batch, so a stalled sink may also make
    // quotes look stale; the ack stall is what must be reported.
    assert.ok((body.reasons as string[]).includes("acks_stalled"), JSON.stringify(body));
    assert.equal(body.pendingRecords, 1);
    assert.equal(body.oldestPendingAgeMs, 10_001);

    sink.release(); // Kafka is back and quotes flow again
    await until(() => pipeline.counts.acked === 2, "the second ack");
    pipeline.push(frame("BTC-USD"), now);
    await until(() => pipeline.counts.acked === 3, "the third ack");
    [status, body] = await getJson(url);
    assert.equal(status, 200, JSON.stringify(body));

    now += 10_001; // no quote since: stale
    [status, body] = await getJson(url);
    assert.equal(status, 503);
    assert.deepEqual(body.reasons, ["quotes_stale"]);
  } finally {
    sink.release();
    await pipeline.close();
    await done;
    await server.shutdown();
  }
});

Deno.test("the pipeline's health and metrics reach /healthz through the in-memory broker", async () => {
  const broker = new MemoryBroker();
  const metrics = new ProducerMetrics();
  const pipeline = new Pipeline(broker.sink(), {
    ...spreadStages(metrics),
    topic: "t",
    lingerMs: 0,
    metrics,
  });
  const done = pipeline.start();
  const server = serveTelemetry({ registry: metrics.registry, health: pipeline, port: 0 });
  try {
    const now = Date.now();
    pipeline.push(
      JSON.stringify([{ ev: "XQ", pair: "SOL-USD", bp: 24.5, ap: 24.75, t: now, r: now }]),
    );
    await until(() => pipeline.counts.acked === 1, "the ack");
    assert.equal((await getJson(`${server.url}/healthz`))[0], 200);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /^crypto_quotes_total\{symbol="SOL-USD"\} 1$/m);
    assert.match(text, /^crypto_spread_last\{symbol="SOL-USD"\} 0\.25$/m);
  } finally {
    await pipeline.close();
    await done;
    await server.shutdown();
  }
});

Deno.test("FastHistogram renders and exports exactly as prom-client's Histogram for the same values", async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const buckets = [0.001, 0.1, 1, 10];
  const reference = new Histogram({
    name: "h_seconds",
    help: "help",
    buckets,
    labelNames: ["hop"],
    registers: [theirs],
  });
  const fast = new FastHistogram({
    name: "h_seconds",
    help: "help",
    buckets,
    labelNames: ["hop"],
    registers: [ours],
  });
  const values = [0, 0.001, 0.0011, 0.5, 1, 9.99, 10, 11, -3, 1e9];
  for (const v of values) {
    reference.labels("a").observe(v);
    fast.labels("a").observe(v);
  }
  reference.labels({ hop: "b" }).observe(0.2);
  fast.labels({ hop: "b" }).observe(0.2);
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.deepStrictEqual(
    JSON.parse(JSON.stringify(await ours.getMetricsAsJSON())),
    JSON.parse(
      JSON.stringify(await theirs.getMetricsAsJSON(), (k, v) => k === "exemplar" ? undefined : v),
    ),
  );
});

Deno.test("the default instance tag is <hostname>:<pid>, cleaned to what a tag can hold", () => {
  assert.equal(
    defaultInstance({ hostname: () => "quotes-1.example", pid: 4242 }),
    "quotes-1.example:4242",
  );
  assert.equal(defaultInstance({ hostname: () => "bad host,=", pid: 7 }), "badhost:7");
  assert.equal(defaultInstance({ hostname: () => undefined, pid: 7 }), "localhost:7");
  assert.match(defaultInstance(), new RegExp(`^[A-Za-z0-9._-]+:${Deno.pid}$`));
});

Deno.test("startTelemetry tags every InfluxDB point with the service and the instance, from the flag or the default", async () => {
  const bodies: string[] = [];
  const influx = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    bodies.push(await req.text());
    return new Response(null, { status: 204 });
  });
  try {
    for (
      const [args, instance] of [[["--instance", "quotes-b"], "quotes-b"], [
        [],
        defaultInstance(),
      ]] as const
    ) {
      bodies.length = 0;
      const config = buildTelemetryConfig(
        parseSettings("producer", [...args], {
          env: (n) =>
            ({ INFLUX_URL: `http://127.0.0.1:${influx.addr.port}`, INFLUX_FLUSH_INTERVAL: "3600" })[
              n
            ],
        }).settings,
      );
      const metrics = new ProducerMetrics();
      const logs: string[] = [];
      const telemetry = await startTelemetry(config, {
        registry: metrics.registry,
        metrics,
        staleAfterMs: 30_000,
        service: "producer",
        log: (l) => logs.push(l),
      });
      await telemetry.stop();
      const lines = bodies.join("").split("\n").filter((l) => l !== "");
      assert.ok(lines.length > 10, `only ${lines.length} lines were written`);
      for (const line of lines) {
        const tags = line.split(" ")[0]!;
        assert.ok(tags.includes(",service=producer"), line);
        assert.ok(tags.includes(`,instance=${instance}`), line);
      }
      assert.ok(logs.some((l) => l.includes(`instance="${instance}"`)), logs.join("\n"));
    }
  } finally {
    await influx.shutdown();
  }
});

/** The status of a GET sent over a raw socket with exactly the Host header given (or none). */
async function statusWithHost(port: number, path: string, host: string | undefined) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = host === undefined ? "" : `Host: ${host}\r\n`;
    await conn.write(
      new TextEncoder().encode(`GET ${path} HTTP/1.1\r\n${head}Connection: close\r\n\r\n`),
    );
    let text = "";
    const buffer = new Uint8Array(4096);
    while (!text.includes("\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  } finally {
    conn.close();
  }
}

Deno.test("finding 12: /metrics and the live page answer only requests whose Host names this server", async () => {
  const registry = new ProducerMetrics().registry;
  const server = serveTelemetry({ registry, port: 0 });
  try {
    const port = server.addr.port;
    for (
      const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`]
    ) {
      assert.equal(await statusWithHost(port, "/metrics", host), 200, host);
    }
    for (
      const host of [`rebind.attacker.example:${port}`, `127.0.0.1:${port + 1}`, "127.0.0.1", ""]
    ) {
      assert.equal(await statusWithHost(port, "/metrics", host), 421, host);
      assert.equal(await statusWithHost(port, "/healthz", host), 421, host);
    }
    const refused = await telemetryHandler({
      registry,
      allowedHosts: new Set([`127.0.0.1:${port}`]),
    })(new Request(`http://rebind.attacker.example:${port}/metrics`));
    assert.equal(refused.status, 421);
    assert.equal(
      await refused.text(),
      `Misdirected request: Host "rebind.attacker.example:${port}" is not this server; use ` +
        `http://127.0.0.1:${port}\n`,
    );
  } finally {
    await server.shutdown();
  }
  // A configured host name is accepted too; a bind to every interface checks nothing.
  assert.deepEqual(
    [...allowedHosts("metrics.internal", 9464)!],
    ["127.0.0.1:9464", "localhost:9464", "[::1]:9464", "metrics.internal:9464"],
  );
  assert.equal(allowedHosts("0.0.0.0", 9464), undefined);
  assert.deepEqual([...allowedHosts("::1", 80)!], [
    "127.0.0.1:80",
    "localhost:80",
    "[::1]:80",
    "127.0.0.1",
    "localhost",
    "[::1]",
  ]);
});

Deno.test("finding 12: other clients cannot hold every event stream: the last is kept for a same-origin page, and other sites get 403", async () => {
  const registry = new ProducerMetrics().registry;
  const live = new LiveFeed({ registry, maxClients: 3 });
  const handler = telemetryHandler({ registry, live });
  const events = (site?: string) =>
    handler(
      new Request("http://127.0.0.1:9464/events", {
        headers: site === undefined ? {} : { "sec-fetch-site": site },
      }),
    );
  const open: Response[] = [];
  try {
    for (const site of [undefined, "none"]) {
      const response = await events(site);
      assert.equal(response.status, 200);
      open.push(response);
    }
    // Two of three held by clients that are not the page: the third is the page's alone.
    const third = await events();
    assert.equal(third.status, 503);
    await third.body?.cancel();
    for (const site of ["cross-site", "same-site"]) {
      const foreign = await events(site);
      assert.equal(foreign.status, 403);
      assert.equal(
        await foreign.text(),
        "Forbidden: the live stream is for this server's own page\n",
      );
    }
    const page = await events("same-origin");
    assert.equal(page.status, 200);
    open.push(page);
    assert.equal(live.clients, 3);
    const full = await events("same-origin");
    assert.equal(full.status, 503);
    await full.body?.cancel();
  } finally {
    for (const r of open) await r.body!.cancel();
    live.close();
  }
});
