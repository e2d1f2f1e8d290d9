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

/**
 * A source over a stubbed consumer and stream, for the loop's own logic: the commits it makes,
 * in order; `join` assigns partition 0 once the loop listens.
 */
function stubbed(
  options: { inFlight: number; maxBatch: number; commitIntervalMs?: number },
  /** Answers each commit; default at once. */
  answer: () => Promise<void> = () => Promise.resolve(),
) {
  const stream = new FakeStream();
  // deno-lint-ignore no-explicit-any
  const proto = Consumer.prototype as any;
  const saved = { consume: proto.consume, commit: proto.commit, close: proto.close };
  let consumer: EventEmitter | undefined;
  const commits: bigint[][] = [];
  proto.consume = function (this: EventEmitter) {
    consumer = this;
    return Promise.resolve(stream);
  };
  proto.commit = (o: { offsets: { offset: bigint }[] }) => {
    commits.push(o.offsets.map((x) => x.offset));
    return answer();
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
    commitIntervalMs: 0,
    ...options,
  }, {} as KafkaAdmin);
  return {
    stream,
    commits,
    source,
    async join() {
      while (consumer === undefined || stream.listenerCount("data") === 0) {
        await new Promise((r) => setTimeout(r, 5));
      }
      consumer.emit("consumer:group:join", { assignments: [{ topic: "t", partitions: [0] }] });
    },
    async restore() {
      Object.assign(proto, saved);
      await source.close();
    },
  };
}

/** Batches handed to `onBatch`, each settled by the test when it chooses. */
function heldBatches() {
  const batches: { offsets: string[]; settle: (result: number | Error) => void }[] = [];
  let arrived: () => void = () => {};
  const onBatch = (records: { offset: string }[]) =>
    new Promise<number>((resolve, reject) => {
      batches.push({
        offsets: records.map((r) => r.offset),
        settle: (result) => result instanceof Error ? reject(result) : resolve(result),
      });
      arrived();
    });
  const handedOver = async (n: number) => {
    while (batches.length < n) await new Promise<void>((r) => arrived = r);
  };
  return { batches, onBatch, handedOver };
}

/** Lets the loop run whatever is ready (settled promises, the commits' microtasks). */
const turn = () => new Promise((r) => setTimeout(r, 20));

