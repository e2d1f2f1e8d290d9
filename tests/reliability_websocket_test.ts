/**
 * Reliability, the feed side (issue 5, scenarios 3, 4 and 5; issue 15, scenarios 10 to 14): the
 * real producer (a subprocess) against the fault-injecting fake Polygon server and the shared
 * real Kafka broker, over SASL_SSL. Counts are exact; timings have generous bounds.
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
        async () => await metric(base, "crypto_sink_records_acked_total") === total,
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
          // Kafka was up throughout: no produce was retried.
          produceRetries: 0,
          producerResets: 0,
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
  name:
    "a socket dropped without a close frame is detected as stale and replaced within --stale-after plus one backoff",
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
        // vanishAfter: nothing sent or answered any more, no close frame (a dead network path).
        return n === 0 ? { vanishAfter: silentAfter } : undefined;
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
        async () => await metric(base, "crypto_sink_records_acked_total") === total,
        `${total} records acked`,
      );
      equal(await metric(base, "crypto_ws_reconnects_total", 'reason="stale"'), 1);
      equal(await metric(base, "crypto_ws_probes_total"), 1, "one unanswered probe, then stale");
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);

      equal(fake.stats.connections, 2);
      const detectMs = connectedAt[1]! - silentAt;
      // Stale after 2 s without a frame, then a backoff under 500 ms, then the upgrade request.
      ok(detectMs >= 1800 && detectMs < 2000 + 500 + 1500, `reconnected after ${detectMs} ms`);
      match(
        producer.stderr,
        /connection lost \(stale: no frame for \d+ ms in state "streaming" \(a liveness probe went unanswered\)\)/,
      );
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

/** Reconnects by reason, the non-zero ones, from `/metrics`. */
async function reconnectsByReason(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^crypto_ws_reconnects_total\{reason="(\w+)"\} (\d+)$/gm)) {
    if (Number(m[2]) > 0) out[m[1]!] = Number(m[2]);
  }
  return out;
}

interface FinalCase {
  name: string;
  fake: Parameters<typeof startFakePolygon>[0];
  args: string[];
  code: number;
  message: RegExp;
  connections: number;
  gapReasons: string[];
}

