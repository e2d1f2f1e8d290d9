/** Exit codes, the Kafka client names and every default, stated once. */

/** Exit codes shared by every entry script (listed in the README). */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  AUTH_FAILED: 3,
  MAX_CONNECTIONS: 4,
  KAFKA_UNREACHABLE: 5,
  /** The Polygon plan does not include what we asked for (a refused subscription, no WebSocket). */
  NOT_IN_PLAN: 6,
  /** The history store's database (QuestDB, PostgreSQL) did not answer at start-up. */
  STORE_UNREACHABLE: 7,
  /**
   * The consumer's output closed (a broken pipe: the reader of `consume | ...` exited); only
   * what the reader took was committed (issue 24, finding 2).
   */
  BROKEN_PIPE: 8,
  /**
   * The consumer read nothing for `--stall-after` while records waited for it, or never joined
   * its group: the client looks stuck (issue 21, the consumer that sometimes read nothing).
   */
  STALLED: 9,
} as const;

/** The Kafka client adapters, by setting value (`--kafka-client`, `KAFKA_CLIENT`). */
export const KAFKA_CLIENTS = ["platformatic", "kafkajs"] as const;

/** A Kafka client adapter's name. */
export type KafkaClientName = (typeof KAFKA_CLIENTS)[number];

/** The client used when none is set: the faster producer on `deno task bench` (docs/kafka_client.md). */
export const DEFAULT_KAFKA_CLIENT: KafkaClientName = "platformatic";

/**
 * Defaults that the settings table and the modules' own options share, each stated here once:
 * the table's defaults are made from them, and a module used without the table (a test, the
 * demo) falls back to the same values.
 */
export const DEFAULTS = {
  /** Most records per send (`--batch-max`). */
  batchMax: 1000,
  /** Bound of the producer's frame queue (`--queue-max`). */
  queueMax: 100_000,
  /** No frame for this long: the socket is dead (`--stale-after`); /healthz uses it too. */
  staleAfterMs: 30_000,
  /** A live socket without a quote for this long is reconnected (`--quiet-after`). */
  quietAfterMs: 300_000,
  /** Cap of the reconnect backoff (`--backoff-max`). */
  backoffMaxMs: 30_000,
  /** Longest flush at shutdown (`--shutdown-timeout`). */
  shutdownTimeoutMs: 10_000,
  /** Consumer group session timeout (`--session-timeout`). */
  sessionTimeoutMs: 6_000,
  /** A consumer with records waiting and none arriving for this long exits 9 (`--stall-after`). */
  stallAfterMs: 120_000,
  /** Partitions of a topic the producer creates (`--partitions`). */
  partitions: 6,
} as const;

/** The gaps topic of a records topic, unless `--gaps-topic` names another: `<topic>.gaps`. */
export function gapsTopicFor(topic: string): string {
  return `${topic}.gaps`;
}

/** Seconds as setting text, from a default in ms. */
export function seconds(ms: number): string {
  return String(ms / 1000);
}
