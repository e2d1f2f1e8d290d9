/**
 * The @platformatic/kafka consumer behind {@linkcode RecordSource}: a member of a group, at least
 * once.
 */
import {
  Admin,
  Consumer,
  type Message,
  type MessagesStream,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
} from "@platformatic/kafka";
import type { KafkaConfig } from "../../config/kafka.ts";
import { type AdapterOptions, type KafkaAdmin, type KafkaSourceOptions } from "../types.ts";
import { DEFAULT_SESSION_TIMEOUT_MS } from "../defaults.ts";
import { throttledLog } from "../diagnosis.ts";
import { PendingCommits } from "../offsets.ts";
import { committedOffsets, offsetsAt, partitionIndexes } from "./admin.ts";
import { platformaticOptions, reasonOf } from "./options.ts";
import type { ConsumeOptions, InRecord, RecordSource } from "../../sink.ts";

/** Records buffered before the stream pauses (about the most per `onBatch` call), by default. */
const BATCH_MAX = 2_000;

function headerText(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
}

function toInRecord(m: Message<string, string, string, string>): InRecord {
  const headers: Record<string, string> = {};
  for (const [k, v] of m.headers) headers[headerText(k)] = headerText(v);
  return {
    topic: m.topic,
    partition: m.partition,
    offset: m.offset.toString(),
    key: m.key === undefined || m.key === null || m.key === "" ? null : m.key,
    value: m.value === undefined || m.value === null ? null : m.value,
    timestamp: Number(m.timestamp),
    headers,
  };
}

/** Strings for keys, values and headers; `undefined` for a missing key or a tombstone. */
const stringOrUndefined = (data?: Buffer) => data === undefined ? undefined : data.toString("utf8");

/**
 * A @platformatic/kafka consumer in a group as a {@linkcode RecordSource}: records of each
 * partition in order, offsets committed only after `onBatch` resolves (at least once).
 */
export class PlatformaticSource implements RecordSource {
  #config: KafkaConfig;
  #adapter: AdapterOptions;
  #options: KafkaSourceOptions;
  #admin: KafkaAdmin;
  #consumer: Consumer<string, string, string, string> | undefined;
  #stream: MessagesStream<string, string, string, string> | undefined;

  constructor(
    config: KafkaConfig,
    adapter: AdapterOptions,
    options: KafkaSourceOptions,
    admin: KafkaAdmin,
  ) {
    this.#config = config;
    this.#adapter = adapter;
    this.#options = options;
    this.#admin = admin;
  }

  /**
   * `--from TIME`: for each partition where the group has committed nothing, commit the offset
   * of the first record at or after the time, before joining; committed offsets then decide.
   * `--from earliest` likewise commits each such partition's earliest offset, so the group has
   * a position from the start: a run that stops early (`consume | head`) and commits nothing
   * leaves the next run, with or without `--from`, where it began, not at "latest".
   */
  async #seedOffsets(from: Date | "earliest"): Promise<void> {
    const { groupId, topic } = this.#options;
    const admin = new Admin(
      platformaticOptions(this.#config, { clientId: this.#adapter.clientId, retries: 5 }),
    );
    try {
      const partitions = await partitionIndexes(admin, topic);
      const committed = await committedOffsets(admin, groupId, topic, partitions);
      const fresh = partitions.filter((p) => (committed.get(p) ?? -1n) < 0n);
      if (fresh.length === 0) return;
      const at = await offsetsAt(
        admin,
        topic,
        fresh,
        from === "earliest" ? -2n : BigInt(from.getTime()),
      );
      // Past the last record's time the broker answers -1: start at the end then.
      const ends = await offsetsAt(admin, topic, fresh, -1n);
      await admin.alterConsumerGroupOffsets({
        groupId,
        topics: [{
          name: topic,
          partitionOffsets: fresh.map((partition) => {
            const offset = at.get(partition) ?? -1n;
            return { partition, offset: offset >= 0n ? offset : ends.get(partition) ?? 0n };
          }),
        }],
      });
    } finally {
      await admin.close().catch(() => {});
    }
  }

