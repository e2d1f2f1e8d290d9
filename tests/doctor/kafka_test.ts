/**
 * The doctor's Kafka checks (lib/doctor/kafka.ts) on a fake client whose admin answers as a
 * broker with ACLs does (KIP-430's authorized operations, CreateTopics validateOnly,
 * DescribeConfigs): every topic produce prepares is checked, the channels' too (issue 25).
 */
import { assertEquals } from "../helpers/assert.ts";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import type { KafkaAdmin, KafkaClient, TopicAccess } from "../../lib/kafka/types.ts";
import { checkKafka } from "../../lib/doctor/kafka.ts";
import { channelTopicsFor } from "../../lib/channels/registry.ts";
import type { CheckResult } from "../../lib/doctor/verdict.ts";

const CONFIG = {
  brokers: ["h:1"],
  topic: "q",
  gapsTopic: "q.gaps",
  tradesTopic: "q.trades",
  barsTopic: "q.bars",
  security: "sasl_ssl",
  sasl: { mechanism: "scram-sha-512", username: "carol", password: "pw" },
  partitions: 6,
  replicationFactor: -1,
  batchMax: 1000,
  lingerMs: 0,
  compression: "none",
  connectTimeoutMs: 1000,
  shutdownTimeoutMs: 1000,
  client: "platformatic",
  timestamp: "now",
} satisfies KafkaConfig;

/** One topic as the fake broker holds it. */
interface FakeTopic {
  partitions: number;
  operations: string[];
  configs?: Record<string, string>;
}

/**
 * A client whose broker holds `topics` (a name absent from it is missing, and this user may not
 * create it); the topics the doctor asked about are noted in `asked`.
 */
function fakeKafka(topics: Record<string, FakeTopic>, asked: string[]): () => Promise<KafkaClient> {
  const refuse = (id: string) => Promise.reject(Object.assign(new Error(id), { apiId: id }));
  const admin = {
    topicAccess: (names: string[]) => {
      asked.push(...names);
      return Promise.resolve(
        new Map(names.map((n): [string, TopicAccess] => {
          const t = topics[n];
          return [
            n,
            t ? { operations: t.operations } : {
              error: "UNKNOWN_TOPIC_OR_PARTITION",
              operations: [],
            },
          ];
        })),
      );
    },
    validateCreateTopic: () => refuse("TOPIC_AUTHORIZATION_FAILED"),
    listTopics: () => Promise.resolve(Object.keys(topics)),
    describeTopic: (n: string) =>
      Promise.resolve({
        partitions: topics[n]!.partitions,
        replicas: Array(topics[n]!.partitions).fill(3),
      }),
    topicConfigs: (n: string) =>
      Promise.resolve({
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        ...topics[n]!.configs,
      }),
    groupAccess: () => Promise.resolve(["READ"]),
  } as Partial<KafkaAdmin> as KafkaAdmin;
  const client = {
    name: "platformatic",
    connect: () => Promise.resolve(),
    admin,
    close: () => Promise.resolve(),
  } as Partial<KafkaClient> as KafkaClient;
  return () => Promise.resolve(client);
}

/** "check: verdict" of each result. */
function verdicts(results: readonly CheckResult[]): string[] {
  return results.map((r) => `${r.check}: ${r.verdict}`);
}

const ALL = ["ALL"];

Deno.test("doctor checks the trades and bars topics of --channels and their gaps topics: readiness, write, settings", async () => {
  const asked: string[] = [];
  const results = await checkKafka(CONFIG, {
    role: "produce",
    channelTopics: channelTopicsFor(["XQ", "XT", "XA"], CONFIG),
    open: fakeKafka({
      "q": { partitions: 6, operations: ALL },
      "q.gaps": { partitions: 1, operations: ALL },
      // Read only, and compacted: produce would be refused, and would lose trades.
      "q.trades": {
        partitions: 6,
        operations: ["READ", "DESCRIBE"],
        configs: { "cleanup.policy": "compact" },
      },
      "q.trades.gaps": { partitions: 1, operations: ALL },
      // q.bars and q.bars.gaps are missing, and this user may not create them.
    }, asked),
  });
  assertEquals(asked, ["q", "q.gaps", "q.trades", "q.trades.gaps", "q.bars", "q.bars.gaps"]);
  assertEquals(verdicts(results.filter((r) => !r.check.startsWith('topic "q" '))), [
    "reachable: ok",
    'topic "q": ok',
    'produce to "q": ok',
    'topic "q.gaps": ok',
    'produce to "q.gaps": ok',
    'topic "q.trades": ok',
    'produce to "q.trades": fail',
    'topic "q.trades" cleanup.policy: fail',
    'topic "q.trades" retention.ms: ok',
    'topic "q.trades.gaps": ok',
    'produce to "q.trades.gaps": ok',
    'topic "q.bars": fail',
    'topic "q.bars.gaps": fail',
  ]);
  const byCheck = (check: string) => results.find((r) => r.check === check)!;
  assertEquals(
    byCheck('produce to "q.trades"').message,
    'user "carol" may not WRITE topic "q.trades" (allowed: READ, DESCRIBE), so produce would fail',
  );
  assertEquals(
    byCheck('topic "q.bars"').message,
    '"q.bars" does not exist and user "carol" may not create it (TOPIC_AUTHORIZATION_FAILED)',
  );
  assertEquals(
    byCheck('topic "q.trades" cleanup.policy').fix?.endsWith(
      "; produce and replay refuse to start (exit code 2)",
    ),
    true,
  );
  // The main topic's settings are checked as before, the gaps topics' are not.
  assertEquals(results.filter((r) => r.check.startsWith('topic "q" ')).map((r) => r.check), [
    'topic "q" cleanup.policy',
    'topic "q" retention.ms',
  ]);
});

Deno.test("doctor checks a channel topic named by --trades-topic, and keeps it at the configured partitions", async () => {
  const asked: string[] = [];
  const config = { ...CONFIG, tradesTopic: "my-trades" };
  const results = await checkKafka(config, {
    role: "produce",
    channelTopics: channelTopicsFor(["XT"], config),
    open: fakeKafka({
      "q": { partitions: 6, operations: ALL },
      "q.gaps": { partitions: 1, operations: ALL },
      "my-trades": { partitions: 6, operations: ALL },
      "my-trades.gaps": { partitions: 3, operations: ALL },
    }, asked),
  });
  assertEquals(asked, ["q", "q.gaps", "my-trades", "my-trades.gaps"]);
  // Six partitions are right for a records topic; a gaps topic should have one.
  assertEquals(
    verdicts(results.filter((r) => /^topic "[^"]+"$/.test(r.check))),
    [
      'topic "q": ok',
      'topic "q.gaps": ok',
      'topic "my-trades": ok',
      'topic "my-trades.gaps": warning',
    ],
  );
  assertEquals(
    results.find((r) => r.check === 'topic "my-trades.gaps"')?.fix,
    'recreate "my-trades.gaps" with 1 partition',
  );
});

Deno.test("doctor with --role consume checks the records topic alone, whatever --channels says", async () => {
  const asked: string[] = [];
  const results = await checkKafka(CONFIG, {
    role: "consume",
    channelTopics: channelTopicsFor(["XQ", "XT", "XA"], CONFIG),
    open: fakeKafka({ "q": { partitions: 6, operations: ALL } }, asked),
  });
  assertEquals(asked, ["q"]);
  assertEquals(verdicts(results), [
    "reachable: ok",
    'topic "q": ok',
    'consume from "q": ok',
    'topic "q" cleanup.policy: ok',
    'topic "q" retention.ms: ok',
  ]);
});
