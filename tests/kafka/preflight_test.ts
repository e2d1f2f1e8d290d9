/**
 * The checks produce runs before sending (lib/kafka/preflight.ts), on a fake admin that answers
 * as a broker with ACLs does: KIP-430's authorized operations, CreateTopics validateOnly.
 */
import { assertEquals } from "../helpers/assert.ts";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import type { KafkaAdmin, TopicAccess } from "../../lib/kafka/types.ts";
import { permissionProblem, topicReadiness } from "../../lib/kafka/preflight.ts";
import { NEEDED_OPERATIONS } from "../../lib/kafka/access.ts";

const CONFIG = {
  brokers: ["h:1"],
  topic: "q",
  gapsTopic: "q.gaps",
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

/** An admin whose broker says `access` for the topic and `create` to a validateOnly create. */
function admin(access: TopicAccess | undefined, create?: string): KafkaAdmin {
  const refuse = (id: string) => Promise.reject(Object.assign(new Error(id), { apiId: id }));
  return {
    topicAccess: (topics) =>
      Promise.resolve(access && new Map(topics.map((t) => [t, access] as const))),
    validateCreateTopic: () => create ? refuse(create) : Promise.resolve(),
    listTopics: () => Promise.resolve([]),
  } as Partial<KafkaAdmin> as KafkaAdmin;
}

const CREATE = { partitions: 6, replicationFactor: -1 };

Deno.test("preflight: a missing topic this user may create is creatable", async () => {
  const r = await topicReadiness(
    admin({ error: "UNKNOWN_TOPIC_OR_PARTITION", operations: [] }),
    CONFIG,
    "q",
    CREATE,
  );
  assertEquals([r.state, r.message], [
    "creatable",
    "is missing; produce creates it with 6 partitions",
  ]);
});

Deno.test("preflight: a missing topic this user may not create is missing, with the fix", async () => {
  const r = await topicReadiness(
    admin({ error: "UNKNOWN_TOPIC_OR_PARTITION", operations: [] }, "TOPIC_AUTHORIZATION_FAILED"),
    CONFIG,
    "q",
    CREATE,
  );
  assertEquals(r.state, "missing");
  assertEquals(
    r.message,
    'does not exist and user "carol" may not create it (TOPIC_AUTHORIZATION_FAILED)',
  );
  assertEquals(
    r.fix?.startsWith('create "q" as an admin user (Aiven console: the service → Topics'),
    true,
  );
});

Deno.test("preflight: a topic this user may not describe nor create is hidden", async () => {
  const r = await topicReadiness(
    admin({ error: "TOPIC_AUTHORIZATION_FAILED", operations: [] }, "TOPIC_AUTHORIZATION_FAILED"),
    CONFIG,
    "q",
    CREATE,
  );
  assertEquals(r.state, "hidden");
});

Deno.test("preflight: an existing topic hidden from this user is said to exist", async () => {
  const r = await topicReadiness(
    admin({ error: "TOPIC_AUTHORIZATION_FAILED", operations: [] }, "TOPIC_ALREADY_EXISTS"),
    CONFIG,
    "q",
    CREATE,
  );
  assertEquals([r.state, r.message], [
    "hidden",
    'exists, but user "carol" may not describe it (TOPIC_AUTHORIZATION_FAILED)',
  ]);
});

Deno.test("preflight: read-only access fails produce and passes consume; ALL passes both", async () => {
  const readOnly = await topicReadiness(
    admin({ operations: ["READ", "DESCRIBE"] }),
    CONFIG,
    "q",
    CREATE,
  );
  assertEquals(
    permissionProblem(readOnly, NEEDED_OPERATIONS.produce, CONFIG, "produce")?.message,
    'user "carol" may not WRITE topic "q" (allowed: READ, DESCRIBE), so produce would fail',
  );
  assertEquals(
    permissionProblem(readOnly, NEEDED_OPERATIONS.consume, CONFIG, "consume"),
    undefined,
  );
  const all = await topicReadiness(admin({ operations: ["ALL"] }), CONFIG, "q", CREATE);
  assertEquals(permissionProblem(all, NEEDED_OPERATIONS.produce, CONFIG, "produce"), undefined);
});

Deno.test("preflight: without KIP-430 (kafkajs) a listed topic exists, its access unknown", async () => {
  const a = admin(undefined);
  a.listTopics = () => Promise.resolve(["q"]);
  const r = await topicReadiness(a, CONFIG, "q", CREATE);
  assertEquals([r.state, r.access], ["exists", undefined]);
  assertEquals(permissionProblem(r, NEEDED_OPERATIONS.produce, CONFIG, "produce"), undefined);
});
