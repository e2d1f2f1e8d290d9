/**
 * `deno task consume`: spread records from Kafka to stdout, as JSON lines (default) or a live
 * per-symbol table. Offsets are committed after the output is written (at least once); a
 * restart resumes from the committed offsets. Malformed records are counted, reported on stderr
 * with topic/partition/offset, and skipped. SIGINT/SIGTERM: commit, leave the group, exit 0. A
 * closed output (`consume | head`): commit only what the reader surely took, exit 8.
 *
 * Permissions: --allow-net (Kafka, telemetry), --allow-read (certificates, .env),
 * --allow-env (settings).
 */
import { buildKafkaConfig, type KafkaConfig } from "./lib/config/kafka.ts";
import { buildTelemetryConfig } from "./lib/config/telemetry.ts";
import { ConfigError } from "./lib/config/errors.ts";
import { DEFAULTS, EXIT } from "./lib/config/defaults.ts";
import { entryEnv, parseSettings, usage } from "./lib/config/parse.ts";
import { abortOnSignals, LineWriter, runMain } from "./lib/cli.ts";
import { CONSUMER_HOP, ConsumerMetrics } from "./lib/telemetry/metrics.ts";
import { ConsumerSpreadMetrics } from "./lib/spread_metrics.ts";
import { type KafkaClient, type StartFrom } from "./lib/kafka/types.ts";
import { KafkaUnreachableError } from "./lib/kafka/errors.ts";
import { openKafka } from "./lib/kafka/open.ts";
import type { InRecord } from "./lib/sink.ts";
import { startTelemetry } from "./lib/telemetry/wiring.ts";
import { RecordPrinter, SpreadTable } from "./lib/consumer_output.ts";
import { type Stall, StallWatch } from "./lib/stall_watch.ts";

const HELP = usage(
  "consumer",
  "deno task consume [--from latest|earliest|ISO-TIME] [--format json|table] [options]",
  "Reads spread records from Kafka and prints them. Offsets are committed after output\n" +
    "(at-least-once); malformed records are reported on stderr and skipped.",
);

function log(line: string): void {
  console.error(`${new Date().toISOString()} ${line}`);
}

function parseFrom(from: string): StartFrom {
  if (from === "latest" || from === "earliest") return from;
  const ms = /^\d{4}-\d{2}-\d{2}/.test(from) ? Date.parse(from) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new ConfigError(
      `--from must be latest, earliest or an ISO 8601 time such as 2024-01-31T12:00:00Z, got "${from}"`,
    );
  }
  return new Date(ms);
}

/** Fails with exit code 2 when the topic does not exist: the producer creates it. */
async function requireTopic(kafka: KafkaClient, config: KafkaConfig): Promise<void> {
  let topics: string[];
  try {
    topics = await kafka.admin.listTopics();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new KafkaUnreachableError(`Cannot list the topics of Kafka: ${reason}`, {
      cause: error,
    });
  }
  if (!topics.includes(config.topic)) {
    throw new ConfigError(
      `Cannot consume topic "${config.topic}": it does not exist on Kafka at ` +
        `"${config.brokers.join(",")}"; run the producer first (it creates the topic) or set ` +
        `KAFKA_TOPIC (--topic)`,
    );
  }
}