  async consume(
    onBatch: (records: InRecord[]) => Promise<void | number> | void | number,
    options: ConsumeOptions,
  ): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return;
    const from = this.#options.from ?? "latest";
    if (from instanceof Date) await this.#seedOffsets(from);
    else if (from === "earliest") {
      // Only a help for the next run: a group with members already refuses it (their commits
      // decide), and reading goes on from the earliest offsets either way.
      await this.#seedOffsets(from).catch((error) =>
        this.#adapter.log(
          `kafka consumer: did not commit the earliest offsets of "${this.#options.topic}" ` +
            `for group "${this.#options.groupId}" before joining (${reasonOf(error)}); ` +
            `reading from the earliest offsets anyway`,
        )
      );
    }
    const sessionTimeout = this.#options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    const consumer = this.#createConsumer(sessionTimeout);
    this.#consumer = consumer;
    const log = throttledLog(this.#config, this.#adapter.log);
    const assignment = this.#track(consumer, log);
    const stream = await consumer.consume({
      topics: [this.#options.topic],
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: from === "earliest"
        ? MessagesStreamFallbackModes.EARLIEST
        : MessagesStreamFallbackModes.LATEST,
      autocommit: false,
      sessionTimeout,
      heartbeatInterval: Math.floor(sessionTimeout / 3),
      maxWaitTime: 100,
    });
    this.#stream = stream;
    const commits = new Commits(consumer, this.#options, log);
    const failure = await pump(stream, {
      signal,
      commits,
      assignment,
      onBatch,
      maxBatch: this.#options.maxBatch ?? BATCH_MAX,
      inFlight: Math.max(1, this.#options.inFlight ?? 1),
    });
    if (failure !== undefined) throw failure;
  }

  #createConsumer(sessionTimeout: number): Consumer<string, string, string, string> {
    return new Consumer<string, string, string, string>({
      ...platformaticOptions(this.#config, { clientId: this.#adapter.clientId }),
      groupId: this.#options.groupId,
      sessionTimeout,
      // A third of the session timeout, as Kafka's own consumer.
      heartbeatInterval: Math.floor(sessionTimeout / 3),
      rebalanceTimeout: Math.max(sessionTimeout, 30_000),
      autocommit: false,
      maxWaitTime: 100,
      // The library's 50 MB default fetch is parsed into objects in one go: over a backlog that
      // was about 1 GB of heap and 10 s without a heartbeat (the group then rebalanced). Kafka's
      // own consumer asks for at most 1 MB per partition.
      maxBytes: 4 * 1_048_576,
      maxBytesPerPartition: 1_048_576,
      deserializers: {
        key: stringOrUndefined,
        value: stringOrUndefined,
        headerKey: stringOrUndefined,
        headerValue: stringOrUndefined,
      } as never,
    });
  }

  /** Follows this member's partitions through rebalances, and logs failed heartbeats. */
  #track(
    consumer: Consumer<string, string, string, string>,
    log: (key: string, line: string) => void,
  ): Assignment {
    const { topic } = this.#options;
    const assignment: Assignment = { partitions: new Set(), revoked: false };
    consumer.on(
      "consumer:group:join",
      (payload: { assignments?: { topic: string; partitions: number[] }[] }) => {
        const mine = payload.assignments?.find((a) => a.topic === topic)?.partitions ?? [];
        const next = new Set(mine);
        if ([...assignment.partitions].some((p) => !next.has(p))) assignment.revoked = true;
        assignment.partitions = next;
        this.#options.onAssign?.([...mine].sort((a, b) => a - b));
      },
    );
    consumer.on("consumer:heartbeat:error", (payload: { error?: Error }) => {
      const reason = payload?.error ? reasonOf(payload.error) : "unknown";
      // A rebalance in progress answers heartbeats with an error the client handles by rejoining.
      if (/REBALANCE_IN_PROGRESS|rebalance/i.test(reason)) return;
      log("heartbeat", `kafka consumer: heartbeat failed: ${reason}`);
    });
    return assignment;
  }

  async close(): Promise<void> {
    const stream = this.#stream;
    const consumer = this.#consumer;
    this.#stream = undefined;
    this.#consumer = undefined;
    await stream?.close().catch(() => {});
    // Leaves the group, so the partitions move to the other members at once.
    await consumer?.close(true).catch(() => {});
  }
}

type StringMessage = Message<string, string, string, string>;

/**
 * This member's partitions now. A fetch made before a rebalance can still deliver records of a
 * partition that has moved to another member; those are dropped, uncommitted, and the new owner
 * reads them from the group's committed offset.
 */
interface Assignment {
  partitions: Set<number>;
  /** A partition was taken away since the last batch: forget what is pending for it. */
  revoked: boolean;
}

/** Handled offsets (and their leader epochs) committed at most every interval. */
class Commits {
  readonly pending: PendingCommits;
  #epochs = new Map<number, number>();
  #consumer: Consumer<string, string, string, string>;
  #topic: string;
  #log: (key: string, line: string) => void;

  constructor(
    consumer: Consumer<string, string, string, string>,
    options: KafkaSourceOptions,
    log: (key: string, line: string) => void,
  ) {
    this.#consumer = consumer;
    this.#topic = options.topic;
    this.#log = log;
    this.pending = new PendingCommits(options.commitIntervalMs ?? 100);
  }

  /** Notes that record `i` of `batch` was handled. */
  handled(batch: Arrived, i: number): void {
    const { partition } = batch.records[i]!;
    this.pending.handled(partition, batch.offsets[i]!);
    this.#epochs.set(partition, batch.epochs[i]!);
  }

  /** Notes that record `i` of `batch` is the next record of its partition to read (not handled). */
  position(batch: Arrived, i: number): void {
    const { partition } = batch.records[i]!;
    this.pending.handled(partition, batch.offsets[i]! - 1n);
    this.#epochs.set(partition, batch.epochs[i]!);
  }

  /** Commits in order: each after the one before it has answered. */
  #chain: Promise<void> = Promise.resolve();
  /** A commit is queued on the chain and has not yet taken what is pending. */
  #queued = false;

  /**
   * Queues a commit of what is pending then, and returns at once. The loop goes on handing
   * batches over meanwhile: a commit's answer can wait behind a fetch on the broker's
   * connection (150-350 ms in the store's profile), and awaiting it held the next batch back.
   */
  commitSoon(): void {
    if (this.#queued) return;
    this.#queued = true;
    this.#chain = this.#chain.then(() => {
      this.#queued = false;
      return this.#commit();
    });
  }

  /** Commits what is pending, after the commits queued before; resolves once it answered. */
  async commit(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#commit());
    await this.#chain;
  }

  /** Resolves once the commits queued so far have answered (never rejects). */
  idle(): Promise<void> {
    return this.#chain;
  }

  /** Commits what is pending now; a failure is logged, not thrown. */
  async #commit(): Promise<void> {
    const offsets = this.pending.take().map(([partition, offset]) => ({
      topic: this.#topic,
      partition,
      offset,
      leaderEpoch: this.#epochs.get(partition) ?? -1,
    }));
    if (offsets.length === 0) return;
    try {
      await this.#consumer.commit({ offsets });
    } catch (error) {
      // After a rebalance the partitions may belong to another member, which reads from the
      // last committed offset: those records are read again (at least once).
      this.#log("commit", `kafka consumer: commit failed: ${reasonOf(error)}`);
    }
  }
}

