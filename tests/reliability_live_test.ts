/**
 * Reliability, exactly once into Kafka for live data under faults (issue 21): the real producer
 * (a subprocess) reads the fake Polygon server as a live feed, 2,000 quotes/s whether or not
 * anyone reads, and writes with the default Kafka client (or the one `KAFKA_CLIENT` names),
 * records stamped with the local clock (the default `--kafka-timestamp now`), to brokers with
 * Kafka's default retention and producer-id expiry, through a broker SIGKILLed mid-stream and
 * restarted, and through a 30 s network black hole (tests/helpers/fault_proxy.ts on the broker's
 * PROXIED listener). Every quote is told apart by its index (its exchange time), so the
 * read-back checks quote by quote: every quote acked is on the topic exactly once, none is
 * missing but what the producer counted as dropped (none: its queue holds the whole fault), and
 * frames = acked + skipped + dropped.
 *
 * `scripts/reliability_repeat.sh` runs these with the other exactly-once scenarios N times.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { EXTERNAL_KAFKA, type KafkaBroker, startKafka } from "./helpers/kafka_broker.ts";
import { startBrokerProxy } from "./helpers/fault_proxy.ts";
import {
  assertQuotesOnce,
  endlessQuotes,
  KAFKA_TEST,
  metric,
  outage,
  readTopic,
  sample,
  type Scenario,
  type ScriptKafka,
  scriptKafka,
  sleep,
  startScenario,
  waitUntil,
} from "./helpers/reliability.ts";

/** Quotes per second of the live feed. */
const RATE = 2_000;
/**
 * The producer's queue (`--queue-max`): 200 s of the feed, more than a restart of the broker
 * takes on a loaded machine, so nothing is dropped and every quote must be on the topic.
 */
const QUEUE_MAX = 400_000;

/**
 * Streams the live feed through the real producer into a new topic on `broker`; once the flow is
 * steady runs `fault` (which returns what happened, for the report) while sampling the
 * producer's `/healthz`; keeps the feed live until the backlog of the fault is acked, 1 s more,
 * then ends it, stops the producer and checks the topic quote by quote. Prints the scenario's
 * `[reliability]` line.
 */
async function liveWithFault(
  broker: KafkaBroker,
  name: string,
  fault: () => Promise<string>,
  kafka?: ScriptKafka,
): Promise<void> {
  const limit: { at?: number } = {};
  await using s: Scenario = await startScenario({
    topic: "rel-live",
    broker,
    kafka,
    fake: { frames: endlessQuotes(limit), rate: RATE, live: true },
    args: ["--queue-max", String(QUEUE_MAX)],
  });
  const { fake, producer, topic } = s;
  const base = await s.telemetry();
  const handled = async () => await s.acked() + await metric(base, "crypto_queue_dropped_total");
  await waitUntil(async () => await s.acked() >= 2 * RATE, "a steady flow", 60_000);

  const stop = { done: false };
  const sampling = sample(producer, base, stop);
  const during = await fault();
  stop.done = true;
  const maxPending = Math.max(...(await sampling).map((x) => x.pendingRecords));
  // The feed stays live: once the fault's backlog is acked (or dropped), 1 s more, then it ends.
  const backlog = fake.stats.framesSent;
  await waitUntil(async () => await handled() >= backlog, "the backlog handled", 120_000);
  limit.at = fake.stats.cursor + RATE;
  await fake.done;
  const sent = fake.stats.framesSent;
  await waitUntil(async () => await handled() === sent, `${sent} quotes acked or dropped`, 60_000);
  const final = await s.stop();

  // The read path never stopped: one connection, subscribed throughout, every frame it sent read.
  deepStrictEqual(final.reconnects, [], "the WebSocket was never reconnected");
  equal(fake.stats.framesMissed, 0, "the live feed always had a subscriber");
  equal(fake.stats.cursor, sent, "every quote of the feed went to the producer");
  equal(final.frames, sent + 1);
  deepStrictEqual(final.skippedByReason, { status: 1 });
  equal(final.frames, final.acked + final.skipped + final.framesDropped);
  equal(final.sendErrors, 0);
  equal(final.deadLettered, 0);
  // The fault bit: records piled up unacked, more than 1 s of the feed at once.
  ok(maxPending >= RATE, `at most ${maxPending} records were pending during the fault`);

  const records = await readTopic(broker, topic);
  const d = await assertQuotesOnce(
    broker,
    topic,
    records,
    Array.from({ length: sent }, (_, i) => i),
    final,
    producer.stderr,
  );
  console.log(
    `[reliability] live ${RATE}/s, ${name}: ${during}; ${sent} quotes sent, ${final.acked} ` +
      `acked, ${final.framesDropped} dropped, ${records.length} records on the topic, ` +
      `${d.missing.length - final.framesDropped} missing, ${d.duplicates} duplicated; up to ` +
      `${maxPending} records pending; ${final.produceRetries} produce retries, ` +
      `${final.producerResets} producer resets`,
  );
}

Deno.test({
  name: "a broker SIGKILLed mid-stream of live quotes at 2,000/s and restarted 4 s later: " +
    "every acked quote exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka({ private: true });
    try {
      await liveWithFault(broker, "broker SIGKILL", async () => {
        const times = await outage(broker, 4_000, true);
        ok(times.killed, "the broker was SIGKILLed");
        return `broker back ${((times.answeredAt - times.stoppedAt) / 1000).toFixed(1)} s ` +
          `after the kill`;
      });
    } finally {
      await broker.stop();
    }
  },
});

Deno.test({
  name: "a 30 s network black hole between a producer of live quotes at 2,000/s and the " +
    "broker: every acked quote exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const proxy = startBrokerProxy(broker);
    try {
      // The PROXIED listener is plaintext; the broker advertises it at the proxy's port.
      const plain = scriptKafka(broker, "plaintext");
      const kafka = { env: { ...plain.env, KAFKA_BROKERS: `127.0.0.1:${proxy.port}` } };
      await liveWithFault(broker, "30 s black hole", async () => {
        await sleep(1_000);
        await proxy.blackHole(30_000);
        return `30 s black hole over ${proxy.stats.connections} connections`;
      }, kafka);
    } finally {
      await proxy.close();
    }
  },
});
