/**
 * The wire fence (lib/kafka/platformatic/wire_fence.ts): a producer that passed every check and
 * then lost the right to write (a standby term whose lease ran out while it was paused) writes
 * nothing when its request reaches the socket. On the real local broker, with the default sink.
 */
import { deepStrictEqual, equal, rejects } from "../../helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "../../helpers/kafka_broker.ts";
import { kafka, KAFKA_TEST } from "../../helpers/e2e.ts";
import { openKafka } from "../../../lib/kafka/open.ts";
import { checkAtWire } from "../../../lib/kafka/platformatic/wire_fence.ts";
import { delay } from "../../../lib/async.ts";
import { type OutRecord, SCHEMA_VERSION } from "../../../lib/sink.ts";

function records(from: number, count: number): OutRecord[] {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => ({
    key: ["BTC-USD", "ETH-USD", "SOL-USD"][(from + i) % 3]!,
    value: `{"n":${from + i}}`,
    timestamp: now,
    headers: { "schema-version": SCHEMA_VERSION },
  }));
}

/** A trace as the client publishes it, over a socket that remembers being destroyed. */
function trace(apiKey: number, context: unknown) {
  const socket = {
    destroyed: false,
    destroy() {
      this.destroyed = true;
    },
  };
  return { socket, message: { operation: "send", apiKey, connection: { context, socket } } };
}

Deno.test("the wire fence stops only produce requests of a producer whose fence says no", () => {
  let stopped = 0;
  const closed = { mayWrite: () => false, stopped: () => stopped++ };
  const open = { mayWrite: () => true };
  const produceClosed = trace(0, closed);
  equal(checkAtWire(produceClosed.message), false);
  equal(produceClosed.socket.destroyed, true);
  equal(stopped, 1);
  // Other requests of the same connection (metadata: 3), open fences and unfenced producers pass.
  for (const t of [trace(3, closed), trace(0, open), trace(0, undefined), trace(0, {})]) {
    equal(checkAtWire(t.message), true);
    equal(t.socket.destroyed, false);
  }
  equal(stopped, 1);
});

Deno.test({
  name: "finding 4: a producer paused after the lease check writes nothing when it runs again " +
    "(the produce request is stopped at the wire), where an unfenced one writes it",
  ...KAFKA_TEST,
  async fn() {
    const broker = await kafka();
    const config = brokerConfig(broker);
    const client = await openKafka(config, { log: () => {} });
    const written = async (topic: string) =>
      (await client.admin.lag(`none-${topic}`, topic)).reduce((n, p) => n + Number(p.end), 0);
    try {
      const outcome: Record<string, number> = {};
      for (const fenced of [false, true]) {
        const topic = uniqueTopic(fenced ? "wire-fenced" : "wire-unfenced");
        await client.admin.ensureTopic(topic, { partitions: 3, replicationFactor: -1 });
        let leading = true;
        const sink = client.sink(fenced ? { fence: () => leading } : {});
        try {
          // Connected, with a producer id and the topic's metadata: the next send is written
          // within a few milliseconds, with no more checks on the way.
          await sink.connect();
          await sink.send(topic, records(0, 10));
          // The term's checks passed and the send is inside the client; then the lease runs
          // out, as it does for a producer paused (SIGSTOP, a long GC pause) at this moment.
          const sending = sink.send(topic, records(10, 10));
          leading = false;
          const settled = await Promise.race([
            sending.then(() => "acked", () => "failed"),
            delay(2_000).then(() => "pending"),
          ]);
          if (fenced) {
            equal(settled, "pending", "the fenced send is never acknowledged");
            await sink.close();
            await rejects(() => sending);
          } else {
            equal(settled, "acked");
          }
        } finally {
          await sink.close().catch(() => {});
        }
        outcome[fenced ? "fenced" : "unfenced"] = await written(topic);
      }
      deepStrictEqual(outcome, { unfenced: 20, fenced: 10 });
    } finally {
      await client.close();
    }
  },
});
