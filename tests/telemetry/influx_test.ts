import assert from "node:assert/strict";
import { Counter, Histogram, Registry } from "prom-client";
import {
  DROP_REPORT_MEASUREMENT,
  escapeKey,
  escapeMeasurement,
  formatPoint,
  InfluxWriter,
  LineProtocolError,
  MetricsConverter,
  type Point,
  quoteString,
  startInfluxPush,
  type Timers,
} from "../../lib/telemetry/influx.ts";
import { ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { startInfluxDb } from "../helpers/influxdb.ts";
import { CAPTURE_PATH, captureTest } from "../helpers/capture.ts";
import { SpreadMetrics, spreadStages } from "../../lib/spread_metrics.ts";

const T = 1465839830100;

Deno.test("formatPoint escapes commas, spaces, equals signs and quotes as the line protocol spec's examples do", () => {
  const cases: [Point, string][] = [
    // InfluxDB 1.x line protocol reference, "Special characters" examples (precision ms here).
    [
      {
        measurement: "weather",
        tags: { location: "us,midwest" },
        fields: { temperature: 82 },
        timeMs: T,
      },
      "weather,location=us\\,midwest temperature=82 1465839830100",
    ],
    [
      {
        measurement: "weather",
        tags: { location: "us-midwest" },
        fields: { "temp=rature": 82 },
        timeMs: T,
      },
      "weather,location=us-midwest temp\\=rature=82 1465839830100",
    ],
    [
      {
        measurement: "weather",
        tags: { "location place": "us-midwest" },
        fields: { temperature: 82 },
        timeMs: T,
      },
      "weather,location\\ place=us-midwest temperature=82 1465839830100",
    ],
    [
      {
        measurement: "wea,ther",
        tags: { location: "us-midwest" },
        fields: { temperature: 82 },
        timeMs: T,
      },
      "wea\\,ther,location=us-midwest temperature=82 1465839830100",
    ],
    [
      {
        measurement: "wea ther",
        tags: { location: "us-midwest" },
        fields: { temperature: 82 },
        timeMs: T,
      },
      "wea\\ ther,location=us-midwest temperature=82 1465839830100",
    ],
    [
      {
        measurement: "weather",
        tags: { location: "us-midwest" },
        fields: { temperature: 'too"hot"' },
        timeMs: T,
      },
      'weather,location=us-midwest temperature="too\\"hot\\"" 1465839830100',
    ],
    [
      {
        measurement: "weather",
        tags: { location: "us-midwest" },
        fields: { temperature_str: "too hot\\cold" },
        timeMs: T,
      },
      'weather,location=us-midwest temperature_str="too hot\\\\cold" 1465839830100',
    ],
    // InfluxDB 2.x line protocol reference, "Special characters" examples.
    [
      { measurement: "my Measurement", fields: { fieldKey: "string value" } },
      'my\\ Measurement fieldKey="string value"',
    ],
    [
      { measurement: "myMeasurement", fields: { fieldKey: '"string" within a string' } },
      'myMeasurement fieldKey="\\"string\\" within a string"',
    ],
    [
      {
        measurement: "myMeasurement",
        tags: { "tag Key1": "tag Value1", "tag Key2": "tag Value2" },
        fields: { fieldKey: 100n },
      },
      "myMeasurement,tag\\ Key1=tag\\ Value1,tag\\ Key2=tag\\ Value2 fieldKey=100i",
    ],
    [
      {
        measurement: "myMeasurement",
        tags: { tagKey: "🍭" },
        fields: { fieldKey: "Launch 🚀" },
        timeMs: 1556813561098,
      },
      'myMeasurement,tagKey=🍭 fieldKey="Launch 🚀" 1556813561098',
    ],
    // Backslashes elsewhere are literal; tags are sorted; empty tags, NaN and Infinity are left out.
    [
      {
        measurement: "m",
        tags: { z: "a\\b", a: "", b: "x" },
        fields: { n: NaN, ok: true, f: 1.5, i: Infinity },
        timeMs: 1.4,
      },
      "m,b=x,z=a\\b ok=true,f=1.5 1",
    ],
  ];
  for (const [point, line] of cases) assert.equal(formatPoint(point), line);
  assert.equal(escapeMeasurement("a,b c=d"), "a\\,b\\ c=d");
  assert.equal(escapeKey("a,b c=d"), "a\\,b\\ c\\=d");
  assert.equal(quoteString('say "hi" \\o/'), '"say \\"hi\\" \\\\o/"');
});

Deno.test("formatPoint refuses what line protocol cannot carry, with a LineProtocolError", () => {
  assert.throws(() => formatPoint({ measurement: "m", tags: { t: "a\nb" }, fields: { v: 1 } }), {
    name: "LineProtocolError",
    message: 'Cannot encode tag or field key "a\\nb": line protocol has no newline escape',
  });
  assert.throws(() => formatPoint({ measurement: "m\\", fields: { v: 1 } }), {
    name: "LineProtocolError",
    message: 'Cannot encode measurement "m\\\\": a trailing backslash would escape the delimiter',
  });
  assert.throws(() => formatPoint({ measurement: "m", fields: { v: NaN } }), LineProtocolError);
  assert.throws(() => formatPoint({ measurement: "m", fields: { s: "x\ny" } }), LineProtocolError);
  assert.throws(() => formatPoint({ measurement: "", fields: { v: 1 } }), LineProtocolError);
});

Deno.test("MetricsConverter makes one measurement per metric with labels as tags, ages for timestamps and interval quantiles for histograms", async () => {
  const registry = new Registry();
  const counter = new Counter({
    name: "c_total",
    help: "c",
    labelNames: ["symbol"],
    registers: [registry],
  });
  const h = new Histogram({
    name: "h_seconds",
    help: "h",
    buckets: [0.1, 1],
    labelNames: ["hop"],
    registers: [registry],
  });
  const ts = new (await import("prom-client")).Gauge({
    name: "q_timestamp_seconds",
    help: "t",
    labelNames: ["symbol"],
    registers: [registry],
  });
  counter.inc({ symbol: "ETH USD" }, 3);
  ts.set({ symbol: "ETH-USD" }, 1000);
  for (let i = 0; i < 10; i++) h.observe({ hop: "a" }, 0.0625);
  const converter = new MetricsConverter({ tags: { service: "producer" } });
  const first = converter.convert(await registry.getMetricsAsJSON(), 1_004_500);
  assert.equal(first.skipped, 0);
  assert.deepEqual(first.points.map(formatPoint), [
    "c_total,service=producer,symbol=ETH\\ USD value=3 1004500",
    "h_seconds,hop=a,service=producer count=10,sum=0.625,p50=0.05,p90=0.09000000000000001,p99=0.099 1004500",
    "q_timestamp_seconds,service=producer,symbol=ETH-USD value=1000,age_seconds=4.5 1004500",
  ]);
  // The next snapshot's quantiles cover only what was observed since the previous one.
  for (let i = 0; i < 4; i++) h.observe({ hop: "a" }, 0.5);
  const second = converter.convert(await registry.getMetricsAsJSON(), 1_005_000);
  const hPoint = second.points.find((p) => p.measurement === "h_seconds")!;
  assert.deepEqual(hPoint.fields, {
    count: 14,
    sum: 2.625,
    p50: 0.1 + 0.9 * (2 / 4),
    p90: 0.1 + 0.9 * (3.6 / 4),
    p99: 0.1 + 0.9 * (3.96 / 4),
  });
  // No new observations: count and sum only.
  const third = converter.convert(await registry.getMetricsAsJSON(), 1_006_000);
  assert.deepEqual(third.points.find((p) => p.measurement === "h_seconds")!.fields, {
    count: 14,
    sum: 2.625,
  });
  // A label value line protocol cannot carry is skipped and counted, not fatal.
  counter.inc({ symbol: "bad\nsymbol" });
  const fourth = converter.convert(await registry.getMetricsAsJSON(), 1_007_000);
  assert.equal(fourth.skipped, 1);
  assert.equal(fourth.points.filter((p) => p.measurement === "c_total").length, 1);
});

interface SeenRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  auth: string | null;
  contentType: string | null;
  body: string;
}

