/**
 * The Kafka checks, in the order produce meets them: the brokers answer with the configured
 * auth (the adapters' own diagnoses: wrong CA, rejected certificate, bad SASL password), each
 * topic produce prepares (`<topic>`, `<topic>.gaps`, and with `--channels` each channel's
 * records topic and its gaps topic, from the same list produce uses) exists or may be created, this user may produce and consume (KIP-430's authorized
 * operations, asked without writing; or, where the client cannot ask, one clearly marked probe
 * record on a topic the user names), and the settings of each records topic (`topic_check.ts`). The words are
 * produce's own (`lib/kafka/preflight.ts`), so the doctor and the scripts agree.
 */
import { deadline } from "../async.ts";
import type { KafkaConfig } from "../config/kafka.ts";
import { openKafka } from "../kafka/open.ts";
import type { KafkaClient } from "../kafka/types.ts";
import { isAuthorizationError, NEEDED_OPERATIONS, protocolErrorIds } from "../kafka/access.ts";
import { rootMessage } from "../kafka/diagnosis.ts";
import { KafkaAuthError } from "../kafka/errors.ts";
import {
  permissionProblem,
  type TopicReadiness,
  topicReadiness,
  topicSettingFindings,
  userOf,
} from "../kafka/preflight.ts";
import { recordTopics, sinkTopics } from "../kafka/connect.ts";
import type { CheckResult } from "./verdict.ts";

/** Which scripts' needs to check. */
export type DoctorRole = "produce" | "consume" | "both";

/** Options for {@linkcode checkKafka}. */
export interface KafkaCheckOptions {
  /** Check produce's needs, consume's, or both; default both. */
  role?: DoctorRole;
  /** The consumer group of `deno task consume` (KAFKA_GROUP_ID). */
  groupId?: string;
  /**
   * The topics of the channels beyond XQ (`--channels`), as produce prepares them:
   * `channelTopicsFor(channels, config)` (lib/channels/registry.ts). Default none (quotes only).
   */
  channelTopics?: readonly { topic: string; gapsTopic: string }[];
  /** The failover topic `<topic>.leader`, when `--standby-group` is set. */
  leaderTopic?: string;
  /** The oldest record's timestamp of a replay to check against (`--recording`), ms. */
  oldestRecordMs?: number;
  /**
   * Where the client cannot ask for authorized operations (kafkajs): write one record with the
   * header `doctor-probe: 1` (key `doctor-probe`) to this topic to learn whether writes pass.
   */
  probeTopic?: string;
  /** Longest wait to reach the brokers, ms; default the config's, at most 15,000. */
  connectTimeoutMs?: number;
  /** Opens the client; default {@linkcode openKafka}. */
  open?: typeof openKafka;
}

