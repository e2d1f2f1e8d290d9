/**
 * The Kafka boundary's contract, types only: the small interfaces for a client (a sink, a source,
 * admin and an election) that every adapter implements. No client library type crosses it.
 */
import type { KafkaClientName } from "../config/defaults.ts";
import type { KafkaConfig } from "../config/kafka.ts";
import type { RecordSink, RecordSource, StartFrom } from "../sink.ts";
import type { DeadLetterSink, RefusalReason, TopicLimits } from "./refusals.ts";

export type { KafkaClientName } from "../config/defaults.ts";
export type { StartFrom } from "../sink.ts";

/** What {@linkcode KafkaAdmin.ensureTopic} found or did. */
export interface EnsureTopicResult {
  /** True when the topic was created now, false when it already existed. */
  created: boolean;
  /** The topic's partition count (the existing one when it already existed). */
  partitions: number;
}

/** One partition's consumer-group lag. */
export interface PartitionLag {
  partition: number;
  /** The partition's end offset (the next offset to be written). */
  end: string;
  /** The group's committed offset, or "-1" when it has committed nothing. */
  committed: string;
  /** Records not yet consumed: end minus committed (minus the start offset if none). */
  lag: number;
}

/** Options for {@linkcode KafkaAdmin.ensureTopic}. */
export interface EnsureTopicOptions {
  /** Partitions of a new topic. */
  partitions: number;
  /** Replication factor of a new topic; -1 is the broker's default. */
  replicationFactor: number;
}

/** What this user may do on one topic (KIP-430), or why the broker would not say. */
export interface TopicAccess {
  /** The broker's error for the topic (`TOPIC_AUTHORIZATION_FAILED`, `UNKNOWN_TOPIC_OR_PARTITION`). */
  error?: string;
  /** The operations allowed (`READ`, `WRITE`, `DESCRIBE`, …); empty with an error. */
  operations: string[];
}

/** Topic and group administration. */
export interface KafkaAdmin {
  /** The names of the cluster's topics. */
  listTopics(): Promise<string[]>;
  /**
   * Creates the topic when it is missing; an existing topic is left as it is and its partition
   * count returned. Resolves once every partition has a leader (at most 10 s).
   */
  ensureTopic(name: string, options: EnsureTopicOptions): Promise<EnsureTopicResult>;
  /** Each partition's end offset minus the group's committed offset, by partition. */
  lag(groupId: string, topic: string): Promise<PartitionLag[]>;
  /** The partition count and each partition's replica count (for tests and diagnosis). */
  describeTopic(name: string): Promise<{ partitions: number; replicas: number[] }>;
  /**
   * The newest record timestamp (ms) over all partitions of the topic, or undefined when it
   * holds no record. The failover gap starts there (docs/failover.md).
   */
  newestTimestamp(topic: string): Promise<number | undefined>;
  /** The topic's effective configs by name (only `names`, when given); DescribeConfigs. */
  topicConfigs(
    name: string,
    names?: readonly string[],
  ): Promise<Record<string, string | undefined>>;
  /**
   * What this user may do on each topic, asked without writing anything (Metadata with
   * `includeTopicAuthorizedOperations`, KIP-430); undefined when the adapter cannot ask.
   */
  topicAccess(topics: string[]): Promise<Map<string, TopicAccess> | undefined>;
  /** The same for a consumer group (DescribeGroups); undefined when the adapter cannot ask. */
  groupAccess(groupId: string): Promise<string[] | undefined>;
  /**
   * Asks the broker whether this user could create the topic, creating nothing (CreateTopics
   * with `validateOnly`); rejects with the broker's reason.
   */
  validateCreateTopic(name: string, options: EnsureTopicOptions): Promise<void>;
  /**
   * The topic settings that decide which records the broker refuses (size, timestamp window),
   * read once per topic and client: the sinks check records against them before sending.
   */
  topicLimits(topic: string): Promise<TopicLimits>;
}

/** Counters a {@linkcode KafkaSink} keeps about its own retries. */
export interface SinkStats {
  /**
   * Sends that failed inside the client and were retried by it with the same batch and the
   * same sequence numbers (the broker drops what it already wrote).
   */
  retries: number;
  /**
   * Times the producer had to start again under a new producer id (fenced, or the broker lost
   * its sequence state) and resent a batch: records of that batch may be written twice.
   */
  producerResets: number;
  /**
   * Records the broker refuses for good (too large, a timestamp out of the topic's window, an
   * ACL...), by reason: kept aside as dead letters, never resent. Every reason present from 0.
   */
  deadLettered: Record<RefusalReason, number>;
}

/** A Kafka producer as a {@linkcode RecordSink}, with the counters of its retries. */
export interface KafkaSink extends RecordSink {
  /** Retries and producer resets so far. */
  readonly stats: SinkStats;
  /** Connects and takes a producer id now; `send` does it when needed. */
  connect(): Promise<void>;
}

/** Options for {@linkcode KafkaClient.sink}. */
export interface KafkaSinkOptions {
  /** Batch compression; default "none". */
  compression?: KafkaConfig["compression"];
  /** Broker-side wait for the acks of one produce request, ms; default 30,000. */
  ackTimeoutMs?: number;
  /**
   * Called on each producer reset (see {@linkcode SinkStats.producerResets}) with a line that
   * says whether duplicates are possible.
   */
  onReset?: (line: string) => void;
  /**
   * Keeps each record the broker refuses for good, with the reason; the send resolves once it
   * is kept. Default: a log line (the record is then not kept).
   */
  deadLetter?: DeadLetterSink;
  /** Clock for the timestamp checks against the topic's window, epoch ms; default `Date.now`. */
  now?: () => number;
  /**
   * Asked the moment each produce request would go onto the wire; when it returns false the
   * request is not written and its connection is dropped, so a producer paused after every
   * earlier check cannot write once it runs again (a standby term's lease). Default: none.
   * Only the default client can honour it; the kafkajs sink refuses it.
   */
  fence?: () => boolean;
}

