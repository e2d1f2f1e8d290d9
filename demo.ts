/**
 * `deno task demo`: the whole pipeline on an embedded default, with no account and no Kafka.
 * A local fake Polygon server replays fixtures/btc.jsonl over a real WebSocket; the production
 * client authenticates and subscribes; the pipeline transforms and batches into the in-memory
 * broker; a consumer group prints the records as JSON lines on stdout. The summary goes to
 * stderr.
 *
 * Permissions: --allow-net=127.0.0.1 (the fake server and its client), --allow-read (fixture).
 */
import { parseArgs } from "node:util";
import { formatCounts, LineWriter, runMain } from "./lib/cli.ts";
import { ConfigError } from "./lib/config.ts";
import { MemoryBroker } from "./lib/memory_broker.ts";
import { Pipeline } from "./lib/pipeline.ts";
import { PolygonClient } from "./lib/polygon_client.ts";
import { startFakePolygon } from "./lib/polygon_fake.ts";
import { openRecording } from "./lib/recording.ts";

const HELP = `Usage: deno task demo [--file RECORDING] [--speed N]

Runs the whole pipeline locally: fake Polygon WebSocket server (replaying RECORDING, default
fixtures/btc.jsonl) → Polygon client → transform → in-memory broker → consumer → stdout.
--speed N paces the replay by exchange time (1 = real time); default 0, as fast as possible.`;

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
        speed: { type: "string", default: "0" },
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
  const speed = Number(values.speed);
  if (!Number.isFinite(speed) || speed < 0) {
    throw new ConfigError(`--speed must be a number of at least 0, got "${values.speed}"`);
  }
  const started = performance.now();
  const recording = await openRecording(values.file!);
  const fake = startFakePolygon({ frames: recording.frames, apiKey: KEY, speed });
  const broker = new MemoryBroker();
  broker.createTopic(TOPIC, 3);
  const pipeline = new Pipeline(broker.sink(), { topic: TOPIC, lingerMs: 5 });
  pipeline.start();

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
    onGap: (gap) => pipeline.gap(gap),
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
    for (const r of batch) if (r.value !== null) await out.line(r.value);
    consumed += batch.length;
    if (consumed >= pipeline.counts.acked && stopClient.signal.aborted) stopConsumer.abort();
  }, { signal: stopConsumer.signal });

  try {
    // Every frame sent; closing the server delivers the rest, then the client sees the close.
    await Promise.race([fake.done, clientDone]);
    ending = true;
    await fake.close();
    await Promise.race([closedAfterStreaming, clientDone]);
    stopClient.abort();
    await clientDone;
    await pipeline.close(10_000);
    if (consumed >= pipeline.counts.acked) stopConsumer.abort();
    await consumerDone;
  } finally {
    stopClient.abort();
    stopConsumer.abort();
    await fake.close();
    await out.close();
  }
  const c = pipeline.counts;
  const skipped = Object.values(c.skipped).reduce((a, b) => a + b, 0);
  const perSymbol = [...c.bySymbol].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s}=${n}`);
  console.error(
    // The fake server, like Polygon, sends only frames holding a subscribed event (the recording's
    // own status frames stay behind), and the client also receives the subscription confirmation.
    `demo: ${fake.stats.framesSent} of the recording's ` +
      `${fake.stats.framesSent + fake.stats.framesFiltered} frames sent (the others held no ` +
      `subscribed event), ${c.framesIn} received (with the subscription confirmation), ` +
      `${c.events} events, ` +
      `${c.acked} records, ${skipped} skipped (${formatCounts(c.skipped)}), ` +
      `${consumed} consumed in ${((performance.now() - started) / 1000).toFixed(2)} s`,
  );
  console.error(`demo: per symbol ${perSymbol.join(" ")}`);
  return consumed === c.acked ? 0 : 1;
}

if (import.meta.main) runMain(main);
