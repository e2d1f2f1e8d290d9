/**
 * `deno task produce`: live Polygon (Massive) crypto quotes → exact spread records → Kafka.
 * Reads the WebSocket into a bounded queue, transforms and batches off the read path, sends with
 * an idempotent producer (acks=all), publishes gaps, and flushes everything accepted on
 * SIGINT/SIGTERM. Exit codes: 0 done, 2 configuration (also: no quote in 3 sessions in a row, a
 * pair Polygon does not list), 3 auth_failed, 4 max_connections, 5 Kafka unreachable at start-up,
 * 6 the Polygon plan does not include the channel (every topic refused, or no WebSocket access),
 * 1 anything else (such as a flush that timed out).
 *
 * Permissions: --allow-net (Polygon, Kafka, telemetry), --allow-read (certificates, .env),
 * --allow-write (--record), --allow-env (settings).
 */
import {
  buildKafkaConfig,
  buildPolygonConfig,
  buildTelemetryConfig,
  entryEnv,
  EXIT,
  parseSettings,
  usage,
} from "./lib/config.ts";
import { abortOnSignals, exitCodeOf, formatCounts, runMain } from "./lib/cli.ts";
import { ProducerMetrics } from "./lib/metrics.ts";
import { spreadStages } from "./lib/spread_metrics.ts";
import { FlushTimeoutError, Pipeline } from "./lib/pipeline.ts";
import { PolygonClient, topicsFor } from "./lib/polygon_client.ts";
import { RecordingWriter } from "./lib/recording.ts";
import { connectSink } from "./lib/kafka_wiring.ts";
import { startTelemetry } from "./lib/telemetry_wiring.ts";
import { GapLog } from "./lib/live.ts";
import { producerSummary, type ReconnectRecord, writeSummary } from "./lib/summary.ts";

const HELP = usage(
  "producer",
  "deno task produce [--pairs BTC-USD,ETH-USD] [--record FILE] [options]",
  "Streams Polygon crypto quotes (channel XQ) into Kafka as exact spread records:\n" +
    '{"timestamp":"<exchange time, UTC>","symbol":"<pair>","spread":<ask - bid>}, key = symbol.',
);

function log(line: string): void {
  console.error(`${new Date().toISOString()} ${line}`);
}

async function main(): Promise<number> {
  const parsed = parseSettings("producer", Deno.args, { env: entryEnv() });
  if (parsed.help) {
    console.log(HELP);
    return EXIT.OK;
  }
  const s = parsed.settings;
  const polygon = buildPolygonConfig(s);
  const kafkaConfig = buildKafkaConfig(s);
  const telemetryConfig = buildTelemetryConfig(s);
  const metrics = new ProducerMetrics();

  const stages = spreadStages(metrics);
  const topics = topicsFor(polygon.pairs, stages.transform.channel);
  const { sink, kafka } = await connectSink(kafkaConfig, { log, ensureGapsTopic: true });
  metrics.followSink(() => sink.stats);
  const recorder = polygon.recordPath
    ? await RecordingWriter.open(polygon.recordPath, {
      header: {
        recording: 1,
        source: polygon.url,
        subscription: topics.join(","),
        started: new Date().toISOString(),
      },
    })
    : undefined;
  const pipeline = new Pipeline(sink, {
    ...stages,
    topic: kafkaConfig.topic,
    gapsTopic: kafkaConfig.gapsTopic,
    batchMax: kafkaConfig.batchMax,
    lingerMs: kafkaConfig.lingerMs,
    queueMax: polygon.queueMax,
    queuePolicy: polygon.queuePolicy,
    metrics,
    log,
  });
  // A send the sink gives up on ends the run (the sink itself retries what can be retried).
  const pipelineFailed = new AbortController();
  pipeline.start().catch(() => pipelineFailed.abort());
  const gaps = new GapLog();
  const telemetry = await startTelemetry(telemetryConfig, {
    registry: metrics.registry,
    metrics,
    health: pipeline,
    staleAfterMs: polygon.staleAfterMs,
    gaps,
    service: "producer",
    log,
  });

  const signals = abortOnSignals();
  const reconnects: ReconnectRecord[] = [];
  const client = new PolygonClient({
    url: polygon.url,
    apiKey: polygon.apiKey,
    pairs: polygon.pairs,
    channel: stages.transform.channel,
    staleAfterMs: polygon.staleAfterMs,
    quietAfterMs: polygon.quietAfterMs,
    backoffMaxMs: polygon.backoffMaxMs,
    onFrame: (text, at) => pipeline.push(text, at),
    onGap: (gap) => {
      pipeline.gap(gap);
      gaps.add(gap);
    },
    onReconnect: (r) => reconnects.push(r),
    recorder,
    metrics,
    log,
  });
  log(
    `producing ${topics.join(",")} to "${kafkaConfig.topic}" ` +
      `(gaps to "${kafkaConfig.gapsTopic}") via ${kafkaConfig.brokers.join(",")}`,
  );
  let failure: unknown;
  try {
    await client.run(AbortSignal.any([signals.signal, pipelineFailed.signal]));
    log(`${signals.which() ?? "stop"}: flushing ${pipeline.pendingRecords()} pending records`);
  } catch (error) {
    failure = error;
  }
  let code: number = EXIT.OK;
  try {
    await pipeline.close(kafkaConfig.shutdownTimeoutMs);
  } catch (error) {
    if (!(error instanceof FlushTimeoutError)) throw error;
    log(`${error.name}: ${error.message}`);
    code = EXIT.FAILURE;
  } finally {
    signals.dispose();
    await recorder?.close();
    await sink.close().catch(() => {});
    await kafka.close().catch(() => {});
    await telemetry.stop();
  }
  const c = pipeline.counts;
  const skipped = Object.values(c.skipped).reduce((a, b) => a + b, 0);
  log(
    `final: ${c.framesIn} frames, ${c.events} events, ${c.records} records, ${c.acked} acked, ` +
      `${skipped} skipped (${formatCounts(c.skipped)}), ${c.framesDropped} frames dropped, ` +
      `${c.gapsAcked} gaps, ${c.sendErrors} send errors, ${sink.stats.retries} produce ` +
      `retries, ${sink.stats.producerResets} producer resets` +
      (recorder ? `, ${recorder.frames} frames recorded` : ""),
  );
  if (typeof s.summary === "string") {
    await writeSummary(
      s.summary,
      producerSummary({
        counts: c,
        sinkStats: sink.stats,
        framesRecorded: recorder?.frames,
        reconnects,
        topics: client.topics,
        error: failure,
        exitCode: failure === undefined ? code : exitCodeOf(failure),
      }),
    );
  }
  if (failure !== undefined) throw failure;
  return code;
}

if (import.meta.main) runMain(main);