async function withWriteServer(
  respond: (seen: SeenRequest) => number,
  run: (url: string, seen: SeenRequest[]) => Promise<void>,
): Promise<void> {
  const seen: SeenRequest[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const s: SeenRequest = {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      auth: req.headers.get("authorization"),
      contentType: req.headers.get("content-type"),
      body: await req.text(),
    };
    seen.push(s);
    const status = respond(s);
    return new Response(status >= 400 ? '{"error":"nope"}' : null, { status });
  });
  try {
    await run(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

Deno.test("the v2 writer posts to /api/v2/write with org, bucket, precision, a token header and the lines", async () => {
  await withWriteServer(() => 204, async (url, seen) => {
    const writer = new InfluxWriter({
      url,
      api: "v2",
      org: "my org",
      bucket: "crypto/raw",
      token: "s3cr3t-token",
      batchSize: 2,
    });
    writer.enqueue([
      { measurement: "a", tags: { symbol: "BTC-USD" }, fields: { value: 1 }, timeMs: 1000 },
      { measurement: "b", fields: { value: 2.5 }, timeMs: 1001 },
      "c value=3 1002",
    ]);
    await writer.flush();
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[0], {
      method: "POST",
      path: "/api/v2/write",
      query: { org: "my org", bucket: "crypto/raw", precision: "ms" },
      auth: "Token s3cr3t-token",
      contentType: "text/plain; charset=utf-8",
      body: "a,symbol=BTC-USD value=1 1000\nb value=2.5 1001\n",
    });
    assert.equal(seen[1]!.body, "c value=3 1002\n");
    assert.equal(writer.written, 3);
    assert.equal(writer.buffered, 0);
    assert.equal(
      writer.endpoint,
      `${url}/api/v2/write?org=my+org&bucket=crypto%2Fraw&precision=ms`,
    );
  });
});

Deno.test("the v1 writer posts to /write with db, rp and precision, and basic auth or a token, never credentials in the URL", async () => {
  await withWriteServer(() => 204, async (url, seen) => {
    const basic = new InfluxWriter({
      url,
      db: "crypto",
      rp: "week",
      user: "ann",
      password: "pa:ss wörd",
    });
    basic.enqueue(["m value=1 1"]);
    await basic.flush();
    const withUserInfo = new InfluxWriter({ url: url.replace("http://", "http://bob:p%40ss@") });
    withUserInfo.enqueue(["m value=2 2"]);
    await withUserInfo.flush();
    const token = new InfluxWriter({ url, db: "crypto", token: "tok" });
    token.enqueue(["m value=3 3"]);
    await token.flush();
    assert.deepEqual(seen.map((s) => [s.path, s.query, s.auth, s.body]), [
      [
        "/write",
        { db: "crypto", rp: "week", precision: "ms" },
        `Basic ${btoa("ann:pa:ss w\u00c3\u00b6rd")}`,
        "m value=1 1\n",
      ],
      ["/write", { db: "crypto", precision: "ms" }, `Basic ${btoa("bob:p@ss")}`, "m value=2 2\n"],
      ["/write", { db: "crypto", precision: "ms" }, "Token tok", "m value=3 3\n"],
    ]);
    assert.equal(withUserInfo.endpoint, `${url}/write?db=crypto&precision=ms`);
  });
});

Deno.test("the writer drops the oldest points when its buffer is full and reports the number dropped once InfluxDB answers again", async () => {
  let up = false;
  const logs: string[] = [];
  const written = {
    n: 0,
    inc(v = 1) {
      this.n += v;
    },
  };
  const dropped = {
    n: 0,
    inc(v = 1) {
      this.n += v;
    },
  };
  const errors = {
    n: 0,
    inc(v = 1) {
      this.n += v;
    },
  };
  let clock = 50_000;
  await withWriteServer(() => (up ? 204 : 503), async (url, seen) => {
    const writer = new InfluxWriter({
      url,
      api: "v2",
      org: "o",
      bucket: "b",
      token: "never-log-me",
      batchSize: 4,
      bufferMax: 10,
      counters: { written, dropped, errors },
      log: (line) => logs.push(line),
      now: () => clock,
    });
    writer.enqueue(Array.from({ length: 6 }, (_, i) => `p value=${i} ${i}`));
    await writer.flush(); // 503: the first batch goes back, in order
    assert.equal(writer.buffered, 6);
    assert.equal(writer.writeErrors, 1);
    writer.enqueue(Array.from({ length: 7 }, (_, i) => `p value=${6 + i} ${6 + i}`)); // 13 > 10
    assert.equal(writer.dropped, 3);
    await writer.flush();
    assert.equal(writer.writeErrors, 2);
    assert.equal(writer.buffered, 10);
    clock += 12_000;
    up = true;
    await writer.flush();
    assert.equal(writer.buffered, 0);
    assert.equal(writer.written, 11); // 10 points and the drop report
    assert.equal(writer.dropped, 3);
    assert.deepEqual([written.n, dropped.n, errors.n], [11, 3, 2]);
    const bodies = seen.filter((s) => s.body).slice(2).map((s) => s.body).join("");
    const lines = bodies.trim().split("\n");
    assert.deepEqual(
      lines.slice(0, 10),
      Array.from({ length: 10 }, (_, i) => `p value=${3 + i} ${3 + i}`),
      "the three oldest points are gone, the rest are written oldest first",
    );
    assert.equal(lines[10], `${DROP_REPORT_MEASUREMENT} dropped=3i,down_seconds=12 62000`);
    assert.equal(logs.length, 2);
    assert.match(
      logs[0]!,
      /^Cannot write 4 points to InfluxDB at .*: status 503: \{"error":"nope"\}; buffering up to 10 points, oldest dropped$/,
    );
    assert.match(logs[1]!, /resumed after 12\.0 s; 3 points were dropped meanwhile$/);
    assert.ok(logs.every((l) => !l.includes("never-log-me")));
  });
});

Deno.test("a batch InfluxDB rejects as bad is dropped and counted, not retried forever", async () => {
  const logs: string[] = [];
  await withWriteServer((s) => (s.body.includes("bad") ? 400 : 204), async (url, seen) => {
    const writer = new InfluxWriter({ url, batchSize: 1, log: (l) => logs.push(l) });
    writer.enqueue(["bad line", "good value=1 1"]);
    await writer.flush();
    assert.deepEqual([writer.written, writer.dropped, writer.writeErrors, writer.buffered], [
      2,
      1,
      1,
      0,
    ]);
    assert.equal(seen.length, 3); // bad, good, then the report of the one dropped
    assert.match(seen[2]!.body, /^crypto_telemetry_drop_report dropped=1i,down_seconds=0 \d+\n$/);
    assert.match(logs[0]!, /status 400: \{"error":"nope"\}; dropped the batch of 1 points$/);
  });
});

Deno.test("a writer that cannot connect counts the error and keeps the points, and never logs the password", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const logs: string[] = [];
  const writer = new InfluxWriter({
    url: `http://127.0.0.1:${port}`,
    user: "u",
    password: "hunter2-secret",
    log: (l) => logs.push(l),
  });
  writer.enqueue(["m value=1 1"]);
  await writer.flush();
  assert.deepEqual([writer.written, writer.buffered, writer.writeErrors], [0, 1, 1]);
  assert.equal(logs.length, 1);
  assert.match(
    logs[0]!,
    /^Cannot write 1 points to InfluxDB at http:\/\/127\.0\.0\.1:\d+\/write\?db=crypto&precision=ms: /,
  );
  assert.ok(!logs[0]!.includes("hunter2"));
});

