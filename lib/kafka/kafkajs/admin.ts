/** Topics and lag through a kafkajs admin client. */
import type { Admin } from "kafkajs";
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
