/**
 * Wiring used by entry scripts: a Kafka config to a reachable cluster, the topics in place, and
 * an idempotent sink. Unreachable or refused at start-up: {@linkcode KafkaUnreachableError}
 * (exit code 5).
 */
import type { KafkaConfig } from "../config/kafka.ts";
import { type KafkaClient, type KafkaSink } from "./types.ts";
import { KafkaUnreachableError } from "./errors.ts";
import { openKafka } from "./open.ts";
import type { DeadLetterSink } from "./refusals.ts";

/** Options for {@linkcode connectSink}. */
export interface ConnectSinkOptions {
  log: (line: string) => void;
  /** Also make sure the gaps topic exists; default false. */
  ensureGapsTopic?: boolean;
  /** Aborting it stops reaching the brokers (and the pause between attempts) at once. */
  signal?: AbortSignal;
  /** Keeps the records the broker refuses for good (a dead-letter file); default a log line. */
  deadLetter?: DeadLetterSink;
}

/** A sink ready to send, the topic's partition count, and the client behind them. */
export interface ConnectedSink {
  sink: KafkaSink;
  /** Makes another sink like `sink` (a producer of its own), e.g. one per standby term. */
  newSink: () => KafkaSink;
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
    // Read now, so that no first send waits for them (a sink reads them once otherwise).
    for (const topic of topics) await kafka.admin.topicLimits(topic).catch(() => {});
  } catch (error) {
    await kafka.close();
    const reason = error instanceof Error ? error.message : String(error);
    throw new KafkaUnreachableError(`Cannot prepare topic "${config.topic}": ${reason}`, {
      cause: error,
    });
  }
  const newSink = () =>
    kafka.sink({
      compression: config.compression,
      onReset: log,
      deadLetter: options.deadLetter,
    });
  return { sink: newSink(), newSink, partitions, kafka };
}
