/**
 * `deno task demo`: the whole pipeline on an embedded default, with no account and no Kafka.
 * A local fake Polygon server replays fixtures/btc.jsonl over a real WebSocket; the production
 * client authenticates and subscribes; the pipeline transforms and batches into the in-memory
 * broker; a consumer group prints the records as JSON lines on stdout. The summary goes to
 * stderr. With `--ui` it serves the live page (and /metrics, /healthz) on 127.0.0.1, replays at
 * real speed and keeps serving after the replay until Ctrl-C.
 *
 * Permissions: --allow-net=127.0.0.1 (the fake server, its client, the live page),
 * --allow-read (fixture).
 */
import { abortOnSignals, formatCounts, LineWriter, runMain } from "./lib/cli.ts";
import { DEFAULTS } from "./lib/config/defaults.ts";
import { parseSettings, usage } from "./lib/config/parse.ts";
import { GapLog, LiveFeed } from "./lib/telemetry/live.ts";
import { MemoryBroker } from "./lib/memory_broker.ts";
import { ProducerMetrics } from "./lib/telemetry/metrics.ts";
import { Pipeline } from "./lib/pipeline.ts";
import { spreadStages } from "./lib/spread_metrics.ts";
import { PolygonClient } from "./lib/polygon/client.ts";
import { startFakePolygon } from "./lib/polygon/fake.ts";
import { openRecording } from "./lib/recording.ts";
import { serveTelemetry, type TelemetryServer } from "./lib/telemetry/server.ts";
import type { HealthSource } from "./lib/telemetry/health.ts";

const HELP = usage(
  "demo",
  "deno task demo [--file RECORDING] [--speed N] [--ui [--port P]]",
  "Runs the whole pipeline locally: fake Polygon WebSocket server (replaying RECORDING, default\n" +
    "fixtures/btc.jsonl) → Polygon client → transform → in-memory broker → consumer → stdout.",
);

const TOPIC = "crypto-topic";
const KEY = "demo-key";

async function main(): Promise<number> {
  const parsed = parseSettings("demo", Deno.args);
  if (parsed.help) {
    console.log(HELP);
    return 0;
  }
  const { ui, port } = parsed.settings;
  const speed = parsed.settings.speed ?? (ui ? 1 : 0);
  const file = parsed.settings.file ?? new URL("./fixtures/btc.jsonl", import.meta.url).pathname;
  const started = performance.now();
  const recording = await openRecording(file);
  const metrics = ui ? new ProducerMetrics() : undefined;
  const fake = startFakePolygon({ frames: recording.frames, apiKey: KEY, speed });
  const broker = new MemoryBroker();
  broker.createTopic(TOPIC, 3);
  const pipeline = new Pipeline(broker.sink(), {
    ...spreadStages(metrics),
    topic: TOPIC,
    lingerMs: 5,
    metrics,
  });
  pipeline.start();
  const gaps = new GapLog();
  let page: TelemetryServer | undefined;
  if (metrics) {
    // The page names the sink that is there: the demo has no Kafka.
    const health: HealthSource = {
      lastQuoteAt: () => pipeline.lastQuoteAt(),
      lastAckAt: () => pipeline.lastAckAt(),
      pendingRecords: () => pipeline.pendingRecords(),
      oldestPendingAt: () => pipeline.oldestPendingAt(),
      sinkName: () => "the in-memory broker",
    };
    const live = new LiveFeed({ registry: metrics.registry, health, gaps });
    page = serveTelemetry({ registry: metrics.registry, health, live, port });
    console.error(`demo: live page at ${page.url}/ (replaying at speed ${speed}; Ctrl-C to stop)`);
  }
  const signals = abortOnSignals();

  const stopClient = new AbortController();
  let streamed = false;
  // The end of the recording closes the server; the client's reconnect attempts after that are
  // expected, not news.
  let ending = false;
  let serverClosed: () => void = () => {};
  const closedAfterStreaming = new Promise<void>((resolve) => serverClosed = resolve);
  const client = new PolygonClient({
    url: fake.url,
    apiKey: KEY,
    pairs: ["*"],
    onFrame: (text, at) => pipeline.push(text, at),
    onGap: (gap) => {
      pipeline.gap(gap);
      gaps.add(gap);
    },
    metrics,
    onState: (state) => {
      if (state === "streaming") streamed = true;
      else if (streamed) serverClosed();
    },
    log: (line) => {
      if (!ending) console.error(line);
    },
  });
  const clientDone = client.run(stopClient.signal);

  const out = new LineWriter();
  const stopConsumer = new AbortController();
  let consumed = 0;
  const source = broker.source({ topic: TOPIC, groupId: "demo", from: "earliest" });
  const consumerDone = source.consume(async (batch) => {
    if (!ui) { for (const r of batch) if (r.value !== null) await out.line(r.value); }
    consumed += batch.length;
    if (consumed >= pipeline.counts.acked && stopClient.signal.aborted) stopConsumer.abort();
  }, { signal: stopConsumer.signal });

  const interrupted = new Promise<void>((resolve) =>
    signals.signal.addEventListener("abort", () => resolve(), { once: true })
  );
  const summary = () => {
    const c = pipeline.counts;
    const skipped = Object.values(c.skipped).reduce((a, b) => a + b, 0);
    const perSymbol = [...c.byKey].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s}=${n}`);
    console.error(
      // The fake server, like Polygon, sends only frames holding a subscribed event (the
      // recording's own status frames stay behind), and the client also receives the
      // subscription confirmation.
      `demo: ${fake.stats.framesSent} of the recording's ` +
        `${fake.stats.framesSent + fake.stats.framesFiltered} frames sent (the others held no ` +
        `subscribed event), ${c.framesIn} received (with the subscription confirmation), ` +
        `${c.events} events, ` +
        `${c.acked} records, ${skipped} skipped (${formatCounts(c.skipped)}), ` +
        `${consumed} consumed in ${((performance.now() - started) / 1000).toFixed(2)} s`,
    );
    console.error(`demo: per symbol ${perSymbol.join(" ")}`);
  };
  try {
    // Every frame sent; closing the server delivers the rest, then the client sees the close.
    await Promise.race([fake.done, clientDone, interrupted]);
    ending = true;
    if (signals.signal.aborted) stopClient.abort();
    await fake.close();
    await Promise.race([closedAfterStreaming, clientDone]);
    stopClient.abort();
    await clientDone;
    await pipeline.close(DEFAULTS.shutdownTimeoutMs);
    if (consumed >= pipeline.counts.acked) stopConsumer.abort();
    await consumerDone;
    summary();
    if (page && !signals.signal.aborted) {
      console.error(`demo: replay done; the live page stays at ${page.url}/ until Ctrl-C`);
      await interrupted;
    }
  } finally {
    signals.dispose();
    stopClient.abort();
    stopConsumer.abort();
    await fake.close();
    await out.close();
    await page?.shutdown();
  }
  return consumed === pipeline.counts.acked ? 0 : 1;
}

if (import.meta.main) runMain(main);
