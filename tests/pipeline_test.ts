import { deepStrictEqual, equal, ok, rejects } from "./helpers/assert.ts";
import { FlushTimeoutError, type Gap, Pipeline, SinkFailedError } from "../lib/pipeline.ts";
import { MemoryBroker } from "../lib/memory_broker.ts";
import { ProducerMetrics } from "../lib/telemetry/metrics.ts";
import type { OutRecord, RecordSink } from "../lib/sink.ts";
import { spreadStages } from "../lib/spread_metrics.ts";

function frame(i: number, pair = "BTC-USD"): string {
  return `[{"ev":"XQ","pair":"${pair}","bp":${100 + i},"ap":${100 + i}.5,"t":${
    1_700_000_000_000 + i
  },"r":${1_700_000_000_005 + i}}]`;
}

/** A sink that records batches and can be held shut or made to fail. */
class TestSink implements RecordSink {
  batches: { topic: string; records: OutRecord[] }[] = [];
  failNext = 0;
  /** Calls of send, failed ones included. */
  sends = 0;
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => {};
  #onSend: (() => void)[] = [];
  /** Resolves when `send` is next called (before it waits on a hold). */
  nextSend(): Promise<void> {
    return new Promise((resolve) => this.#onSend.push(resolve));
  }
  hold(): void {
    this.#gate = new Promise((resolve) => this.#open = resolve);
  }
  release(): void {
    this.#open();
  }
  async send(topic: string, records: readonly OutRecord[]): Promise<void> {
    this.sends++;
    for (const resolve of this.#onSend.splice(0)) resolve();
    await this.#gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("broker not available");
    }
    this.batches.push({ topic, records: [...records] });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  values(topic = "t"): string[] {
    return this.batches.filter((b) => b.topic === topic).flatMap((b) =>
      b.records.map((r) => r.value)
    );
  }
}

const quiet = () => {};

Deno.test("pipeline sends every record in order, in batches of at most batchMax", async () => {
  const sink = new TestSink();
  const p = new Pipeline(sink, {
    ...spreadStages(),
    topic: "t",
    batchMax: 7,
    lingerMs: 1,
    log: quiet,
  });
  p.start();
  for (let i = 0; i < 50; i++) p.push(frame(i));
  await p.close(5000);
  equal(p.counts.acked, 50);
  equal(p.counts.records, 50);
  ok(sink.batches.every((b) => b.records.length <= 7));
  deepStrictEqual(
    sink.values().map((v) => JSON.parse(v).timestamp),
    Array.from({ length: 50 }, (_, i) => new Date(1_700_000_000_000 + i).toISOString()),
  );
});

Deno.test("pipeline push never waits on a slow sink, and drop-oldest drops exactly the overflow", async () => {
  const sink = new TestSink();
  const metrics = new ProducerMetrics();
  const p = new Pipeline(sink, {
    ...spreadStages(metrics),
    topic: "t",
    queueMax: 10,
    lingerMs: 0,
    metrics,
    log: quiet,
  });
  sink.hold();
  p.start();
  const inFlight = sink.nextSend();
  p.push(frame(0));
  await inFlight; // frame 0 is in flight, held by the sink
  for (let i = 1; i <= 25; i++) p.push(frame(i));
  equal(p.queued, 10);
  equal(p.counts.framesDropped, 15);
  sink.release();
  await p.close(5000);
  deepStrictEqual(
    sink.values().map((v) => JSON.parse(v).spread),
    Array.from({ length: 11 }, () => 0.5),
  );
  deepStrictEqual(
    sink.values().map((v) => JSON.parse(v).timestamp.slice(-4)),
    ["000Z", "016Z", "017Z", "018Z", "019Z", "020Z", "021Z", "022Z", "023Z", "024Z", "025Z"],
  );
  equal(p.counts.framesIn, p.counts.framesTransformed + p.counts.framesDropped);
  const text = await metrics.registry.metrics();
  ok(text.includes("crypto_queue_dropped_total 15"), text);
});

Deno.test("pipeline drop-newest keeps the frames that were queued first", async () => {
  const sink = new TestSink();
  const p = new Pipeline(sink, {
    ...spreadStages(),
    topic: "t",
    queueMax: 3,
    queuePolicy: "drop-newest",
    log: quiet,
  });
  for (let i = 0; i < 5; i++) p.push(frame(i));
  equal(p.counts.framesDropped, 2);
  p.start();
  await p.close(5000);
  deepStrictEqual(sink.values().map((v) => JSON.parse(v).timestamp.slice(-4)), [
    "000Z",
    "001Z",
    "002Z",
  ]);
});

Deno.test("a send the sink rejects stops the pipeline: nothing is resent under a new send", async () => {
  const sink = new TestSink();
  sink.failNext = 1;
  const lines: string[] = [];
  const p = new Pipeline(sink, {
    ...spreadStages(),
    topic: "t",
    batchMax: 4,
    log: (l) => lines.push(l),
  });
  const done = p.start();
  for (let i = 0; i < 10; i++) p.push(frame(i));
  await rejects(done, SinkFailedError);
  await rejects(p.close(1000), { name: "SinkFailedError", message: /broker not available/ });
  equal(p.counts.sendErrors, 1);
  equal(p.counts.acked, 0);
  // The sink saw one send, the failed one: the pipeline never sent that batch again.
  equal(sink.sends, 1);
  ok(lines.some((l) => l.includes("the pipeline stops")), lines.join("\n"));
});

Deno.test("pipeline close rejects with the unacknowledged count when the sink never acks, and leaves no worker", async () => {
  const sink = new TestSink();
  sink.hold();
  const p = new Pipeline(sink, { ...spreadStages(), topic: "t", batchMax: 2, log: quiet });
  const worker = p.start();
  for (let i = 0; i < 3; i++) p.push(frame(i));
  await rejects(() => p.close(50), (e: unknown) => {
    ok(e instanceof FlushTimeoutError);
    equal(e.unacked, 3);
    return true;
  });
  // The held send settles; the worker then stops instead of sending the third record.
  sink.release();
  await worker;
  equal(sink.sends, 1);
  equal(p.counts.acked, 2);
});

Deno.test("pipeline publishes gaps as records on the gaps topic", async () => {
  const broker = new MemoryBroker();
  const p = new Pipeline(broker.sink(), { ...spreadStages(), topic: "t", log: quiet });
  p.start();
  p.gap({ from: Date.UTC(2024, 0, 1), to: Date.UTC(2024, 0, 1, 0, 0, 2, 500), reason: "closed" });
  await p.close(5000);
  const gaps = broker.records("t.gaps").flat();
  equal(gaps.length, 1);
  deepStrictEqual(JSON.parse(gaps[0]!.value!), {
    from: "2024-01-01T00:00:00.000Z",
    to: "2024-01-01T00:00:02.500Z",
    reason: "closed",
    seconds: 2.5,
  });
  equal(p.counts.gapsAcked, 1);
});

Deno.test("pipeline counts balance and metrics report skips, hops and acks", async () => {
  const broker = new MemoryBroker();
  const metrics = new ProducerMetrics();
  const p = new Pipeline(broker.sink(), {
    ...spreadStages(metrics),
    topic: "t",
    metrics,
    log: quiet,
  });
  p.start();
  p.push(frame(1), 1_700_000_000_010);
  p.push("not json");
  p.push('[{"ev":"status","status":"success"},{"ev":"XQ","pair":"ETH-USD","bp":0,"ap":1,"t":1}]');
  p.push(`[{"ev":"XQ","pair":"ETH-USD","bp":2,"ap":1,"t":1}]`);
  await p.close(5000);
  const c = p.counts;
  equal(c.events, 5);
  equal(c.acked, 2);
  equal(c.events, c.acked + Object.values(c.skipped).reduce((a, b) => a + b, 0));
  const text = await metrics.registry.metrics();
  for (
    const line of [
      'crypto_transform_skipped_total{reason="invalid_json"} 1',
      'crypto_transform_skipped_total{reason="status"} 1',
      'crypto_transform_skipped_total{reason="bad_bid"} 1',
      "crypto_sink_records_acked_total 2",
      'crypto_quotes_crossed_total{symbol="ETH-USD"} 1',
      'crypto_hop_latency_seconds_count{hop="exchange_to_polygon"} 1',
      'crypto_spread_last{symbol="ETH-USD"} -1',
    ]
  ) ok(text.includes(line), `missing ${line}`);
});

Deno.test("pipeline stamps each batch with the clock when it is built, and the value keeps the exchange time", async () => {
  const sink = new TestSink();
  sink.hold();
  let clock = 1_800_000_000_000;
  const p = new Pipeline(sink, {
    ...spreadStages(),
    topic: "t",
    batchMax: 3,
    now: () => clock,
    log: quiet,
  });
  p.start();
  const first = sink.nextSend();
  for (let i = 0; i < 3; i++) p.push(frame(i));
  await first;
  clock = 1_800_000_009_000;
  for (let i = 3; i < 6; i++) p.push(frame(i));
  p.gap({ from: Date.UTC(2024, 0, 1), to: Date.UTC(2024, 0, 1, 0, 0, 1), reason: "closed" });
  sink.release();
  await p.close(5000);
  const stamps = (topic: string) =>
    sink.batches.filter((b) => b.topic === topic).map((b) => b.records.map((r) => r.timestamp));
  deepStrictEqual(stamps("t"), [
    [1_800_000_000_000, 1_800_000_000_000, 1_800_000_000_000],
    [1_800_000_009_000, 1_800_000_009_000, 1_800_000_009_000],
  ]);
  deepStrictEqual(stamps("t.gaps"), [[1_800_000_009_000]]);
  deepStrictEqual(
    sink.values().map((v) => JSON.parse(v).timestamp),
    Array.from({ length: 6 }, (_, i) => new Date(1_700_000_000_000 + i).toISOString()),
  );
  equal(JSON.parse(sink.values("t.gaps")[0]!).to, "2024-01-01T00:00:01.000Z");
});

Deno.test("pipeline with the exchange timestamp policy stamps each record with its exchange time", async () => {
  const sink = new TestSink();
  const p = new Pipeline(sink, {
    ...spreadStages(),
    topic: "t",
    timestamps: "exchange",
    now: () => 1_800_000_000_000,
    log: quiet,
  });
  p.start();
  for (let i = 0; i < 4; i++) p.push(frame(i));
  await p.close(5000);
  deepStrictEqual(
    sink.batches.flatMap((b) => b.records.map((r) => r.timestamp)),
    [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_003],
  );
});

Deno.test("finding 11: frames dropped from a full queue leave a gap record on the gaps topic", async () => {
  for (const queuePolicy of ["drop-oldest", "drop-newest"] as const) {
    const sink = new TestSink();
    const seen: Gap[] = [];
    const p = new Pipeline(sink, {
      ...spreadStages(),
      topic: "t",
      queueMax: 3,
      queuePolicy,
      log: quiet,
      onGap: (gap) => seen.push(gap),
    });
    // Frame i arrives at local time 1,000 + i; the queue holds 3, so 4 of these 7 are dropped.
    for (let i = 0; i < 7; i++) p.push(frame(i), 1_000 + i);
    p.start();
    await p.close(5000);
    const expected = queuePolicy === "drop-oldest"
      ? { from: 1_000, to: 1_003 }
      : { from: 1_003, to: 1_006 };
    deepStrictEqual(sink.values("t.gaps").map((v) => JSON.parse(v)), [{
      from: new Date(expected.from).toISOString(),
      to: new Date(expected.to).toISOString(),
      reason: "queue_full",
      seconds: 0.003,
    }], queuePolicy);
    deepStrictEqual(seen, [{ ...expected, reason: "queue_full" }]);
    equal(p.counts.framesDropped, 4);
    equal(p.counts.gapsAcked, 1);
  }
});

Deno.test("finding 11: a queue that has room again ends the hole, and each hole is its own gap", async () => {
  const sink = new TestSink();
  const p = new Pipeline(sink, { ...spreadStages(), topic: "t", queueMax: 2, log: quiet });
  for (let i = 0; i < 4; i++) p.push(frame(i), 2_000 + i); // frames 0 and 1 dropped
  sink.hold();
  const sending = sink.nextSend();
  p.start();
  await sending; // frames 2 and 3 are in flight: the queue has room
  for (let i = 0; i < 4; i++) p.push(frame(10 + i), 3_000 + i); // room, then 2 more dropped
  sink.release();
  await p.close(5000);
  deepStrictEqual(sink.values("t.gaps").map((v) => [JSON.parse(v).from, JSON.parse(v).to]), [
    [new Date(2_000).toISOString(), new Date(2_001).toISOString()],
    [new Date(3_000).toISOString(), new Date(3_001).toISOString()],
  ]);
});
