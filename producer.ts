/**
 * `deno task produce`: live Polygon (Massive) crypto quotes → exact spread records → Kafka.
 * Reads the WebSocket into a bounded queue, transforms and batches off the read path, sends with
 * an idempotent producer (acks=all), publishes gaps, and flushes everything accepted on
 * SIGINT/SIGTERM. With `--standby-group` it is one of several producers: Kafka elects the active
 * one, the others stand by and take over when it stops (docs/failover.md); `max_connections`
 * then means "lost leadership" and the producer stands by instead of exiting.
 * Exit codes: 0 done, 2 configuration (also: no quote in 3 sessions in a row, a
 * pair Polygon does not list), 3 auth_failed, 4 max_connections, 5 Kafka unreachable at start-up,
 * 6 the Polygon plan does not include the channel (every topic refused, or no WebSocket access),
 * 1 anything else (such as a flush that timed out).
 *
 * Permissions: --allow-net (Polygon, Kafka, telemetry), --allow-read (certificates, .env),
 * --allow-write (--record), --allow-env (settings).
 */
import { buildKafkaConfig } from "./lib/config/kafka.ts";
import { buildPolygonConfig } from "./lib/config/polygon.ts";
import { buildStandbyConfig } from "./lib/config/standby.ts";
import { buildTelemetryConfig } from "./lib/config/telemetry.ts";
import { entryEnv, parseSettings, usage } from "./lib/config/parse.ts";
import { EXIT } from "./lib/config/defaults.ts";
import { abortOnSignals, exitCodeOf, formatCounts, runMain } from "./lib/cli.ts";
import { followChannels, ProducerMetrics } from "./lib/telemetry/metrics.ts";
import { SpreadMetrics } from "./lib/spread_metrics.ts";
import { BarMetrics, TradeMetrics } from "./lib/channels/metrics.ts";
import { FlushTimeoutError, sumCounts } from "./lib/pipeline.ts";
import { PolygonClient } from "./lib/polygon/client.ts";
import {
  channelPlans,
  channelTopicsFor,
  filtersFor,
  parseChannels,
} from "./lib/channels/registry.ts";
import { ChannelPipelines } from "./lib/channels/pipelines.ts";
import type { RecordSink } from "./lib/sink.ts";
import { PerTermSink, Standby, type TermEnd } from "./lib/standby.ts";
import type { Gap } from "./lib/gap.ts";
import type { HealthSource } from "./lib/telemetry/health.ts";
import { RecordingWriter } from "./lib/recording.ts";
import { connectSink } from "./lib/kafka/connect.ts";
import { openKafka } from "./lib/kafka/open.ts";
import { DeadLetterFile } from "./lib/dead_letter.ts";
import { startTelemetry } from "./lib/telemetry/wiring.ts";
import { GapLog } from "./lib/telemetry/live.ts";
import {
  type ChannelSummaryParts,
  producerSummary,
  type ReconnectRecord,
  writeSummary,
} from "./lib/summary.ts";

