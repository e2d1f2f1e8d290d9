/** Topics, offsets and lag through a @platformatic/kafka admin client. */
import type { Admin } from "@platformatic/kafka";
import type { EnsureTopicOptions, EnsureTopicResult, PartitionLag } from "../types.ts";
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
