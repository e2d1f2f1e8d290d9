/**
 * Benchmarks 3 and 4, the producer: wired as `producer.ts` wires it (Polygon client → bounded
 * queue → transform → batches → KafkaSink, idempotent, acks=all, with the producer's metrics),
 * plus the bench's own bookkeeping: the host time each quote arrived, queue depth every 100 ms,
 * RSS. Stops once `--expect` records are acknowledged (or after `--timeout-s`).
 *
 *   deno run -A bench/e2e_producer.ts --url WS --brokers H:P --topic T --expect N --out FILE
 *     [--out-ack FILE] *     [--batch-max N] [--linger-ms N] [--timeout-s N]
 *
 * Writes receive times to FILE (see writeTimes) and prints one `BENCH_RESULT {...}` line.
 * Permissions: --allow-net, --allow-read (/proc), --allow-write (FILE), --allow-env.
 */
import { parseArgs } from "node:util";
import { type KafkaClientName } from "../lib/kafka/types.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { ProducerMetrics } from "../lib/telemetry/metrics.ts";
import { Pipeline } from "../lib/pipeline.ts";
import { PolygonClient } from "../lib/polygon/client.ts";
import type { RecordSink } from "../lib/sink.ts";
import {
  benchKafkaConfig,
  E2E_API_KEY,
  emitResult,
  hostNow,
  peakRss,
  recordSeq,
  sampleRss,
  sequenceOf,
  writeTimes,
} from "./common.ts";
import { spreadStages } from "../lib/spread_metrics.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    url: { type: "string" },
    brokers: { type: "string" },
    topic: { type: "string" },
    expect: { type: "string" },
    out: { type: "string" },
    "out-ack": { type: "string" },
    "batch-max": { type: "string", default: "1000" },
    "linger-ms": { type: "string", default: "0" },
    "timeout-s": { type: "string", default: "300" },
    client: { type: "string", default: "platformatic" },
  },
});
const expect = Number(values.expect);
const config = benchKafkaConfig(values.brokers!, values.topic!, {
  batchMax: Number(values["batch-max"]),
  lingerMs: Number(values["linger-ms"]),
  client: values.client as KafkaClientName,
});
const kafka = await openKafka(config);
const sink = kafka.sink({ compression: config.compression });
await sink.connect();
const acked = new Float64Array(expect).fill(Number.NaN);
// The sink as the pipeline sees it, noting when each record was acknowledged.
const timedSink: RecordSink = {
  async send(topic, records) {
    await sink.send(topic, records);
    const now = hostNow();
    for (const r of records) {
      const seq = recordSeq(r.value);
      if (seq >= 0 && seq < expect) acked[seq] = now;
    }
  },
  close: () => sink.close(),
};
const metrics = new ProducerMetrics();
const pipeline = new Pipeline(timedSink, {
  ...spreadStages(metrics),
  topic: config.topic,
  batchMax: config.batchMax,
  lingerMs: config.lingerMs,
  metrics,
  log: (line) => console.error(line),
});
pipeline.start();
const received = new Float64Array(expect).fill(Number.NaN);
const depth: number[] = [];
const rss = sampleRss();
const stop = new AbortController();
const client = new PolygonClient({
  url: values.url!,
  apiKey: E2E_API_KEY,
  pairs: ["*"],
  onFrame: (text, at) => {
    const seq = sequenceOf(text);
    if (seq >= 0 && seq < expect) received[seq] = hostNow();
    pipeline.push(text, at);
  },
  log: (line) => console.error(line),
});
const sampler = setInterval(() => {
  depth.push(pipeline.queued + pipeline.unacked);
  if (pipeline.counts.acked >= expect) stop.abort();
}, 100);
const timeout = setTimeout(() => stop.abort(), Number(values["timeout-s"]) * 1000);
await client.run(stop.signal);
clearInterval(sampler);
clearTimeout(timeout);
await pipeline.close(60_000);
await sink.close();
// The client's admin connection (the sink reads the topic's limits through it) is closed too:
// left open, it kept the process alive after its result, and `deno task bench` waited for ever.
await kafka.close();
await writeTimes(values.out!, received);
if (values["out-ack"]) await writeTimes(values["out-ack"], acked);
const c = pipeline.counts;
emitResult({
  acked: c.acked,
  framesIn: c.framesIn,
  framesDropped: c.framesDropped,
  depth,
  peakRssBytes: peakRss(),
  rss: rss.stop(),
});
