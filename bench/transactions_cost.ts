/**
 * What transactional fencing would cost per batch with @platformatic/kafka (issue 14), against
 * the local broker: the same batches sent by the idempotent producer the sink uses, and by a
 * transactional producer (begin, send, commit per batch). Then whether a second producer with the
 * same `transactionalId` fences the first. Prints one JSON line.
 *
 * Run: deno run -A bench/transactions_cost.ts [--brokers 127.0.0.1:9092] [--batches 300]
 * Permissions: --allow-net (Kafka), --allow-env, --allow-read.
 */
import { Admin, ProduceAcks, Producer, stringSerializers } from "@platformatic/kafka";

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}
const args = { brokers: flag("brokers"), batches: flag("batches"), size: flag("size") };
const brokers = [args.brokers ?? Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:9092"];
const batches = Number(args.batches ?? 300);
const size = Number(args.size ?? 100);
const topic = `tx-cost-${crypto.randomUUID().slice(0, 8)}`;
// Retry after 20 ms, as the Java client does: a transaction that starts right after a commit is
// told CONCURRENT_TRANSACTIONS until the commit markers are written (the default waits 1 s).
const base = {
  clientId: "tx-cost",
  bootstrapBrokers: brokers,
  serializers: stringSerializers,
  retryDelay: 20,
};

const admin = new Admin({ clientId: "tx-cost", bootstrapBrokers: brokers });
await admin.createTopics({ topics: [topic], partitions: 3, replicas: -1 });
await new Promise((r) => setTimeout(r, 1000));
await admin.close();

const messages = Array.from({ length: size }, (_, i) => ({
  topic,
  key: `k${i % 5}`,
  value: `{"i":${i},"spread":0.01}`,
}));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timed(send: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 10; i++) await send(); // warm up
  const ms: number[] = [];
  for (let i = 0; i < batches; i++) {
    const t = performance.now();
    await send();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
}

const idem = new Producer({ ...base, idempotent: true, acks: ProduceAcks.ALL });
const idempotent = await timed(() => idem.send({ messages }));
await idem.close();

const transactionalId = `tx-cost-${crypto.randomUUID()}`;
const tx = new Producer({ ...base, idempotent: true, acks: ProduceAcks.ALL, transactionalId });
const transactional = await timed(async () => {
  const t = await tx.beginTransaction();
  await t.send({ messages });
  await t.commit();
});

console.log(JSON.stringify({
  library: "@platformatic/kafka 2.12.1",
  batches,
  recordsPerBatch: size,
  idempotentMs: idempotent,
  transactionalMs: transactional,
}));

// Fencing: a second producer with the same transactional id starts a transaction; the first's
// next transaction must fail. The library reports the fencing as an unhandled rejection of its
// own, so that is caught too.
let fenced = "not fenced within 15 s";
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const e = event.reason;
  fenced = `unhandled: ${e instanceof Error ? e.message : e}`.slice(0, 300);
});
const fence = (async () => {
  const tx2 = new Producer({ ...base, idempotent: true, acks: ProduceAcks.ALL, transactionalId });
  const t2 = await tx2.beginTransaction();
  await t2.send({ messages });
  await t2.commit();
  try {
    const t = await tx.beginTransaction();
    await t.send({ messages });
    await t.commit();
    return "the first producer committed again: not fenced";
  } catch (error) {
    return `the first producer was refused: ${error instanceof Error ? error.message : error}`;
  }
})().catch((error) =>
  `the second producer failed: ${error instanceof Error ? error.message : error}`
);
const outcome = await Promise.race([
  fence,
  new Promise<string>((r) => setTimeout(() => r("no outcome within 15 s"), 15_000)),
]);
console.log(JSON.stringify({ fencedSecondWriter: outcome, unhandled: fenced }));
Deno.exit(0);