Deno.test("with two batches in flight, a later batch that is handled first is committed only after the earlier one", async () => {
  const s = stubbed({ inFlight: 2, maxBatch: 2 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    // The second batch is handed over while the first is still being handled.
    await held.handedOver(2);
    held.batches[1]!.settle(2);
    await turn();
    const beforeFirst = s.commits.slice();
    held.batches[0]!.settle(1);
    await turn();
    stop.abort();
    await done;
    deepStrictEqual(held.batches.map((b) => b.offsets), [["0"], ["1", "2"]]);
    deepStrictEqual(beforeFirst, []);
    deepStrictEqual(s.commits, [[1n], [3n]]);
  } finally {
    await s.restore();
  }
});

Deno.test("a failing batch in flight commits nothing past it, though the batch after it was handled", async () => {
  const s = stubbed({ inFlight: 2, maxBatch: 2 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    await held.handedOver(2);
    held.batches[1]!.settle(2);
    await turn();
    held.batches[0]!.settle(new Error("the database refused the write"));
    const failure = await done.then(() => undefined, (error: Error) => error.message);
    deepStrictEqual(failure, "the database refused the write");
    deepStrictEqual(s.commits, []);
  } finally {
    stop.abort();
    await s.restore();
  }
});

Deno.test("a batch in flight handled in part commits only its handled records, not the batch after it", async () => {
  const s = stubbed({ inFlight: 2, maxBatch: 2 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    s.stream.emit("data", message(1));
    await held.handedOver(1);
    s.stream.emit("data", message(2));
    s.stream.emit("data", message(3));
    await held.handedOver(2);
    held.batches[1]!.settle(2);
    // The first batch stopped after one record (a store told to stop mid-write says 0 or part).
    held.batches[0]!.settle(1);
    await done;
    deepStrictEqual(held.batches.map((b) => b.offsets), [["0", "1"], ["2", "3"]]);
    deepStrictEqual(s.commits, [[1n]]);
  } finally {
    stop.abort();
    await s.restore();
  }
});

Deno.test("one batch in flight (the default) waits for it before handing over the next", async () => {
  const s = stubbed({ inFlight: 1, maxBatch: 2 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    await turn();
    const whileFirst = held.batches.length;
    held.batches[0]!.settle(1);
    await held.handedOver(2);
    held.batches[1]!.settle(2);
    await turn();
    stop.abort();
    await done;
    deepStrictEqual(whileFirst, 1);
    deepStrictEqual(held.batches.map((b) => b.offsets), [["0"], ["1", "2"]]);
    deepStrictEqual(s.commits, [[1n], [3n]]);
  } finally {
    await s.restore();
  }
});

Deno.test("a batch settled while the next one is still in flight is committed within the interval, not when the next one settles", async () => {
  const s = stubbed({ inFlight: 2, maxBatch: 2, commitIntervalMs: 300 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    held.batches[0]!.settle(1);
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    await held.handedOver(2);
    s.stream.emit("data", message(3));
    s.stream.emit("data", message(4));
    await held.handedOver(3);
    // Settled within the interval of the first commit: not due yet when it settles.
    held.batches[1]!.settle(2);
    // The third batch never settles here (a database that is down); the second is committed.
    for (let i = 0; i < 250 && s.commits.length < 2; i++) await turn();
    deepStrictEqual(s.commits, [[1n], [3n]]);
    held.batches[2]!.settle(0);
    stop.abort();
    await done;
    deepStrictEqual(held.batches.map((b) => b.offsets), [["0"], ["1", "2"], ["3", "4"]]);
    deepStrictEqual(s.commits, [[1n], [3n], [3n]]);
  } finally {
    await s.restore();
  }
});

Deno.test("records that stop arriving are handed over while a batch is in flight, not held for a full batch", async () => {
  const s = stubbed({ inFlight: 2, maxBatch: 100 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    // The end of a backlog: two more records, then nothing, and the first batch still in flight.
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    const timer = setTimeout(() => held.batches[0]!.settle(1), 2_000);
    await held.handedOver(2);
    clearTimeout(timer);
    const settledFirst = s.commits.length > 0;
    held.batches[0]!.settle(1);
    held.batches[1]!.settle(2);
    await turn();
    stop.abort();
    await done;
    deepStrictEqual(settledFirst, false);
    deepStrictEqual(held.batches.map((b) => b.offsets), [["0"], ["1", "2"]]);
    deepStrictEqual(s.commits, [[1n], [3n]]);
  } finally {
    await s.restore();
  }
});

Deno.test("a commit slow to answer does not hold the next batch back, and the next commit waits for it", async () => {
  const answers: (() => void)[] = [];
  const s = stubbed(
    { inFlight: 1, maxBatch: 2 },
    () => new Promise<void>((resolve) => answers.push(resolve)),
  );
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    s.stream.emit("data", message(0));
    await held.handedOver(1);
    held.batches[0]!.settle(1);
    while (s.commits.length < 1) await turn();
    // The first commit has not answered (it waits behind a fetch on the broker's connection).
    s.stream.emit("data", message(1));
    s.stream.emit("data", message(2));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const handedWhileWaiting = await Promise.race([
      held.handedOver(2).then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 5_000)),
    ]);
    clearTimeout(timer);
    deepStrictEqual(handedWhileWaiting, true);
    held.batches[1]!.settle(2);
    await turn();
    const beforeAnswer = s.commits.length;
    answers[0]!();
    while (s.commits.length < 2) await turn();
    answers[1]!();
    stop.abort();
    await done;
    deepStrictEqual(beforeAnswer, 1);
    deepStrictEqual(s.commits, [[1n], [3n]]);
  } finally {
    for (const answer of answers) answer();
    await s.restore();
  }
});

Deno.test("records of a partition this member does not hold are dropped uncommitted, and the rest are handled and committed at their own offsets", async () => {
  const s = stubbed({ inFlight: 1, maxBatch: 10 });
  const held = heldBatches();
  const stop = new AbortController();
  try {
    const done = s.source.consume(held.onBatch, { signal: stop.signal });
    await s.join();
    // Partition 1 was never assigned here (a fetch made before a rebalance can still hold it).
    s.stream.emit("data", { ...message(5), leaderEpoch: 3 });
    s.stream.emit("data", { ...message(7), partition: 1 });
    s.stream.emit("data", { ...message(6), leaderEpoch: 4 });
    await held.handedOver(1);
    held.batches[0]!.settle(2);
    await turn();
    stop.abort();
    await done;
    deepStrictEqual(held.batches.map((b) => b.offsets), [["5", "6"]]);
    deepStrictEqual(s.commits, [[7n]]);
  } finally {
    await s.restore();
  }
});
