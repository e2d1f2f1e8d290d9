/**
 * Reliability, record timestamps (issue 21): the broker keeps an idempotent producer's sequence
 * state only while now − its last record timestamp < `producer.id.expiration.ms` (24 h), and
 * deletes by the same timestamps under `retention.ms` (7 days). Records are stamped with the
 * local clock by default (`--kafka-timestamp now`), so a replayed 2023 recording keeps its
 * producer state across broker restarts and survives the retention check. `exchange` shows the
 * mechanism: the same replay loses both. Private brokers with Kafka's defaults (the retention
 * test only checks every 2 s); the broker's state read with Kafka's own
 * `TransactionsCommand describe-producers` (KIP-664).
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import {
  brokerConfig,
  describeProducers,
  EXTERNAL_KAFKA,
  type KafkaBroker,
  type ProducerState,
  startKafka,
  uniqueTopic,
} from "./helpers/kafka_broker.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "./helpers/capture.ts";
import { freshFrames, KAFKA_TEST, kafkaEnv, readTopic, run } from "./helpers/e2e.ts";
import { withAdmin } from "./helpers/kafka_check.ts";
import type { ReplaySummary } from "../lib/summary.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { openRecording } from "../lib/recording.ts";
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";

/** Records of the real capture (its 9,857 frames). */
const CAPTURE_RECORDS = 10795;

interface Replayed {
  topic: string;
  records: number;
  startedAt: number;
  endedAt: number;
}

/**
 * Writes the real capture stamped with its exchange times straight through our idempotent sink
 * into a new one-partition topic: what `--kafka-timestamp exchange` sends. Not through
 * `replay.ts`, whose start-up topic check (rightly) refuses that on a topic with default
 * retention, since the records would be deleted.
 */
async function writeExchangeStamped(broker: KafkaBroker, prefix: string): Promise<Replayed> {
  const topic = uniqueTopic(prefix);
  const startedAt = Date.now();
  const kafka = await openKafka(brokerConfig(broker), { log: () => {} });
  try {
    await kafka.connect();
    await kafka.admin.ensureTopic(topic, { partitions: 1, replicationFactor: -1 });
    const transform = createSpreadTransform();
    const records: SpreadRecord[] = [];
    for await (const frame of (await openRecording(CAPTURE)).frames) {
      transform.frame(frame, records);
    }
    const sink = kafka.sink();
    try {
      for (let i = 0; i < records.length; i += 1000) {
        await sink.send(topic, records.slice(i, i + 1000));
      }
    } finally {
      await sink.close();
    }
    return { topic, records: records.length, startedAt, endedAt: Date.now() };
  } finally {
    await kafka.close();
  }
}

