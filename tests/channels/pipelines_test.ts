import { deepStrictEqual, equal, ok } from "../helpers/assert.ts";
import { checkFeed, inSymbolOrder } from "../helpers/exact.ts";
import { channelPlans } from "../../lib/channels/registry.ts";
import { ChannelPipelines } from "../../lib/channels/pipelines.ts";
import { MemoryBroker } from "../../lib/memory_broker.ts";
import { PolygonClient } from "../../lib/polygon/client.ts";
import { startFakePolygon } from "../../lib/polygon/fake.ts";
import { generateFeed } from "../../lib/polygon/feed.ts";
import { followChannels, ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import { Registry } from "prom-client";

const TOPICS = { topic: "q", gapsTopic: "q.gaps" };

/** Values of a memory topic, each partition in order, partitions concatenated. */
function values(broker: MemoryBroker, topic: string): string[] {
  return broker.records(topic).flat().map((r) => r.value!);
}

/** The values in symbol order (each symbol's records in arrival order), as a consumer reads them. */
function bySymbol(values: readonly string[]): string[] {
  const pairs = [...new Set(values.map((v) => JSON.parse(v).symbol as string))].sort();
  return pairs.flatMap((p) => values.filter((v) => JSON.parse(v).symbol === p));
}

async function waitFor(check: () => boolean, what: string, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("2,000 quotes/s, 2,000 trades/s and bars share one connection; each topic gets every record of its channel", async () => {
  // 5 quotes and 5 trades per frame at 400 frames/s; a bar per pair every 50 frames.
  const feed = generateFeed({ seed: 3, frames: 1600, hostileEvery: 4 });
  const fake = startFakePolygon({ frames: feed.frames, apiKey: "k", rate: 400 });
  const broker = new MemoryBroker();
  const channels = ["XQ", "XT", "XA"];
  const pipelines = new ChannelPipelines(broker.sink(), channelPlans(channels, TOPICS), {
    log: () => {},
  });
  pipelines.start();
  const controller = new AbortController();
  const client = new PolygonClient({
    url: fake.url,
    apiKey: "k",
    pairs: ["*"],
    channels,
    onFrame: (text, at) => pipelines.push(text, at),
    onGap: (gap) => pipelines.gap(gap),
  });
  const started = performance.now();
  const running = client.run(controller.signal);
  try {
    await fake.done;
    const seconds = (performance.now() - started) / 1000;
    await waitFor(() => pipelines.framesIn >= fake.stats.framesSent + 3, "every frame");
    controller.abort();
    await running;
    await pipelines.close(60_000);
    // One authenticated connection, one subscribe message for every topic.
    equal(fake.stats.connections, 1);
    equal(fake.stats.authSuccesses, 1);
    equal(fake.stats.authenticatedMax, 1);
    deepStrictEqual(fake.stats.subscriptions, ["XQ.*,XT.*,XA.*"]);
    equal(fake.stats.framesSent, 1600);
    ok(seconds < 30, `${seconds} s`);
    const mismatch = checkFeed(
      { ...feed, trades: inSymbolOrder(feed.trades), bars: inSymbolOrder(feed.bars) },
      {
        trades: bySymbol(values(broker, "q.trades")),
        bars: bySymbol(values(broker, "q.bars")),
        spreads: values(broker, "q"),
      },
    );
    equal(mismatch, undefined);
    // Counts balance per channel: events = records + skips.
    for (const [channel, c] of pipelines.countsByChannel()) {
      const skips = Object.values(c.skipped).reduce((a, b) => a + b, 0);
      equal(c.events, c.records + skips, channel);
      equal(c.acked, c.records, channel);
    }
    equal(pipelines.countsByChannel().get("XT")!.acked, feed.trades.length);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("a subscription refused for trades streams the quotes and names the refused topic", async () => {
  const feed = generateFeed({ seed: 5, frames: 40 });
  const fake = startFakePolygon({ frames: feed.frames, notInPlan: ["XT.*"] });
  const broker = new MemoryBroker();
  const pipelines = new ChannelPipelines(broker.sink(), channelPlans(["XQ", "XT"], TOPICS), {});
  pipelines.start();
  const controller = new AbortController();
  const lines: string[] = [];
  const client = new PolygonClient({
    url: fake.url,
    apiKey: "k",
    pairs: ["*"],
    channels: ["XQ", "XT"],
    onFrame: (text, at) => pipelines.push(text, at),
    log: (line) => lines.push(line),
  });
  const running = client.run(controller.signal);
  try {
    await fake.done;
    await waitFor(() => pipelines.framesIn >= fake.stats.framesSent + 2, "every frame");
    controller.abort();
    await running;
    await pipelines.close(30_000);
    deepStrictEqual(client.refused, ["XT.*"]);
    deepStrictEqual(client.topics, ["XQ.*"]);
    equal(values(broker, "q").length, feed.quotes.length);
    equal(values(broker, "q.trades").length, 0);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("a gap of the connection goes to every channel's gaps topic", async () => {
  const broker = new MemoryBroker();
  const pipelines = new ChannelPipelines(
    broker.sink(),
    channelPlans(["XQ", "XT", "XA"], TOPICS),
    {},
  );
  pipelines.start();
  pipelines.gap({ from: 1000, to: 3500, reason: "closed" });
  await pipelines.close(10_000);
  const want = '{"from":"1970-01-01T00:00:01.000Z","to":"1970-01-01T00:00:03.500Z",' +
    '"reason":"closed","seconds":2.5}';
  for (const t of ["q.gaps", "q.trades.gaps", "q.bars.gaps"]) {
    deepStrictEqual(values(broker, t), [want]);
  }
  equal(pipelines.counts.gapsAcked, 3);
});

Deno.test("health reads every channel: the latest frame of any, the oldest pending of all", () => {
  const pipelines = new ChannelPipelines(
    new MemoryBroker().sink(),
    channelPlans(["XQ", "XT"], TOPICS),
    {},
  );
  pipelines.push('[{"ev":"XT","pair":"A-B","p":1,"s":1,"t":1}]', 500);
  pipelines.push('[{"ev":"XQ","pair":"A-B","bp":1,"ap":2,"t":1}]', 100);
  equal(pipelines.lastQuoteAt(), 500);
  equal(pipelines.oldestPendingAt(), 100);
  equal(pipelines.pendingRecords(), 2);
});

Deno.test("the channel series carry a channel label and follow each channel's counts", async () => {
  const registry = new Registry();
  const broker = new MemoryBroker();
  const pipelines = new ChannelPipelines(broker.sink(), channelPlans(["XQ", "XT"], TOPICS), {});
  followChannels(registry, () => pipelines.countsByChannel());
  pipelines.start();
  pipelines.push(
    '[{"ev":"XT","pair":"A-B","p":1,"s":1,"t":1},{"ev":"XT","pair":"A-B","s":1,"t":1},' +
      '{"ev":"XQ","pair":"A-B","bp":1,"ap":2,"t":1}]',
    1,
  );
  await pipelines.close(10_000);
  const text = await registry.metrics();
  const lines = text.split("\n").filter((l) => l.startsWith("crypto_channel_"));
  for (
    const want of [
      'crypto_channel_events_total{channel="XQ"} 1',
      'crypto_channel_events_total{channel="XT"} 2',
      'crypto_channel_records_acked_total{channel="XT"} 1',
      'crypto_channel_skipped_total{channel="XT",reason="bad_price"} 1',
      'crypto_channel_skipped_total{channel="XQ",reason="bad_bid"} 0',
    ]
  ) ok(lines.includes(want), `${want} not in\n${lines.join("\n")}`);
});

Deno.test("with several channels a mixed frame counts once as received, and events and acks add up across channels", async () => {
  const metrics = new ProducerMetrics();
  const pipelines = new ChannelPipelines(
    new MemoryBroker().sink(),
    channelPlans(["XQ", "XT"], TOPICS),
    { metrics },
  );
  pipelines.push(
    '[{"ev":"XT","pair":"A-B","p":1,"s":1,"t":1},{"ev":"XQ","pair":"A-B","bp":1,"ap":2,"t":1}]',
    1,
  );
  pipelines.push('[{"ev":"XT","pair":"A-B","p":1,"s":1,"t":2}]', 2);
  pipelines.start();
  await pipelines.close(10_000);
  const value = async (name: string) =>
    (await metrics.registry.getSingleMetric(name)!.get()).values[0]!.value;
  equal(await value("crypto_ws_frames_received_total"), 2);
  equal(await value("crypto_ws_events_received_total"), 3);
  equal(await value("crypto_sink_records_acked_total"), 3);
  equal(await value("crypto_queue_depth"), 0);
  equal(pipelines.counts.framesIn, 2);
});
