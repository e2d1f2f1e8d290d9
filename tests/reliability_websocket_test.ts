/**
 * Reliability, the feed side (issue 5, scenarios 3, 4 and 5; issue 15, scenarios 10 to 14): the
 * real producer (a subprocess) against the fault-injecting fake Polygon server and the shared
 * real Kafka broker, over SASL_SSL. Counts are exact; timings have generous bounds. What the
 * producer did (reconnects, backoffs, the error it ended with) comes from its `--summary` file
 * and `/metrics`, never from its log.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import type { startFakePolygon } from "../lib/polygon/fake.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { startKafka } from "./helpers/kafka_broker.ts";
import {
  assertDelivered,
  KAFKA_TEST,
  metric,
  quoteFrames,
  quoteValue,
  readTopic,
  recordTexts,
  startScenario,
  waitUntil,
} from "./helpers/reliability.ts";

interface GapValue {
  from: string;
  to: string;
  reason: string;
  seconds: number;
}

Deno.test({
  name:
    "the producer rides out a WebSocket drop every 2 s: each reconnect re-auths, resubscribes, is a gap record, and backs off sanely",
  ...KAFKA_TEST,
  async fn() {
    const drops = 6;
    const perConnection = 400;
    const total = perConnection * (drops + 1);
    const connectedAt: number[] = [];
    await using s = await startScenario({
      topic: "rel-drops",
      fake: {
        frames: quoteFrames(total),
        rate: 200,
        faults: (n) => {
          connectedAt[n] = performance.now();
          return n < drops ? { dropAfter: perConnection } : undefined;
        },
      },
      args: ["--backoff-max", "2", "--stale-after", "10"],
    });
    const base = await s.telemetry();
    await s.fake.done;
    await s.waitAcked(total);
    const reconnects = await metric(base, "crypto_ws_reconnects_total", 'reason="closed"');
    const summary = await s.stop();
    equal(reconnects, drops);

    // Every connection authenticated and subscribed again, and there was no extra attempt.
    equal(s.fake.stats.connections, drops + 1);
    equal(s.fake.stats.auths, drops + 1);
    equal(s.fake.stats.authSuccesses, drops + 1);
    deepStrictEqual(s.fake.stats.subscriptions, Array(drops + 1).fill("XQ.*"));

    // Backoff: full jitter under 500 ms × 2^(attempt − 1), capped at --backoff-max 2 s.
    const backoffs = summary.reconnects;
    deepStrictEqual(backoffs.map((b) => b.attempt), [1, 2, 3, 4, 5, 6]);
    deepStrictEqual(new Set(backoffs.map((b) => b.reason)), new Set(["closed"]));
    for (const b of backoffs) {
      ok(b.delayMs < Math.min(2000, 500 * 2 ** (b.attempt - 1)), `delay ${b.delayMs} ms too long`);
    }

    // Every gap is on the gaps topic, in order, and lasts the backoff plus a short handshake.
    const gapRecords = await readTopic(s.broker, `${s.topic}.gaps`);
    const gaps = gapRecords.map((r) => JSON.parse(r.value!) as GapValue);
    equal(gaps.length, drops);
    for (const [i, g] of gaps.entries()) {
      equal(g.reason, "closed");
      const delay = backoffs[i]!.delayMs / 1000;
      ok(
        g.seconds >= delay && g.seconds < delay + 2,
        `gap ${i} lasted ${g.seconds} s after a backoff of ${delay} s`,
      );
      if (i > 0) ok(Date.parse(g.from) >= Date.parse(gaps[i - 1]!.to), "gaps do not overlap");
    }
    const reconnectMs = connectedAt.slice(1).map((t, i) => t - connectedAt[i]!);
    console.log(
      `[reliability] drops: ${drops} reconnects, backoffs ${
        backoffs.map((b) => b.delayMs).join("/")
      } ms, gaps ${gaps.map((g) => g.seconds).join("/")} s, connection spacing ${
        reconnectMs.map((ms) => Math.round(ms)).join("/")
      } ms`,
    );

    // Nothing lost: the fake's shared cursor resumes where each drop stopped.
    const records = await readTopic(s.broker, s.topic);
    assertDelivered(
      records,
      Array.from({ length: total }, (_, i) => quoteValue(i)),
      s.producer.stderr,
    );
    // One "subscribed to" confirmation per connection reaches the transform as a status skip.
    const { channels, refused, ...totals } = summary;
    deepStrictEqual(refused, []);
    deepStrictEqual(
      [channels.XQ!.events, channels.XQ!.acked, channels.XQ!.gaps],
      [totals.events, totals.acked, totals.gaps],
    );
    deepStrictEqual({ ...totals, reconnects: backoffs.length }, {
      summary: 1,
      frames: total + drops + 1,
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
      deadLettered: 0,
      deadLetteredByReason: {},
      framesRecorded: null,
      reconnects: drops,
      topics: ["XQ.*"],
      takeovers: null,
      fencedRecords: null,
      error: null,
      exitCode: EXIT.OK,
    });
    s.assertNoSecrets({ gaps: recordTexts(gapRecords), records: recordTexts(records) });
  },
});

Deno.test({
  name:
    "a socket dropped without a close frame is detected as stale and replaced within --stale-after plus one backoff",
  ...KAFKA_TEST,
  async fn() {
    const total = 600;
    const silentAfter = 200;
    const connectedAt: number[] = [];
    await using s = await startScenario({
      topic: "rel-silent",
      fake: {
        frames: quoteFrames(total),
        rate: 200,
        faults: (n) => {
          connectedAt[n] = performance.now();
          // vanishAfter: nothing sent or answered any more, no close frame (a dead network path).
          return n === 0 ? { vanishAfter: silentAfter } : undefined;
        },
      },
      args: ["--stale-after", "2", "--backoff-max", "1"],
    });
    const base = await s.telemetry();
    await waitUntil(() => s.fake.stats.framesSent >= silentAfter, "the silence", 30_000);
    const silentAt = performance.now();
    await s.fake.done;
    await s.waitAcked(total);
    equal(await metric(base, "crypto_ws_reconnects_total", 'reason="stale"'), 1);
    equal(await metric(base, "crypto_ws_probes_total"), 1, "one unanswered probe, then stale");
    const summary = await s.stop();

    equal(s.fake.stats.connections, 2);
    const detectMs = connectedAt[1]! - silentAt;
    // Stale after 2 s without a frame, then a backoff under 500 ms, then the upgrade request.
    ok(detectMs >= 1800 && detectMs < 2000 + 500 + 1500, `reconnected after ${detectMs} ms`);
    deepStrictEqual(summary.reconnects.map((r) => r.reason), ["stale"]);
    const gapRecords = await readTopic(s.broker, `${s.topic}.gaps`);
    equal(gapRecords.length, 1);
    const gap = JSON.parse(gapRecords[0]!.value!) as GapValue;
    equal(gap.reason, "stale");
    ok(gap.seconds >= 2 && gap.seconds < 5, `the gap lasted ${gap.seconds} s`);
    console.log(
      `[reliability] silent socket: new connection ${
        Math.round(detectMs)
      } ms after the last frame (stale after 2000 ms); gap ${gap.seconds} s`,
    );
    const records = await readTopic(s.broker, s.topic);
    assertDelivered(
      records,
      Array.from({ length: total }, (_, i) => quoteValue(i)),
      s.producer.stderr,
    );
    equal(summary.acked, total);
    equal(summary.events, summary.acked + summary.skipped + summary.framesDropped);
    s.assertNoSecrets({ gaps: recordTexts(gapRecords) });
  },
});

Deno.test({
  name: "auth_failed ends the producer after one attempt with exit code 3",
  ...KAFKA_TEST,
  async fn() {
    await using s = await startScenario({
      topic: "rel-auth",
      fake: { apiKey: "pk_the_other_account_key_0001" },
    });
    const { code, summary } = await s.ended();
    equal(code, EXIT.AUTH_FAILED, s.producer.stderr);
    equal(summary.exitCode, EXIT.AUTH_FAILED);
    equal(s.fake.stats.connections, 1);
    equal(s.fake.stats.auths, 1);
    equal(summary.error?.name, "AuthFailedError");
    match(summary.error!.message, /^Cannot authenticate with Polygon at "ws:/);
    deepStrictEqual(summary.reconnects, [], "no reconnect was attempted");
    s.assertNoSecrets({ summary: JSON.stringify(summary) });
  },
});

Deno.test({
  name:
    "max_connections ends the producer with exit code 4, at auth or mid-stream, after flushing what it accepted",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    for (const script of [{ auth: "max_connections" as const }, { evictAfter: 150 }]) {
      await using s = await startScenario({
        topic: "rel-maxconn",
        broker,
        fake: { frames: quoteFrames(1000), rate: 500, faults: [script] },
      });
      const { code, summary } = await s.ended();
      equal(code, EXIT.MAX_CONNECTIONS, s.producer.stderr);
      equal(s.fake.stats.connections, 1, JSON.stringify(script));
      equal(summary.error?.name, "MaxConnectionsError");
      match(summary.error!.message, /^Cannot stream from Polygon/);
      deepStrictEqual(summary.reconnects, []);
      const sent = "evictAfter" in script ? 150 : 0;
      equal(summary.acked, sent);
      const records = await readTopic(broker, s.topic);
      assertDelivered(
        records,
        Array.from({ length: sent }, (_, i) => quoteValue(i)),
        s.producer.stderr,
      );
      s.assertNoSecrets();
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
  /** The error the producer ended with: its class and its message. */
  error: string;
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
    const cases: FinalCase[] = [
      {
        name: "every topic refused by the plan",
        fake: { notInPlan: ["*"] },
        args: ["--pairs", "BTC-USD,ETH-USD"],
        code: EXIT.NOT_IN_PLAN,
        error: "PlanError",
        message:
          /^Cannot subscribe to XQ\.BTC-USD,XQ\.ETH-USD on Polygon at "ws:[^"]+": your Polygon plan does not include XQ crypto quotes \(status "error": "not authorized"\); upgrade the plan/,
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
        error: "PlanError",
        message:
          /^Cannot stream from Polygon at "ws:[^"]+": the server refused the key with "Your plan doesn't include websocket access\. Visit https:\/\/polygon\.io to upgrade\." \(status "auth_failed"\)/,
        connections: 1,
        gapReasons: [],
      },
      {
        name: "a host that does not carry XQ (no answer to the subscribe)",
        fake: { channels: ["XT"] },
        args: ["--stale-after", "1", "--backoff-max", "1"],
        code: EXIT.USAGE,
        error: "NoQuotesError",
        message:
          /^Cannot get quotes from Polygon at "ws:[^"]+": 3 sessions in a row got no quote for XQ\.\* \(last: subscribe_timeout: no answer to subscribing XQ\.\* within 1000 ms\); check --pairs/,
        connections: 3,
        gapReasons: [],
      },
      {
        name: "a pair Polygon confirms but never quotes",
        fake: {},
        args: ["--pairs", "btc-usdx", "--stale-after", "1", "--quiet-after", "2"],
        code: EXIT.USAGE,
        error: "NoQuotesError",
        message:
          /^Cannot get quotes from Polygon at "ws:[^"]+": 3 sessions in a row got no quote for XQ\.BTC-USDX \(last: quiet: no quote for \d+ ms on XQ\.BTC-USDX, though the socket answers\)/,
        connections: 3,
        // Two reconnects, then the interval from the last loss to the exit.
        gapReasons: ["quiet", "quiet", "quiet"],
      },
    ];
    const figures: string[] = [];
    for (const c of cases) {
      await using s = await startScenario({
        topic: "rel-final",
        broker,
        fake: { frames: quoteFrames(2000), rate: 100, ...c.fake },
        args: c.args,
      });
      const { code, ms, summary } = await s.ended();
      equal(code, c.code, `${c.name}:\n${s.producer.stderr}`);
      equal(summary.exitCode, c.code, c.name);
      equal(summary.error?.name, c.error, c.name);
      match(summary.error!.message, c.message);
      equal(s.fake.stats.connections, c.connections, c.name);
      // No attempt after the last connection: the error ended the run instead.
      equal(summary.reconnects.length, c.connections - 1, c.name);
      const gaps = (await readTopic(broker, `${s.topic}.gaps`, 5_000))
        .map((r) => (JSON.parse(r.value!) as GapValue).reason);
      deepStrictEqual(gaps, c.gapReasons, c.name);
      equal(summary.acked, 0, c.name);
      s.assertNoSecrets();
      figures.push(
        `${c.name}: exit ${code} after ${Math.round(ms)} ms, ` +
          `${s.fake.stats.connections} connections`,
      );
    }
    console.log(`[reliability] final cases: ${figures.join("; ")}`);
  },
});