/** Replays a recording into a new one-partition topic; resolves with its summary's counts. */
async function replay(
  broker: KafkaBroker,
  file: string,
  prefix: string,
  extra: string[] = [],
): Promise<Replayed> {
  const topic = uniqueTopic(prefix);
  const dir = await Deno.makeTempDir({ prefix: "eos_replay_" });
  const startedAt = Date.now();
  try {
    const r = await run(
      "replay.ts",
      [file, "--to", "kafka", "--partitions", "1", "--summary", `${dir}/s.json`, ...extra],
      kafkaEnv(broker, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/s.json`)) as ReplaySummary;
    equal(summary.acked, summary.records);
    return { topic, records: summary.acked, startedAt, endedAt: Date.now() };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Records on each partition of `topic` now: log end offset − log start offset. */
async function stored(broker: KafkaBroker, topic: string): Promise<number> {
  const offsets = await withAdmin(brokerConfig(broker), (a) => a.fetchTopicOffsets(topic));
  return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
}

/** Writes `frames` as a recording in a temporary file; returns its path. */
async function recordingOf(frames: readonly string[]): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "eos_live_", suffix: ".jsonl" });
  await Deno.writeTextFile(path, frames.join("\n") + "\n");
  return path;
}

const ignore = EXTERNAL_KAFKA;

captureTest({
  name: "the broker keeps the producer state of a replayed 2023 recording and of live-like data " +
    "across a clean restart and a SIGKILL, and drops it for records stamped with 2023",
  ...KAFKA_TEST,
  ignore,
  async fn() {
    const broker = await startKafka({ private: true });
    const live = await recordingOf(freshFrames(3000));
    try {
      const capture = await replay(broker, CAPTURE, "eos-capture");
      equal(capture.records, CAPTURE_RECORDS);
      const fresh = await replay(broker, live, "eos-live");
      equal(fresh.records, 4000);
      const old = await writeExchangeStamped(broker, "eos-exchange");
      const states = async () => ({
        capture: await describeProducers(broker, capture.topic, 0),
        fresh: await describeProducers(broker, fresh.topic, 0),
        old: await describeProducers(broker, old.topic, 0),
      });
      const before = await states();
      // One producer per topic; its last sequence is that of the topic's last record.
      const only = (s: ProducerState[], r: Replayed, what: string): ProducerState => {
        equal(s.length, 1, `${what}: ${JSON.stringify(s)}`);
        equal(s[0]!.lastSequence, r.records - 1, what);
        return s[0]!;
      };
      const c = only(before.capture, capture, "capture");
      ok(c.lastTimestamp >= capture.startedAt && c.lastTimestamp <= capture.endedAt, "clock stamp");
      const f = only(before.fresh, fresh, "live-like");
      ok(f.lastTimestamp >= fresh.startedAt && f.lastTimestamp <= fresh.endedAt, "clock stamp");
      const o = only(before.old, old, "exchange");
      equal(new Date(o.lastTimestamp).toISOString().slice(0, 10), "2023-07-26");

      await broker.pause();
      await broker.resume();
      const afterStop = await states();
      deepStrictEqual(afterStop.capture, before.capture, "after a clean restart");
      deepStrictEqual(afterStop.fresh, before.fresh, "after a clean restart");
      deepStrictEqual(afterStop.old, [], "a 2023 stamp expires at start-up");

      await broker.pause({ crash: true });
      await broker.resume();
      const afterKill = await states();
      deepStrictEqual(afterKill.capture, before.capture, "after a SIGKILL restart");
      deepStrictEqual(afterKill.fresh, before.fresh, "after a SIGKILL restart");
      deepStrictEqual(afterKill.old, []);
    } finally {
      await Deno.remove(live);
      await broker.stop();
    }
  },
});

captureTest({
  name: "a replayed 2023 recording is all still on a topic with default retention after the " +
    "retention check has run, which deletes the same replay stamped with 2023",
  ...KAFKA_TEST,
  ignore,
  async fn() {
    // Kafka's default retention (7 days); only the check runs every 2 s, from 1 s after start.
    const broker = await startKafka({
      properties: ["log.retention.check.interval.ms=2000", "log.initial.task.delay.ms=1000"],
    });
    try {
      const capture = await replay(broker, CAPTURE, "eos-keep");
      const old = await writeExchangeStamped(broker, "eos-expire");
      // The proof that the check ran: the 2023-stamped copy goes (within 60 s, generously).
      const deadline = Date.now() + 60_000;
      let left = await stored(broker, old.topic);
      while (left > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        left = await stored(broker, old.topic);
      }
      equal(left, 0, "the retention check deleted the 2023-stamped replay");
      // Two more check intervals, then the default-policy replay is whole.
      await new Promise((r) => setTimeout(r, 4500));
      equal(await stored(broker, capture.topic), CAPTURE_RECORDS);
      const records = await readTopic(brokerConfig(broker), capture.topic, CAPTURE_RECORDS);
      equal(records.length, CAPTURE_RECORDS);
      equal(new Set(records.map((r) => r.offset)).size, CAPTURE_RECORDS);
    } finally {
      await broker.stop();
    }
  },
});