Deno.test("the push loop snapshots the registry on each timer tick and flushes what is left when stopped", async () => {
  const callbacks: (() => void)[] = [];
  let cleared = 0;
  const timers: Timers = {
    setTimeout(callback, ms) {
      assert.equal(ms, 250);
      callbacks.push(callback);
      return 7;
    },
    clearTimeout(id) {
      assert.equal(id, 7);
      cleared++;
    },
  };
  await withWriteServer(() => 204, async (url, seen) => {
    const metrics = new ProducerMetrics();
    const spreads = new SpreadMetrics(metrics);
    let clock = 1_000_000;
    const push = startInfluxPush(metrics.registry, {
      url,
      intervalMs: 250,
      timers,
      now: () => clock,
      tags: { service: "producer" },
      counters: { written: metrics.telemetryPointsWritten },
    });
    spreads.recordsBySymbol.inc({ symbol: "ETH-USD" }, 5);
    assert.equal(callbacks.length, 1);
    await push.tick();
    assert.equal(seen.length, 1);
    assert.match(
      seen[0]!.body,
      /^crypto_quotes_total,service=producer,symbol=ETH-USD value=5 1000000$/m,
    );
    const firstCount = push.writer.written;
    clock += 250;
    spreads.recordsBySymbol.inc({ symbol: "ETH-USD" }, 2);
    await push.stop();
    assert.equal(cleared, 1);
    assert.equal(seen.length, 2);
    assert.match(
      seen[1]!.body,
      /^crypto_quotes_total,service=producer,symbol=ETH-USD value=7 1000250$/m,
    );
    assert.match(
      seen[1]!.body,
      new RegExp(
        `^crypto_telemetry_points_written_total,service=producer value=${firstCount} 1000250$`,
        "m",
      ),
    );
  });
});

