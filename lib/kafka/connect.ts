/**
 * Wiring used by entry scripts: a Kafka config to a reachable cluster, the topics in place and
 * checked (`topic_check.ts`), and an idempotent sink. Unreachable or refused at start-up:
 * {@linkcode KafkaUnreachableError} (exit code 5); a topic whose settings would lose or reject
 * the records: {@linkcode ConfigError} (exit code 2).
 */
import type { KafkaConfig } from "../config/kafka.ts";
import { ConfigError } from "../config/errors.ts";
import {
  checkTopic,
  describeTopicForCheck,
  refusalMessage,
  timestampPolicyOf,
  type TopicFinding,
} from "./topic_check.ts";
import { type KafkaClient, type KafkaSink } from "./types.ts";
import { KafkaUnreachableError } from "./errors.ts";
import { openKafka } from "./open.ts";

/** Options for {@linkcode connectSink}. */
export interface ConnectSinkOptions {
  log: (line: string) => void;
  /** Also make sure the gaps topic exists; default false. */
  ensureGapsTopic?: boolean;
  /** Aborting it stops reaching the brokers (and the pause between attempts) at once. */
  signal?: AbortSignal;
  /**
   * The timestamp of the oldest record this run writes, ms (a replay's oldest `t`); the topic
   * check reads retention and timestamp limits against it. Undefined for live data.
   */
  oldestRecordMs?: number;
}

/** A sink ready to send, the topic's partition count, and the client behind them. */
export interface ConnectedSink {
  sink: KafkaSink;
  partitions: number;
  /** Close it after the sink. */
  kafka: KafkaClient;
}

/** Connects within the configured time, ensures the topic(s) and returns a ready sink. */
export async function connectSink(
  config: KafkaConfig,
  options: ConnectSinkOptions,
): Promise<ConnectedSink> {
  const { log } = options;
  const kafka = await openKafka(config, { log });
  await kafka.connect({ onRetry: log, signal: options.signal });
  let partitions: number;
  let findings: TopicFinding[];
  try {
    const topics = [config.topic, ...(options.ensureGapsTopic ? [config.gapsTopic] : [])];
    const results = [];
    for (const topic of topics) {
      // The gaps topic is small: one partition keeps gaps in order.
      const n = topic === config.topic ? config.partitions : 1;
      const r = await kafka.admin.ensureTopic(topic, {
        partitions: n,
        replicationFactor: config.replicationFactor,
      });
      const count = `${r.partitions} partition${r.partitions === 1 ? "" : "s"}`;
      log(
        r.created
          ? `created topic "${topic}" with ${count}`
          : `topic "${topic}" exists with ${count}; left as it is`,
      );
      results.push(r);
    }
    partitions = results[0]!.partitions;
    findings = checkTopic(await describeTopicForCheck(kafka.admin, config.topic), {
      policy: timestampPolicyOf(config),
      nowMs: Date.now(),
      oldestRecordMs: options.oldestRecordMs,
      batchMax: config.batchMax,
    });
  } catch (error) {
    await kafka.close();
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
  const sink = kafka.sink({ compression: config.compression, onReset: log });
  return { sink, partitions, kafka };
}