/** Reads the group's lag per partition into the metrics every 5 s; returns the stop. */
function followLag(kafka: KafkaClient, metrics: ConsumerMetrics, groupId: string, topic: string) {
  const readLag = async () => {
    try {
      for (const p of await kafka.admin.lag(groupId, topic)) {
        metrics.lag.set({ partition: String(p.partition) }, p.lag);
      }
    } catch (error) {
      log(`lag: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const timer = setInterval(readLag, 5000);
  readLag();
  return () => clearInterval(timer);
}

/** The printer of records: JSON lines or the table, with the consumer's metrics. */
function makePrinter(
  out: LineWriter,
  metrics: ConsumerMetrics,
  options: { maxMessages: number | undefined; table: SpreadTable | undefined },
): RecordPrinter {
  const hop = metrics.hopLatency.labels(CONSUMER_HOP);
  const spreads = new ConsumerSpreadMetrics(metrics);
  return new RecordPrinter({
    line: (text) => out.line(text),
    flush: () => out.flush(),
    // A reader that went away took only the lines it surely read: commit no more than those.
    delivered: () => out.broken ? out.delivered() : undefined,
    report: (line) => {
      metrics.malformed.inc();
      console.error(line);
    },
    maxMessages: options.maxMessages,
    table: options.table,
    onRecord: (r, now) => {
      const age = now - r.timestamp;
      if (age < 0) metrics.negativeHops.inc({ hop: CONSUMER_HOP });
      hop.observe(age / 1000);
    },
    onValues: (values) => spreads.observe(values),
  });
}

async function main(): Promise<number> {
  const parsed = parseSettings("consumer", Deno.args, { env: entryEnv() });
  if (parsed.help) {
    console.log(HELP);
    return EXIT.OK;
  }
  const s = parsed.settings;
  const config = buildKafkaConfig(s);
  const telemetryConfig = buildTelemetryConfig(s);
  const from = parseFrom(s.from);
  const { groupId, maxMessages, timeout } = s;

  const metrics = new ConsumerMetrics();
  const kafka = await openKafka(config, { clientId: "crypto-consumer", log });
  await kafka.connect({ onRetry: log });
  await requireTopic(kafka, config);
  const stop = new AbortController();
  // A consumer that reads nothing while records wait for it ends with a clear error (issue 21).
  let stalled: Stall | undefined;
  const watch = new StallWatch({
    afterMs: s.stallAfter * 1000,
    waiting: async (partitions) => {
      // Only partitions with a committed position: without one, where a new group starts
      // (latest, or a time) is not the lag's start offset.
      const rows = await kafka.admin.lag(groupId, config.topic);
      return rows
        .filter((r) => partitions.includes(r.partition) && r.committed !== "-1")
        .reduce((n, r) => n + r.lag, 0);
    },
    onStall: (stall) => {
      stalled = stall;
      log(stallMessage(stall, groupId, config.topic));
      stop.abort();
      // The client may be stuck where a stop cannot reach it: the bound holds regardless.
      const force = setTimeout(() => Deno.exit(EXIT.STALLED), 10_000);
      Deno.unrefTimer(force);
    },
  });
  const source = kafka.source({
    groupId,
    topic: config.topic,
    from,
    sessionTimeoutMs: s.sessionTimeout * 1000,
    onAssign: (partitions) => {
      watch.assigned(partitions);
      log(`joined group "${groupId}": partitions [${partitions.join(",")}] of "${config.topic}"`);
    },
  });
  const telemetry = await startTelemetry(telemetryConfig, {
    registry: metrics.registry,
    metrics,
    staleAfterMs: DEFAULTS.staleAfterMs,
    service: "consumer",
    log,
  });
  const signals = abortOnSignals();
  signals.signal.addEventListener("abort", () => stop.abort(), { once: true });
  const timer = timeout === undefined ? undefined : setTimeout(() => stop.abort(), timeout * 1000);
  // Lag for telemetry, read with the admin client while metrics are exported.
  const stopLag = telemetry.server || telemetry.influx
    ? followLag(kafka, metrics, groupId, config.topic)
    : undefined;

  const out = new LineWriter();
  const table = s.format === "table" ? new SpreadTable() : undefined;
  const tableTimer = table
    ? setInterval(() => console.log(table.render(Date.now())), 1000)
    : undefined;
  const printer = makePrinter(out, metrics, { maxMessages, table });
  const onBatch = async (records: InRecord[]): Promise<number> => {
    watch.busy(true);
    try {
      const handled = await printer.handle(records);
      metrics.recordsConsumed.inc(handled);
      if (out.broken || printer.full) stop.abort();
      return handled;
    } finally {
      watch.busy(false);
    }
  };
  let code: number = EXIT.OK;
  try {
    watch.start();
    await source.consume(onBatch, { signal: stop.signal });
    if (stalled) {
      code = EXIT.STALLED;
    } else if (out.broken) {
      log(
        `consumer: the output closed (a broken pipe); committed only the records the reader ` +
          `took, so the next run in group "${groupId}" prints the rest`,
      );
      code = EXIT.BROKEN_PIPE;
    }
  } catch (error) {
    log(`consumer failed: ${error instanceof Error ? error.message : String(error)}`);
    code = EXIT.FAILURE;
  } finally {
    watch.stop();
    clearTimeout(timer);
    stopLag?.();
    clearInterval(tableTimer);
    signals.dispose();
    await source.close().catch(() => {});
    await kafka.close().catch(() => {});
    await out.close();
    await telemetry.stop();
  }
  if (table) console.log(table.render(Date.now()));
  log(
    `consumed ${printer.consumed} records, ${printer.malformed} malformed (skipped), ` +
      `group "${groupId}"`,
  );
  return code;
}

/** The error line of a consumer that reads nothing while records wait for it. */
export function stallMessage(stall: Stall, groupId: string, topic: string): string {
  const s = Math.round(stall.idleMs / 1000);
  const what = stall.partitions === undefined
    ? `did not join group "${groupId}" within ${s} s (no partition of "${topic}" assigned)`
    : `got no record for ${s} s although ${stall.waiting} records wait for group ` +
      `"${groupId}" on partitions [${stall.partitions.join(",")}] of "${topic}"`;
  return `consumer: ${what}; the Kafka client looks stuck, so the consumer exits (code ` +
    `${EXIT.STALLED}) to be restarted, and a new start resumes from the group's last commit ` +
    `(--stall-after sets the bound, 0 turns it off)`;
}

if (import.meta.main) runMain(main);
