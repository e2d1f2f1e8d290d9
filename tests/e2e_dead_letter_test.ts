/**
 * End to end, on the real local broker (tests/helpers/kafka_broker.ts): records the broker
 * refuses for good (issue 24, finding 1) among good ones, through the default Kafka sink. The
 * sink is used directly, with explicit record timestamps, so the test does not depend on how
 * the pipeline stamps records.
 */
import { deepStrictEqual } from "./helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { kafka, KAFKA_TEST, readTopic } from "./helpers/e2e.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { PlatformaticSink } from "../lib/kafka/platformatic/sink.ts";
import { DeadLetterFile } from "../lib/dead_letter.ts";
import type { KafkaSink } from "../lib/kafka/types.ts";
import type { OutRecord } from "../lib/sink.ts";
import { SCHEMA_VERSION } from "../lib/sink.ts";

const GOOD = 10_000;
const HOUR = 3_600_000;
const headers = { "schema-version": SCHEMA_VERSION };

/** 10,000 good records in batches of 1,000; batch 5 also holds the two bad ones. */
function batches(now: number): OutRecord[][] {
  const out: OutRecord[][] = [];
  for (let b = 0; b < GOOD / 1_000; b++) {
    const batch: OutRecord[] = [];
    for (let i = b * 1_000; i < (b + 1) * 1_000; i++) {
      const symbol = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "ADA-USD", "XRP-USD"][i % 6]!;
      const value = `{"timestamp":"${new Date(now).toISOString()}","symbol":"${symbol}",` +
        `"spread":0.${String(i).padStart(5, "0")}}`;
      batch.push({ key: symbol, value, timestamp: now, headers });
      if (b === 4 && i === 4_300) {
        // A quote stamped two hours ahead: the broker's window is one hour by default.
        batch.push({
          key: "BTC-USD",
          value: `{"timestamp":"${new Date(now + 2 * HOUR).toISOString()}","symbol":"BTC-USD",` +
            `"spread":"ahead"}`,
          timestamp: now + 2 * HOUR,
          headers,
        });
      }
      if (b === 4 && i === 4_600) {
        // A price with 1.5 million digits: over the broker's 1 MiB max.message.bytes.
        batch.push({
          key: "ETH-USD",
          value: `{"timestamp":"${new Date(now).toISOString()}","symbol":"ETH-USD",` +
            `"spread":0.${"7".repeat(1_500_000)}}`,
          timestamp: now,
          headers,
        });
      }
    }
    out.push(batch);
  }
  return out;
}

async function deliver(makeSink: (file: DeadLetterFile) => KafkaSink) {
  const b = await kafka();
  const config = brokerConfig(b);
  const topic = uniqueTopic("dead-letter");
  const dir = await Deno.makeTempDir();
  const file = new DeadLetterFile(`${dir}/dead.jsonl`);
  const client = await openKafka(config, { log: () => {} });
  await client.admin.ensureTopic(topic, { partitions: 6, replicationFactor: -1 });
  const sink = makeSink(file);
  const now = Date.now();
  const all = batches(now);
  try {
    await sink.connect();
    // The producer keeps streaming: every batch after the bad records is sent as well.
    for (const batch of all) await sink.send(topic, batch);
    const ends = (await client.admin.lag(`none-${topic}`, topic)).map((p) => Number(p.end));
    const got = await readTopic(config, topic, GOOD);
    const counts = new Map<string, number>();
    for (const r of got) counts.set(r.value!, (counts.get(r.value!) ?? 0) + 1);
    const good = all.flat().filter((r) => r.value.length < 1_000 && !r.value.includes("ahead"));
    const notOnce = good.filter((r) => counts.get(r.value) !== 1).length;
    await file.close();
    const letters = (await Deno.readTextFile(file.path)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    return {
      stored: ends.reduce((a, n) => a + n, 0),
      notOnce,
      stats: sink.stats,
      letters: letters.map((l) => ({
        topic: l.topic === topic,
        reason: l.reason,
        key: l.key,
        timestamp: l.timestamp - now,
        valueLength: l.value.length,
      })),
      details: letters.map((l) => l.detail as string),
    };
  } finally {
    await sink.close().catch(() => {});
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const EXPECTED_LETTERS = [
  {
    topic: true,
    reason: "invalid_timestamp",
    key: "BTC-USD",
    timestamp: 2 * HOUR,
    valueLength: 76,
  },
  { topic: true, reason: "too_large", key: "ETH-USD", timestamp: 0, valueLength: 1_500_071 },
];

const NO_OTHER_REASON = { invalid_record: 0, policy_violation: 0, not_authorized: 0 };

Deno.test({
  name:
    "finding 1: on a real broker, 10,000 good records are stored once and a record two hours ahead and an oversized one are kept aside, with no producer reset",
  ...KAFKA_TEST,
  async fn() {
    const client = await openKafka(brokerConfig(await kafka()), { log: () => {} });
    const r = await deliver((file) => client.sink({ deadLetter: (l) => file.write(l) }));
    await client.close();
    deepStrictEqual({ stored: r.stored, notOnce: r.notOnce, letters: r.letters }, {
      stored: GOOD,
      notOnce: 0,
      letters: EXPECTED_LETTERS,
    });
    deepStrictEqual(r.stats, {
      retries: 0,
      producerResets: 0,
      deadLettered: { too_large: 1, invalid_timestamp: 1, ...NO_OTHER_REASON },
    });
    // Both found before the send, from the topic's own settings: the broker refused nothing.
    deepStrictEqual(r.details.map((d) => d.endsWith("; not sent")), [true, true]);
  },
});

Deno.test({
  name:
    "finding 1: on a real broker, records it refuses are kept aside from its answer when the topic's limits are unknown, and the good ones are stored once",
  ...KAFKA_TEST,
  async fn() {
    const config = brokerConfig(await kafka());
    const lines: string[] = [];
    // No topic limits: the broker itself refuses the two records, and the sink reads its answer.
    const r = await deliver((file) =>
      new PlatformaticSink(config, { clientId: "dead-letter-test", log: (l) => lines.push(l) }, {
        deadLetter: (l) => file.write(l),
      })
    );
    deepStrictEqual({ stored: r.stored, notOnce: r.notOnce, letters: r.letters }, {
      stored: GOOD,
      notOnce: 0,
      letters: EXPECTED_LETTERS,
    });
    deepStrictEqual(
      { resets: r.stats.producerResets, deadLettered: r.stats.deadLettered },
      { resets: 0, deadLettered: { too_large: 1, invalid_timestamp: 1, ...NO_OTHER_REASON } },
    );
    deepStrictEqual(r.details.map((d) => /^the broker refused it with [A-Z_]+/.exec(d)?.[0]), [
      "the broker refused it with INVALID_TIMESTAMP",
      "the broker refused it with MESSAGE_TOO_LARGE",
    ]);
  },
});
