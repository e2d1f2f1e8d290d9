/** The kafkajs consumer behind {@linkcode RecordSource}: a group member, at least once. */
import type { Admin, Consumer, EachBatchPayload, Kafka } from "kafkajs";
import { DEFAULT_SESSION_TIMEOUT_MS } from "../defaults.ts";
import { type KafkaSourceOptions } from "../types.ts";
import { PendingCommits } from "../offsets.ts";
import type { ConsumeOptions, InRecord, RecordSource } from "../../sink.ts";

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map(headerText).join(",");
  return typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
}

function toInRecord(
  topic: string,
  partition: number,
  message: EachBatchPayload["batch"]["messages"][number],
): InRecord {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = headerText(v);
  return {
    topic,
    partition,
    offset: message.offset,
    key: message.key === null || message.key === undefined ? null : message.key.toString("utf8"),
    value: message.value === null || message.value === undefined
      ? null
      : message.value.toString("utf8"),
    timestamp: Number(message.timestamp),
    headers,
  };
}

/**
 * A kafkajs consumer in a group as a {@linkcode RecordSource}: batches in partition order, with
 * offsets committed only after `onBatch` resolves (at least once).
 */
export class KafkaJsSource implements RecordSource {
  #options: KafkaSourceOptions;
  #consumer: Consumer;
  #admin: () => Promise<Admin>;
  #connected = false;

  constructor(kafka: Kafka, options: KafkaSourceOptions, admin: () => Promise<Admin>) {
    this.#options = options;
    this.#admin = admin;
    this.#consumer = kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
      // A third of the session timeout, as Kafka's own consumer.
      heartbeatInterval: Math.floor((options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS) / 3),
      allowAutoTopicCreation: false,
    });
  }

  /** Start offsets at `from` for the partitions where the group has committed nothing. */
  async #offsetsAt(from: Date): Promise<Map<number, string>> {
    const { groupId, topic } = this.#options;
    const admin = await this.#admin();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const fresh = new Set(
      (committed?.partitions ?? []).filter((p) => p.offset === "-1").map((p) => p.partition),
    );
    if (fresh.size === 0) return new Map();
    // Past the last record's time, kafkajs answers with the end offset.
    const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, from.getTime());
    return new Map(
      offsets.filter((p) => fresh.has(p.partition)).map((p) => [p.partition, p.offset]),
    );
  }

  async consume(
    onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
    options: ConsumeOptions,
  ): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return;
    const startAt = await this.#join();
    const run = new ConsumeRun(this.#options.topic, this.#options.commitIntervalMs ?? 100);
    const unwatch = this.#watch(run, signal, startAt);
    try {
      await this.#consumer.run({
        autoCommit: false,
        // Partitions are handled side by side (each still in order), so one partition's commit
        // round trip does not hold back the others' records.
        partitionsConsumedConcurrently: 6,
        eachBatchAutoResolve: false,
        eachBatch: (payload) => handleBatch(payload, run, onBatch, signal),
      });
      await run.stopped.promise;
      // Before stop() begins, while commitOffsets still works: what finished batches left.
      if (run.pending.size > 0) {
        await run.commit((offsets) =>
          this.#consumer.commitOffsets(offsets.topics.flatMap(
            (t) => t.partitions.map((p) => ({ topic: t.topic, ...p })),
          ))
        );
      }
    } finally {
      unwatch();
      // Waits for a batch in progress to finish (and commit) before it returns.
      await this.#consumer.stop();
    }
    if (run.failure !== undefined) throw run.failure;
  }

  /** Connects and subscribes; returns the start offsets of `--from TIME`, by partition. */
  async #join(): Promise<Map<number, string>> {
    const from = this.#options.from ?? "latest";
    const startAt = from instanceof Date ? await this.#offsetsAt(from) : new Map<number, string>();
    await this.#consumer.connect();
    this.#connected = true;
    await this.#consumer.subscribe({
      topics: [this.#options.topic],
      fromBeginning: from === "earliest",
    });
    return startAt;
  }

  /**
   * Ends `run` on abort or on a crash kafkajs does not restart from, and reports (and on the
   * first join seeks) each assignment. Returns a function that removes these listeners.
   */
  #watch(run: ConsumeRun, signal: AbortSignal, startAt: Map<number, string>): () => void {
    const { topic } = this.#options;
    const onAbort = () => run.stopped.resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    const removeCrash = this.#consumer.on(this.#consumer.events.CRASH, (event) => {
      if (!event.payload.restart) run.fail(event.payload.error);
    });
    // kafkajs emits GROUP_JOIN synchronously after the assignment and before the first fetch,
    // so a seek made here is applied to that fetch. Only on the first join: after that the
    // group's committed offsets decide, as they must when partitions move between members.
    let firstJoin = true;
    const removeJoin = this.#consumer.on(this.#consumer.events.GROUP_JOIN, (event) => {
      const assigned = event.payload.memberAssignment[topic] ?? [];
      this.#options.onAssign?.([...assigned].sort((a, b) => a - b));
      if (!firstJoin) return;
      firstJoin = false;
      for (const partition of assigned) {
        const offset = startAt.get(partition);
        if (offset !== undefined) this.#consumer.seek({ topic, partition, offset });
      }
    });
    return () => {
      signal.removeEventListener("abort", onAbort);
      removeCrash();
      removeJoin();
    };
  }

  async close(): Promise<void> {
    if (!this.#connected) return;
    this.#connected = false;
    await this.#consumer.disconnect();
  }
}

