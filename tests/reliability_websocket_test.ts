/**
 * Reliability, the feed side (issue 5, scenarios 3, 4 and 5): the real producer (a subprocess)
 * against the fault-injecting fake Polygon server and the shared real Kafka broker, over
 * SASL_SSL. Counts are exact; timings have generous bounds.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import { startFakePolygon } from "../lib/polygon_fake.ts";
import { EXIT } from "../lib/config.ts";
import { startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  API_KEY,
  assertDelivered,
  assertNoSecrets,
  KAFKA_TEST,
  metric,
  parseFinal,
  prepareTopics,
  quoteFrames,
  quoteValue,
  readTopic,
  recordTexts,
  scriptKafka,
  sleep,
  startProducer,
  telemetryUrl,
  waitUntil,
} from "./helpers/reliability.ts";

interface GapValue {
  from: string;
  to: string;
  reason: string;
  seconds: number;
}

/** The backoff delays the producer logged, with their attempt numbers. */
function loggedBackoffs(stderr: string): { delay: number; attempt: number; reason: string }[] {
  return [
    ...stderr.matchAll(
      /connection lost \((\w+): [^\n]*reconnecting in (\d+) ms \(attempt (\d+)\)/g,
    ),
  ]
    .map((m) => ({ reason: m[1]!, delay: Number(m[2]), attempt: Number(m[3]) }));
}

Deno.test({
  name:
    "the producer rides out a WebSocket drop every 2 s: each reconnect re-auths, resubscribes, is a gap record, and backs off sanely",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-drops");
    const drops = 6;
    const perConnection = 400;
    const total = perConnection * (drops + 1);
    const connectedAt: number[] = [];
    const fake = startFakePolygon({
      apiKey: API_KEY,
      frames: quoteFrames(total),
      rate: 200,
      faults: (n) => {
        connectedAt[n] = performance.now();
        return n < drops ? { dropAfter: perConnection } : undefined;
      },
    });
    await prepareTopics(broker, topic);
    const producer = startProducer({
      url: fake.url,
      kafka,
      topic,
      args: ["--backoff-max", "2", "--stale-after", "10"],
    });
    try {
      const base = await telemetryUrl(producer);
      await fake.done;
      await waitUntil(
        async () => await metric(base, "crypto_kafka_records_acked_total") === total,
        `${total} records acked`,
      );
      const reconnects = await metric(
        base,
        "crypto_ws_reconnects_total",
        'reason="closed"',
      );
      producer.kill("SIGTERM");
      const { code } = await producer.exit(20_000);
      equal(code, EXIT.OK, producer.stderr);
      equal(reconnects, drops);

      // Every connection authenticated and subscribed again, and there was no extra attempt.
      equal(fake.stats.connections, drops + 1);
      equal(fake.stats.auths, drops + 1);
      equal(fake.stats.authSuccesses, drops + 1);
      deepStrictEqual(fake.stats.subscriptions, Array(drops + 1).fill("XQ.*"));

      // Backoff: full jitter under 500 ms × 2^(attempt − 1), capped at --backoff-max 2 s.
      const backoffs = loggedBackoffs(producer.stderr);
      deepStrictEqual(backoffs.map((b) => b.attempt), [1, 2, 3, 4, 5, 6]);
      deepStrictEqual(new Set(backoffs.map((b) => b.reason)), new Set(["closed"]));
      for (const b of backoffs) {
        ok(b.delay < Math.min(2000, 500 * 2 ** (b.attempt - 1)), `delay ${b.delay} ms too long`);
      }

      // Every gap is on the gaps topic, in order, and lasts the backoff plus a short handshake.
      const gapRecords = await readTopic(broker, `${topic}.gaps`);
      const gaps = gapRecords.map((r) => JSON.parse(r.value!) as GapValue);
      equal(gaps.length, drops);
      for (const [i, g] of gaps.entries()) {
        equal(g.reason, "closed");
        const delay = backoffs[i]!.delay / 1000;
        ok(
          g.seconds >= delay && g.seconds < delay + 2,
          `gap ${i} lasted ${g.seconds} s after a backoff of ${delay} s`,
        );
        if (i > 0) ok(Date.parse(g.from) >= Date.parse(gaps[i - 1]!.to), "gaps do not overlap");
      }
      const reconnectMs = connectedAt.slice(1).map((t, i) => t - connectedAt[i]!);
      console.log(
        `[reliability] drops: ${drops} reconnects, backoffs ${
          backoffs.map((b) => b.delay).join("/")
        } ms, gaps ${gaps.map((g) => g.seconds).join("/")} s, connection spacing ${
          reconnectMs.map((ms) => Math.round(ms)).join("/")
        } ms`,
      );

      // Nothing lost: the fake's shared cursor resumes where each drop stopped.
      const records = await readTopic(broker, topic);
      assertDelivered(
        records,
        Array.from({ length: total }, (_, i) => quoteValue(i)),
        producer.stderr,
      );
      const final = parseFinal(producer.stderr);
      // One "subscribed to" confirmation per connection reaches the transform as a status skip.
      deepStrictEqual(
        { ...final, skippedByReason: final.skippedByReason },
        {
          framesIn: total + drops + 1,
          events: total + drops + 1,
          records: total,
          acked: total,
          skipped: drops + 1,
          skippedByReason: { status: drops + 1 },
          framesDropped: 0,
          gaps: drops,
          sendErrors: 0,
        },
      );
      assertNoSecrets({
        stdout: producer.stdout,
        stderr: producer.stderr,
        gaps: recordTexts(gapRecords),
        records: recordTexts(records),
      }, [API_KEY, kafka.password]);
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});

Deno.test({
  name: "a silent socket is detected as stale and replaced within --stale-after plus one backoff",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-silent");
    const total = 600;
    const silentAfter = 200;
    const connectedAt: number[] = [];
    const fake = startFakePolygon({
      apiKey: API_KEY,
      frames: quoteFrames(total),
      rate: 200,
      faults: (n) => {
        connectedAt[n] = performance.now();
        return n === 0 ? { silentAfter } : undefined;
      },
    });
    await prepareTopics(broker, topic);
    const producer = startProducer({
      url: fake.url,
      kafka,
      topic,
      args: ["--stale-after", "2", "--backoff-max", "1"],
    });
    try {
      const base = await telemetryUrl(producer);
      await waitUntil(() => fake.stats.framesSent >= silentAfter, "the silence", 30_000);
      const silentAt = performance.now();
      await fake.done;
      await waitUntil(
        async () => await metric(base, "crypto_kafka_records_acked_total") === total,
        `${total} records acked`,
      );
      equal(await metric(base, "crypto_ws_reconnects_total", 'reason="stale"'), 1);
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);

      equal(fake.stats.connections, 2);
      const detectMs = connectedAt[1]! - silentAt;
      // Stale after 2 s without a frame, then a backoff under 500 ms, then the upgrade request.
      ok(detectMs >= 1800 && detectMs < 2000 + 500 + 1500, `reconnected after ${detectMs} ms`);
      match(producer.stderr, /connection lost \(stale: no frame for \d+ ms in state "streaming"\)/);
      const gapRecords = await readTopic(broker, `${topic}.gaps`);
      equal(gapRecords.length, 1);
      const gap = JSON.parse(gapRecords[0]!.value!) as GapValue;
      equal(gap.reason, "stale");
      ok(gap.seconds >= 2 && gap.seconds < 5, `the gap lasted ${gap.seconds} s`);
      console.log(
        `[reliability] silent socket: new connection ${
          Math.round(detectMs)
        } ms after the last frame (stale after 2000 ms); gap ${gap.seconds} s`,
      );
      const records = await readTopic(broker, topic);
      assertDelivered(
        records,
        Array.from({ length: total }, (_, i) => quoteValue(i)),
        producer.stderr,
      );
      const final = parseFinal(producer.stderr);
      equal(final.acked, total);
      equal(final.events, final.acked + final.skipped + final.framesDropped);
      assertNoSecrets({
        stdout: producer.stdout,
        stderr: producer.stderr,
        gaps: recordTexts(gapRecords),
      }, [API_KEY, kafka.password]);
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});

Deno.test({
  name: "auth_failed ends the producer after one attempt with exit code 3",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-auth");
    const fake = startFakePolygon({ apiKey: "pk_the_other_account_key_0001" });
    await prepareTopics(broker, topic);
    const producer = startProducer({ url: fake.url, kafka, topic });
    try {
      const { code } = await producer.exit(60_000);
      equal(code, EXIT.AUTH_FAILED, producer.stderr);
      await sleep(1000); // Anything that loops would have connected again by now.
      equal(fake.stats.connections, 1);
      equal(fake.stats.auths, 1);
      match(producer.stderr, /AuthFailedError: Cannot authenticate with Polygon at "ws:/);
      ok(!/reconnecting in/.test(producer.stderr), "no reconnect was attempted");
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

Deno.test({
  name:
    "max_connections ends the producer with exit code 4, at auth or mid-stream, after flushing what it accepted",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    for (const script of [{ auth: "max_connections" as const }, { evictAfter: 150 }]) {
      const topic = uniqueTopic("rel-maxconn");
      const fake = startFakePolygon({
        apiKey: API_KEY,
        frames: quoteFrames(1000),
        rate: 500,
        faults: [script],
      });
      await prepareTopics(broker, topic);
      const producer = startProducer({ url: fake.url, kafka, topic });
      try {
        const { code } = await producer.exit(60_000);
        equal(code, EXIT.MAX_CONNECTIONS, producer.stderr);
        await sleep(1000);
        equal(fake.stats.connections, 1, JSON.stringify(script));
        match(producer.stderr, /MaxConnectionsError: Cannot stream from Polygon/);
        const final = parseFinal(producer.stderr);
        const sent = "evictAfter" in script ? 150 : 0;
        equal(final.acked, sent);
        const records = await readTopic(broker, topic);
        assertDelivered(
          records,
          Array.from({ length: sent }, (_, i) => quoteValue(i)),
          producer.stderr,
        );
        assertNoSecrets({ stdout: producer.stdout, stderr: producer.stderr }, [
          API_KEY,
          kafka.password,
        ]);
      } finally {
        await producer.dispose();
        await fake.close();
      }
    }
  },
});
