/**
 * The topic check before sending (issue 21): a topic's settings read against the run about to
 * write into it. Pure: a description of the topic and the run go in, one finding per setting
 * comes out. A finding that fails means the run would lose records (retention, compaction) or
 * have them rejected (timestamp limits, min.insync.replicas, message size); a warning means a
 * guarantee is weaker than it could be. Produce and replay refuse to start on a failure
 * (`lib/kafka/connect.ts`), and `deno task doctor` prints every finding.
 */

/**
 * Which time becomes a record's Kafka timestamp: `now` (the local clock at send) or `exchange`
 * (the quote's `t`). The setting is `KAFKA_TIMESTAMP` (`--kafka-timestamp`, issue 21).
 */
import type { TimestampPolicy } from "../sink.ts";
import type { KafkaConfig } from "../config/kafka.ts";

export type { TimestampPolicy } from "../sink.ts";

/** What the check needs to know about a topic: its shape and its effective configs. */
export interface TopicDescription {
  name: string;
  partitions: number;
  /** Replicas per partition (the smallest, when partitions differ). */
  replicationFactor: number;
  /** Effective config values by name (`retention.ms`, …), as the broker reports them. */
  configs: Readonly<Record<string, string | undefined>>;
}

/** Options for {@linkcode checkTopic}: the run that is about to write. */
export interface TopicCheckOptions {
  /** The timestamp policy of the run. */
  policy: TimestampPolicy;
  /** The local clock, ms since the epoch. */
  nowMs: number;
  /**
   * The timestamp of the oldest record the run writes under policy `exchange`, ms since the
   * epoch: a replay's oldest `t`. Undefined for live data (exchange time is about now).
   */
  oldestRecordMs?: number;
  /** Most records per send (`--batch-max`); with `recordBytes` it bounds a batch's size. */
  batchMax: number;
  /** Upper estimate of one record's size in a batch, bytes; default {@linkcode RECORD_BYTES}. */
  recordBytes?: number;
}

/** A verdict: passed, passed with a weaker guarantee, or would lose or have records rejected. */
export type TopicVerdict = "ok" | "warning" | "fail";

/** One setting's finding. */
export interface TopicFinding {
  /** The topic config it is about (`retention.ms`, …). */
  setting: string;
  verdict: TopicVerdict;
  /** What was found, with the values. */
  message: string;
  /** What to do, when the verdict is not ok. */
  fix?: string;
}

/**
 * Upper estimate of one spread record in a batch: a ~75-byte value, a ≤ 12-byte key, the
 * `schema-version` header and the record's own framing, rounded up.
 */
export const RECORD_BYTES = 200;

/** A clock difference that ordinary NTP-synced hosts stay far within, ms (one minute). */
export const CLOCK_SKEW_MS = 60_000;

/** `Long.MAX_VALUE` as brokers print it: "unlimited". */
const UNLIMITED = 9223372036854775807n;

/** The run's Kafka timestamp policy (`--kafka-timestamp`, default "now"). */
export function timestampPolicyOf(config: Pick<KafkaConfig, "timestamp">): TimestampPolicy {
  return config.timestamp;
}

/** Durations for messages: "7 d", "36 h", "15 min", "40 s". */
export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs >= 2 * 86_400_000) return `${round(ms / 86_400_000)} d`;
  if (abs >= 2 * 3_600_000) return `${round(ms / 3_600_000)} h`;
  if (abs >= 2 * 60_000) return `${round(ms / 60_000)} min`;
  return `${round(ms / 1000)} s`;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** A config value as a number of ms; `Infinity` for -1 and Long.MAX_VALUE; undefined if unset. */
function millis(value: string | undefined): number | undefined {
  if (value === undefined || value === null || value.trim() === "") return undefined;
  const n = BigInt(value.trim());
  if (n < 0n || n >= UNLIMITED) return Infinity;
  return Number(n);
}

/**
 * Reads a topic's settings against the run: one finding for each of `cleanup.policy`,
 * `retention.ms`, `message.timestamp.type`, `message.timestamp.before.max.ms`,
 * `message.timestamp.after.max.ms`, `min.insync.replicas` (against the replication factor) and
 * `max.message.bytes` (against a full batch). A setting the broker did not report is skipped.
 */
