/**
 * The @platformatic/kafka source's loop, with the client's consumer stubbed: what it hands to
 * `onBatch` and when. The consumer against a real broker is in e2e_consumer_test.ts.
 */
import { EventEmitter } from "node:events";
import { Consumer } from "@platformatic/kafka";
import { deepStrictEqual } from "../../helpers/assert.ts";
import { PlatformaticSource } from "../../../lib/kafka/platformatic/source.ts";
import type { KafkaConfig } from "../../../lib/config/kafka.ts";
import type { KafkaAdmin } from "../../../lib/kafka/types.ts";

/** The part of a MessagesStream the source uses. */
class FakeStream extends EventEmitter {
  paused = false;
  destroyed = false;
  isPaused() {
    return this.paused;
  }
  pause() {
    this.paused = true;
    return this;
  }
  resume() {
    this.paused = false;
    return this;
  }
  close() {
    return Promise.resolve();
  }
}

const message = (offset: number) => ({
  topic: "t",
  partition: 0,
  offset: BigInt(offset),
  key: "BTC-USD",
  value: "{}",
  timestamp: 0n,
  headers: new Map(),
  leaderEpoch: 0,
});

Deno.test("finding 3: a record that arrives while the source awaits a commit is handed over without waiting for another", async () => {
  const stream = new FakeStream();
  // deno-lint-ignore no-explicit-any
  const proto = Consumer.prototype as any;
  const saved = { consume: proto.consume, commit: proto.commit, close: proto.close };
  let consumer: EventEmitter | undefined;
  const commits: bigint[] = [];
  proto.consume = function (this: EventEmitter) {
    consumer = this;
    return Promise.resolve(stream);
  };
  proto.commit = (o: { offsets: { offset: bigint }[] }) => {
    commits.push(o.offsets[0]!.offset);
    // While each of the first two commits is on the wire, one more record arrives; the second
    // commit is the one the loop makes when it has nothing to hand over (the interval passed).
    if (commits.length <= 2) {
      const next = commits.length;
      setTimeout(() => stream.emit("data", message(next)), 10);
    }
    return new Promise((resolve) => setTimeout(resolve, 50));
  };
  proto.close = () => Promise.resolve();
  const config = {
    brokers: ["127.0.0.1:1"],
    topic: "t",
    security: "plaintext",
    client: "platformatic",
  } as unknown as KafkaConfig;
  const source = new PlatformaticSource(config, { clientId: "test", log: () => {} }, {
    groupId: "g",
    topic: "t",
    from: "earliest",
    commitIntervalMs: 100,
  }, {} as KafkaAdmin);
  const stop = new AbortController();
  const seen: string[] = [];
  let second: () => void = () => {};
  const secondSeen = new Promise<void>((resolve) => second = resolve);
  try {
    const done = source.consume((records) => {
      for (const r of records) seen.push(r.offset);
      if (seen.includes("2")) second();
    }, { signal: stop.signal });
    while (consumer === undefined || stream.listenerCount("data") === 0) {
      await new Promise((r) => setTimeout(r, 5));
    }
    consumer.emit("consumer:group:join", { assignments: [{ topic: "t", partitions: [0] }] });
    stream.emit("data", message(0));
    // Generous: the fix hands it over within a few ms; before it, never (no record follows).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      secondSeen.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), 5_000)),
    ]);
    clearTimeout(timer);
    stop.abort();
    await done;
    deepStrictEqual({ timedOut, seen }, { timedOut: false, seen: ["0", "1", "2"] });
    deepStrictEqual(commits, [1n, 2n, 3n]);
  } finally {
    Object.assign(proto, saved);
    await source.close();
  }
});
