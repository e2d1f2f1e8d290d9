/**
 * End to end on the real capture: producer and replay into a real broker, every record exactly once and in order.
 * Against a real Apache Kafka broker (tests/helpers/kafka_broker.ts) with the scripts as
 * processes (tests/helpers/e2e.ts). With KAFKA_BROKERS set, the TLS and SCRAM tests are skipped;
 * the capture tests need the real capture (tests/helpers/capture.ts) and are ignored without it.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { readAllFrames } from "../lib/recording.ts";
import { SCHEMA_VERSION } from "../lib/sink.ts";
import type { ReplaySummary } from "../lib/summary.ts";
import { transform } from "../transform.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "./helpers/capture.ts";
import {
  bySymbol,
  ensureTopic,
  expectedValues,
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  lines,
  produceThroughFake,
  readTopic,
  replayOfCapture,
  run,
  sorted,
} from "./helpers/e2e.ts";

captureTest({
  name: "every quote of the real capture goes from the fake server through Kafka to the consumer " +
    "exactly once, in order per symbol, byte-identical to replay",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-capture");
    const frames = await readAllFrames(CAPTURE);
    equal(frames.length, 9857);
    const replayed = await replayOfCapture();
    equal(replayed.length, 10795);
    deepStrictEqual(replayed, expectedValues(frames));
    await ensureTopic(config, topic, 6);

    const env = kafkaEnv(b, "plaintext", topic);
    const startedAt = Date.now();
    const producer = await produceThroughFake(frames, env);
    equal(producer.framesSent, 9857);
    equal(producer.code, 0, producer.stderr);
    match(producer.stderr, new RegExp(`topic "${topic}" exists with 6 partitions; left as it is`));
    // The 9857 frames plus the server's "subscribed to" status frame, whose event is skipped.
    const { channels, refused, ...counts } = producer.summary;
    // One channel (the default XQ): its counts are the totals; nothing refused.
    deepStrictEqual(refused, []);
    deepStrictEqual(Object.keys(channels), ["XQ"]);
    deepStrictEqual(
      [channels.XQ!.events, channels.XQ!.records, channels.XQ!.acked, channels.XQ!.topic],
      [counts.events, counts.records, counts.acked, topic],
    );
    deepStrictEqual({ ...counts, reconnects: counts.reconnects.length }, {
      summary: 1,
      frames: 9858,
      events: 10796,
      records: 10795,
      acked: 10795,
      skipped: 1,
      skippedByReason: { status: 1 },
      framesDropped: 0,
      gaps: 0,
      sendErrors: 0,
      produceRetries: 0,
      producerResets: 0,
      deadLettered: 0,
      deadLetteredByReason: {},
      framesRecorded: null,
      reconnects: 0,
      topics: ["XQ.*"],
      takeovers: null,
      fencedRecords: null,
      error: null,
      exitCode: 0,
    });
    equal(counts.events, counts.records + counts.skipped);

    const consumer = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "10795", "--group", `g-${topic}`],
      env,
    );
    equal(consumer.code, 0, consumer.stderr);
    const consumed = lines(consumer.stdout);
    equal(consumed.length, counts.records);
    match(
      consumer.stderr,
      new RegExp(`consumed 10795 records, 0 malformed \\(skipped\\), group "g-${topic}"`),
    );
    deepStrictEqual(sorted(consumed), sorted(replayed));
    deepStrictEqual(bySymbol(consumed), bySymbol(replayed));

    // The Kafka records themselves: key = symbol, schema-version header, and the timestamp the
    // local clock when the producer sent them (the exchange time t is in the value).
    const records = await readTopic(config, topic, 10795);
    const expected = frames.flatMap((f) => transform(f).records);
    const tuple = (key: string | null, value: string | null, h: object) =>
      JSON.stringify([key, value, h]);
    deepStrictEqual(
      sorted(records.map((r) => tuple(r.key, r.value, r.headers))),
      sorted(expected.map((r) => tuple(r.key, r.value, r.headers ?? {}))),
    );
    const endedAt = Date.now();
    for (const r of records) {
      ok(r.timestamp >= startedAt && r.timestamp <= endedAt, `${r.timestamp}`);
    }
    deepStrictEqual(records[0]!.headers, { "schema-version": SCHEMA_VERSION });
    // One symbol, one partition.
    const partitionsOf = new Map<string, Set<number>>();
    for (const r of records) {
      let set = partitionsOf.get(r.key!);
      if (!set) partitionsOf.set(r.key!, set = new Set());
      set.add(r.partition);
    }
    for (const [symbol, set] of partitionsOf) equal(set.size, 1, `${symbol} in ${[...set]}`);
  },
});

captureTest({
  name: "replay --to kafka writes the same records as replay to stdout",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-replay");
    await ensureTopic(config, topic, 6);
    const startedAt = Date.now();
    const dir = await Deno.makeTempDir({ prefix: "e2e_replay_" });
    const result = await run(
      "replay.ts",
      [CAPTURE, "--to", "kafka", "--summary", `${dir}/summary.json`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(result.code, 0, result.stderr);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as ReplaySummary;
    await Deno.remove(dir, { recursive: true });
    deepStrictEqual(
      [summary.frames, summary.events, summary.records, summary.acked, summary.skipped],
      [9857, 10795, 10795, 10795, 0],
    );
    equal(result.stdout, "");
    const replayed = await replayOfCapture();
    const records = await readTopic(config, topic, 10795);
    const values = records.map((r) => r.value!);
    deepStrictEqual(sorted(values), sorted(replayed));
    // Per partition, offset order; per symbol, that is the replay's order.
    const inOrder = [...records].sort((x, y) =>
      x.partition - y.partition || Number(BigInt(x.offset) - BigInt(y.offset))
    );
    deepStrictEqual(bySymbol(inOrder.map((r) => r.value!)), bySymbol(replayed));
    // Stamped with the replay's clock, not 2023: the broker's retention and producer-id expiry
    // treat them as new records.
    const endedAt = Date.now();
    for (const r of records) {
      const v = JSON.parse(r.value!);
      equal(r.key, v.symbol);
      ok(r.timestamp >= startedAt && r.timestamp <= endedAt, `${r.timestamp} ${v.timestamp}`);
    }
  },
});
