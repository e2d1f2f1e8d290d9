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
import { parseArgs } from "node:util";
import { abortOnSignals, formatCounts, LineWriter, runMain } from "./lib/cli.ts";
import { ConfigError } from "./lib/config.ts";
import { GapLog, LiveFeed } from "./lib/live.ts";
import { MemoryBroker } from "./lib/memory_broker.ts";
import { ProducerMetrics } from "./lib/metrics.ts";
import { Pipeline } from "./lib/pipeline.ts";
import { PolygonClient } from "./lib/polygon_client.ts";
import { startFakePolygon } from "./lib/polygon_fake.ts";
import { openRecording } from "./lib/recording.ts";
import { serveTelemetry, type TelemetryServer } from "./lib/telemetry.ts";

const HELP = `Usage: deno task demo [--file RECORDING] [--speed N] [--ui [--port P]]

Runs the whole pipeline locally: fake Polygon WebSocket server (replaying RECORDING, default
fixtures/btc.jsonl) → Polygon client → transform → in-memory broker → consumer → stdout.
--speed N  paces the replay by exchange time (1 = real time); default 0, as fast as possible
           (1 with --ui).
--ui       serves the live page (spreads and pipeline health) on http://127.0.0.1:P/, prints
           its URL, counts the records instead of printing them, and keeps serving after the
           replay until Ctrl-C.
--port P   the live page's port; default 9464 (0 picks a free one).`;

const TOPIC = "crypto-topic";
const KEY = "demo-key";

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: Deno.args,
      options: {
        file: {
          type: "string",
          default: new URL("./fixtures/btc.jsonl", import.meta.url).pathname,
        },
        speed: { type: "string" },
        ui: { type: "boolean", default: false },
        port: { type: "string", default: "9464" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    throw new ConfigError(`Cannot parse the command line: ${(error as Error).message}; see --help`);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const ui = values.ui!;
  const speed = Number(values.speed ?? (ui ? "1" : "0"));
  if (!Number.isFinite(speed) || speed < 0) {
    throw new ConfigError(`--speed must be a number of at least 0, got "${values.speed}"`);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`--port must be between 0 and 65535, got "${values.port}"`);
  }
  const started = performance.now();
  const recording = await openRecording(values.file!);
  const metrics = ui ? new ProducerMetrics() : undefined;
  const fake = startFakePolygon({ frames: recording.frames, apiKey: KEY, speed });
  const broker = new MemoryBroker();
  broker.createTopic(TOPIC, 3);
  const pipeline = new Pipeline(broker.sink(), { topic: TOPIC, lingerMs: 5, metrics });
  pipeline.start();
  const gaps = new GapLog();
  let page: TelemetryServer | undefined;
  if (metrics) {
    const live = new LiveFeed({ registry: metrics.registry, health: pipeline, gaps });
    page = serveTelemetry({ registry: metrics.registry, health: pipeline, live, port });
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
    const perSymbol = [...c.bySymbol].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s}=${n}`);
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
    await pipeline.close(10_000);
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
