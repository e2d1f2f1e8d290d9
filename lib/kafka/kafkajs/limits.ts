/** A topic's {@linkcode TopicLimits} through a kafkajs admin client. */
import { type Admin, ConfigResourceTypes } from "kafkajs";
import { LIMIT_CONFIGS, limitsFromConfig, type TopicLimits } from "../refusals.ts";

/** Reads the topic settings that decide which records the broker refuses. */
export async function topicLimits(admin: Admin, topic: string): Promise<TopicLimits> {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: topic,
      configNames: [...LIMIT_CONFIGS],
    }],
  });
  const entries = described.resources.find((r) => r.resourceName === topic)?.configEntries ?? [];
  return limitsFromConfig(new Map(entries.map((e) => [e.configName, e.configValue])));
}