const HELP = usage(
  "producer",
  "deno task produce [--pairs BTC-USD,ETH-USD] [--record FILE] [options]",
  "Streams Polygon crypto quotes (channel XQ) into Kafka as exact spread records:\n" +
    '{"timestamp":"<exchange time, UTC>","symbol":"<pair>","spread":<ask - bid>}, key = symbol.\n' +
    "With --channels XQ,XT,XA also trades and minute bars, exact, a topic each, on one connection.",
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
  const standbyConfig = buildStandbyConfig(s, kafkaConfig.topic);
  const metrics = new ProducerMetrics();
  // One observer for the process; each term gets a transform of its own (its own counts).
  const spreads = new SpreadMetrics(metrics);
  const tradeMetrics = new TradeMetrics(metrics.registry);
  const barMetrics = new BarMetrics(metrics.registry);
  const channels = parseChannels(s.channels);
  const topics = filtersFor(channels, polygon.pairs);

  // Records the broker refuses for good (issue 24, finding 1) go here, never resent.
  const deadLetters = new DeadLetterFile(s.deadLetterFile);
  const connected = await connectSink(kafkaConfig, {
    kafka: await openKafka(kafkaConfig, { log }),
    log,
    ensureGapsTopic: true,
    deadLetter: (letter) => deadLetters.write(letter),
    channelTopics: channelTopicsFor(channels, kafkaConfig),
  });
  const kafka = connected.kafka;
  const standby = standbyConfig
    ? new Standby(kafka, standbyConfig, {
      registry: metrics.registry,
      log,
      topic: kafkaConfig.topic,
    })
    : undefined;
  // With a standby group each term has a producer of its own, closed the moment the term ends,
  // so a send in flight cannot write after another producer took over (issue 24, finding 4),
  // and fenced at the wire by the lease, so a producer paused with a request inside the client
  // cannot write it when it runs again.
  const sink = standby
    ? new PerTermSink(() => connected.newSink({ fence: () => standby.isLeader() }))
    : connected.sink;
  metrics.followSink(() => sink.stats);
  const recorder = polygon.recordPath
    ? await RecordingWriter.open(polygon.recordPath, {
      header: {
        source: polygon.url,
        subscription: topics.join(","),
        started: new Date().toISOString(),
      },
    })
    : undefined;
  const gaps = new GapLog();
  // One set of channel pipelines per term as the active producer (without --standby-group: one
  // term); each channel has its own pipeline, topic and counts.
  const pipelines: ChannelPipelines[] = [];
  // Per-channel series (`channel` label), cumulative over terms.
  followChannels(
    metrics.registry,
    () => new Map(Object.entries(channelCounts(pipelines)).map(([c, v]) => [c, v.counts])),
  );
  const current = () => pipelines[pipelines.length - 1];
  const health = standby ? standby.health(current) : lazyHealth(current);
  const telemetry = await startTelemetry(telemetryConfig, {
    registry: metrics.registry,
    metrics,
    health,
    staleAfterMs: polygon.staleAfterMs,
    gaps,
    service: "producer",
    log,
  });

  const signals = abortOnSignals();
  const reconnects: ReconnectRecord[] = [];
  let streamed: readonly string[] = topics;
  let refused: readonly string[] = [];
  /** One term: Polygon → pipeline → sink until `stop` aborts or something fails; flushed. */
  const runTerm = async (
    termSink: RecordSink,
    stop: AbortSignal,
  ): Promise<TermEnd> => {
    const plans = channelPlans(channels, kafkaConfig, {
      observers: { XQ: spreads, XT: tradeMetrics, XA: barMetrics },
      // The local clock bounds how far ahead a live t may be (time_out_of_range).
      clock: { now: () => Date.now() },
    });
    const pipeline = new ChannelPipelines(termSink, plans, {
      batchMax: kafkaConfig.batchMax,
      lingerMs: kafkaConfig.lingerMs,
      timestamps: kafkaConfig.timestamp,
      queueMax: polygon.queueMax,
      queuePolicy: polygon.queuePolicy,
      metrics,
      log,
      // Frames dropped from a full queue: their hole is a gap record, and shown live.
      onGap: (gap) => gaps.add(gap),
    });
    pipelines.push(pipeline);
    // A send the sink gives up on ends the term (the sink itself retries what can be retried).
    const pipelineFailed = new AbortController();
    pipeline.start().catch(() => pipelineFailed.abort());
    const client = new PolygonClient({
      url: polygon.url,
      apiKey: polygon.apiKey,
      pairs: polygon.pairs,
      channels,
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
    const where = plans.map((p) => `${p.channel} to "${p.topic}" (gaps to "${p.gapsTopic}")`);
    log(
      `producing ${topics.join(",")}: ${where.join(", ")} via ${kafkaConfig.brokers.join(",")}`,
    );
    const end: TermEnd = { flushTimedOut: false };
    try {
      await client.run(AbortSignal.any([stop, pipelineFailed.signal]));
      log(`${signals.which() ?? "stop"}: flushing ${pipeline.pendingRecords()} pending records`);
    } catch (error) {
      end.failure = error;
    }
    streamed = client.topics;
    refused = client.refused;
    try {
      await pipeline.close(kafkaConfig.shutdownTimeoutMs);
    } catch (error) {
      if (error instanceof FlushTimeoutError) {
        log(`${error.name}: ${error.message}`);
        end.flushTimedOut = true;
      } else if (!standby) throw error;
      // With a standby group a fenced sink ends the term (what it refused is counted); any
      // other failure ends the process, as without one, and a standby takes over.
      else end.closeError = error;
    }
    return end;
  };

  let failure: unknown;
  let code: number = EXIT.OK;
  try {
    const onGap = (gap: Gap) => {
      current()?.gap(gap);
      gaps.add(gap);
    };
    const outcome = standby
      ? await standby.lead(sink, runTerm, onGap, signals.signal)
      : await runTerm(sink, signals.signal);
    failure = outcome.failure;
    if (outcome.flushTimedOut) code = EXIT.FAILURE;
  } catch (error) {
    failure ??= error;
  } finally {
    signals.dispose();
    // Flushed above: now a standby may take over at once.
    await standby?.close().catch(() => {});
    await recorder?.close();
    await sink.close().catch(() => {});
    if (sink !== connected.sink) await connected.sink.close().catch(() => {});
    await kafka.close().catch(() => {});
    await deadLetters.close().catch(() => {});
    await telemetry.stop();
  }
  const c = sumCounts(pipelines.map((p) => p.counts));
  const skipped = Object.values(c.skipped).reduce((a, b) => a + b, 0);
  log(
    `final: ${c.framesIn} frames, ${c.events} events, ${c.records} records, ${c.acked} acked, ` +
      `${skipped} skipped (${formatCounts(c.skipped)}), ${c.framesDropped} frames dropped, ` +
      `${c.gapsAcked} gaps, ${c.sendErrors} send errors, ${sink.stats.retries} produce ` +
      `retries, ${sink.stats.producerResets} producer resets` +
      (deadLetters.written > 0
        ? `, ${deadLetters.written} records refused by the broker and kept in "${deadLetters.path}"`
        : "") +
      (recorder ? `, ${recorder.frames} frames recorded` : "") +
      (recorder?.dropped ? ` (${recorder.dropped} not recorded: the disk was too slow)` : "") +
      (standby ? `, ${standby.takeovers} takeovers, ${standby.fencedRecords} records fenced` : ""),
  );
  if (s.summary !== undefined) {
    await writeSummary(
      s.summary,
      producerSummary({
        counts: c,
        sinkStats: sink.stats,
        framesRecorded: recorder?.frames,
        reconnects,
        topics: streamed,
        refused,
        channels: channelCounts(pipelines),
        takeovers: standby?.takeovers,
        fencedRecords: standby?.fencedRecords,
        error: failure,
        exitCode: failure === undefined ? code : exitCodeOf(failure),
      }),
    );
  }
  if (failure !== undefined) throw failure;
  return code;
}

/** Each channel's counts over every term, with its topic. */
function channelCounts(terms: readonly ChannelPipelines[]): ChannelSummaryParts {
  const out: ChannelSummaryParts = {};
  for (const term of terms) {
    const topics = term.topics();
    for (const [channel, counts] of term.countsByChannel()) {
      const before = out[channel];
      out[channel] = {
        topic: topics.get(channel)!,
        counts: before ? sumCounts([before.counts, counts]) : counts,
      };
    }
  }
  return out;
}

/** A health source that reads the current pipeline. */
function lazyHealth(current: () => HealthSource | undefined): HealthSource {
  return {
    lastQuoteAt: () => current()?.lastQuoteAt(),
    lastAckAt: () => current()?.lastAckAt(),
    pendingRecords: () => current()?.pendingRecords() ?? 0,
    oldestPendingAt: () => current()?.oldestPendingAt(),
  };
}

if (import.meta.main) runMain(main);
