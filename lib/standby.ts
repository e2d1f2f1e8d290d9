/**
 * Producer failover (`--standby-group`): producers join a Kafka consumer group on the
 * one-partition topic `<topic>.leader`; the member that holds partition 0 is the active producer
 * and the only one connected to Polygon, the others stand by. A takeover is published as a gap
 * with reason `failover`, from the newest record time on the topic to the new leader's first
 * acknowledged record. Writes are fenced: the sink of a term refuses to send the moment the
 * election says this producer no longer leads (its lease ran out, or partition 0 moved), and a
 * send in flight at that moment is stopped with the term's own producer ({@linkcode PerTermSink}).
 * See docs/failover.md.
 *
 * @example
 * ```ts
 * const standby = new Standby(kafka, standbyConfig, { registry: metrics.registry, log });
 * await standby.start();
 * while (await standby.waitForLeadership(signal)) {
 *   const term = await standby.beginTerm();
 *   // run Polygon → pipeline → term.sink(sink) until term.signal or signal aborts
 * }
 * await standby.close();
 * ```
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { StandbyConfig } from "./config/standby.ts";
import type { KafkaClient, LeaderElection } from "./kafka/types.ts";
import type { Gap } from "./gap.ts";
import { MaxConnectionsError } from "./polygon/protocol.ts";
import type { OutRecord, RecordSink } from "./sink.ts";
import type { HealthSource } from "./telemetry/health.ts";

/** A send refused because this producer no longer leads: another one may be writing. */
export class LeadershipLostError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LeadershipLostError";
  }
}

/**
 * A sink that can drop its producer at once: every send in flight rejects, its retries stop,
 * and the next send starts a producer of its own. A term's fenced sink calls it the moment the
 * leadership is lost, so a send already in flight cannot write after another leader took over
 * (issue 24, finding 4).
 */
export interface AbandonableSink extends RecordSink {
  /** Closes the current producer (sends in flight reject); the next send opens another. */
  abandon(): Promise<void>;
}

/** True when `sink` can drop its producer ({@linkcode AbandonableSink}). */
function isAbandonable(sink: RecordSink): sink is AbandonableSink {
  return typeof (sink as Partial<AbandonableSink>).abandon === "function";
}

/** The counters of a Kafka sink, as {@linkcode PerTermSink} adds them up. */
interface StatsLike {
  retries: number;
  producerResets: number;
  deadLettered: Record<string, number>;
}

/**
 * A producer of each term's own, over a factory of sinks: {@linkcode AbandonableSink.abandon}
 * closes the current one and the next send opens a fresh one. `stats` adds up every producer's.
 */
export class PerTermSink<S extends RecordSink & { readonly stats: StatsLike }>
  implements AbandonableSink {
  #make: () => S;
  #current: S | undefined;
  #all: S[] = [];

  constructor(make: () => S) {
    this.#make = make;
  }

  /** Every producer's counters, added up. */
  get stats(): StatsLike {
    const total: StatsLike = { retries: 0, producerResets: 0, deadLettered: {} };
    for (const s of this.#all) {
      total.retries += s.stats.retries;
      total.producerResets += s.stats.producerResets;
      for (const [k, v] of Object.entries(s.stats.deadLettered)) {
        total.deadLettered[k] = (total.deadLettered[k] ?? 0) + v;
      }
    }
    return total;
  }

  send(topic: string, records: readonly OutRecord[]): Promise<void> {
    if (this.#current === undefined) {
      this.#current = this.#make();
      this.#all.push(this.#current);
    }
    return this.#current.send(topic, records);
  }

  async abandon(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.close();
  }

  close(): Promise<void> {
    return this.abandon();
  }
}

/** This producer's part in the election. */
export type Role = "active" | "standby";

