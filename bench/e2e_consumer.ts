/**
 * Benchmarks 3 and 4, the consumer: a KafkaSource in a fresh group from the earliest offset, as
 * `consumer.ts` uses it, noting the host time each record arrives. Prints `BENCH_READY` once it
 * has joined the group; stops once `--expect` records arrived (or after `--timeout-s`).
 *
 *   deno run -A bench/e2e_consumer.ts --brokers H:P --topic T --expect N --out FILE
 *
 * Writes arrival times to FILE (see writeTimes) and prints one `BENCH_RESULT {...}` line.
 * Permissions: --allow-net, --allow-write (FILE), --allow-env.
 */
import { parseArgs } from "node:util";
import { type KafkaClientName } from "../lib/kafka/types.ts";
import { openKafka } from "../lib/kafka/open.ts";
import type { InRecord } from "../lib/sink.ts";
import { benchKafkaConfig, emitResult, hostNow, recordSeq, writeTimes } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    brokers: { type: "string" },
    topic: { type: "string" },
    expect: { type: "string" },
    out: { type: "string" },
    "timeout-s": { type: "string", default: "300" },
    client: { type: "string", default: "platformatic" },
  },
});
const expect = Number(values.expect);
const kafka = await openKafka(
  benchKafkaConfig(values.brokers!, values.topic!, { client: values.client as KafkaClientName }),
);
const source = kafka.source({
  groupId: `bench-${crypto.randomUUID().slice(0, 8)}`,
  topic: values.topic!,
  from: "earliest",
  onAssign: () => console.log("BENCH_READY"),
});
const arrived = new Float64Array(expect).fill(Number.NaN);
let count = 0;
const stop = new AbortController();
const timeout = setTimeout(() => stop.abort(), Number(values["timeout-s"]) * 1000);
const onBatch = (records: InRecord[]) => {
  const now = hostNow();
  for (const r of records) {
    const seq = recordSeq(r.value);
    if (seq >= 0 && seq < expect && Number.isNaN(arrived[seq]!)) {
      arrived[seq] = now;
      count++;
    }
  }
  if (count >= expect) stop.abort();
};
await source.consume(onBatch, { signal: stop.signal });
clearTimeout(timeout);
await source.close();
await kafka.close();
await writeTimes(values.out!, arrived);
emitResult({ consumed: count });
