/**
 * Reliability, the Kafka side (issue 5, scenarios 1 and 2): the real producer (a subprocess,
 * SASL_SSL) streams from the fake Polygon server into a private real broker that the test stops
 * and starts again. Counts are exact: every frame the fake sent is acked, skipped or dropped and
 * counted, and the topic holds each acked record exactly once. The producer runs with the
 * default Kafka client, or the one `KAFKA_CLIENT` names.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import type { InRecord } from "../lib/sink.ts";
import { EXTERNAL_KAFKA, type KafkaBroker, startKafka } from "./helpers/kafka_broker.ts";
import {
  assertDelivered,
  assertQuotesOnce,
  endlessQuotes,
  KAFKA_TEST,
  metric,
  outage,
  quoteValue,
  readTopic,
  reappended,
  recordTexts,
  sample,
  startScenario,
  storedBatches,
  waitUntil,
} from "./helpers/reliability.ts";

let privateBroker: Promise<KafkaBroker> | undefined;

/** This file's own broker, which its tests stop and start. */
function ownBroker(): Promise<KafkaBroker> {
  privateBroker ??= startKafka({ private: true });
  return privateBroker;
}

/**
 * Asserts exactly once, after a clean stop and after an unclean one alike: records are stamped
 * with the local clock, so the restarted broker keeps the producer's sequence state and drops a
 * retried batch it already holds (RELIABILITY.md, findings 1 and 5). Should a copy appear, the
 * message lists the batches the broker stored twice (same producer id, epoch and sequence).
 * Returns the number of extra copies (0).
 */
async function assertOnceOrReappended(
  broker: KafkaBroker,
  topic: string,
  records: readonly InRecord[],
  expected: readonly string[],
  _killed: boolean,
  stderr: string,
): Promise<number> {
  const values = records.map((r) => r.value!);
  const context = values.length === new Set(values).size ? stderr : `${stderr}\nbatches ` +
    `stored twice: ${JSON.stringify(reappended(await storedBatches(broker, topic)))}`;
  return assertDelivered(records, expected, context);
}

Deno.test({
  name:
    "a Kafka outage of 15 s and more mid-stream loses nothing, writes no record twice, and the producer keeps reading the WebSocket",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await ownBroker();
    const limit: { at?: number } = {};
    const rate = 200;
    await using s = await startScenario({
      topic: "rel-outage",
      broker,
      fake: { frames: endlessQuotes(limit), rate },
      args: ["--stale-after", "5"],
    });
    const { fake, producer, topic } = s;
    const base = await s.telemetry();
    await waitUntil(async () => await s.acked() >= 400, "a steady flow", 60_000);
    const stop = { done: false };
    const sampling = sample(producer, base, stop);
    const sentBefore = fake.stats.framesSent;
    const times = await outage(broker, 15_000, false);
    const sentDuring = fake.stats.framesSent - sentBefore;
    stop.done = true;
    const samples = (await sampling).filter((x) =>
      x.at > times.stoppedAt && x.at < times.answeredAt
    );
    // Keep streaming until the backlog of the outage is acked, then end the feed.
    const backlog = fake.stats.cursor;
    await waitUntil(async () => await s.acked() >= backlog, "the backlog acked", 60_000);
    limit.at = fake.stats.cursor + 400;
    await fake.done;
    const total = limit.at;
    await s.waitAcked(total, 60_000);
    const final = await s.stop();

    // The read path never stopped: quotes stayed fresh while records piled up unacked.
    ok(samples.length >= 20, `${samples.length} samples during the outage`);
    for (const s of samples) {
      ok(
        s.lastQuoteAgeMs !== undefined && s.lastQuoteAgeMs < 1000,
        `quote age ${s.lastQuoteAgeMs} ms`,
      );
    }
    const maxPending = Math.max(...samples.map((s) => s.pendingRecords));
    const maxWait = Math.max(...samples.map((s) => s.oldestPendingAgeMs ?? 0));
    ok(maxPending >= 0.8 * rate * 15, `at most ${maxPending} records were pending`);
    ok(sentDuring >= 0.8 * rate * 15, `the fake sent ${sentDuring} frames during the outage`);
    // /metrics stays live while the worker waits on Kafka: the queue depth and frames received.
    const frames = samples.map((s) => s.framesReceived);
    ok(frames.at(-1)! - frames[0]! >= 0.8 * rate * 10, `frames received ${frames.join(",")}`);
    ok(Math.max(...samples.map((s) => s.queueDepth)) >= 0.8 * rate * 10, "queue depth is live");

    const records = await readTopic(broker, topic);
    const extra = await assertOnceOrReappended(
      broker,
      topic,
      records,
      Array.from({ length: total }, (_, i) => quoteValue(i)),
      times.killed,
      producer.stderr,
    );
    equal(final.frames, total + 1);
    equal(final.acked, total);
    equal(final.framesDropped, 0);
    deepStrictEqual(final.skippedByReason, { status: 1 });
    equal(final.frames, final.acked + final.skipped + final.framesDropped);
    // The client retried inside each send; nothing reached the pipeline as a failure.
    ok(final.produceRetries >= 1, "the outage was seen as produce retries");
    equal(final.sendErrors, 0);
    equal(final.producerResets, 0);
    const downS = (times.answeredAt - times.stoppedAt) / 1000;
    console.log(
      `[reliability] outage: broker stopped ${
        ((times.startedAt - times.stoppedAt) / 1000).toFixed(1)
      } s, ` +
        `unreachable ${
          downS.toFixed(1)
        } s (until it answered again); ${sentDuring} frames read meanwhile; ` +
        `up to ${maxPending} records pending, the oldest waiting ${
          (maxWait / 1000).toFixed(1)
        } s; ` +
        `${total} sent, ${records.length} in the topic, 0 lost, ${extra} duplicated` +
        (times.killed ? " (the stop took over 20 s and became a SIGKILL)" : "") + "; " +
        `${final.produceRetries} produce requests retried by the client, ` +
        `${final.producerResets} producer resets`,
    );
    s.assertNoSecrets({ records: recordTexts(records) });
  },
});