/** What {@linkcode pump} works with. */
interface PumpOptions {
  signal: AbortSignal;
  commits: Commits;
  assignment: Assignment;
  onBatch: (records: InRecord[]) => Promise<void | number> | void | number;
  /** Pause the stream once this many records are buffered. */
  maxBatch: number;
  /** `onBatch` calls that may run at once (each batch committed only after those before it). */
  inFlight: number;
}

/**
 * Records as they arrived, each one's offset and leader epoch beside it, by index: what
 * committing needs, without the messages. Those would otherwise live through garbage collections
 * until their batch is handled (with the history store's large batches, copying them cost the
 * store more time than mapping its rows).
 */
interface Arrived {
  records: InRecord[];
  offsets: bigint[];
  epochs: number[];
}

/** The records of `arrived` in `partitions`, with their offsets and epochs. */
function mineOf(arrived: Arrived, partitions: ReadonlySet<number>): Arrived {
  const mine: Arrived = { records: [], offsets: [], epochs: [] };
  arrived.records.forEach((r, i) => {
    if (!partitions.has(r.partition)) return;
    mine.records.push(r);
    mine.offsets.push(arrived.offsets[i]!);
    mine.epochs.push(arrived.epochs[i]!);
  });
  return mine;
}

/** One batch handed to `onBatch`, until it resolves or rejects. */
interface Flight {
  mine: Arrived;
  /** Resolves (never rejects) once `onBatch` has resolved or rejected. */
  done: Promise<void>;
  settled: boolean;
  handled?: void | number;
  failed?: { error: unknown };
}