export function checkTopic(topic: TopicDescription, options: TopicCheckOptions): TopicFinding[] {
  const c = topic.configs;
  const out: TopicFinding[] = [];
  const t = `topic "${topic.name}"`;
  const alter = (setting: string, value: string) =>
    `kafka-configs --alter --entity-type topics --entity-name ${topic.name} --add-config ` +
    `${setting}=${value} (on Aiven: the topic's Modify, or avn service topic-update)`;
  const appendTime = c["message.timestamp.type"] === "LogAppendTime";
  // How old the oldest record's Kafka timestamp is when it reaches the broker.
  const age = options.policy === "exchange" && options.oldestRecordMs !== undefined && !appendTime
    ? Math.max(0, options.nowMs - options.oldestRecordMs)
    : 0;
  const aged = age > 0 ? `the oldest record to write is ${formatDuration(age)} old` : "";

  const cleanup = c["cleanup.policy"];
  if (cleanup !== undefined) {
    if (cleanup.split(",").map((s) => s.trim()).includes("compact")) {
      out.push({
        setting: "cleanup.policy",
        verdict: "fail",
        message: `${t} has cleanup.policy=${cleanup}: compaction keeps only the newest record ` +
          `of each key (one quote per symbol) and deletes the rest`,
        fix: `use a topic with cleanup.policy=delete: ${alter("cleanup.policy", "delete")}`,
      });
    } else {
      out.push({ setting: "cleanup.policy", verdict: "ok", message: `cleanup.policy=${cleanup}` });
    }
  }

  const retention = millis(c["retention.ms"]);
  if (retention !== undefined) {
    const shown = retention === Infinity ? "unlimited" : formatDuration(retention);
    if (retention !== Infinity && age > 0 && retention <= age) {
      out.push({
        setting: "retention.ms",
        verdict: "fail",
        message: `${t} keeps records for ${shown} (retention.ms=${c["retention.ms"]}) by their ` +
          `timestamp, and with KAFKA_TIMESTAMP=exchange ${aged}: the broker deletes them at ` +
          `its next retention check, minutes after they are acked`,
        fix: `set KAFKA_TIMESTAMP=now (--kafka-timestamp now), or raise retention.ms above ` +
          `${Math.ceil(age / 86_400_000) + 1} days: ${alter("retention.ms", "-1")}`,
      });
    } else if (retention !== Infinity && age > 0 && retention - age < 86_400_000) {
      out.push({
        setting: "retention.ms",
        verdict: "warning",
        message: `${t} keeps records for ${shown} and ${aged}: they are deleted within ` +
          `${formatDuration(retention - age)}`,
        fix: `set KAFKA_TIMESTAMP=now, or raise retention.ms: ${alter("retention.ms", "-1")}`,
      });
    } else {
      out.push({
        setting: "retention.ms",
        verdict: "ok",
        message: `retention ${shown}` + (aged ? ` (${aged})` : ""),
      });
    }
  }

  if (c["message.timestamp.type"] !== undefined) {
    const type = c["message.timestamp.type"];
    out.push(
      appendTime && options.policy === "exchange"
        ? {
          setting: "message.timestamp.type",
          verdict: "warning",
          message: `${t} has message.timestamp.type=LogAppendTime: the broker replaces the ` +
            `exchange time (KAFKA_TIMESTAMP=exchange) with its own clock, so consume --from ` +
            `selects by arrival time; the exchange time stays in the value`,
          fix: `set KAFKA_TIMESTAMP=now to say what happens, or ` +
            alter("message.timestamp.type", "CreateTime"),
        }
        : { setting: "message.timestamp.type", verdict: "ok", message: `${type}` },
    );
  }

  const before = millis(c["message.timestamp.before.max.ms"]);
  if (before !== undefined && !appendTime) {
    const shown = before === Infinity ? "unlimited" : formatDuration(before);
    if (before !== Infinity && age > 0 && before < age) {
      out.push({
        setting: "message.timestamp.before.max.ms",
        verdict: "fail",
        message: `${t} rejects records whose timestamp is more than ${shown} behind the ` +
          `broker's clock (message.timestamp.before.max.ms=${
            c["message.timestamp.before.max.ms"]
          }), ` +
          `and with KAFKA_TIMESTAMP=exchange ${aged}: the broker refuses them (INVALID_TIMESTAMP)`,
        fix: `set KAFKA_TIMESTAMP=now, or ${
          alter("message.timestamp.before.max.ms", "9223372036854775807")
        }`,
      });
    } else if (before !== Infinity && before < CLOCK_SKEW_MS) {
      out.push({
        setting: "message.timestamp.before.max.ms",
        verdict: "warning",
        message: `${t} rejects records more than ${shown} behind the broker's clock: a ` +
          `host clock (or an exchange time) that far behind is refused`,
        fix: `keep the host clock synced (NTP), or ${
          alter("message.timestamp.before.max.ms", String(3_600_000))
        }`,
      });
    } else {
      out.push({ setting: "message.timestamp.before.max.ms", verdict: "ok", message: shown });
    }
  }

  const after = millis(c["message.timestamp.after.max.ms"]);
  if (after !== undefined && !appendTime) {
    const shown = after === Infinity ? "unlimited" : formatDuration(after);
    if (after !== Infinity && after < CLOCK_SKEW_MS) {
      out.push({
        setting: "message.timestamp.after.max.ms",
        verdict: "warning",
        message: `${t} rejects records more than ${shown} ahead of the broker's clock: a host ` +
          `clock (or an exchange time) that far ahead is refused (INVALID_TIMESTAMP)`,
        fix: `keep the host clock synced (NTP), or ${
          alter("message.timestamp.after.max.ms", String(3_600_000))
        }`,
      });
    } else {
      out.push({ setting: "message.timestamp.after.max.ms", verdict: "ok", message: shown });
    }
  }

  const minIsrText = c["min.insync.replicas"];
  if (minIsrText !== undefined) {
    const minIsr = Number(minIsrText);
    const rf = topic.replicationFactor;
    const shape = `min.insync.replicas=${minIsr} with replication factor ${rf}`;
    if (minIsr > rf) {
      out.push({
        setting: "min.insync.replicas",
        verdict: "fail",
        message: `${t} has ${shape}: every acks=all write is rejected (NOT_ENOUGH_REPLICAS)`,
        fix: `${alter("min.insync.replicas", String(Math.max(1, rf - 1)))}, or recreate the ` +
          `topic with more replicas`,
      });
    } else if (rf === 1) {
      out.push({
        setting: "min.insync.replicas",
        verdict: "warning",
        message: `${t} has one replica: an acked record is lost with that broker's disk`,
        fix: `create the topic with replication factor 3 (Aiven's services have 2 or more ` +
          `brokers; --replication-factor)`,
      });
    } else if (minIsr <= 1) {
      out.push({
        setting: "min.insync.replicas",
        verdict: "warning",
        message: `${t} has ${shape}: an acked record may be on one broker only, and is lost ` +
          `with it`,
        fix: alter("min.insync.replicas", String(rf - 1)),
      });
    } else if (minIsr === rf) {
      out.push({
        setting: "min.insync.replicas",
        verdict: "warning",
        message: `${t} has ${shape}: one broker down (a maintenance restart) stops every write`,
        fix: alter("min.insync.replicas", String(rf - 1)),
      });
    } else {
      out.push({ setting: "min.insync.replicas", verdict: "ok", message: shape });
    }
  }

  const maxBytesText = c["max.message.bytes"];
  if (maxBytesText !== undefined) {
    const maxBytes = Number(maxBytesText);
    const batchBytes = options.batchMax * (options.recordBytes ?? RECORD_BYTES);
    if (batchBytes > maxBytes) {
      const fits = Math.max(1, Math.floor(maxBytes / (options.recordBytes ?? RECORD_BYTES)));
      out.push({
        setting: "max.message.bytes",
        verdict: "fail",
        message: `${t} accepts batches of at most ${maxBytes} bytes (max.message.bytes), and a ` +
          `batch of ${options.batchMax} records (--batch-max) can reach ${batchBytes} bytes: ` +
          `the broker refuses it (MESSAGE_TOO_LARGE)`,
        fix: `set KAFKA_BATCH_MAX=${fits} or lower, or ` +
          alter("max.message.bytes", String(batchBytes)),
      });
    } else {
      out.push({
        setting: "max.message.bytes",
        verdict: "ok",
        message: `${maxBytes} bytes (a full batch is at most ${batchBytes})`,
      });
    }
  }
  return out;
}

