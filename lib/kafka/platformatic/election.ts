/**
 * Leader election with @platformatic/kafka, behind {@linkcode LeaderElection} (`kafka.ts`): a
 * consumer group on a one-partition topic, the classic group protocol, and an assignor that
 * gives partition 0 to the member that already leads (so a standby joining never takes it), or
 * else to the group's oldest member. Nothing is fetched from the topic: the partition is only
 * the token. The leader holds a lease renewed by acknowledged heartbeats and stops being the
 * leader the moment it runs out, before the broker can give the partition to anyone else.
 */
import { type BaseOptions, Consumer } from "@platformatic/kafka";
import { DEFAULT_SESSION_TIMEOUT_MS, ELECTION_HEARTBEAT_MS, Lease } from "../defaults.ts";
import { type ElectionOptions, type LeaderElection } from "../types.ts";

/** The protocol name the election's members agree on (any name works; all must use it). */
const PROTOCOL = "crypto-leader";
const CLAIM_LEADER = "leader";
const CLAIM_STANDBY = "standby";

/** One candidate's claim as the assignor reads it. */
interface Candidate {
  metadata?: Buffer | string | null;
}

/** The assignment of one member: topic → partitions. */
interface MemberAssignment {
  memberId: string;
  assignments: Map<string, { topic: string; partitions: number[] }>;
}

function claimOf(member: Candidate | undefined): string {
  const m = member?.metadata;
  if (m === undefined || m === null) return "";
  return typeof m === "string" ? m : new TextDecoder().decode(m);
}

/**
 * The assignor: partition 0 of `topic` goes to the member that claims to lead (the group leader
 * `current` if several do, else the first by id), or, when none does, to `current`, the group
 * leader the broker chose (the longest-standing member). Exported for tests.
 */
export function leaderAssignor(
  topic: string,
  current: string,
  members: Map<string, Candidate>,
): MemberAssignment[] {
  const ids = [...members.keys()].sort();
  const claiming = ids.filter((id) => claimOf(members.get(id)) === CLAIM_LEADER);
  const winner = claiming.length > 0
    ? (claiming.includes(current) ? current : claiming[0]!)
    : (members.has(current) ? current : ids[0]!);
  return ids.map((memberId) => ({
    memberId,
    assignments: new Map(
      memberId === winner ? [[topic, { topic, partitions: [0] }]] : [],
    ),
  }));
}

/** @platformatic/kafka's consumer group as a {@linkcode LeaderElection}. */
export class PlatformaticElection implements LeaderElection {
  #consumer: Consumer;
  #options: ElectionOptions;
  #lease: Lease;
  #holds = false;
  #heartbeatSentAt: number | undefined;
  #watch: ReturnType<typeof setInterval> | undefined;
  #sessionTimeoutMs: number;
  #heartbeatIntervalMs: number;
  #closed = false;
  #log: (line: string) => void;

  constructor(base: BaseOptions, options: ElectionOptions, log: (line: string) => void) {
    this.#options = options;
    this.#log = options.log ?? log;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    this.#heartbeatIntervalMs = options.heartbeatIntervalMs ??
      Math.min(ELECTION_HEARTBEAT_MS, Math.floor(this.#sessionTimeoutMs / 3));
    // The margin covers the time between the broker resetting its session clock and our
    // reading of the acknowledgement, and timers that fire late on a busy machine.
    this.#lease = new Lease(this.#sessionTimeoutMs, Math.max(500, this.#sessionTimeoutMs / 6));
    this.#consumer = new Consumer({
      ...base,
      groupId: options.groupId,
      sessionTimeout: this.#sessionTimeoutMs,
      heartbeatInterval: this.#heartbeatIntervalMs,
      rebalanceTimeout: this.#sessionTimeoutMs,
      autocommit: false,
    });
    const c = this.#consumer;
    c.on("consumer:heartbeat:start", () => {
      this.#heartbeatSentAt = this.#lease.now();
    });
    c.on("consumer:heartbeat:end", () => {
      if (this.#holds && this.#heartbeatSentAt !== undefined) {
        this.#lease.renew(this.#heartbeatSentAt);
      }
    });
    c.on(
      "consumer:group:join",
      (payload: { assignments?: { topic: string; partitions: number[] }[] }) => {
        const mine = payload.assignments?.find((a) => a.topic === options.topic)?.partitions ?? [];
        this.#assigned(mine.includes(0));
      },
    );
  }

