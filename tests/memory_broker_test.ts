import { deepStrictEqual, equal } from "./helpers/assert.ts";
import { MemoryBroker } from "../lib/memory_broker.ts";
import { murmur2, partitionFor } from "../lib/kafka/murmur2.ts";
import type { InRecord, OutRecord, StartFrom } from "../lib/sink.ts";

const rec = (key: string, i: number): OutRecord => ({
  key,
  value: `{"i":${i}}`,
  timestamp: 1000 + i,
  headers: { "schema-version": "1" },
});

Deno.test("memory broker partitions keys with Kafka's murmur2", () => {
  // Values from Kafka's own partitioner tests (Utils.murmur2).
  equal(murmur2(new TextEncoder().encode("21")), -973932308);
  equal(murmur2(new TextEncoder().encode("foobar")), -790332482);
  equal(partitionFor("BTC-USD", 6), partitionFor("BTC-USD", 6));
});

Deno.test("memory broker keeps per-partition offsets and per-key order", async () => {
  const broker = new MemoryBroker();
  broker.createTopic("t", 3);
  await broker.sink().send("t", [rec("A", 0), rec("B", 1), rec("A", 2)]);
  const parts = broker.records("t");
  const a = parts[partitionFor("A", 3)]!.filter((r) => r.key === "A");
  deepStrictEqual(a.map((r) => r.value), ['{"i":0}', '{"i":2}']);
  for (const p of parts) deepStrictEqual(p.map((r) => r.offset), p.map((_, i) => String(i)));
  deepStrictEqual(a[0]!.headers, { "schema-version": "1" });
  equal(a[0]!.timestamp, 1000);
});

async function consumeUntil(
  broker: MemoryBroker,
  group: string,
  n: number,
  from: StartFrom = "earliest",
): Promise<InRecord[]> {
  const got: InRecord[] = [];
  const stop = new AbortController();
  const source = broker.source({ topic: "t", groupId: group, from, batchMax: 2 });
  await source.consume((batch) => {
    got.push(...batch);
    if (got.length >= n) stop.abort();
  }, { signal: stop.signal });
  return got;
}

Deno.test("memory broker consumer groups resume from their committed offsets", async () => {
  const broker = new MemoryBroker();
  broker.createTopic("t", 1);
  await broker.sink().send("t", [0, 1, 2, 3, 4].map((i) => rec("K", i)));
  const first = await consumeUntil(broker, "g", 2);
  deepStrictEqual(first.map((r) => r.offset), ["0", "1"]);
  equal(broker.committed("g", "t", 0), 2);
  const second = await consumeUntil(broker, "g", 3);
  deepStrictEqual(second.map((r) => r.offset), ["2", "3", "4"]);
  deepStrictEqual(broker.lag("g", "t"), [0]);
});

Deno.test("memory broker starts a new group at latest or at a timestamp", async () => {
  const broker = new MemoryBroker();
  broker.createTopic("t", 1);
  await broker.sink().send("t", [0, 1, 2].map((i) => rec("K", i)));
  const atTime = await consumeUntil(broker, "g1", 2, new Date(1001));
  deepStrictEqual(atTime.map((r) => r.value), ['{"i":1}', '{"i":2}']);
  const stop = new AbortController();
  const got: string[] = [];
  const done = broker.source({ topic: "t", groupId: "g2", from: "latest" }).consume((b) => {
    got.push(...b.map((r) => r.value!));
    stop.abort();
  }, { signal: stop.signal });
  await new Promise((r) => setTimeout(r, 5));
  await broker.sink().send("t", [rec("K", 3)]);
  await done;
  deepStrictEqual(got, ['{"i":3}']);
});

Deno.test("memory broker splits partitions between two consumers of one group", async () => {
  const broker = new MemoryBroker();
  broker.createTopic("t", 4);
  const keys = Array.from({ length: 40 }, (_, i) => `S${i}`);
  const stop = new AbortController();
  const seen: string[][] = [[], []];
  const runs = [0, 1].map((c) =>
    broker.source({ topic: "t", groupId: "g", from: "earliest" }).consume((batch) => {
      for (const r of batch) seen[c]!.push(r.value!);
      if (seen[0]!.length + seen[1]!.length >= 40) stop.abort();
    }, { signal: stop.signal })
  );
  await new Promise((r) => setTimeout(r, 5));
  await broker.sink().send("t", keys.map((k, i) => rec(k, i)));
  await Promise.all(runs);
  equal(seen[0]!.length > 0 && seen[1]!.length > 0, true);
  const all = [...seen[0]!, ...seen[1]!].sort();
  deepStrictEqual(all, keys.map((_, i) => `{"i":${i}}`).sort());
});
