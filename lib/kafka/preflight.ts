/**
 * What produce checks before sending, and `deno task doctor` reports, in the same words: each
 * topic exists or this user may create it, this user may write to it (KIP-430's authorized
 * operations, asked without writing), and the topic's settings pass the topic check
 * (`topic_check.ts`). Everything goes through the {@linkcode KafkaAdmin} interface.
 */
import type { KafkaConfig } from "../config/kafka.ts";
import type { EnsureTopicOptions, KafkaAdmin, TopicAccess } from "./types.ts";
import { isAuthorizationError, missingOperations, protocolErrorIds } from "./access.ts";
import { rootMessage } from "./diagnosis.ts";
import {
  checkTopic,
  describeTopicForCheck,
  timestampPolicyOf,
  type TopicFinding,
} from "./topic_check.ts";

/** Where a topic stands for this user. */
export type TopicState =
  /** It exists and this user may describe it. */
  | "exists"
  /** It is missing and this user may create it (produce creates it). */
  | "creatable"
  /** It is missing and this user may not create it. */
  | "missing"
  /** This user may not describe it: it is missing, or this user has no ACL on it. */
  | "hidden"
  /** The adapter cannot tell (kafkajs has no KIP-430): only the topic list was read. */
  | "unknown";

/** A topic's state, and what to do when it is in the way. */
export interface TopicReadiness {
  topic: string;
  state: TopicState;
  /** The broker's answer for this user, when the adapter can ask. */
  access?: TopicAccess;
  /** What was found. */
  message: string;
  /** What to do (for `missing` and `hidden`). */
  fix?: string;
}

/** The user a config connects as, for messages: the SASL user, or the client certificate. */
export function userOf(config: KafkaConfig): string {
  if (config.sasl) return `user "${config.sasl.username}"`;
  if (config.security === "ssl") return "the client certificate's user";
  return "this client";
}

/** How to create a topic as an admin, for fixes. */
export function createTopicFix(topic: string, partitions: number): string {
  return `create "${topic}" as an admin user (Aiven console: the service → Topics → Create ` +
    `topic, or avn service topic-create SERVICE ${topic} --partitions ${partitions} ` +
    `--replication 3), then grant this user access (Aiven: the service → ACL)`;
}

/** Where `topic` stands for this user: it exists, can be created, or why not. */
export async function topicReadiness(
  admin: KafkaAdmin,
  config: KafkaConfig,
  topic: string,
  options: EnsureTopicOptions,
): Promise<TopicReadiness> {
  const user = userOf(config);
  const access = (await admin.topicAccess([topic]))?.get(topic);
  if (access === undefined) {
    const listed = (await admin.listTopics()).includes(topic);
    return {
      topic,
      state: listed ? "exists" : "unknown",
      message: listed ? `exists` : `is not listed for ${user} (missing, or no ACL)`,
    };
  }
  if (access.error === undefined) return { topic, state: "exists", access, message: "exists" };
  if (
    access.error !== "UNKNOWN_TOPIC_OR_PARTITION" && access.error !== "TOPIC_AUTHORIZATION_FAILED"
  ) {
    return { topic, state: "unknown", access, message: `cannot be described (${access.error})` };
  }
  try {
    await admin.validateCreateTopic(topic, options);
    return {
      topic,
      state: "creatable",
      access,
      message: `is missing; produce creates it with ${options.partitions} partition` +
        (options.partitions === 1 ? "" : "s"),
    };
  } catch (error) {
    if (protocolErrorIds(error).includes("TOPIC_ALREADY_EXISTS")) {
      // It exists, but this user may not describe it.
      return {
        topic,
        state: "hidden",
        access,
        message: `exists, but ${user} may not describe it (${access.error})`,
        fix: `grant ${user} access to "${topic}" (Aiven: the service → ACL → Add entry)`,
      };
    }
    const reason = isAuthorizationError(error)
      ? protocolErrorIds(error).find((id) => id.endsWith("_AUTHORIZATION_FAILED"))
      : rootMessage(error);
    if (access.error === "TOPIC_AUTHORIZATION_FAILED") {
      return {
        topic,
        state: "hidden",
        access,
        message: `cannot be seen by ${user} (TOPIC_AUTHORIZATION_FAILED: missing, or no ACL ` +
          `on it) and ${user} may not create it (${reason})`,
        fix: createTopicFix(topic, options.partitions),
      };
    }
    return {
      topic,
      state: "missing",
      access,
      message: `does not exist and ${user} may not create it (${reason})`,
      fix: createTopicFix(topic, options.partitions),
    };
  }
}

/** A missing permission of one topic, as a sentence and a fix; undefined when none is missing. */
export function permissionProblem(
  readiness: TopicReadiness,
  needed: readonly string[],
  config: KafkaConfig,
  what: "produce" | "consume",
): { message: string; fix: string } | undefined {
  if (readiness.state !== "exists" || !readiness.access) return undefined;
  const missing = missingOperations(readiness.access.operations, needed);
  if (!missing.length) return undefined;
  const user = userOf(config);
  const aiven = what === "produce" ? "write" : "read";
  return {
    message: `${user} may not ${missing.join(" or ")} topic "${readiness.topic}" (allowed: ` +
      `${readiness.access.operations.join(", ") || "nothing"}), so ${what} would fail`,
    fix: `grant it: Aiven console → the service → ACL → Add entry (permission ${aiven} or ` +
      `readwrite, topic "${readiness.topic}"), or avn service acl-add SERVICE --permission ` +
      `${aiven} --topic ${readiness.topic} --username USER`,
  };
}

/**
 * The topic check's findings for a topic. Settings the user may not read (on Aiven
 * DescribeConfigs is an admin permission) make one warning instead: the check is a guard, and
 * the send itself still reports what the broker refuses.
 */
export async function topicSettingFindings(
  admin: KafkaAdmin,
  config: KafkaConfig,
  topic: string,
  oldestRecordMs: number | undefined,
): Promise<TopicFinding[]> {
  let described;
  try {
    described = await describeTopicForCheck(admin, topic);
  } catch (error) {
    return [{
      setting: "(all)",
      verdict: "warning",
      message: `Cannot read the settings of topic "${topic}" (${
        protocolErrorIds(error)[0] ?? rootMessage(error)
      }), so its retention and timestamp limits were not checked`,
      fix: `run deno task doctor as a user with DescribeConfigs on the topic (on Aiven: admin)`,
    }];
  }
  return checkTopic(described, {
    policy: timestampPolicyOf(config),
    nowMs: Date.now(),
    oldestRecordMs,
    batchMax: config.batchMax,
  });
}
