/** Topics and lag through a kafkajs admin client. */
import { type Admin, ConfigResourceTypes } from "kafkajs";
import type { EnsureTopicOptions, EnsureTopicResult, PartitionLag } from "../types.ts";
import { lagRows } from "../offsets.ts";
import { waitForLeaders } from "../startup.ts";

/** Creates the topic when it is missing and waits for its leaders. */
export async function ensureTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<EnsureTopicResult> {
  const topics = await admin.listTopics();
  let created = false;
  if (!topics.includes(name)) {
    try {
      // false: another client created it between our list and create calls.
      created = await admin.createTopics({
        topics: [{
          topic: name,
          numPartitions: options.partitions,
          replicationFactor: options.replicationFactor,
        }],
        waitForLeaders: true,
      });
    } catch (error) {
      // Right after creation the broker may not host the new partitions yet, and kafkajs's
      // wait for leaders gives up on that answer; the metadata wait below covers it.
      if ((error as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw error;
      created = true;
    }
  }
  const partitions = await waitForLeaders(name, async () => {
    const metadata = await admin.fetchTopicMetadata({ topics: [name] });
    const topic = metadata.topics.find((t) => t.name === name);
    return topic && {
      partitions: topic.partitions.length,
      leaders: topic.partitions.every((p) => p.leader >= 0),
    };
  });
  return { created, partitions };
}

/** Each partition's end offset minus the group's committed offset. */
export async function partitionLag(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<PartitionLag[]> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const byPartition = new Map(
    (committed[0]?.partitions ?? []).map((p) => [p.partition, p.offset]),
  );
  return lagRows(ends.map(({ partition, high, low }) => ({
    partition,
    end: BigInt(high),
    start: BigInt(low),
    committed: BigInt(byPartition.get(partition) ?? "-1"),
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
      type: ConfigResourceTypes.TOPIC,
      name,
      ...(names ? { configNames: [...names] } : {}),
    }],
    includeSynonyms: false,
  });
  const out: Record<string, string | undefined> = {};
  for (const resource of described.resources) {
    for (const c of resource.configEntries) out[c.configName] = c.configValue ?? undefined;
  }
  return out;
}

/** CreateTopics with `validateOnly`: checked by the broker, nothing created. */
export async function validateCreateTopic(
  admin: Admin,
  name: string,
  options: EnsureTopicOptions,
): Promise<void> {
  await admin.createTopics({
    validateOnly: true,
    topics: [{
      topic: name,
      numPartitions: options.partitions,
      replicationFactor: options.replicationFactor,
    }],
  });
}