/** The failover metrics (`crypto_producer_*`), registered on the producer's registry. */
export class FailoverMetrics {
  /** 1 while active, 0 while standing by. */
  readonly role: Gauge<string>;
  /** Times this producer became active after standing by. */
  readonly takeovers: Counter<string>;
  /** Unix time of the last takeover, s; 0 when none. */
  readonly lastTakeover: Gauge<string>;
  /** Records refused because this producer no longer led (never sent). */
  readonly fencedRecords: Counter<string>;
  /** Times this producer stopped leading. */
  readonly leadershipLost: Counter<string>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.role = new Gauge({
      name: "crypto_producer_role",
      help: "1 while this producer is the active one of its standby group, 0 while it stands by",
      registers,
    });
    this.takeovers = new Counter({
      name: "crypto_producer_takeovers_total",
      help: "Times this producer became active after standing by (failover)",
      registers,
    });
    this.lastTakeover = new Gauge({
      name: "crypto_producer_last_takeover_timestamp_seconds",
      help: "Unix time of this producer's last takeover; 0 when none",
      registers,
    });
    this.fencedRecords = new Counter({
      name: "crypto_producer_fenced_records_total",
      help: "Records not sent because this producer no longer led its standby group",
      registers,
    });
    this.leadershipLost = new Counter({
      name: "crypto_producer_leadership_lost_total",
      help: "Times this producer stopped being the active one (handover, lease expiry, eviction)",
      registers,
    });
  }
}

/** Options for {@linkcode Standby}. */
export interface StandbyOptions {
  /** Where the failover metrics are registered. */
  registry: Registry;
  log: (line: string) => void;
  /** The spread records' topic: the failover gap starts at its newest record. */
  topic: string;
  /** Called with each failover gap (it is also handed to the term's `onGap`). */
  onGap?: (gap: Gap) => void;
  /** Clock in epoch ms; default `Date.now`. */
  now?: () => number;
}

/** One period as the active producer. */
export interface Term {
  /** Aborts when this producer stops leading. */
  readonly signal: AbortSignal;
  /** True when this term is a takeover (the topic held records when it began). */
  readonly takeover: boolean;
  /**
   * Wraps the Kafka sink for this term: every send first checks the leadership and throws
   * {@linkcode LeadershipLostError} without sending when it is lost; a send in flight when the
   * leadership is lost rejects the same way, and an {@linkcode AbandonableSink} drops its
   * producer then, so the send cannot be written later; the first acknowledged batch on the
   * records' topic closes the failover gap, which goes to `onGap`.
   */
  sink(inner: RecordSink, onGap: (gap: Gap) => void): RecordSink;
}

/** The election, the role and the takeovers of one producer; see the module doc. */
/** How a term ended. */
export interface TermEnd {
  /** What ended it, if not the stop signal. */
  failure?: unknown;
  /** With a standby group: why the flush failed (a fenced sink, or a send given up on). */
  closeError?: unknown;
  flushTimedOut: boolean;
}

export class Standby {
  readonly config: StandbyConfig;
  readonly metrics: FailoverMetrics;
  #kafka: KafkaClient;
  #options: StandbyOptions;
  #election: LeaderElection | undefined;
  #role: Role = "standby";
  #stoodBy = false;
  #takeovers = 0;
  #lastTakeoverAt: number | undefined;
  #wake: (() => void) | undefined;
  #term: AbortController | undefined;
  #now: () => number;
  #fenced = 0;

  constructor(kafka: KafkaClient, config: StandbyConfig, options: StandbyOptions) {
    this.#kafka = kafka;
    this.config = config;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.metrics = new FailoverMetrics(options.registry);
  }

  /** The role now. */
  get role(): Role {
    return this.#role;
  }

  /** Takeovers so far. */
  get takeovers(): number {
    return this.#takeovers;
  }

  /** Records refused so far because this producer no longer led. */
  get fencedRecords(): number {
    return this.#fenced;
  }

  /** Epoch ms of the last takeover, if any. */
  get lastTakeoverAt(): number | undefined {
    return this.#lastTakeoverAt;
  }

