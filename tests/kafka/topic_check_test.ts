import { assertEquals } from "../helpers/assert.ts";
import { checkTopic, refusalMessage, type TopicDescription } from "../../lib/kafka/topic_check.ts";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 1);

/** A topic as Kafka 4.1 describes one created with the broker's defaults, RF 3. */
function topic(configs: Record<string, string> = {}): TopicDescription {
  return {
    name: "quotes",
    partitions: 6,
    replicationFactor: 3,
    configs: {
      "cleanup.policy": "delete",
      "retention.ms": String(7 * DAY),
      "message.timestamp.type": "CreateTime",
      "message.timestamp.before.max.ms": "9223372036854775807",
      "message.timestamp.after.max.ms": "3600000",
      "min.insync.replicas": "2",
      "max.message.bytes": "1048588",
      ...configs,
    },
  };
}

function verdicts(t: TopicDescription, options: Partial<Parameters<typeof checkTopic>[1]> = {}) {
  const findings = checkTopic(t, { policy: "now", nowMs: NOW, batchMax: 1000, ...options });
  return Object.fromEntries(findings.map((f) => [f.setting, f.verdict]));
}

const ALL_OK = {
  "cleanup.policy": "ok",
  "retention.ms": "ok",
  "message.timestamp.type": "ok",
  "message.timestamp.before.max.ms": "ok",
  "message.timestamp.after.max.ms": "ok",
  "min.insync.replicas": "ok",
  "max.message.bytes": "ok",
};

Deno.test("topic check passes a default topic for live data stamped now", () => {
  assertEquals(verdicts(topic()), ALL_OK);
});

Deno.test("topic check passes an old replay stamped now: retention and before.max cannot bite", () => {
  const t = topic({ "message.timestamp.before.max.ms": String(DAY) });
  assertEquals(verdicts(t, { oldestRecordMs: NOW - 400 * DAY }), ALL_OK);
});

Deno.test("topic check refuses a replay older than retention under exchange timestamps", () => {
  const findings = checkTopic(topic(), {
    policy: "exchange",
    nowMs: NOW,
    oldestRecordMs: NOW - 30 * DAY,
    batchMax: 1000,
  });
  const retention = findings.find((f) => f.setting === "retention.ms")!;
  assertEquals(retention.verdict, "fail");
  assertEquals(
    refusalMessage(findings)?.startsWith(
      'Cannot send: topic "quotes" keeps records for 7 d (retention.ms=604800000) by their ' +
        "timestamp, and with KAFKA_TIMESTAMP=exchange the oldest record to write is 30 d old",
    ),
    true,
  );
});

Deno.test("topic check warns when a replay under exchange timestamps has under a day left", () => {
  const v = verdicts(topic(), { policy: "exchange", oldestRecordMs: NOW - 6.5 * DAY });
  assertEquals(v["retention.ms"], "warning");
});

Deno.test("topic check refuses a replay older than message.timestamp.before.max.ms", () => {
  const t = topic({ "retention.ms": "-1", "message.timestamp.before.max.ms": String(DAY) });
  const v = verdicts(t, { policy: "exchange", oldestRecordMs: NOW - 2 * DAY });
  assertEquals(v["message.timestamp.before.max.ms"], "fail");
  assertEquals(v["retention.ms"], "ok");
});

Deno.test("topic check lets LogAppendTime override exchange timestamps, with a warning", () => {
  const t = topic({ "message.timestamp.type": "LogAppendTime" });
  const v = verdicts(t, { policy: "exchange", oldestRecordMs: NOW - 30 * DAY });
  assertEquals(v["retention.ms"], "ok");
  assertEquals(v["message.timestamp.type"], "warning");
  assertEquals("message.timestamp.before.max.ms" in v, false);
});

Deno.test("topic check refuses a compacted topic", () => {
  assertEquals(verdicts(topic({ "cleanup.policy": "compact,delete" }))["cleanup.policy"], "fail");
});

Deno.test("topic check reads min.insync.replicas against the replication factor", () => {
  const rf = (n: number, minIsr: string) =>
    verdicts({ ...topic({ "min.insync.replicas": minIsr }), replicationFactor: n })[
      "min.insync.replicas"
    ];
  assertEquals([rf(3, "4"), rf(3, "3"), rf(3, "1"), rf(1, "1"), rf(3, "2")], [
    "fail",
    "warning",
    "warning",
    "warning",
    "ok",
  ]);
});

Deno.test("topic check refuses a batch larger than max.message.bytes", () => {
  const findings = checkTopic(topic({ "max.message.bytes": "100000" }), {
    policy: "now",
    nowMs: NOW,
    batchMax: 1000,
  });
  const f = findings.find((x) => x.setting === "max.message.bytes")!;
  assertEquals(f.verdict, "fail");
  assertEquals(f.fix?.startsWith("set KAFKA_BATCH_MAX=500 or lower"), true);
});

Deno.test("topic check warns about a timestamp window tighter than a minute", () => {
  const v = verdicts(topic({ "message.timestamp.after.max.ms": "10000" }));
  assertEquals(v["message.timestamp.after.max.ms"], "warning");
});