Deno.test("escaped points read back from a real InfluxDB exactly as they were written", async () => {
  const influx = await startInfluxDb();
  try {
    await influx.query("CREATE DATABASE lp");
    const writer = new InfluxWriter({ url: influx.url, db: "lp" });
    writer.enqueue([
      {
        measurement: "wea, ther",
        tags: { "location place": "us,midwest", eq: "a=b", bs: "c\\d" },
        fields: { "temp=rature": 82, s: 'too"hot" \\cold' },
        timeMs: T,
      },
    ]);
    await writer.flush();
    assert.deepEqual([writer.written, writer.writeErrors], [1, 0]);
    const [result] = await influx.query(`SELECT * FROM "wea, ther"`, "lp");
    const series = result!.series![0]!;
    const row = Object.fromEntries(series.columns.map((c, i) => [c, series.values[0]![i]]));
    assert.deepEqual(row, {
      time: T,
      "location place": "us,midwest",
      eq: "a=b",
      bs: "c\\d",
      "temp=rature": 82,
      s: 'too"hot" \\cold',
    });
  } finally {
    await influx.close();
  }
});

Deno.test("InfluxDB stopped mid-run: the oldest points are dropped and counted, and the count is written once it is back", async () => {
  const influx = await startInfluxDb();
  const logs: string[] = [];
  try {
    await influx.query("CREATE DATABASE crypto");
    const writer = new InfluxWriter({
      url: influx.url,
      batchSize: 40,
      bufferMax: 100,
      timeoutMs: 2_000,
      log: (l) => logs.push(l),
    });
    const points = (from: number, n: number) =>
      Array.from(
        { length: n },
        (_, i) => ({
          measurement: "seq",
          fields: { n: BigInt(from + i) },
          timeMs: 1_700_000_000_000 + from + i,
        }),
      );
    writer.enqueue(points(0, 30));
    await writer.flush();
    assert.deepEqual([writer.written, writer.dropped, writer.writeErrors], [30, 0, 0]);

    await influx.stop();
    writer.enqueue(points(30, 50));
    await writer.flush();
    writer.enqueue(points(80, 80)); // 130 buffered > 100: points 30..59 go
    await writer.flush();
    assert.deepEqual([writer.written, writer.dropped, writer.writeErrors, writer.buffered], [
      30,
      30,
      2,
      100,
    ]);

    await influx.start();
    await writer.flush();
    assert.deepEqual([writer.written, writer.dropped, writer.buffered], [131, 30, 0]);

    const [count] = await influx.query(
      `SELECT count("n"), min("n"), max("n") FROM "seq"`,
      "crypto",
    );
    assert.deepEqual(count!.series![0]!.values[0]!.slice(1), [130, 0, 159]);
    const [gap] = await influx.query(
      `SELECT count("n") FROM "seq" WHERE "n" >= 30 AND "n" < 60`,
      "crypto",
    );
    assert.equal(gap!.series, undefined, "the dropped points are the oldest of the outage");
    const [report] = await influx.query(
      `SELECT "dropped" FROM "${DROP_REPORT_MEASUREMENT}"`,
      "crypto",
    );
    assert.deepEqual(report!.series![0]!.values.map((v) => v[1]), [30]);
    assert.equal(logs.length, 2);
    assert.match(logs[1]!, /; 30 points were dropped meanwhile$/);
  } finally {
    await influx.close();
  }
});