Deno.test({
  name:
    "a long Kafka outage overflows the bounded queue: drop-oldest drops exactly what it counts and memory stays bounded",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await ownBroker();
    try {
      const limit: { at?: number } = {};
      const queueMax = 2000;
      await using s = await startScenario({
        topic: "rel-overflow",
        broker,
        fake: { frames: endlessQuotes(limit), rate: 1000 },
        args: ["--queue-max", String(queueMax), "--stale-after", "5"],
      });
      const { fake, producer, topic } = s;
      const base = await s.telemetry();
      const handled = async () =>
        await s.acked() + await metric(base, "crypto_queue_dropped_total");
      await waitUntil(async () => await s.acked() >= 1000, "a steady flow", 60_000);
      const rssBefore = producer.rssKb()!;
      const stop = { done: false };
      const sampling = sample(producer, base, stop);
      // A crash this time: SIGKILL, no controlled shutdown.
      const times = await outage(broker, 4_000, true);
      stop.done = true;
      const samples = (await sampling).filter((x) =>
        x.at > times.stoppedAt && x.at < times.answeredAt
      );
      // Keep streaming until the backlog of the outage is acked or dropped, then end the feed.
      const backlog = fake.stats.cursor;
      await waitUntil(async () => await handled() >= backlog, "the backlog handled", 60_000);
      limit.at = fake.stats.cursor + 500;
      await fake.done;
      const total = limit.at;
      await waitUntil(
        async () => await handled() === total,
        `${total} records acked or dropped`,
        60_000,
      );
      const peakKb = producer.peakRssKb()!;
      const final = await s.stop();

      ok(final.framesDropped > 10_000, `${final.framesDropped} frames dropped`);
      equal(final.frames, total + 1);
      // One quote per frame: every event in is acked, skipped or dropped, each counted.
      equal(final.frames, final.acked + final.skipped + final.framesDropped);
      deepStrictEqual(final.skippedByReason, { status: 1 });

      const records = await readTopic(broker, topic);
      // drop-oldest: the missing quotes are one run, the oldest queued when the queue overflowed.
      const { duplicates: extra } = await assertQuotesOnce(
        broker,
        topic,
        records,
        Array.from({ length: total }, (_, i) => i),
        final,
        producer.stderr,
      );

      const rss = samples.map((s) => s.rssKb ?? 0);
      const maxPending = Math.max(...samples.map((s) => s.pendingRecords));
      ok(
        maxPending <= queueMax + 1000,
        `${maxPending} frames/records pending, bound ${queueMax} + a batch`,
      );
      ok(peakKb < 400 * 1024, `peak RSS ${peakKb} KiB`);
      // Bounded: after the queue is full, the RSS does not keep growing with the drops.
      const late = rss.slice(Math.floor(rss.length / 2));
      const early = rss.slice(2, Math.floor(rss.length / 2));
      ok(
        Math.max(...late) < Math.max(...early) + 64 * 1024,
        `RSS ${early.join(",")} then ${late.join(",")} KiB`,
      );
      console.log(
        `[reliability] overflow: queue ${queueMax} frames, broker crashed (SIGKILL) and unreachable ` +
          `${
            ((times.answeredAt - times.stoppedAt) / 1000).toFixed(1)
          } s at 1000 frames/s; ${total} sent, ` +
          `${final.acked} acked, ${final.framesDropped} dropped (one contiguous oldest run), 0 lost ` +
          `otherwise, ${extra} duplicated, ${final.producerResets} producer resets; RSS ${
            Math.round(rssBefore / 1024)
          } MiB before, ` +
          `${Math.round(Math.min(...rss) / 1024)}–${
            Math.round(Math.max(...rss) / 1024)
          } MiB during, ` +
          `peak (VmHWM) ${Math.round(peakKb / 1024)} MiB`,
      );
      s.assertNoSecrets({ records: recordTexts(records) });
    } finally {
      await broker.stop();
    }
  },
});