Deno.test({
  name:
    "a partly refused subscription streams the confirmed pair with no gap and says which was refused",
  ...KAFKA_TEST,
  async fn() {
    const total = 500;
    await using s = await startScenario({
      topic: "rel-partial",
      fake: { frames: quoteFrames(total), rate: 500, notInPlan: ["XQ.ETH-USD"] },
      args: ["--pairs", "BTC-USD,eth-usd"],
    });
    // quoteFrame(i) is BTC-USD when i % 5 === 0.
    const expected = Array.from({ length: total }, (_, i) => i).filter((i) => i % 5 === 0)
      .map(quoteValue);
    const base = await s.telemetry();
    await s.fake.done;
    await s.waitAcked(expected.length);
    deepStrictEqual(await reconnectsByReason(base), {});
    const summary = await s.stop();
    // The refused pair is left out of what the producer streams.
    deepStrictEqual(summary.topics, ["XQ.BTC-USD"]);
    deepStrictEqual(summary.reconnects, []);
    equal(s.fake.stats.connections, 1);
    deepStrictEqual(s.fake.stats.subscriptions, ["XQ.BTC-USD,XQ.ETH-USD"]);
    equal((await readTopic(s.broker, `${s.topic}.gaps`, 5_000)).length, 0);
    assertDelivered(await readTopic(s.broker, s.topic), expected, s.producer.stderr);
  },
});

