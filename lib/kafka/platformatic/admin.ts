/** Topics, their configs and access, offsets and lag through a @platformatic/kafka admin client. */
import {
  type Admin,
  kGetApi,
  kGetBootstrapConnection,
  protocolErrorsCodesById,
} from "@platformatic/kafka";
import type { EnsureTopicOptions, EnsureTopicResult, PartitionLag, TopicAccess } from "../types.ts";
import { aclOperations } from "../access.ts";
import { errorChain } from "../diagnosis.ts";
import { lagRows } from "../offsets.ts";
import { waitForLeaders } from "../startup.ts";

export async function ensureTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<EnsureTopicResult> {
  let created = false;
  if (!(await admin.listTopics()).includes(name)) {
    try {
      await admin.createTopics({
        topics: [name],
        partitions: options.partitions,
        replicas: options.replicationFactor,
      });
      created = true;
    } catch (error) {
      // Another client created it between our list and create calls.
      if (!errorChain(error).some((m) => /already exists/i.test(m))) throw error;
    }
  }
  const partitions = await waitForLeaders(name, async () => {
    const meta = await admin.metadata({ topics: [name], forceUpdate: true });
    const topic = meta.topics.get(name);
    return topic && {
      partitions: topic.partitionsCount,
      leaders: topic.partitions.every((p) => p.leader >= 0),
    };
  });
  return { created, partitions };
}

/** Each partition's earliest or latest offset (`timestamp` -2n or -1n), or the offset at a time. */
export async function offsetsAt(
  admin: Admin,
  topic: string,
  partitions: number[],
  timestamp: bigint,
): Promise<Map<number, bigint>> {
  const listed = await admin.listOffsets({
    topics: [{
      name: topic,
      partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })),
    }],
  });
  const out = new Map<number, bigint>();
  for (const t of listed) {
    for (const p of t.partitions) out.set(p.partitionIndex, p.offset);
  }
  return out;
}

/** The group's committed offset per partition of the topic (-1n where none). */
export async function committedOffsets(
  admin: Admin,
  groupId: string,
  topic: string,
  partitions: number[],
): Promise<Map<number, bigint>> {
  const groups = await admin.listConsumerGroupOffsets({
    groups: [{ groupId, topics: [{ name: topic, partitionIndexes: partitions }] }],
  });
  const out = new Map<number, bigint>(partitions.map((p) => [p, -1n]));
  for (const g of groups) {
    for (const t of g.topics) {
      if (t.name !== topic) continue;
      for (const p of t.partitions) out.set(p.partitionIndex, p.committedOffset);
    }
  }
  return out;
}

export async function partitionIndexes(admin: Admin, topic: string): Promise<number[]> {
  const meta = await admin.metadata({ topics: [topic] });
  const count = meta.topics.get(topic)?.partitionsCount ?? 0;
  return Array.from({ length: count }, (_, i) => i);
}

export async function partitionLag(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<PartitionLag[]> {
  const partitions = await partitionIndexes(admin, topic);
  const [ends, starts, committed] = await Promise.all([
    offsetsAt(admin, topic, partitions, -1n),
    offsetsAt(admin, topic, partitions, -2n),
    committedOffsets(admin, groupId, topic, partitions),
  ]);
  return lagRows(partitions.map((partition) => ({
    partition,
    end: ends.get(partition) ?? 0n,
    start: starts.get(partition) ?? 0n,
    committed: committed.get(partition) ?? -1n,
  })));
}

/** The topic's effective configs (only `names`, when given), by name. */
export async function topicConfigs(
  admin: Admin,
  name: string,
  names?: readonly string[],
): Promise<Record<string, string | undefined>> {
  const described = await admin.describeConfigs({
    resources: [{
      resourceType: 2, // TOPIC
      resourceName: name,
      ...(names ? { configurationKeys: [...names] } : {}),
    }],
  });
  const out: Record<string, string | undefined> = {};
  for (const resource of described) {
    for (const c of resource.configs) out[c.name] = c.value ?? undefined;
  }
  return out;
}

/** Calls one Kafka API on a bootstrap connection, at the highest version both sides speak. */
function rawCall<T>(admin: Admin, apiName: string, ...args: unknown[]): Promise<T> {
  const base = admin as unknown as Record<symbol, (...a: unknown[]) => void>;
  return new Promise<T>((resolve, reject) => {
    base[kGetBootstrapConnection]!((error: Error | null, connection: unknown) => {
      if (error) return reject(error);
      base[kGetApi]!(apiName, (error: Error | null, api: (...a: unknown[]) => void) => {
        if (error) return reject(error);
        api(connection, ...args, (error: Error | null, response: T) => {
          if (error) {
            // A response with per-topic errors still carries the answer for the others.
            const answer = (error as { response?: T }).response;
            return answer ? resolve(answer) : reject(error);
          }
          resolve(response);
        });
      });
    });
  });
}

/**
 * KIP-430: a Metadata request with `includeTopicAuthorizedOperations`, so the broker says what
 * this user may do on each topic without anything being written.
 */
export async function topicAccess(
  admin: Admin,
  topics: string[],
): Promise<Map<string, TopicAccess>> {
  const response = await rawCall<{
    topics: { name: string | null; errorCode: number; topicAuthorizedOperations: number }[];
  }>(admin, "Metadata", topics, false, true);
  const out = new Map<string, TopicAccess>();
  for (const t of response.topics) {
    if (t.name === null) continue;
    out.set(t.name, {
      error: t.errorCode === 0 ? undefined : protocolErrorName(t.errorCode),
      operations: t.errorCode === 0 ? aclOperations(t.topicAuthorizedOperations) : [],
    });
  }
  return out;
}

/** KIP-430 for a consumer group: what this user may do on it (the group need not exist). */
export async function groupAccess(admin: Admin, groupId: string): Promise<string[]> {
  const groups = await admin.describeGroups({
    groups: [groupId],
    includeAuthorizedOperations: true,
  });
  return aclOperations(groups.get(groupId)?.authorizedOperations ?? 0);
}

/**
 * CreateTopics with `validateOnly`: the broker checks the request (authorization included)
 * and creates nothing. Rejects with the broker's reason.
 */
export async function validateCreateTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<void> {
  const response = await rawCall<{
    topics: { name: string; errorCode: number; errorMessage: string | null }[];
  }>(
    admin,
    "CreateTopics",
    [{
      name,
      numPartitions: options.partitions,
      replicationFactor: options.replicationFactor,
      assignments: [],
      configs: [],
    }],
    10_000,
    true,
  );
  const topic = response.topics.find((t) => t.name === name);
  if (topic && topic.errorCode !== 0) {
    const id = protocolErrorName(topic.errorCode);
    const message = `${id}${topic.errorMessage ? `: ${topic.errorMessage}` : ""}`;
    throw Object.assign(new Error(message), { apiId: id });
  }
}

function protocolErrorName(code: number): string {
  return (protocolErrorsCodesById as Record<number, string>)[code] ?? `error code ${code}`;
}
