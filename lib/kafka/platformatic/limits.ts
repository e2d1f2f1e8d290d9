/** A topic's {@linkcode TopicLimits} through a @platformatic/kafka admin client. */
import { type Admin, ConfigResourceTypes } from "@platformatic/kafka";
import { LIMIT_CONFIGS, limitsFromConfig, type TopicLimits } from "../refusals.ts";

/** Reads the topic settings that decide which records the broker refuses. */
export async function topicLimits(admin: Admin, topic: string): Promise<TopicLimits> {
  const described = await admin.describeConfigs({
    resources: [{
      resourceType: ConfigResourceTypes.TOPIC,
      resourceName: topic,
      configurationKeys: [...LIMIT_CONFIGS],
    }],
  });
  const configs = described.find((d) => d.resourceName === topic)?.configs ?? [];
  return limitsFromConfig(new Map(configs.map((c) => [c.name, c.value])));
}