Deno.test({
  name:
    "a quiet feed (a quote every 2 stale-after periods) keeps its one connection: 0 reconnects, 0 gap records",
  ...KAFKA_TEST,
  async fn() {
    const total = 8;
    // One quote every 4 s with --stale-after 2: the ratio of one quote a minute at the default 30 s.
    await using s = await startScenario({
      topic: "rel-quiet",
      fake: { frames: quoteFrames(total), rate: 0.25 },
      args: ["--stale-after", "2", "--backoff-max", "1"],
    });
    const base = await s.telemetry();
    await s.fake.done;
    await s.waitAcked(total);
    const probes = await metric(base, "crypto_ws_probes_total");
    deepStrictEqual(await reconnectsByReason(base), {});
    const summary = await s.stop();
    deepStrictEqual(summary.reconnects, []);
    equal(s.fake.stats.connections, 1);
    // About one probe per quiet second (idle 1 s → probe → answer → idle 1 s …).
    ok(probes >= 2 * (total - 1), `only ${probes} probes in ${4 * (total - 1)} s`);
    equal((await readTopic(s.broker, `${s.topic}.gaps`, 5_000)).length, 0);
    assertDelivered(
      await readTopic(s.broker, s.topic),
      Array.from({ length: total }, (_, i) => quoteValue(i)),
      s.producer.stderr,
    );
    console.log(
      `[reliability] quiet feed: ${total} quotes over ${4 * (total - 1)} s, ` +
        `${probes} probes answered, 1 connection, 0 gap records`,
    );
  },
});