/** Runs the Kafka checks; a failure to connect ends them (nothing else can be asked). */
export async function checkKafka(
  config: KafkaConfig,
  options: KafkaCheckOptions = {},
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const result = (check: string, verdict: CheckResult["verdict"], message: string, fix?: string) =>
    out.push({ group: "kafka", check, verdict, message, ...(fix ? { fix } : {}) });
  const role = options.role ?? "both";
  const producing = role !== "consume";
  const consuming = role !== "produce";
  const open = options.open ?? openKafka;
  const kafka = await open(config, { log: () => {} });
  try {
    try {
      await kafka.connect({
        timeoutMs: options.connectTimeoutMs ?? Math.min(config.connectTimeoutMs, 15_000),
      });
      result(
        "reachable",
        "ok",
        `${config.brokers.join(",")} (${config.security}) answers; authenticated as ${
          userOf(config)
        }`,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      result(
        "reachable",
        "fail",
        message,
        error instanceof KafkaAuthError
          ? authFix(config)
          : `check KAFKA_BROKERS (Aiven: Overview → Connection information, the port of the ` +
            `chosen auth method), that the service is running, and its IP allow-list (Aiven: ` +
            `Service settings → Cloud and network → Set IP address allowlist); produce would ` +
            `exit with code 5`,
      );
      return out;
    }
    // Consume reads the records topic only; produce writes the gaps topics and every channel's.
    const channelTopics = producing ? options.channelTopics ?? [] : [];
    const records = new Set(recordTopics(config, channelTopics));
    const topics = [
      ...sinkTopics(config, producing, channelTopics),
      ...(options.leaderTopic ? [{ topic: options.leaderTopic, partitions: 1 }] : []),
    ];
    let accessKnown = true;
    for (const { topic, partitions } of topics) {
      const isMain = topic === config.topic;
      const isRecords = records.has(topic);
      let ready: TopicReadiness;
      try {
        ready = await topicReadiness(kafka.admin, config, topic, {
          partitions,
          replicationFactor: config.replicationFactor,
        });
      } catch (error) {
        result(`topic "${topic}"`, "fail", `Cannot describe "${topic}": ${rootMessage(error)}`);
        continue;
      }
      if (ready.state === "missing" || ready.state === "hidden") {
        result(
          `topic "${topic}"`,
          "fail",
          `"${topic}" ${ready.message}`,
          `${ready.fix}; produce would exit with code 5`,
        );
        continue;
      }
      // Without KIP-430 (kafkajs) permissions are unknown: the probe below, if asked for.
      if (!ready.access) accessKnown = false;
      if (ready.state !== "exists") {
        result(
          `topic "${topic}"`,
          ready.state === "creatable" ? "ok" : "warning",
          `"${topic}" ${ready.message}`,
        );
        continue;
      }
      const shape = await kafka.admin.describeTopic(topic);
      const rf = shape.replicas.length ? Math.min(...shape.replicas) : 0;
      const wantOne = !isRecords && shape.partitions !== 1;
      result(
        `topic "${topic}"`,
        wantOne ? "warning" : "ok",
        `"${topic}" exists: ${shape.partitions} partition${
          shape.partitions === 1 ? "" : "s"
        }, replication factor ${rf}` +
          (wantOne ? `; it should have 1 partition (gaps and leadership keep one order)` : ""),
        wantOne ? `recreate "${topic}" with 1 partition` : undefined,
      );
      if (producing && topic !== options.leaderTopic) {
        const denied = permissionProblem(ready, NEEDED_OPERATIONS.produce, config, "produce");
        if (denied) result(`produce to "${topic}"`, "fail", denied.message, denied.fix);
        else if (ready.access) {
          result(`produce to "${topic}"`, "ok", `${userOf(config)} may write (KIP-430)`);
        }
      }
      if (consuming && isMain) {
        const denied = permissionProblem(ready, NEEDED_OPERATIONS.consume, config, "consume");
        if (denied) result(`consume from "${topic}"`, "fail", denied.message, denied.fix);
        else if (ready.access) {
          result(`consume from "${topic}"`, "ok", `${userOf(config)} may read (KIP-430)`);
        }
      }
      if (isRecords) {
        const findings = await topicSettingFindings(
          kafka.admin,
          config,
          topic,
          options.oldestRecordMs,
        );
        for (const f of findings) {
          result(
            `topic "${topic}" ${f.setting}`,
            f.verdict,
            f.message,
            f.fix && f.verdict === "fail"
              ? `${f.fix}; produce and replay refuse to start (exit code 2)`
              : f.fix,
          );
        }
      }
    }
    if (consuming && options.groupId) await checkGroup(kafka, config, options.groupId, result);
    if (!accessKnown && producing) await probe(kafka, config, options.probeTopic, result);
  } finally {
    await kafka.close().catch(() => {});
  }
  return out;
}

/** The fix for a refused handshake or login, by security mode. */
function authFix(config: KafkaConfig): string {
  const end = "; produce would exit with code 5";
  if (config.security === "sasl_ssl") {
    return `check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (Aiven: the service → Access & ` +
      `Control → Users → the user's password), KAFKA_SASL_MECHANISM, KAFKA_SSL_CA (the ` +
      `service's ca.pem) and that SASL is enabled (Service settings → Advanced configuration → ` +
      `kafka_authentication_methods.sasl)` + end;
  }
  return `check KAFKA_SSL_CA, KAFKA_SSL_CERT and KAFKA_SSL_KEY: the three files of one user of ` +
    `this service (Aiven: Overview → Connection information, or Access & Control → Users)` + end;
}

async function checkGroup(
  kafka: KafkaClient,
  config: KafkaConfig,
  groupId: string,
  result: (check: string, verdict: CheckResult["verdict"], message: string, fix?: string) => void,
): Promise<void> {
  const check = `consumer group "${groupId}"`;
  try {
    const ops = await kafka.admin.groupAccess(groupId);
    if (ops === undefined) return;
    if (ops.includes("READ") || ops.includes("ALL")) {
      result(check, "ok", `${userOf(config)} may join and commit (READ)`);
    } else {
      result(
        check,
        "fail",
        `${userOf(config)} may not read group "${groupId}" (allowed: ${
          ops.join(", ") || "nothing"
        })`,
        groupFix(groupId),
      );
    }
  } catch (error) {
    if (isAuthorizationError(error)) {
      result(
        check,
        "fail",
        `${userOf(config)} may not use group "${groupId}" (${
          protocolErrorIds(error).find((id) => id.endsWith("_AUTHORIZATION_FAILED"))
        })`,
        groupFix(groupId),
      );
    } else {
      result(check, "warning", `Cannot describe group "${groupId}": ${rootMessage(error)}`);
    }
  }
}

function groupFix(groupId: string): string {
  return `grant READ on group "${groupId}" (Aiven ACLs grant every group with read; ` +
    `Kafka-native: Resource type Group, Operation Read), or set KAFKA_GROUP_ID`;
}

/** The probe record: the only write the doctor ever makes, and only when asked to. */
async function probe(
  kafka: KafkaClient,
  config: KafkaConfig,
  probeTopic: string | undefined,
  result: (check: string, verdict: CheckResult["verdict"], message: string, fix?: string) => void,
): Promise<void> {
  if (!probeTopic) {
    result(
      "produce permission",
      "warning",
      `not checked: the ${config.client} client cannot ask the broker for this user's ` +
        `operations (KIP-430)`,
      `set KAFKA_CLIENT=platformatic, or pass --probe-topic TOPIC to write one marked probe ` +
        `record (key "doctor-probe", header doctor-probe: 1) there`,
    );
    return;
  }
  const sink = kafka.sink();
  try {
    await deadline(
      sink.send(probeTopic, [{
        key: "doctor-probe",
        value: JSON.stringify({ doctorProbe: true, at: new Date().toISOString() }),
        timestamp: Date.now(),
        headers: { "doctor-probe": "1" },
      }]),
      15_000,
      { what: `Writing the probe record to "${probeTopic}"` },
    );
    result(
      `produce to "${probeTopic}"`,
      "ok",
      `wrote one probe record (key "doctor-probe", header doctor-probe: 1)`,
    );
  } catch (error) {
    result(
      `produce to "${probeTopic}"`,
      "fail",
      `Cannot write the probe record to "${probeTopic}": ${rootMessage(error)}`,
      `grant this user write on the topics (Aiven: the service → ACL)`,
    );
  } finally {
    await sink.close().catch(() => {});
  }
}