type Offsets = {
  topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
};

/** The state of one `consume` call: what is pending commit, and how it ends. */
class ConsumeRun {
  readonly pending: PendingCommits;
  /** Resolves when the run should end: aborted, failed or crashed. */
  readonly stopped = Promise.withResolvers<void>();
  /** The first failure (of `onBatch`, or a crash), thrown by `consume` once stopped. */
  failure: unknown;
  #topic: string;

  constructor(topic: string, commitIntervalMs: number) {
    this.#topic = topic;
    this.pending = new PendingCommits(commitIntervalMs);
  }

  /** Records the first failure and ends the run. */
  fail(error: unknown): void {
    this.failure ??= error;
    this.stopped.resolve();
  }

  /** Commits what is pending with `commit`. */
  async commit(commit: (offsets: Offsets) => Promise<unknown>): Promise<void> {
    const partitions = this.pending.take().map(([partition, offset]) => ({
      partition,
      offset: offset.toString(),
    }));
    await commit({ topics: [{ topic: this.#topic, partitions }] });
  }
}

/**
 * One fetched batch: hands its records to `onBatch` and commits what it handled when the
 * interval has passed, after a partial batch, or when stopping. An empty batch (an idle fetch)
 * only commits what is due.
 */
async function handleBatch(
  payload: EachBatchPayload,
  run: ConsumeRun,
  onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
  signal: AbortSignal,
): Promise<void> {
  const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
  // Not consumer.commitOffsets() here: it silently skips the commit once stop() has begun,
  // which would lose the final commit of the batch being finished on shutdown.
  const commit = () => run.commit((offsets) => payload.commitOffsetsIfNecessary(offsets));
  if (batch.isEmpty()) {
    if (run.pending.due()) await commit();
    return;
  }
  if (signal.aborted || run.failure !== undefined) return;
  if (!isRunning() || isStale()) return;
  const records = batch.messages.map((m) => toInRecord(batch.topic, batch.partition, m));
  let handled: void | number;
  try {
    handled = await onBatch(records);
  } catch (error) {
    run.fail(error);
    return;
  }
  // A number: only that many records were handled; commit just those, now.
  let partial = false;
  if (typeof handled === "number" && handled < records.length) {
    if (handled <= 0) return;
    records.length = handled;
    partial = true;
  }
  const last = records[records.length - 1]!.offset;
  resolveOffset(last);
  run.pending.handled(batch.partition, BigInt(last));
  if (partial || signal.aborted || run.pending.due()) await commit();
  await heartbeat();
}