Deno.test({
  name:
    "a refused plan exits 6 and a pair or channel that never quotes exits 2, each after a bounded number of connections",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const cases: FinalCase[] = [
      {
        name: "every topic refused by the plan",
        fake: { notInPlan: ["*"] },
        args: ["--pairs", "BTC-USD,ETH-USD"],
        code: EXIT.NOT_IN_PLAN,
        message:
          /PlanError: Cannot subscribe to XQ\.BTC-USD,XQ\.ETH-USD on Polygon at "ws:[^"]+": your Polygon plan does not include XQ crypto quotes \(status "error": "not authorized"\); upgrade the plan/,
        connections: 1,
        gapReasons: [],
      },
      {
        name: "a plan without WebSocket access",
        fake: {
          faults: [{
            auth: "auth_failed",
            authMessage: "Your plan doesn't include websocket access. Visit https://polygon.io " +
              "to upgrade.",
          }],
        },
        args: [],
        code: EXIT.NOT_IN_PLAN,
        message:
          /PlanError: Cannot stream from Polygon at "ws:[^"]+": the server refused the key with "Your plan doesn't include websocket access\. Visit https:\/\/polygon\.io to upgrade\." \(status "auth_failed"\)/,
        connections: 1,
        gapReasons: [],
      },
      {
        name: "a host that does not carry XQ (no answer to the subscribe)",
        fake: { channels: ["XT"] },
        args: ["--stale-after", "1", "--backoff-max", "1"],
        code: EXIT.USAGE,
        message:
          /NoQuotesError: Cannot get quotes from Polygon at "ws:[^"]+": 3 sessions in a row got no quote for XQ\.\* \(last: subscribe_timeout: no answer to subscribing XQ\.\* within 1000 ms\); check --pairs/,
        connections: 3,
        gapReasons: [],
      },
      {
        name: "a pair Polygon confirms but never quotes",
        fake: {},
        args: ["--pairs", "btc-usdx", "--stale-after", "1", "--quiet-after", "2"],
        code: EXIT.USAGE,
        message:
          /NoQuotesError: Cannot get quotes from Polygon at "ws:[^"]+": 3 sessions in a row got no quote for XQ\.BTC-USDX \(last: quiet: no quote for \d+ ms on XQ\.BTC-USDX, though the socket answers\)/,
        connections: 3,
        // Two reconnects, then the interval from the last loss to the exit.
        gapReasons: ["quiet", "quiet", "quiet"],
      },
    ];
    const figures: string[] = [];
    for (const c of cases) {
      const topic = uniqueTopic("rel-final");
      const fake = startFakePolygon({
        apiKey: API_KEY,
        frames: quoteFrames(2000),
        rate: 100,
        ...c.fake,
      });
      await prepareTopics(broker, topic);
      const producer = startProducer({ url: fake.url, kafka, topic, args: c.args });
      try {
        const { code, ms } = await producer.exit(60_000);
        equal(code, c.code, `${c.name}:\n${producer.stderr}`);
        match(producer.stderr, c.message);
        await sleep(1500); // Anything that loops would have connected again by now.
        equal(fake.stats.connections, c.connections, c.name);
        const gaps = (await readTopic(broker, `${topic}.gaps`, 5_000))
          .map((r) => (JSON.parse(r.value!) as GapValue).reason);
        deepStrictEqual(gaps, c.gapReasons, c.name);
        equal(parseFinal(producer.stderr).acked, 0, c.name);
        assertNoSecrets({ stdout: producer.stdout, stderr: producer.stderr }, [
          API_KEY,
          kafka.password,
        ]);
        figures.push(
          `${c.name}: exit ${code} after ${Math.round(ms)} ms, ` +
            `${fake.stats.connections} connections`,
        );
      } finally {
        await producer.dispose();
        await fake.close();
      }
    }
    console.log(`[reliability] final cases: ${figures.join("; ")}`);
  },
});

