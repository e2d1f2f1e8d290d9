/**
 * Wiring used by entry scripts: a Kafka config to a reachable cluster, the topics in place, and
 * an idempotent sink. Unreachable or refused at start-up: {@linkcode KafkaUnreachableError}
 * (exit code 5).
 */
import type { KafkaConfig } from "./config.ts";
import {
  connectWithin,
  createKafka,
  ensureTopic,
  KafkaSink,
  KafkaUnreachableError,
} from "./kafka.ts";
import type { RecordSink } from "./sink.ts";

/** Options for {@linkcode connectSink}. */
export interface ConnectSinkOptions {
  log: (line: string) => void;
  /** Also make sure the gaps topic exists; default false. */
  ensureGapsTopic?: boolean;
}

/** Connects within the configured time, ensures the topic(s) and returns a ready sink. */
export async function connectSink(
  config: KafkaConfig,
  options: ConnectSinkOptions,
): Promise<{ sink: RecordSink; partitions: number }> {
  const { log } = options;
  await connectWithin(config, { onRetry: log });
  const kafka = createKafka(config);
  const admin = kafka.admin();
  let partitions: number;
  try {
    await admin.connect();
    const topics = [config.topic, ...(options.ensureGapsTopic ? [config.gapsTopic] : [])];
    const results = [];
    for (const topic of topics) {
      // The gaps topic is small: one partition keeps gaps in order.
      const n = topic === config.topic ? config.partitions : 1;
      const r = await ensureTopic(admin, topic, n, config.replicationFactor);
      log(
        r.created
          ? `created topic "${topic}" with ${r.partitions} partitions`
          : `topic "${topic}" exists with ${r.partitions} partitions; left as it is`,
      );
      results.push(r);
    }
    partitions = results[0]!.partitions;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new KafkaUnreachableError(`Cannot prepare topic "${config.topic}": ${reason}`, {
      cause: error,
    });
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const sink = new KafkaSink(kafka, { compression: config.compression });
  return { sink, partitions };
}