  /** Creates the leader topic if needed (one partition) and joins the group. */
  async start(): Promise<void> {
    const { group, leaderTopic, sessionTimeoutMs } = this.config;
    await this.#kafka.admin.ensureTopic(leaderTopic, { partitions: 1, replicationFactor: -1 });
    this.#election = this.#kafka.elect({
      groupId: group,
      topic: leaderTopic,
      sessionTimeoutMs,
      onChange: (leader) => this.#changed(leader),
      log: this.#options.log,
    });
    await this.#election.join();
    if (this.#role === "standby") {
      this.#stoodBy = true;
      this.#options.log(
        `standby: another producer leads group "${group}"; waiting (session timeout ` +
          `${sessionTimeoutMs / 1000} s)`,
      );
    }
  }

  #changed(leader: boolean): void {
    if (leader) {
      this.#role = "active";
      this.metrics.role.set(1);
    } else {
      // First of all: stop the term, so nothing more is sent.
      this.#term?.abort(new LeadershipLostError("This producer no longer leads its standby group"));
      this.#role = "standby";
      this.metrics.role.set(0);
      this.metrics.leadershipLost.inc();
      this.#stoodBy = true;
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Whether this producer leads now (lease included). */
  isLeader(): boolean {
    return this.#election?.isLeader() ?? false;
  }

  /** Resolves true once this producer leads, or false when `signal` aborts first. */
  async waitForLeadership(signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted && !this.isLeader()) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
    return !signal.aborted;
  }

  /**
   * Starts a term as the active producer; call once {@linkcode waitForLeadership} says so. It is
   * a takeover when the topic already holds records: someone produced before (another member,
   * or this group before a restart), and the failover gap starts at the newest of them.
   */
  async beginTerm(): Promise<Term> {
    const controller = new AbortController();
    this.#term = controller;
    const topic = this.#options.topic;
    let from: number | undefined;
    let known = true;
    try {
      from = await this.#kafka.admin.newestTimestamp(topic);
    } catch (error) {
      known = false;
      this.#options.log(
        `standby: cannot read the newest record time of "${topic}", so no failover gap is ` +
          `published for this term: ${error instanceof Error ? error.message : error}`,
      );
    }
    if (!this.isLeader()) controller.abort(new LeadershipLostError("Leadership lost already"));
    const takeover = from !== undefined || (!known && this.#stoodBy);
    this.#stoodBy = false;
    if (takeover) {
      this.#takeovers++;
      this.#lastTakeoverAt = this.#now();
      this.metrics.takeovers.inc();
      this.metrics.lastTakeover.set(this.#lastTakeoverAt / 1000);
    }
    return {
      signal: controller.signal,
      takeover,
      sink: (inner, onGap) =>
        new FencedSink(inner, {
          isLeader: () => this.isLeader(),
          lost: controller.signal,
          log: this.#options.log,
          topic: this.#options.topic,
          fenced: (n) => {
            this.#fenced += n;
            this.metrics.fencedRecords.inc(n);
          },
          gapFrom: from,
          onGap: (gap) => {
            this.#options.log(
              `standby: took over; failover gap from ${new Date(gap.from).toISOString()} to ` +
                `${new Date(gap.to).toISOString()} (${gap.to - gap.from} ms of record time)`,
            );
            this.#options.onGap?.(gap);
            onGap(gap);
          },
        }),
    };
  }

  /**
   * Leads while elected: waits for the leadership, runs a term with a fenced sink over `sink`
   * until it ends, and stands by again, until `signal` aborts or a term fails for a reason other
   * than lost leadership (a Polygon eviction is lost leadership too). Joins the group first.
   */
  async lead(
    sink: RecordSink,
    runTerm: (sink: RecordSink, stop: AbortSignal) => Promise<TermEnd>,
    onGap: (gap: Gap) => void,
    signal: AbortSignal,
  ): Promise<Omit<TermEnd, "closeError">> {
    const log = this.#options.log;
    const outcome: Omit<TermEnd, "closeError"> = { flushTimedOut: false };
    await this.start();
    while (await this.waitForLeadership(signal)) {
      const term = await this.beginTerm();
      const end = await runTerm(term.sink(sink, onGap), AbortSignal.any([signal, term.signal]));
      // Each term has a producer of its own: whatever the old one still retries stops here.
      if (isAbandonable(sink)) await sink.abandon().catch(() => {});
      if (end.flushTimedOut) outcome.flushTimedOut = true;
      if (signal.aborted) break;
      if (end.failure instanceof MaxConnectionsError) {
        // Another connection with our key evicted us: a newer leader (we are a zombie) or a
        // producer outside the group. Either way this one stops leading and stands by.
        log(`standby: Polygon evicted this producer (max_connections); standing by`);
        if (this.isLeader()) await this.rejoin();
      } else if (!term.signal.aborted && (end.failure ?? end.closeError) !== undefined) {
        outcome.failure = end.failure ?? end.closeError;
        break;
      } else {
        log(`standby: this producer no longer leads; standing by`);
      }
    }
    return outcome;
  }

  /**
   * Gives the leadership up (after a flush) and joins again as a candidate: used when Polygon
   * evicted this producer while it still led, so that another member can take over.
   */
  async rejoin(): Promise<void> {
    await this.#election?.leave();
    await this.#election?.join();
  }

  /** Leaves the group at once (after the flush), so a standby takes over without waiting. */
  async leave(): Promise<void> {
    await this.#election?.leave();
  }

  /** Leaves and closes the election's connections. */
  async close(): Promise<void> {
    await this.#election?.close();
  }

  /**
   * A health source that says `standby` while this producer stands by and otherwise reads the
   * current term's pipeline (`current()`).
   */
  health(current: () => HealthSource | undefined): HealthSource {
    const none: HealthSource = {
      lastQuoteAt: () => undefined,
      lastAckAt: () => undefined,
      pendingRecords: () => 0,
      oldestPendingAt: () => undefined,
    };
    const source = () => current() ?? none;
    return {
      lastQuoteAt: () => source().lastQuoteAt(),
      lastAckAt: () => source().lastAckAt(),
      pendingRecords: () => source().pendingRecords(),
      oldestPendingAt: () => source().oldestPendingAt(),
      role: () => this.#role,
      failover: () => ({
        group: this.config.group,
        takeovers: this.#takeovers,
        lastTakeoverAt: this.#lastTakeoverAt,
      }),
    };
  }
}