captureTest({
  name:
    "the pipeline keeps its pace on the real capture while InfluxDB is down, and the push counts the failures",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const lines = (await Deno.readTextFile(CAPTURE_PATH)).split("\n").filter((l) =>
      l.trim() !== ""
    );
    const influx = await startInfluxDb();
    try {
      await influx.query("CREATE DATABASE crypto");
      const run = async (
        influxUp: boolean | undefined,
      ): Promise<[number, ProducerMetrics, number]> => {
        const metrics = new ProducerMetrics();
        const { MemoryBroker } = await import("../../lib/memory_broker.ts");
        const { Pipeline } = await import("../../lib/pipeline.ts");
        const pipeline = new Pipeline(new MemoryBroker().sink(), {
          ...spreadStages(metrics),
          topic: "t",
          metrics,
          lingerMs: 1,
          log: () => {},
        });
        const done = pipeline.start();
        const push = influxUp === undefined ? undefined : startInfluxPush(metrics.registry, {
          url: influx.url,
          intervalMs: 20,
          bufferMax: 50,
          timeoutMs: 1_000,
          counters: {
            written: metrics.telemetryPointsWritten,
            dropped: metrics.telemetryPointsDropped,
            errors: metrics.telemetryWriteErrors,
          },
          log: () => {},
        });
        const started = performance.now();
        for (let round = 0; round < 3; round++) {
          for (const line of lines) await pipeline.offer(line);
        }
        await pipeline.close();
        await done;
        const ms = performance.now() - started;
        const acked = pipeline.counts.acked;
        await push?.stop();
        return [ms, metrics, acked];
      };
      const [baseMs, , baseAcked] = await run(undefined);
      await influx.stop();
      const [downMs, down, downAcked] = await run(false);
      await influx.start();
      assert.deepEqual([baseAcked, downAcked], [3 * 10_795, 3 * 10_795]);
      const json = await down.registry.getMetricsAsJSON();
      const value = (name: string) => json.find((m) => m.name === name)!.values[0]!.value;
      assert.ok(value("crypto_telemetry_write_errors_total") >= 1, "the failed writes are counted");
      assert.ok(
        value("crypto_telemetry_points_dropped_total") > 0,
        "the buffer overflowed and dropped points",
      );
      assert.equal(value("crypto_telemetry_points_written_total"), 0);
      assert.ok(
        downMs < baseMs * 2 + 250,
        `took ${downMs.toFixed(0)} ms with InfluxDB down, ${
          baseMs.toFixed(0)
        } ms without telemetry`,
      );
    } finally {
      await influx.close();
    }
  },
});