Deno.test({
  name:
    "force_disconnect and slow_consumer reconnect as gaps; error and unknown statuses are counted without a reconnect; a success connect event is accepted",
  ...KAFKA_TEST,
  async fn() {
    const total = 600;
    await using s = await startScenario({
      topic: "rel-status",
      fake: {
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
      },
      args: ["--backoff-max", "1"],
    });
    const base = await s.telemetry();
    await s.fake.done;
    await s.waitAcked(total);
    deepStrictEqual(await reconnectsByReason(base), { force_disconnect: 1, slow_consumer: 1 });
    equal(await metric(base, "crypto_ws_statuses_total", 'status="error"'), 1);
    equal(await metric(base, "crypto_ws_statuses_total", 'status="brand_new_status"'), 1);
    const summary = await s.stop();
    equal(s.fake.stats.connections, 3);
    deepStrictEqual(summary.reconnects.map((r) => r.reason), ["force_disconnect", "slow_consumer"]);
    const gaps = (await readTopic(s.broker, `${s.topic}.gaps`))
      .map((r) => JSON.parse(r.value!) as GapValue);
    deepStrictEqual(gaps.map((g) => g.reason), ["force_disconnect", "slow_consumer"]);
    assertDelivered(
      await readTopic(s.broker, s.topic),
      Array.from({ length: total }, (_, i) => quoteValue(i)),
      s.producer.stderr,
    );
    // 3 confirmations + force_disconnect + slow_consumer + error + brand_new_status.
    deepStrictEqual(summary.skippedByReason, { status: 7 });
    equal(summary.events, total + 7);
    console.log(
      `[reliability] statuses: gaps ${gaps.map((g) => `${g.reason} ${g.seconds} s`).join(", ")}`,
    );
  },
});
