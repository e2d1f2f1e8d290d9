/**
 * Benchmark 2 (and the throughput half of 5), child process: a recording replayed as fast as the
 * pipeline takes it → transform → batches → KafkaSink (idempotent, acks=all), exactly as
 * `deno task replay --to kafka` and the producer wire it (with the producer's metrics).
 * Reports records acknowledged per second and the process's peak RSS.
 *
 *   deno run -A bench/produce_recording.ts --brokers H:P --topic T --file F
 *     [--batch-max N] [--linger-ms N] [--client platformatic|kafkajs]
 *
 * The topic must exist. Prints one `BENCH_RESULT {...}` line.
 * Permissions: --allow-read (the recording, /proc), --allow-net (Kafka), --allow-env (kafkajs).
 */
import { parseArgs } from "node:util";
import { type KafkaClientName } from "../lib/kafka/types.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { ProducerMetrics } from "../lib/telemetry/metrics.ts";
import { Pipeline } from "../lib/pipeline.ts";
import { openRecording } from "../lib/recording.ts";
import { benchKafkaConfig, emitResult, peakRss, sampleRss } from "./common.ts";
import { REPLAY_QUEUE_MAX } from "../replay.ts";
import { spreadStages } from "../lib/spread_metrics.ts";

/** What one run reports. */
export interface ProduceResult {
  acked: number;
  events: number;
  seconds: number;
  perSecond: number;
  peakRssBytes: number;
  /** RSS samples every 250 ms, bytes. */
  rss: number[];
  sendErrors: number;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    brokers: { type: "string" },
    topic: { type: "string" },
    file: { type: "string" },
    "batch-max": { type: "string", default: "1000" },
    "linger-ms": { type: "string", default: "0" },
    client: { type: "string", default: "platformatic" },
  },
});
const config = benchKafkaConfig(values.brokers!, values.topic!, {
  batchMax: Number(values["batch-max"]),
  lingerMs: Number(values["linger-ms"]),
  client: values.client as KafkaClientName,
});
const kafka = await openKafka(config);
const sink = kafka.sink({ compression: config.compression });
await sink.connect();
const recording = await openRecording(values.file!);
const rss = sampleRss();
const metrics = new ProducerMetrics();
const pipeline = new Pipeline(sink, {
  ...spreadStages(metrics),
  topic: config.topic,
  batchMax: config.batchMax,
  lingerMs: config.lingerMs,
  queueMax: REPLAY_QUEUE_MAX,
  metrics,
});
const started = performance.now();
pipeline.start();
for await (const frame of recording.frames) await pipeline.offer(frame, Date.now());
await pipeline.close(120_000);
const seconds = (performance.now() - started) / 1000;
await sink.close();
await kafka.close();
const c = pipeline.counts;
const result: ProduceResult = {
  acked: c.acked,
  events: c.events,
  seconds,
  perSecond: c.acked / seconds,
  peakRssBytes: peakRss(),
  rss: rss.stop(),
  sendErrors: c.sendErrors,
};
emitResult(result);
