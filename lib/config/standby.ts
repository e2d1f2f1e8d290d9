/** The failover config builder: `--standby-group` and its timings. */
import { ConfigError } from "./errors.ts";
import { type SettingsOf } from "./settings.ts";

/** Producer failover settings (`--standby-group`); see docs/failover.md. */
export interface StandbyConfig {
  /** The Kafka consumer group the producers join to elect the active one. */
  group: string;
  /** The one-partition topic whose partition 0 is the leadership: `<topic>.leader`. */
  leaderTopic: string;
  /** The group's session timeout, ms: a dead active producer is replaced after this long. */
  sessionTimeoutMs: number;
}

/** The failover settings, or undefined when `--standby-group` is unset. */
export function buildStandbyConfig(
  settings: SettingsOf<"producer">,
  topic: string,
): StandbyConfig | undefined {
  const group = settings.standbyGroup;
  if (group === undefined || group === "") return undefined;
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(group)) {
    throw new ConfigError(
      `--standby-group must be 1 to 200 letters, digits or . _ -, got "${group}"`,
    );
  }
  if (settings.kafkaClient === "kafkajs") {
    throw new ConfigError(
      `--standby-group needs the platformatic Kafka client (the kafkajs adapter has no leader ` +
        `election); unset KAFKA_CLIENT (--kafka-client) or set it to platformatic`,
    );
  }
  return {
    group,
    leaderTopic: `${topic}.leader`,
    sessionTimeoutMs: settings.sessionTimeout * 1000,
  };
}