/** Options of {@linkcode FencedSink}. */
interface FencedSinkOptions {
  isLeader: () => boolean;
  /** Aborts when the term ends (leadership lost). */
  lost: AbortSignal;
  log: (line: string) => void;
  topic: string;
  fenced: (records: number) => void;
  /** The newest record time before the takeover (undefined: no gap). */
  gapFrom: number | undefined;
  onGap: (gap: Gap) => void;
}

/** A sink that sends only while this producer leads; see {@linkcode Term.sink}. */
class FencedSink implements RecordSink {
  #inner: RecordSink;
  #options: FencedSinkOptions;
  #gapFrom: FencedSinkOptions["gapFrom"];

  constructor(inner: RecordSink, options: FencedSinkOptions) {
    this.#inner = inner;
    this.#options = options;
    this.#gapFrom = options.gapFrom;
  }

  async send(topic: string, records: readonly OutRecord[]): Promise<void> {
    if (!this.#options.isLeader()) {
      this.#options.fenced(records.length);
      throw new LeadershipLostError(
        `Cannot send ${records.length} records to "${topic}": this producer no longer leads ` +
          `its standby group (another producer may be writing); they are dropped`,
      );
    }
    await this.#sendWhileLeading(topic, records);
    const gapFrom = this.#gapFrom;
    if (gapFrom !== undefined && topic === this.#options.topic && records.length > 0) {
      this.#gapFrom = undefined;
      let first = records[0]!.timestamp;
      for (const r of records) if (r.timestamp < first) first = r.timestamp;
      this.#options.onGap({ from: gapFrom, to: first, reason: "failover" });
    }
  }

  /**
   * The inner send, watched: the moment the leadership is lost (the term aborts, or the lease
   * runs out, checked every {@linkcode LEASE_POLL_MS}) the inner sink drops its producer, so
   * the send in flight and its retries stop before another leader writes, and this rejects.
   */
  async #sendWhileLeading(topic: string, records: readonly OutRecord[]): Promise<void> {
    const { isLeader, lost: termLost } = this.#options;
    let poll: ReturnType<typeof setInterval> | undefined;
    let onAbort: (() => void) | undefined;
    const lost = new Promise<"lost">((resolve) => {
      onAbort = () => resolve("lost");
      termLost.addEventListener("abort", onAbort, { once: true });
      poll = setInterval(() => {
        if (!isLeader()) resolve("lost");
      }, LEASE_POLL_MS);
      if (termLost.aborted) resolve("lost");
    });
    const sending = this.#inner.send(topic, records);
    try {
      const first = await Promise.race([sending.then(() => "sent" as const), lost]);
      if (first === "sent") return;
    } finally {
      clearInterval(poll);
      if (onAbort) termLost.removeEventListener("abort", onAbort);
    }
    sending.catch(() => {});
    this.#options.fenced(records.length);
    if (isAbandonable(this.#inner)) {
      await this.#inner.abandon().catch(() => {});
    } else {
      this.#options.log(
        `standby: leadership lost with a send of ${records.length} records in flight, and ` +
          `its sink cannot drop its producer: the send may still be written`,
      );
    }
    throw new LeadershipLostError(
      `Cannot finish a send of ${records.length} records to "${topic}": this producer lost ` +
        `the leadership while it was in flight; its producer was closed, so it writes nothing ` +
        `more`,
    );
  }

  close(): Promise<void> {
    // The inner sink belongs to the producer, which closes it once.
    return Promise.resolve();
  }
}

/** How often a send in flight checks the lease, ms. */
const LEASE_POLL_MS = 50;
