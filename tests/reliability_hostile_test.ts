/**
 * Reliability, hostile input (issue 5, scenario 6): 10,000 seeded mutated frames interleaved
 * with valid ones (tests/helpers/hostile_frames.ts), sent by the fake Polygon server, text and
 * binary, to the real producer (a subprocess) and on into the shared real Kafka broker.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { selectEvents } from "../lib/polygon/fake.ts";
import { hostileFrames } from "./helpers/hostile_frames.ts";
import { assertDelivered, KAFKA_TEST, readTopic, startScenario } from "./helpers/reliability.ts";

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
    await using s = await startScenario({
      topic: "rel-hostile",
      fake: { frames: set.frames, skipEmpty: false },
    });
    await s.telemetry();
    await s.fake.done;
    equal(s.fake.stats.framesSent, set.frames.length);
    await s.waitAcked(set.values.length, 60_000);
    const peakKb = s.producer.peakRssKb()!;
    const final = await s.stop();

    // The "subscribed to" confirmation is one more frame and one more (status) event.
    equal(final.frames, set.frames.length + 1);
    equal(final.events, set.events + 1);
    equal(final.framesDropped, 0);
    equal(final.acked, set.values.length);
    deepStrictEqual(final.skippedByReason, { ...set.skipped, status: 1 });
    equal(final.events, final.acked + final.skipped);

    const records = await readTopic(s.broker, s.topic);
    const values = records.map((r) => r.value!);
    const extra = assertDelivered(records, set.values, s.producer.stderr);
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
    s.assertNoSecrets();
  },
});
