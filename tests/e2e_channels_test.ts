/**
 * End to end: several channels on one connection. Replay of a multi-channel recording as a
 * process, and the producer as a process through the fake Polygon into a real Apache Kafka
 * broker (tests/helpers/kafka_broker.ts): each channel's topic holds exactly the records the
 * BigInt reference makes from the seeded feed, record for record per symbol.
 */
import { deepStrictEqual, equal } from "./helpers/assert.ts";
import { checkFeed, inSymbolOrder } from "./helpers/exact.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  API_KEY,
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  readTopic,
  run,
  ScriptProcess,
} from "./helpers/e2e.ts";
import { startFakePolygon } from "../lib/polygon/fake.ts";
import { generateFeed } from "../lib/polygon/feed.ts";
import type { ProducerSummary, ReplaySummary } from "../lib/summary.ts";

/** The values in symbol order (each symbol's records in arrival order), as a consumer reads them. */
function bySymbol(values: readonly string[]): string[] {
  const pairs = [...new Set(values.map((v) => JSON.parse(v).symbol as string))].sort();
  return pairs.flatMap((p) => values.filter((v) => JSON.parse(v).symbol === p));
}

/** Every channel's skips the feed's truth says, by channel and reason (primary: the first). */
function wantSkips(feed: ReturnType<typeof generateFeed>, primary: string) {
  const want: Record<string, Record<string, number>> = { XQ: {}, XT: {}, XA: {} };
  for (const s of feed.skips) {
    const c = s.channel === "primary" ? primary : s.channel;
    want[c]![s.reason] = (want[c]![s.reason] ?? 0) + 1;
  }
  return want;
}

Deno.test("replay --channels XQ,XT,XA routes a multi-channel recording as the producer does, exactly", async () => {
  const feed = generateFeed({ seed: 21, frames: 300, hostileEvery: 2 });
  const dir = await Deno.makeTempDir({ prefix: "e2e_channels_" });
  try {
    await Deno.writeTextFile(`${dir}/rec.jsonl`, feed.frames.join("\n") + "\n");
    const out = await run("replay.ts", [
      `${dir}/rec.jsonl`,
      "--channels",
      "XQ,XT,XA",
      "--summary",
      `${dir}/summary.json`,
    ], {});
    equal(out.code, 0, out.stderr);
    const lines = out.stdout.split("\n").filter((l) => l !== "");
    const mismatch = checkFeed(feed, {
      trades: lines.filter((l) => l.includes('"price":')),
      bars: lines.filter((l) => l.includes('"open":')),
      spreads: lines.filter((l) => l.includes('"spread":')),
    });
    equal(mismatch, undefined);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as ReplaySummary;
    const want = wantSkips(feed, "XQ");
    for (const c of ["XQ", "XT", "XA"]) {
      deepStrictEqual(summary.channels[c]!.skippedByReason, want[c], c);
    }
    equal(summary.channels.XT!.records, feed.trades.length);
    equal(summary.channels.XA!.records, feed.bars.length);
    equal(summary.channels.XT!.topic, "crypto-topic.trades");
    for (const c of Object.values(summary.channels)) equal(c.events, c.records + c.skipped);
    equal(summary.events, summary.records + summary.skipped);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay --channels into the in-memory broker acknowledges every record of every channel", async () => {
  const feed = generateFeed({ seed: 22, frames: 200, hostileEvery: 3 });
  const dir = await Deno.makeTempDir({ prefix: "e2e_channels_" });
  try {
    await Deno.writeTextFile(`${dir}/rec.jsonl`, feed.frames.join("\n") + "\n");
    const out = await run("replay.ts", [
      `${dir}/rec.jsonl`,
      "--channels",
      "XT,XA,XQ",
      "--to",
      "memory",
      "--trades-topic",
      "t1",
      "--summary",
      `${dir}/summary.json`,
    ], {});
    equal(out.code, 0, out.stderr);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as ReplaySummary;
    deepStrictEqual(
      Object.entries(summary.channels).map(([c, v]) => [c, v.topic, v.acked]),
      [
        ["XT", "t1", feed.trades.length],
        ["XA", "crypto-topic.bars", feed.bars.length],
        ["XQ", "crypto-topic", feed.quotes.length],
      ],
    );
    // What no channel takes is counted by the first channel listed, here XT.
    const want = wantSkips(feed, "XT");
    for (const c of ["XQ", "XT", "XA"]) {
      deepStrictEqual(summary.channels[c]!.skippedByReason, want[c], c);
    }
    equal(summary.acked, feed.trades.length + feed.bars.length + feed.quotes.length);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "the producer carries quotes, trades and bars on one connection into a real broker, each topic exact",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const topic = uniqueTopic("e2e-channels");
    // 5 quotes + 5 trades per frame at 400 frames/s: 2,000 of each per second, and bars.
    const feed = generateFeed({ seed: 8, frames: 1200, hostileEvery: 5 });
    const fake = startFakePolygon({ frames: feed.frames, apiKey: API_KEY, rate: 400 });
    const dir = await Deno.makeTempDir({ prefix: "e2e_channels_" });
    try {
      const producer = new ScriptProcess("producer.ts", [
        "--url",
        fake.url,
        "--pairs",
        "*",
        "--channels",
        "XQ,XT,XA",
        "--summary",
        `${dir}/summary.json`,
        // A loaded machine's broker may take a while to ack the last batches.
        "--shutdown-timeout",
        "120",
      ], { POLYGON_API_KEY: API_KEY, ...kafkaEnv(b, "plaintext", topic) });
      await Promise.race([fake.done, producer.finished]);
      // Let the last frames reach the producer before asking it to stop.
      await new Promise((r) => setTimeout(r, 1000));
      producer.kill("SIGTERM");
      const finished = await producer.finished;
      equal(finished.code, 0, finished.stderr);
      equal(fake.stats.authSuccesses, 1);
      equal(fake.stats.authenticatedMax, 1);
      deepStrictEqual(fake.stats.subscriptions.slice(0, 1), ["XQ.*,XT.*,XA.*"]);
      const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)) as ProducerSummary;
      equal(summary.channels.XT!.acked, feed.trades.length, finished.stderr);
      equal(summary.channels.XA!.acked, feed.bars.length);
      equal(summary.channels.XQ!.acked, feed.quotes.length);
      const want = wantSkips(feed, "XQ");
      // The three subscription confirmations are status events, counted by the first channel.
      want.XQ!.status = 3;
      for (const c of ["XQ", "XT", "XA"]) {
        deepStrictEqual(summary.channels[c]!.skippedByReason, want[c], c);
      }
      deepStrictEqual(summary.refused, []);
      const config = brokerConfig(b);
      const [trades, bars, spreads] = await Promise.all([
        readTopic(config, `${topic}.trades`, feed.trades.length),
        readTopic(config, `${topic}.bars`, feed.bars.length),
        readTopic(config, topic, feed.quotes.length),
      ]);
      const mismatch = checkFeed(
        { ...feed, trades: inSymbolOrder(feed.trades), bars: inSymbolOrder(feed.bars) },
        {
          trades: bySymbol(trades.map((r) => r.value!)),
          bars: bySymbol(bars.map((r) => r.value!)),
          spreads: spreads.map((r) => r.value!),
        },
      );
      equal(mismatch, undefined);
      equal(trades[0]!.key, JSON.parse(trades[0]!.value!).symbol);
      equal(trades[0]!.headers["record-type"], "trade");
    } finally {
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