/** The topic configs {@linkcode checkTopic} reads: ask the broker for these. */
export const CHECKED_CONFIGS = [
  "cleanup.policy",
  "retention.ms",
  "message.timestamp.type",
  "message.timestamp.before.max.ms",
  "message.timestamp.after.max.ms",
  "min.insync.replicas",
  "max.message.bytes",
] as const;

/** The parts of a Kafka admin {@linkcode describeTopicForCheck} uses. */
export interface TopicReader {
  describeTopic(name: string): Promise<{ partitions: number; replicas: number[] }>;
  topicConfigs(
    name: string,
    names?: readonly string[],
  ): Promise<Record<string, string | undefined>>;
}

/** Reads a topic's shape and the configs {@linkcode checkTopic} needs from the broker. */
export async function describeTopicForCheck(
  admin: TopicReader,
  name: string,
): Promise<TopicDescription> {
  const [shape, configs] = await Promise.all([
    admin.describeTopic(name),
    admin.topicConfigs(name, CHECKED_CONFIGS),
  ]);
  return {
    name,
    partitions: shape.partitions,
    replicationFactor: shape.replicas.length ? Math.min(...shape.replicas) : 0,
    configs,
  };
}

/** The refusal of a topic check: the findings that fail, as one message. */
export function refusalMessage(findings: readonly TopicFinding[]): string | undefined {
  const failed = findings.filter((f) => f.verdict === "fail");
  if (!failed.length) return undefined;
  return `Cannot send: ` + failed.map((f) => `${f.message}; fix: ${f.fix}`).join("; and ");
}
