/**
 * The @platformatic/kafka sink with the client's producer stubbed as a small broker: what it
 * does when the broker refuses records for good (issue 24, finding 1). The same against the
 * real broker is in tests/e2e_dead_letter_test.ts.
 */
import { MultipleErrors, Producer, ResponseError } from "@platformatic/kafka";
import { deepStrictEqual } from "../../helpers/assert.ts";
import { PlatformaticSink } from "../../../lib/kafka/platformatic/sink.ts";
import { murmur2 } from "../../../lib/kafka/murmur2.ts";
import type { DeadLetter, TopicLimits } from "../../../lib/kafka/refusals.ts";
import type { KafkaConfig } from "../../../lib/config/kafka.ts";
import type { OutRecord } from "../../../lib/sink.ts";

const PARTITIONS = 6;
const HOUR = 3_600_000;
const NOW = Date.parse("2026-12-01T12:00:00Z");
const MAX_BYTES = 2_000;

type Message = { key: string; value: string; timestamp: bigint };

/**
 * Stubs the client's producer as a broker with six partitions that refuses, per partition, a
 * batch holding a record stamped over an hour ahead (INVALID_TIMESTAMP, naming the records) or
 * one over MAX_BYTES (MESSAGE_TOO_LARGE, naming none), and writes the other partitions'. A
 * refused send drops the producer id, as the client does.
 */
function stubBroker() {
  const stored = new Map<number, string[]>();
  const seen: string[] = [];
  let producerId = 1n;
  // deno-lint-ignore no-explicit-any
  const proto = Producer.prototype as any;
  const saved = {
    send: proto.send,
    metadata: proto.metadata,
    initIdempotentProducer: proto.initIdempotentProducer,
    close: proto.close,
    producerId: Object.getOwnPropertyDescriptor(Producer.prototype, "producerId"),
  };
  proto.initIdempotentProducer = () => Promise.resolve({});
  proto.metadata = () =>
    Promise.resolve({ topics: new Map([["t", { partitionsCount: PARTITIONS }]]) });
  proto.close = () => Promise.resolve();
  Object.defineProperty(Producer.prototype, "producerId", {
    get: () => producerId,
    configurable: true,
  });
  proto.send = (options: { messages: Message[] }) => {
    const byPartition = new Map<number, Message[]>();
    for (const m of options.messages) {
      seen.push(m.value);
      const p = (murmur2(new TextEncoder().encode(m.key)) & 0x7fffffff) % PARTITIONS;
      if (!byPartition.has(p)) byPartition.set(p, []);
      byPartition.get(p)!.push(m);
    }
    const errors: Record<string, [number, string]> = {};
    const partitionResponses = [...byPartition].map(([index, list], j) => {
      const late = list.flatMap((m, i) => Number(m.timestamp) - NOW > HOUR ? [i] : []);
      const large = list.some((m) => m.value.length > MAX_BYTES);
      const errorCode = late.length > 0 ? 32 : large ? 10 : 0;
      if (errorCode === 0) {
        stored.set(index, [...stored.get(index) ?? [], ...list.map((m) => m.value)]);
      } else {
        errors[`/responses/0/partition_responses/${j}`] = [errorCode, "refused"];
      }
      return {
        index,
        errorCode,
        baseOffset: 0n,
        recordErrors: late.map((batchIndex) => ({ batchIndex, batchIndexErrorMessage: "late" })),
        errorMessage: errorCode === 0 ? null : "refused",
      };
    });
    if (Object.keys(errors).length === 0) return Promise.resolve({});
    producerId++;
    const response = { responses: [{ name: "t", partitionResponses }], throttleTimeMs: 0 };
    const error = new MultipleErrors("Producing messages failed.", [
      new ResponseError(0, 11, errors, response),
    ]);
    Object.assign(error, { produced: { offsets: [] } });
    return Promise.reject(error);
  };
  return {
    stored,
    seen,
    restore() {
      Object.assign(proto, {
        send: saved.send,
        metadata: saved.metadata,
        initIdempotentProducer: saved.initIdempotentProducer,
        close: saved.close,
      });
      Object.defineProperty(Producer.prototype, "producerId", saved.producerId!);
    },
  };
}

