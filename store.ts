/**
 * `deno task store`: spread records and gap records from Kafka into QuestDB (the default) or
 * PostgreSQL, exactly once into the tables: each row's key holds its record's Kafka partition and
 * offset, so a redelivery is a no-op, and offsets are committed only after the database holds the
 * rows. Records that are not ours are kept in `<table>_dead_letters` with why. The database down:
 * consuming pauses and writes are retried until it answers. SIGINT/SIGTERM: finish the write in
 * flight, commit, leave the group, exit 0. See docs/history.md.
 *
 * Permissions: --allow-net (Kafka, the database, telemetry), --allow-read (certificates, .env),
 * --allow-write (--summary), --allow-env (settings), --allow-sys (the PostgreSQL client's host name).
 */
import { buildKafkaConfig, type KafkaConfig } from "./lib/config/kafka.ts";
import { buildStoreConfig } from "./lib/config/store.ts";
import { buildTelemetryConfig } from "./lib/config/telemetry.ts";
import { ConfigError } from "./lib/config/errors.ts";
import { DEFAULTS, EXIT } from "./lib/config/defaults.ts";
import { entryEnv, parseSettings, usage } from "./lib/config/parse.ts";
import { abortOnSignals, exitCodeOf, runMain } from "./lib/cli.ts";
import { StoreMetrics } from "./lib/telemetry/metrics.ts";
import type { KafkaClient, StartFrom } from "./lib/kafka/types.ts";
import { KafkaUnreachableError } from "./lib/kafka/errors.ts";
import { openKafka } from "./lib/kafka/open.ts";
import type { InRecord, RecordSource } from "./lib/sink.ts";
import { startTelemetry } from "./lib/telemetry/wiring.ts";
import { openStore } from "./lib/store/open.ts";
import { StoreWriter } from "./lib/store/writer.ts";
import type { RecordKind } from "./lib/store/rows.ts";
import type { HistoryStore, StoreBatch } from "./lib/store/types.ts";

const HELP = usage(
  "store",
  "deno task store [--db questdb|postgres] [--table NAME] [--from earliest|latest|ISO-TIME] [options]",
  "Writes spread records (and <topic>.gaps) from Kafka into QuestDB or PostgreSQL, exactly once\n" +
    "and with exact decimals; refused records go to <table>_dead_letters.",
);

/** Batches being written at once (see `inFlight` in lib/kafka/types.ts). */
const STORE_IN_FLIGHT = 2;

function log(line: string): void {
  console.error(`${new Date().toISOString()} ${line}`);
}

function parseFrom(from: string): StartFrom {
  if (from === "latest" || from === "earliest") return from;
  const ms = /^\d{4}-\d{2}-\d{2}/.test(from) ? Date.parse(from) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new ConfigError(
      `--from must be earliest, latest or an ISO 8601 time such as 2024-01-31T12:00:00Z, got "${from}"`,
    );
  }
  return new Date(ms);
}