/**
 * Hands the stream's records to `onBatch` in batches of what arrived meanwhile, committing what
 * was handled, until aborted, failed, the stream ends or `onBatch` handles part of a batch.
 * With `inFlight` > 1 the next batch is handed over while earlier ones are still being handled;
 * batches are settled in the order they were handed over, so an offset is committed only once
 * its batch and every batch before it resolved in full. A batch handled in part (or failing)
 * ends the loop, and nothing after it is committed, whatever the later batches did.
 * Resolves with the stream's failure, if any (`onBatch`'s own failure rejects).
 */
async function pump(
  stream: MessagesStream<string, string, string, string>,
  options: PumpOptions,
): Promise<unknown> {
  const { signal, commits, assignment, onBatch, maxBatch, inFlight } = options;
  const { pending } = commits;
  let failure: unknown;
  // A poke with nobody waiting (the loop is awaiting a commit or `onBatch`) is remembered, so
  // the loop does not then wait for a record that has already arrived.
  let poked = false;
  let wake: (() => void) | undefined;
  const poke = () => {
    poked = true;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onError = (error: unknown) => {
    failure ??= error;
    poke();
  };
  // Flowing mode with pause/resume for backpressure, as the library expects: reading with
  // read() in paused mode starts a new fetch loop on every call that finds the buffer low, and
  // over a large backlog those loops multiplied until the heap ran out.
  let buffered: Arrived = { records: [], offsets: [], epochs: [] };
  /** When the last record arrived (epoch ms). */
  let lastDataAt = 0;
  const onData = (m: StringMessage) => {
    lastDataAt = Date.now();
    // Made a record at once: the message is garbage before the next collection, instead of
    // living, with its headers map, until its batch is handed over.
    buffered.records.push(toInRecord(m));
    buffered.offsets.push(m.offset);
    buffered.epochs.push(m.leaderEpoch);
    const n = buffered.records.length;
    if (n >= maxBatch && !stream.isPaused()) stream.pause();
    // The loop waits for a first record, or for a full batch while batches are in flight.
    if (n === 1 || n === maxBatch) poke();
  };
  /** Batches handed over and not yet settled, oldest first. */
  const flights: Flight[] = [];
  const handOver = (mine: Arrived) => {
    const flight = { mine, settled: false } as Flight;
    flight.done = new Promise<void | number>((resolve) => resolve(onBatch(mine.records))).then(
      (handled) => {
        flight.handled = handled;
      },
      (error) => {
        flight.failed = { error };
      },
    ).finally(() => {
      flight.settled = true;
      poke();
    });
    flights.push(flight);
  };
  /** Waits until every batch in flight has settled, and forgets them (none is committed). */
  const dropFlights = async () => {
    await Promise.all(flights.map((f) => f.done));
    flights.length = 0;
  };
  /**
   * Counts the oldest batch, settled, as handled (committing when due); false when it was
   * handled in part: the loop ends, and the batches after it are dropped, uncommitted.
   */
  const settle = async (): Promise<boolean> => {
    const flight = flights.shift()!;
    const { mine } = flight;
    const { length } = mine.records;
    if (flight.failed) {
      await dropFlights();
      throw flight.failed.error;
    }
    const handled = flight.handled;
    const n = typeof handled === "number" ? Math.max(0, Math.min(handled, length)) : length;
    for (let i = 0; i < n; i++) commits.handled(mine, i);
    // A partial batch: each partition left off at its first record not handled. Committing
    // that position too keeps a group with no commit yet from starting at "latest" next
    // time (`consume | head` would otherwise skip the backlog).
    const pinned = new Set<number>();
    for (let i = n; i < length; i++) {
      const { partition } = mine.records[i]!;
      if (pinned.has(partition)) continue;
      pinned.add(partition);
      commits.position(mine, i);
    }
    if (n < length) {
      // The caller stopped: what it handled of this batch is committed now, nothing after it.
      await dropFlights();
      await commits.commit();
      return false;
    }
    if (signal.aborted) await commits.commit();
    else if (pending.due()) commits.commitSoon();
    return true;
  };
  stream.on("data", onData);
  stream.on("error", onError);
  stream.on("close", poke);
  signal.addEventListener("abort", poke, { once: true });
  /**
   * Records waiting while a slot is free and nothing more has arrived for this long: they are
   * handed over without waiting for a full batch (the end of a backlog, or a quiet stream),
   * instead of after the batches in flight.
   */
  const LINGER_MS = 50;
  const lingering = () =>
    flights.length < inFlight && buffered.records.length > 0 &&
    Date.now() - lastDataAt >= LINGER_MS;
  // An interval of 0 commits as each batch settles: nothing waits for the ticker then.
  const ticker = setInterval(() => {
    if (pending.due() || lingering()) poke();
  }, Math.min(pending.intervalMs || 100, inFlight > 1 ? LINGER_MS : 100));
  try {
    let going = true;
    while (going && !signal.aborted && failure === undefined && !stream.destroyed) {
      poked = false;
      while (going && flights[0]?.settled) going = await settle();
      if (!going) break;
      // Batches in flight: wait for the oldest to settle, or for a full batch to hand over
      // while a slot is free (a small one would waste a database round trip), unless the
      // records have stopped coming.
      if (
        flights.length >= inFlight ||
        (flights.length > 0 && buffered.records.length < maxBatch && !lingering())
      ) {
        // Batches settled earlier are committed even while a later one takes long (a database
        // that is down): a crash then redelivers no more than the interval's worth.
        if (pending.due()) commits.commitSoon();
        if (!poked) await new Promise<void>((resolve) => wake = resolve);
        continue;
      }
      const batch = buffered;
      buffered = { records: [], offsets: [], epochs: [] };
      if (stream.isPaused()) stream.resume();
      if (batch.records.length === 0) {
        if (pending.due()) commits.commitSoon();
        if (!poked) await new Promise<void>((resolve) => wake = resolve);
        continue;
      }
      if (assignment.revoked) {
        pending.keep(assignment.partitions);
        assignment.revoked = false;
      }
      const mine = batch.records.every((r) => assignment.partitions.has(r.partition))
        ? batch
        : mineOf(batch, assignment.partitions);
      if (mine.records.length === 0) continue;
      handOver(mine);
    }
    // Stopping: the batches still in flight finish (a stopped caller hands back what it
    // handled), in order, so what they handled is committed.
    while (going && flights.length > 0) {
      await flights[0]!.done;
      going = await settle();
    }
    // What is pending, after every commit queued before it.
    await commits.commit();
  } finally {
    // Commits queued before a failure hold only what was handled: they finish first.
    await commits.idle();
    clearInterval(ticker);
    signal.removeEventListener("abort", poke);
    stream.off("data", onData);
    // Records fetched but not handled stay uncommitted: the group reads them again.
    stream.pause();
  }
  return failure;
}