/** Options for {@linkcode KafkaClient.source}. */
export interface KafkaSourceOptions {
  /** Consumer group id. */
  groupId: string;
  /** Topic to consume. */
  topic: string;
  /**
   * Where to start on partitions where the group has no committed offset; committed offsets
   * always win (a restart resumes where it stopped). A time starts at the first record at or
   * after it. Default "latest".
   */
  from?: StartFrom;
  /**
   * Session timeout, ms; default {@linkcode DEFAULT_SESSION_TIMEOUT_MS}. A member that stops
   * heartbeating (a crash) holds its partitions this long before the group moves them.
   */
  sessionTimeoutMs?: number;
  /**
   * Commit handled offsets at most this often, ms (and always on stop and after a partial
   * batch); 0 commits after every batch handled. Default 100. A crash redelivers at most this
   * much (at least once).
   */
  commitIntervalMs?: number;
  /** Called with this member's partitions of the topic after each join of the group. */
  onAssign?: (partitions: number[]) => void;
  /**
   * Fetching pauses once this many records wait for `onBatch`, so a batch holds about this many
   * at most; default 2,000. A writer with a fixed cost per call (the history store's database
   * round trip) passes more. The kafkajs adapter hands over its fetches as they come.
   */
  maxBatch?: number;
  /**
   * `onBatch` calls that may run at once: with 2, the next batch is handed over while the last
   * one is still being handled (a writer overlaps its database round trip with reading and
   * mapping the next). Offsets are still committed in order, each only after its batch and every
   * batch before it resolved in full; a batch handled in part, or failing, ends consuming and
   * nothing after it is committed. Default 1. The kafkajs adapter runs one at a time.
   */
  inFlight?: number;
}

/** Options for {@linkcode KafkaClient.connect}. */
export interface ConnectOptions {
  /** Total time to keep trying, ms; default `config.connectTimeoutMs`. */
  timeoutMs?: number;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (message: string) => void;
  /** Aborting it stops the attempts and the pauses: `connect` rejects with its reason. */
  signal?: AbortSignal;
}

/** One Kafka client adapter, bound to one config. */
export interface KafkaClient {
  /** Which adapter this is. */
  readonly name: KafkaClientName;
  /** The client library and its version, for logs and benchmarks. */
  readonly library: string;
  /**
   * Reaches the brokers (connect, authenticate, describe the cluster) until the time runs out.
   * Throws {@linkcode KafkaAuthError} at once when TLS or SASL rejects us, else
   * {@linkcode KafkaUnreachableError} naming the brokers and the last cause.
   */
  connect(options?: ConnectOptions): Promise<void>;
  /** Topic and group administration (connected on first use). */
  readonly admin: KafkaAdmin;
  /** An idempotent producer (acks=all) that retries transient failures itself. */
  sink(options?: KafkaSinkOptions): KafkaSink;
  /** A consumer in a group, at least once. */
  source(options: KafkaSourceOptions): RecordSource;
  /**
   * A member of a leader election: a consumer group on a one-partition topic, whose holder of
   * partition 0 is the leader. Joins on {@linkcode LeaderElection.join}.
   */
  elect(options: ElectionOptions): LeaderElection;
  /** Closes the admin connection. Sinks and sources are closed on their own. */
  close(): Promise<void>;
}

/** Options for {@linkcode KafkaClient.elect}. */
export interface ElectionOptions {
  /** The consumer group the candidates join. */
  groupId: string;
  /** The one-partition topic; it must exist. Nothing is read from it or written to it. */
  topic: string;
  /**
   * Session timeout, ms; default {@linkcode DEFAULT_SESSION_TIMEOUT_MS}. A leader that stops
   * heartbeating (dead, paused, cut off) loses partition 0 after this long.
   */
  sessionTimeoutMs?: number;
  /** Heartbeat interval, ms; default {@linkcode ELECTION_HEARTBEAT_MS} (or a third of the session). */
  heartbeatIntervalMs?: number;
  /**
   * Called when this member becomes the leader (true) or stops being it (false): partition 0
   * moved, the member was fenced out of the group, or its lease ran out. Called synchronously,
   * before anything else is done about it.
   */
  onChange: (leader: boolean) => void;
  /** Where the election's log lines go; default the client's log. */
  log?: (line: string) => void;
}

/** One member of a leader election; see {@linkcode KafkaClient.elect}. */
export interface LeaderElection {
  /** Joins the group; resolves after the first assignment (leader or not). */
  join(): Promise<void>;
  /**
   * True while this member holds partition 0 and its lease is still running: the broker cannot
   * have given the partition to another member yet. Check it before each write.
   */
  isLeader(): boolean;
  /** Leaves the group at once, so that another member takes over without waiting. */
  leave(): Promise<void>;
  /** Leaves (if still a member) and closes the connections. */
  close(): Promise<void>;
}

/** Options for {@linkcode openKafka}. */
export interface OpenKafkaOptions {
  /** The adapter; default `config.client` ({@linkcode DEFAULT_KAFKA_CLIENT} unless set). */
  client?: KafkaClientName;
  /** Client id sent to the broker; default "crypto-quotes". */
  clientId?: string;
  /** Where the client's own log lines go, concise and redacted; default `console.error`. */
  log?: (line: string) => void;
}

/** What every adapter's constructor takes besides the config. */
export interface AdapterOptions {
  clientId: string;
  log: (line: string) => void;
}