/** The records topic must exist (exit code 2: run the producer); the gaps topic is made if missing. */
async function prepareTopics(kafka: KafkaClient, config: KafkaConfig): Promise<void> {
  let topics: string[];
  try {
    topics = await kafka.admin.listTopics();
    if (!topics.includes(config.gapsTopic)) {
      await kafka.admin.ensureTopic(config.gapsTopic, { partitions: 1, replicationFactor: -1 });
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new KafkaUnreachableError(`Cannot list or prepare the topics of Kafka: ${reason}`, {
      cause: error,
    });
  }
  if (!topics.includes(config.topic)) {
    throw new ConfigError(
      `Cannot store topic "${config.topic}": it does not exist on Kafka at ` +
        `"${config.brokers.join(",")}"; run the producer first (it creates the topic) or set ` +
        `KAFKA_TOPIC (--topic)`,
    );
  }
}

/** Reads the groups' lag per partition into the metrics every 5 s; returns the stop. */
function followLag(kafka: KafkaClient, metrics: StoreMetrics, groups: [string, string][]) {
  const readLag = async () => {
    for (const [groupId, topic] of groups) {
      try {
        for (const p of await kafka.admin.lag(groupId, topic)) {
          metrics.lag.set({ topic, partition: String(p.partition) }, p.lag);
        }
      } catch (error) {
        log(`lag: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  };
  const timer = setInterval(readLag, 5000);
  readLag();
  return () => clearInterval(timer);
}

/** Reaches the database and creates or checks its tables. */
async function prepareDatabase(
  store: HistoryStore,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  await store.connect({ timeoutMs, onRetry: log, signal });
  const actions = await store.ensureSchema();
  log(
    `${store.name} at "${store.address}": ` +
      Object.entries(actions).map(([k, a]) => `${store.tables[k as "spreads"]} ${a}`).join(", "),
  );
}

/** Counts one acknowledged batch into the metrics and the summary's totals. */
function counter(metrics: StoreMetrics, totals: Totals) {
  return (batch: StoreBatch, ms: number) => {
    metrics.writeSeconds.observe(ms / 1000);
    metrics.rowsWritten.inc({ table: "spreads" }, batch.spreads.length);
    metrics.rowsWritten.inc({ table: "gaps" }, batch.gaps.length);
    metrics.rowsWritten.inc({ table: "dead" }, batch.dead.length);
    totals.spreads += batch.spreads.length;
    totals.gaps += batch.gaps.length;
    totals.dead += batch.dead.length;
    for (const d of batch.dead) {
      metrics.deadLetters.inc({ reason: d.code });
      totals.deadByReason[d.code] = (totals.deadByReason[d.code] ?? 0) + 1;
    }
  };
}

/** What `--summary FILE` holds (rows acknowledged by the database, redeliveries included). */
interface Totals {
  records: number;
  spreads: number;
  gaps: number;
  dead: number;
  deadByReason: Record<string, number>;
}

async function writeSummary(path: string, summary: Record<string, unknown>): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(summary) + "\n");
  await Deno.rename(tmp, path);
}

async function main(): Promise<number> {
  const parsed = parseSettings("store", Deno.args, { env: entryEnv() });
  if (parsed.help) {
    console.log(HELP);
    return EXIT.OK;
  }
  const s = parsed.settings;
  const kafkaConfig = buildKafkaConfig(s);
  const storeConfig = buildStoreConfig(s);
  const telemetryConfig = buildTelemetryConfig(s);
  const from = parseFrom(s.from);
  const { groupId } = s;
  const gapsGroupId = `${groupId}.gaps`;

  const store: HistoryStore = await openStore(storeConfig);
  const metrics = new StoreMetrics();
  const totals: Totals = { records: 0, spreads: 0, gaps: 0, dead: 0, deadByReason: {} };
  const writer = new StoreWriter(store, {
    log,
    onWritten: counter(metrics, totals),
    onDown: (down) => metrics.databaseUp.set(down ? 0 : 1),
  });
  const kafka = await openKafka(kafkaConfig, { clientId: "crypto-store", log });
  const sources: RecordSource[] = [];
  let code: number = EXIT.OK;
  let failure: string | undefined;
  const signals = abortOnSignals();
  const stop = new AbortController();
  signals.signal.addEventListener("abort", () => stop.abort(), { once: true });
  let telemetry: Awaited<ReturnType<typeof startTelemetry>> | undefined;
  let stopLag: (() => void) | undefined;
  try {
    // The database and Kafka are reached side by side. The database's failure is the one
    // reported when both fail (exit 7 or 2 naming it), and it stops the Kafka attempts at once.
    const database = prepareDatabase(store, storeConfig.connectTimeoutMs, stop.signal);
    const broker = (async () => {
      await kafka.connect({ onRetry: log, signal: stop.signal });
      await prepareTopics(kafka, kafkaConfig);
    })();
    database.catch(() => stop.abort());
    const [db, kafkaReady] = await Promise.allSettled([database, broker]);
    if (db.status === "rejected") throw db.reason;
    if (kafkaReady.status === "rejected") throw kafkaReady.reason;
    telemetry = await startTelemetry(telemetryConfig, {
      registry: metrics.registry,
      metrics,
      staleAfterMs: DEFAULTS.staleAfterMs,
      service: "store",
      log,
    });
    if (telemetry.server || telemetry.influx) {
      stopLag = followLag(kafka, metrics, [
        [groupId, kafkaConfig.topic],
        [gapsGroupId, kafkaConfig.gapsTopic],
      ]);
    }
    const run = (topic: string, group: string, kind: RecordKind) => {
      const source = kafka.source({
        groupId: group,
        topic,
        from,
        sessionTimeoutMs: s.sessionTimeout * 1000,
        // A database write has a fixed cost per request: each adapter says how many records per
        // write it works best with (10,000 rows per write ran the capture × 20 backlog twice as
        // fast as 2,000 into either database; QuestDB gains again up to 40,000).
        maxBatch: store.batchSize,
        // The next batch is read and mapped while the database writes the last one; offsets are
        // still committed in order, each once its rows and all before them are in the table.
        inFlight: STORE_IN_FLIGHT,
        // Each batch is committed as soon as the database holds it and every batch before it:
        // batches are large, so that is a few commits a second at most, and nothing waits for
        // an interval to pass (a backfill is caught up when its last write is acknowledged).
        commitIntervalMs: 0,
        onAssign: (partitions) =>
          log(`joined group "${group}": partitions [${partitions.join(",")}] of "${topic}"`),
      });
      sources.push(source);
      return source.consume(async (records: InRecord[]) => {
        metrics.recordsConsumed.inc({ kind }, records.length);
        totals.records += records.length;
        return await writer.handle(records, kind, stop.signal);
      }, { signal: stop.signal });
    };
    const runs = [
      run(kafkaConfig.topic, groupId, "spreads"),
      run(kafkaConfig.gapsTopic, gapsGroupId, "gaps"),
    ];
    // One loop failing stops the other.
    const results = await Promise.allSettled(
      runs.map((p) =>
        p.catch((error) => {
          stop.abort();
          throw error;
        })
      ),
    );
    const rejected = results.find((r) => r.status === "rejected");
    if (rejected) throw (rejected as PromiseRejectedResult).reason;
  } catch (error) {
    if (!stop.signal.aborted || !(error instanceof DOMException)) {
      failure = error instanceof Error ? error.message : String(error);
      code = exitCodeOf(error);
      log(`store failed: ${failure}`);
    }
  } finally {
    stopLag?.();
    signals.dispose();
    await Promise.all(sources.map((x) => x.close().catch(() => {})));
    await kafka.close().catch(() => {});
    await store.close().catch(() => {});
    await telemetry?.stop();
  }
  log(
    `stored ${totals.spreads} spreads, ${totals.gaps} gaps, ${totals.dead} dead letters from ` +
      `${totals.records} records, group "${groupId}"`,
  );
  if (s.summary) {
    await writeSummary(s.summary, {
      summary: 1,
      db: store.name,
      records: totals.records,
      rows: { spreads: totals.spreads, gaps: totals.gaps, dead: totals.dead },
      deadLetters: totals.deadByReason,
      error: failure ?? null,
      exitCode: code,
    });
  }
  return code;
}

if (import.meta.main) runMain(main);