  #assigned(holds: boolean): void {
    if (this.#closed) return;
    if (holds) {
      // The broker restarted the member's session clock when it answered the sync request, a
      // moment ago: the lease's margin covers that moment.
      this.#lease.renew(this.#lease.now());
      if (!this.#holds) {
        this.#holds = true;
        this.#watch = setInterval(() => {
          if (!this.#lease.valid()) this.#lose("its lease ran out (no heartbeat acknowledged)");
        }, 50);
        this.#log(`election: this producer leads group "${this.#options.groupId}"`);
        this.#options.onChange(true);
      }
    } else if (this.#holds) {
      this.#lose("partition 0 moved to another member");
    }
  }

  #lose(why: string): void {
    if (!this.#holds) return;
    this.#holds = false;
    this.#lease.end();
    clearInterval(this.#watch);
    this.#watch = undefined;
    this.#log(`election: this producer no longer leads group "${this.#options.groupId}": ${why}`);
    this.#options.onChange(false);
  }

  isLeader(): boolean {
    if (this.#holds && !this.#lease.valid()) {
      this.#lose("its lease ran out (no heartbeat acknowledged)");
    }
    return this.#holds;
  }

  async join(): Promise<void> {
    const topic = this.#options.topic;
    this.#consumer.topics.track(topic);
    await this.#consumer.joinGroup({
      sessionTimeout: this.#sessionTimeoutMs,
      heartbeatInterval: this.#heartbeatIntervalMs,
      rebalanceTimeout: this.#sessionTimeoutMs,
      protocols: [{ name: PROTOCOL, version: 1 }],
      // Asked on every (re)join: only a member whose lease still runs claims to lead.
      protocolsMetadata: () => Buffer.from(this.isLeader() ? CLAIM_LEADER : CLAIM_STANDBY),
      partitionAssigner: (current, members) =>
        leaderAssignor(topic, current, members as Map<string, Candidate>),
    });
  }

  async leave(): Promise<void> {
    this.#lose("it is leaving the group");
    if (this.#closed) return;
    try {
      // The overload without a callback returns a promise; its type says void.
      await (this.#consumer.leaveGroup(true) as unknown as Promise<void>);
    } catch (error) {
      this.#log(`election: leaving group "${this.#options.groupId}" failed: ${error}`);
    }
  }

  async close(): Promise<void> {
    this.#lose("it is closing");
    if (this.#closed) return;
    this.#closed = true;
    await this.#consumer.close(true).catch(() => {});
  }
}

/** The newest record timestamp over all partitions of `topic`, via ListOffsets MAX_TIMESTAMP. */
export async function newestTimestamp(
  admin: {
    metadata(
      o: { topics: string[] },
    ): Promise<{ topics: Map<string, { partitionsCount: number }> }>;
    listOffsets(o: {
      topics: { name: string; partitions: { partitionIndex: number; timestamp: bigint }[] }[];
    }): Promise<{ partitions: { timestamp: bigint; offset: bigint }[] }[]>;
  },
  topic: string,
): Promise<number | undefined> {
  const meta = await admin.metadata({ topics: [topic] });
  const count = meta.topics.get(topic)?.partitionsCount ?? 0;
  if (count === 0) return undefined;
  const listed = await admin.listOffsets({
    topics: [{
      name: topic,
      // -3: the offset and timestamp of the record with the largest timestamp (KIP-734).
      partitions: Array.from({ length: count }, (_, i) => ({ partitionIndex: i, timestamp: -3n })),
    }],
  });
  let newest: number | undefined;
  for (const t of listed) {
    for (const p of t.partitions) {
      if (p.offset < 0n || p.timestamp < 0n) continue;
      const ms = Number(p.timestamp);
      if (newest === undefined || ms > newest) newest = ms;
    }
  }
  return newest;
}
