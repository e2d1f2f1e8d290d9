/**
 * Wiring used by entry scripts: a Kafka config to a reachable cluster, the topics in place and
 * checked (`preflight.ts`: they exist or may be created, this user may write to them, and their
 * settings pass `topic_check.ts`), and an idempotent sink. Unreachable or refused at start-up:
 * {@linkcode KafkaUnreachableError} or {@linkcode KafkaAuthError} (exit code 5); a topic whose
 * settings would lose or reject the records: {@linkcode ConfigError} (exit code 2).
 */
import type { KafkaConfig } from "../config/kafka.ts";
import { ConfigError } from "../config/errors.ts";
import { type KafkaClient, type KafkaSink, type KafkaSinkOptions } from "./types.ts";
import { KafkaAuthError, KafkaUnreachableError } from "./errors.ts";
import { NEEDED_OPERATIONS } from "./access.ts";
import { permissionProblem, topicReadiness, topicSettingFindings } from "./preflight.ts";
import { refusalMessage, type TopicFinding } from "./topic_check.ts";
import type { DeadLetterSink } from "./refusals.ts";

/** Options for {@linkcode connectSink}. */
export interface ConnectSinkOptions {
  /**
   * The client to connect, opened by the caller (`openKafka` in `open.ts`: nothing inside
   * `lib/kafka/` imports the file that picks an adapter); closed here when preparing the topics
   * fails.
   */
  kafka: KafkaClient;
  log: (line: string) => void;
  /** Also make sure the gaps topic exists; default false. */
  ensureGapsTopic?: boolean;
  /**
   * Further channels' topics to make sure of (records with the configured partitions, gaps with
   * one), e.g. the trades and bars topics of `--channels`; their records topics' settings are
   * checked as the topic's are. Default none.
   */
  channelTopics?: readonly { topic: string; gapsTopic: string }[];
  /** Aborting it stops reaching the brokers (and the pause between attempts) at once. */
  signal?: AbortSignal;
  /**
   * The timestamp of the oldest record this run writes, ms (a replay's oldest `t`); the topic
   * check reads retention and timestamp limits against it. Undefined for live data.
   */
  oldestRecordMs?: number;
  /** Keeps the records the broker refuses for good (a dead-letter file); default a log line. */
  deadLetter?: DeadLetterSink;
}

/** A sink ready to send, the topic's partition count, and the client behind them. */
export interface ConnectedSink {
  sink: KafkaSink;
  /**
   * Makes another sink like `sink` (a producer of its own), e.g. one per standby term, with the
   * term's `fence` (see {@linkcode KafkaSinkOptions.fence}).
   */
  newSink: (options?: Pick<KafkaSinkOptions, "fence">) => KafkaSink;
  partitions: number;
  /** Close it after the sink. */
  kafka: KafkaClient;
}

/** The topics a run writes and their partition counts when created: the gaps topic has one. */
export function sinkTopics(
  config: KafkaConfig,
  ensureGapsTopic: boolean,
  channelTopics: readonly { topic: string; gapsTopic: string }[] = [],
): { topic: string; partitions: number }[] {
  const topics = [
    { topic: config.topic, partitions: config.partitions },
    // The gaps topic is small: one partition keeps gaps in order.
    ...(ensureGapsTopic ? [{ topic: config.gapsTopic, partitions: 1 }] : []),
  ];
  for (const c of channelTopics) {
    for (const [topic, partitions] of [[c.topic, config.partitions], [c.gapsTopic, 1]] as const) {
      if (!topics.some((t) => t.topic === topic)) topics.push({ topic, partitions });
    }
  }
  return topics;
}

/**
 * The topics that hold records (not gaps): `--topic` and each channel's records topic, whose
 * settings produce, replay and the doctor check.
 */
export function recordTopics(
  config: Pick<KafkaConfig, "topic">,
  channelTopics: readonly { topic: string }[] = [],
): string[] {
  return [...new Set([config.topic, ...channelTopics.map((c) => c.topic)])];
}

/** Connects within the configured time, ensures and checks the topic(s), returns a ready sink. */
export async function connectSink(
  config: KafkaConfig,
  options: ConnectSinkOptions,
): Promise<ConnectedSink> {
  const { log, kafka } = options;
  await kafka.connect({ onRetry: log, signal: options.signal });
  let partitions: number;
  let findings: TopicFinding[];
  try {
    const results = [];
    const wanted = sinkTopics(config, options.ensureGapsTopic ?? false, options.channelTopics);
    for (const { topic, partitions: n } of wanted) {
      const create = { partitions: n, replicationFactor: config.replicationFactor };
      const ready = await topicReadiness(kafka.admin, config, topic, create);
      if (ready.state === "missing" || ready.state === "hidden") {
        throw new KafkaAuthError(
          `Cannot prepare topic "${topic}": it ${ready.message}; ${ready.fix}`,
        );
      }
      const denied = permissionProblem(ready, NEEDED_OPERATIONS.produce, config, "produce");
      if (denied) throw new KafkaAuthError(`Cannot produce: ${denied.message}; ${denied.fix}`);
      const r = await kafka.admin.ensureTopic(topic, create);
      const count = `${r.partitions} partition${r.partitions === 1 ? "" : "s"}`;
      log(
        r.created
          ? `created topic "${topic}" with ${count}`
          : `topic "${topic}" exists with ${count}; left as it is`,
      );
      results.push(r);
    }
    partitions = results[0]!.partitions;
    // The settings of every records topic (the channels' too): compaction, retention or a
    // timestamp window loses or refuses trades and bars as it does quotes.
    findings = [];
    for (const topic of recordTopics(config, options.channelTopics)) {
      findings.push(
        ...await topicSettingFindings(kafka.admin, config, topic, options.oldestRecordMs),
      );
    }
    // Read now, so that no first send waits for them (a sink reads them once otherwise).
    for (const { topic } of wanted) await kafka.admin.topicLimits(topic).catch(() => {});
  } catch (error) {
    await kafka.close();
    if (error instanceof KafkaAuthError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new KafkaUnreachableError(`Cannot prepare topic "${config.topic}": ${reason}`, {
      cause: error,
    });
  }
  for (const f of findings) {
    if (f.verdict === "warning") log(`WARNING: ${f.message}; ${f.fix}`);
  }
  const refusal = refusalMessage(findings);
  if (refusal) {
    await kafka.close();
    throw new ConfigError(refusal);
  }
  const newSink = (extra: Pick<KafkaSinkOptions, "fence"> = {}) =>
    kafka.sink({
      compression: config.compression,
      onReset: log,
      deadLetter: options.deadLetter,
      fence: extra.fence,
    });
  return { sink: newSink(), newSink, partitions, kafka };
}