Deno.test({
  name:
    "a partly refused subscription streams the confirmed pair with no gap and says which was refused",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-partial");
    const total = 500;
    const fake = startFakePolygon({
      apiKey: API_KEY,
      frames: quoteFrames(total),
      rate: 500,
      notInPlan: ["XQ.ETH-USD"],
    });
    await prepareTopics(broker, topic);
    const producer = startProducer({
      url: fake.url,
      kafka,
      topic,
      args: ["--pairs", "BTC-USD,eth-usd"],
    });
    // quoteFrame(i) is BTC-USD when i % 5 === 0.
    const expected = Array.from({ length: total }, (_, i) => i).filter((i) => i % 5 === 0)
      .map(quoteValue);
    try {
      const base = await telemetryUrl(producer);
      await fake.done;
      await waitUntil(
        async () => await metric(base, "crypto_sink_records_acked_total") === expected.length,
        `${expected.length} records acked`,
      );
      deepStrictEqual(await reconnectsByReason(base), {});
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);
      match(
        producer.stderr,
        /polygon: configuration: your Polygon plan does not include XQ\.ETH-USD \(status "error": "not authorized"\); streaming XQ\.BTC-USD only/,
      );
      equal(fake.stats.connections, 1);
      deepStrictEqual(fake.stats.subscriptions, ["XQ.BTC-USD,XQ.ETH-USD"]);
      equal((await readTopic(broker, `${topic}.gaps`, 5_000)).length, 0);
      assertDelivered(await readTopic(broker, topic), expected, producer.stderr);
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "a quiet feed (a quote every 2 stale-after periods) keeps its one connection: 0 reconnects, 0 gap records",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-quiet");
    const total = 8;
    // One quote every 4 s with --stale-after 2: the ratio of one quote a minute at the default 30 s.
    const fake = startFakePolygon({ apiKey: API_KEY, frames: quoteFrames(total), rate: 0.25 });
    await prepareTopics(broker, topic);
    const producer = startProducer({
      url: fake.url,
      kafka,
      topic,
      args: ["--stale-after", "2", "--backoff-max", "1"],
    });
    try {
      const base = await telemetryUrl(producer);
      await fake.done;
      await waitUntil(
        async () => await metric(base, "crypto_sink_records_acked_total") === total,
        `${total} records acked`,
      );
      const probes = await metric(base, "crypto_ws_probes_total");
      deepStrictEqual(await reconnectsByReason(base), {});
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);
      equal(fake.stats.connections, 1);
      // About one probe per quiet second (idle 1 s → probe → answer → idle 1 s …).
      ok(probes >= 2 * (total - 1), `only ${probes} probes in ${4 * (total - 1)} s`);
      equal((await readTopic(broker, `${topic}.gaps`, 5_000)).length, 0);
      assertDelivered(
        await readTopic(broker, topic),
        Array.from({ length: total }, (_, i) => quoteValue(i)),
        producer.stderr,
      );
      console.log(
        `[reliability] quiet feed: ${total} quotes over ${4 * (total - 1)} s, ` +
          `${probes} probes answered, 1 connection, 0 gap records`,
      );
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "force_disconnect and slow_consumer reconnect as gaps; error and unknown statuses are counted without a reconnect; a success connect event is accepted",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-status");
    const total = 600;
    const fake = startFakePolygon({
      apiKey: API_KEY,
      frames: quoteFrames(total),
      rate: 300,
      faults: [
        { status: { after: 100, status: "force_disconnect", message: "restart" } },
        { status: { after: 100, status: "slow_consumer", message: "too slow", withData: true } },
        {
          connectEvent: "success",
          status: { after: 50, status: "error", message: "internal hiccup", withData: true },
          garbage: {
            after: 100,
            frames: ['[{"ev":"status","status":"brand_new_status","message":"hello"}]'],
          },
        },
      ],
    });
    await prepareTopics(broker, topic);
    const producer = startProducer({
      url: fake.url,
      kafka,
      topic,
      args: ["--backoff-max", "1"],
    });
    try {
      const base = await telemetryUrl(producer);
      await fake.done;
      await waitUntil(
        async () => await metric(base, "crypto_sink_records_acked_total") === total,
        `${total} records acked`,
      );
      deepStrictEqual(await reconnectsByReason(base), { force_disconnect: 1, slow_consumer: 1 });
      equal(await metric(base, "crypto_ws_statuses_total", 'status="error"'), 1);
      equal(await metric(base, "crypto_ws_statuses_total", 'status="brand_new_status"'), 1);
      producer.kill("SIGTERM");
      equal((await producer.exit(20_000)).code, EXIT.OK, producer.stderr);
      equal(fake.stats.connections, 3);
      const gaps = (await readTopic(broker, `${topic}.gaps`))
        .map((r) => JSON.parse(r.value!) as GapValue);
      deepStrictEqual(gaps.map((g) => g.reason), ["force_disconnect", "slow_consumer"]);
      assertDelivered(
        await readTopic(broker, topic),
        Array.from({ length: total }, (_, i) => quoteValue(i)),
        producer.stderr,
      );
      const final = parseFinal(producer.stderr);
      // 3 confirmations + force_disconnect + slow_consumer + error + brand_new_status.
      deepStrictEqual(final.skippedByReason, { status: 7 });
      equal(final.events, total + 7);
      console.log(
        `[reliability] statuses: gaps ${gaps.map((g) => `${g.reason} ${g.seconds} s`).join(", ")}`,
      );
    } finally {
      await producer.dispose();
      await fake.close();
    }
  },
});
