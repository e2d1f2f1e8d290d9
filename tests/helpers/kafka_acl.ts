/**
 * ACLs and topics on a test broker started with `authorizer: "acl"`, set up as an Aiven admin
 * would for a non-admin user: through the PLAINTEXT listener, whose principal is a super user.
 */
import { type Acl, Admin } from "@platformatic/kafka";
import type { KafkaBroker } from "./kafka_broker.ts";

/** Options for {@linkcode grantTopicAcls}. */
export interface GrantOptions {
  /** The user, without `User:`. */
  user: string;
  /** Topics (LITERAL) or one prefix (PREFIXED) the ACLs are for. */
  topics: { literal: string[] } | { prefix: string };
  /** Topic operations to allow, e.g. ["WRITE"] (Aiven "write"), ["READ"] ("read"). */
  operations: ("READ" | "WRITE" | "DESCRIBE" | "DESCRIBE_CONFIGS")[];
  /** Also allow READ on every consumer group (as Aiven ACLs do). Default false. */
  groups?: boolean;
}

const OP = { READ: 3, WRITE: 4, DESCRIBE: 8, DESCRIBE_CONFIGS: 10 } as const;

/** Allows `user` the operations on the topics (and every group, when asked). */
export async function grantTopicAcls(broker: KafkaBroker, options: GrantOptions): Promise<void> {
  const admin = new Admin({ clientId: "test-acl", bootstrapBrokers: [broker.plaintext] });
  try {
    const principal = `User:${options.user}`;
    const targets = "prefix" in options.topics
      ? [{ name: options.topics.prefix, pattern: 4 as Acl["resourcePatternType"] }]
      : options.topics.literal.map((name) => ({ name, pattern: 3 as Acl["resourcePatternType"] }));
    const creations: Acl[] = targets.flatMap((t) =>
      options.operations.map((op) => ({
        resourceType: 2,
        resourceName: t.name,
        resourcePatternType: t.pattern,
        principal,
        host: "*",
        operation: OP[op],
        permissionType: 3,
      }))
    );
    if (options.groups) {
      creations.push({
        resourceType: 3,
        resourceName: "*",
        resourcePatternType: 3,
        principal,
        host: "*",
        operation: OP.READ,
        permissionType: 3,
      });
    }
    await admin.createAcls({ creations });
  } finally {
    await admin.close();
  }
}

/** Creates topics as the admin (PLAINTEXT), with topic configs, e.g. `retention.ms`. */
export async function createTopicsAsAdmin(
  broker: KafkaBroker,
  topics: { name: string; partitions: number; configs?: Record<string, string> }[],
): Promise<void> {
  const admin = new Admin({ clientId: "test-acl", bootstrapBrokers: [broker.plaintext] });
  try {
    for (const t of topics) {
      await admin.createTopics({
        topics: [t.name],
        partitions: t.partitions,
        replicas: 1,
        configs: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
      });
    }
  } finally {
    await admin.close();
  }
}