const config = {
  brokers: ["127.0.0.1:1"],
  topic: "t",
  security: "plaintext",
  client: "platformatic",
} as unknown as KafkaConfig;

/** 300 good records over 12 symbols, a record two hours ahead and one too large among them. */
function records(): { all: OutRecord[]; good: string[] } {
  const all: OutRecord[] = [];
  for (let i = 0; i < 300; i++) {
    all.push({ key: `S${i % 12}-USD`, value: `{"i":${i}}`, timestamp: NOW - 1_000 + i });
    if (i === 100) all.push({ key: "S1-USD", value: `{"late":1}`, timestamp: NOW + 2 * HOUR });
    if (i === 200) {
      all.push({ key: "S2-USD", value: `{"big":"${"9".repeat(5_000)}"}`, timestamp: NOW });
    }
  }
  const good = all.filter((r) => !r.value.includes("late") && !r.value.includes("big"))
    .map((r) => r.value);
  return { all, good };
}

async function run(limits?: TopicLimits) {
  const broker = stubBroker();
  const letters: DeadLetter[] = [];
  const lines: string[] = [];
  const sink = new PlatformaticSink(config, { clientId: "test", log: (l) => lines.push(l) }, {
    now: () => NOW,
    deadLetter: (letter) => {
      letters.push(letter);
    },
  }, limits && (() => Promise.resolve(limits)));
  const { all, good } = records();
  try {
    // Bounded: before the fix the sink resent the batch for ever.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      sink.send("t", all).then(() => "sent", (e) => `rejected: ${e}`),
      new Promise<string>((r) => timer = setTimeout(() => r("still resending after 5 s"), 5_000)),
    ]);
    clearTimeout(timer);
    return { outcome, broker, letters, sink, good, lines };
  } finally {
    await sink.close().catch(() => {});
    broker.restore();
  }
}

/** How many times each value is stored, for the values stored other than once. */
function notOnce(stored: Map<number, string[]>, good: string[]): Record<string, number> {
  const counts = new Map<string, number>(good.map((v) => [v, 0]));
  for (const list of stored.values()) for (const v of list) counts.set(v, (counts.get(v) ?? 0) + 1);
  return Object.fromEntries([...counts].filter(([, n]) => n !== 1));
}

Deno.test("finding 1: records the broker refuses are kept aside and the others are written once, with no producer reset", async () => {
  const { outcome, broker, letters, sink, good } = await run();
  deepStrictEqual(outcome, "sent");
  deepStrictEqual(notOnce(broker.stored, good), {});
  deepStrictEqual(letters.map((l) => [l.reason, JSON.parse(l.record.value)]), [
    ["invalid_timestamp", { late: 1 }],
    ["too_large", { big: "9".repeat(5_000) }],
  ]);
  deepStrictEqual(sink.stats.producerResets, 0);
  deepStrictEqual(sink.stats.deadLettered, {
    too_large: 1,
    invalid_timestamp: 1,
    invalid_record: 0,
    policy_violation: 0,
    not_authorized: 0,
  });
});

Deno.test("finding 1: records over the topic's limits are kept aside before the send, so the broker never refuses one", async () => {
  const { outcome, broker, letters, sink, good } = await run({
    maxMessageBytes: MAX_BYTES,
    timestampAfterMaxMs: HOUR,
  });
  deepStrictEqual(outcome, "sent");
  deepStrictEqual(notOnce(broker.stored, good), {});
  // One send, of the good records only.
  deepStrictEqual(broker.seen.length, good.length);
  deepStrictEqual(letters.map((l) => [l.reason, l.detail]), [
    [
      "invalid_timestamp",
      `the record's timestamp ${NOW + 2 * HOUR} is ${2 * HOUR} ms ahead of the clock, over the ` +
      `topic's message.timestamp.after.max.ms (${HOUR}); not sent`,
    ],
    [
      "too_large",
      "the record needs 5100 bytes, over the topic's max.message.bytes (2000); not sent",
    ],
  ]);
  deepStrictEqual(sink.stats.producerResets, 0);
});
