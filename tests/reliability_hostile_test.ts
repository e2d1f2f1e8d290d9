/**
 * Reliability, hostile input (issue 5, scenario 6): 10,000 seeded mutated frames interleaved
 * with valid ones (tests/helpers/hostile_frames.ts), sent by the fake Polygon server, text and
 * binary, to the real producer (a subprocess) and on into the shared real Kafka broker.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { selectEvents, startFakePolygon } from "../lib/polygon_fake.ts";
import { EXIT } from "../lib/config.ts";
import { startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import { hostileFrames } from "./helpers/hostile_frames.ts";
import {
  API_KEY,
  assertDelivered,
  assertNoSecrets,
  KAFKA_TEST,
  metric,
  parseFinal,
  prepareTopics,
  readTopic,
  scriptKafka,
  startProducer,
  telemetryUrl,
  waitUntil,
} from "./helpers/reliability.ts";

Deno.test({
  name:
    "10,000 hostile frames crash nothing: every valid quote comes through once and every bad event is counted by reason",
  ...KAFKA_TEST,
  async fn() {
    const set = hostileFrames({ seed: 20260105 });
    equal(set.mutated, 10_000);
    // The fake replays text frames that hold only XQ events verbatim; check it, so the
    // expectations are about exactly what the producer receives.
    const all = new Set(["XQ.*"]);
    for (const f of set.frames) {
      if (typeof f === "string") equal(selectEvents(f, all), f);
    }
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-hostile");
    const fake = startFakePolygon({ apiKey: API_KEY, frames: set.frames, skipEmpty: false });
    await prepareTopics(broker, topic);
    const producer = startProducer({ url: fake.url, kafka, topic });
    try {
      const base = await telemetryUrl(producer);
      await fake.done;
      equal(fake.stats.framesSent, set.frames.length);
      await waitUntil(
        async () => await metric(base, "crypto_sink_records_acked_total") === set.values.length,
        `${set.values.length} records acked`,
        60_000,
      );
      const peakKb = producer.peakRssKb()!;
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);

      const final = parseFinal(producer.stderr);
      // The "subscribed to" confirmation is one more frame and one more (status) event.
      equal(final.framesIn, set.frames.length + 1);
      equal(final.events, set.events + 1);
      equal(final.framesDropped, 0);
      equal(final.acked, set.values.length);
      deepStrictEqual(final.skippedByReason, { ...set.skipped, status: 1 });
      equal(final.events, final.acked + final.skipped);

      const records = await readTopic(broker, topic);
      const values = records.map((r) => r.value!);
      const extra = assertDelivered(records, set.values, producer.stderr);
      ok(values.some((v) => v.includes("\uFFFD")), "a U+FFFD symbol came through as documented");
      console.log(
        `[reliability] hostile: ${set.frames.length} frames (${set.mutated} mutated: ${
          Object.entries(set.kinds).map(([k, n]) => `${k} ${n}`).join(", ")
        }; ${set.binary} binary), ${set.events} events -> ${final.acked} records acked, ` +
          `${
            final.skipped - 1
          } bad events counted by reason, 0 dropped, ${extra} duplicated, exit 0; ` +
          `peak RSS ${Math.round(peakKb / 1024)} MiB`,
      );
      assertNoSecrets({ stdout: producer.stdout, stderr: producer.stderr }, [
        API_KEY,
        kafka.password,
      ]);
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});
