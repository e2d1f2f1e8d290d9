/**
 * Producer failover, the logic without Kafka: the leader assignor, the lease, the fenced sink
 * and the failover gap of a term, and what `/healthz` says for a standby. The processes against
 * the real broker are in reliability_failover_test.ts.
 */
import { deepStrictEqual, equal, ok, rejects } from "./helpers/assert.ts";
import { Registry } from "prom-client";
import { leaderAssignor } from "../lib/kafka/platformatic/election.ts";
import { type ElectionOptions, type KafkaClient, type LeaderElection } from "../lib/kafka/types.ts";
import { Lease } from "../lib/kafka/defaults.ts";
import { LeadershipLostError, PerTermSink, Standby } from "../lib/standby.ts";
import type { Gap } from "../lib/pipeline.ts";
import type { OutRecord, RecordSink } from "../lib/sink.ts";
import { telemetryHandler } from "../lib/telemetry/server.ts";

const claim = (text: string) => ({ metadata: new TextEncoder().encode(text) as unknown as Buffer });

function partitionsOf(assignment: ReturnType<typeof leaderAssignor>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const m of assignment) out[m.memberId] = m.assignments.get("t.leader")?.partitions ?? [];
  return out;
}

Deno.test("the assignor keeps partition 0 with the member that leads when a standby joins", () => {
  const members = new Map([["b-new", claim("standby")], ["a-old", claim("leader")]]);
  // The broker made the newcomer the group leader: it still must not take the partition.
  deepStrictEqual(partitionsOf(leaderAssignor("t.leader", "b-new", members)), {
    "a-old": [0],
    "b-new": [],
  });
});

Deno.test("the assignor gives partition 0 to the group leader when no member leads", () => {
  const members = new Map([["m1", claim("standby")], ["m2", claim("standby")]]);
  deepStrictEqual(partitionsOf(leaderAssignor("t.leader", "m2", members)), { m1: [], m2: [0] });
});

Deno.test("the assignor picks one of two members that both claim to lead", () => {
  const members = new Map([["m1", claim("leader")], ["m2", claim("leader")]]);
  deepStrictEqual(partitionsOf(leaderAssignor("t.leader", "m2", members)), { m1: [], m2: [0] });
  deepStrictEqual(partitionsOf(leaderAssignor("t.leader", "x", members)), { m1: [0], m2: [] });
});

Deno.test("a lease runs from the acknowledged heartbeat's send time for the session minus margin", () => {
  let now = 1_000;
  const lease = new Lease(6_000, 1_000, () => now);
  ok(!lease.valid(), "no lease before a renewal");
  lease.renew(1_000);
  now = 5_999;
  ok(lease.valid());
  now = 6_000;
  ok(!lease.valid(), "expired at send time + 6,000 - 1,000");
  lease.renew(5_500);
  ok(lease.valid());
  lease.end();
  ok(!lease.valid());
});

/** An election the test drives. */
class FakeElection implements LeaderElection {
  leader = false;
  left = 0;
  constructor(readonly options: ElectionOptions) {}
  join(): Promise<void> {
    return Promise.resolve();
  }
  isLeader(): boolean {
    return this.leader;
  }
  set(leader: boolean): void {
    this.leader = leader;
    this.options.onChange(leader);
  }
  leave(): Promise<void> {
    this.left++;
    if (this.leader) this.set(false);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return this.leave();
  }
}

function fakeKafka(
  newest: number | undefined,
): { kafka: KafkaClient; election: () => FakeElection } {
  let election: FakeElection | undefined;
  const kafka = {
    admin: {
      ensureTopic: () => Promise.resolve({ created: false, partitions: 1 }),
      newestTimestamp: () => Promise.resolve(newest),
    },
    elect: (options: ElectionOptions) => election = new FakeElection(options),
  } as unknown as KafkaClient;
  return { kafka, election: () => election! };
}

class ListSink implements RecordSink {
  sent: { topic: string; records: readonly OutRecord[] }[] = [];
  send(topic: string, records: readonly OutRecord[]): Promise<void> {
    this.sent.push({ topic, records });
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const record = (t: number): OutRecord => ({ key: "BTC-USD", value: `{"t":${t}}`, timestamp: t });
const CONFIG = { group: "g", leaderTopic: "quotes.leader", sessionTimeoutMs: 6_000 };

Deno.test("a takeover term publishes the failover gap from the newest record to its first ack", async () => {
  const { kafka, election } = fakeKafka(1_000);
  const standby = new Standby(kafka, CONFIG, {
    registry: new Registry(),
    log: () => {},
    topic: "quotes",
    now: () => 42_000,
  });
  await standby.start();
  equal(standby.role, "standby");
  election().set(true);
  ok(await standby.waitForLeadership(new AbortController().signal));
  const term = await standby.beginTerm();
  ok(term.takeover);
  const gaps: Gap[] = [];
  const inner = new ListSink();
  const sink = term.sink(inner, (g) => gaps.push(g));
  await sink.send("quotes.gaps", [record(1)]);
  equal(gaps.length, 0, "a send to another topic does not close the gap");
  await sink.send("quotes", [record(1_700), record(1_500)]);
  await sink.send("quotes", [record(1_800)]);
  deepStrictEqual(gaps, [{ from: 1_000, to: 1_500, reason: "failover" }]);
  equal(standby.takeovers, 1);
  equal(standby.lastTakeoverAt, 42_000);
  equal(await standby.metrics.role.get().then((m) => m.values[0]?.value), 1);

  // Leadership lost: the term's signal aborts first, and the next send is refused unsent.
  election().set(false);
  ok(term.signal.aborted);
  await rejects(() => sink.send("quotes", [record(1_900), record(2_000)]), LeadershipLostError);
  equal(inner.sent.length, 3, "nothing more reached the Kafka sink");
  equal(standby.fencedRecords, 2);
  equal(standby.role, "standby");
});

Deno.test("a first term on an empty topic is not a takeover and publishes no gap", async () => {
  const { kafka, election } = fakeKafka(undefined);
  const standby = new Standby(kafka, CONFIG, {
    registry: new Registry(),
    log: () => {},
    topic: "quotes",
  });
  await standby.start();
  election().set(true);
  const term = await standby.beginTerm();
  equal(term.takeover, false);
  const gaps: Gap[] = [];
  await term.sink(new ListSink(), (g) => gaps.push(g)).send("quotes", [record(5)]);
  deepStrictEqual(gaps, []);
  equal(standby.takeovers, 0);
});

Deno.test("/healthz says standby, with HTTP 200, while a producer stands by", async () => {
  const { kafka, election } = fakeKafka(7);
  const standby = new Standby(kafka, CONFIG, {
    registry: new Registry(),
    log: () => {},
    topic: "quotes",
  });
  await standby.start();
  const handler = telemetryHandler({
    registry: new Registry(),
    health: standby.health(() => undefined),
    staleAfterMs: 30_000,
  });
  let response = await handler(new Request("http://x/healthz"));
  equal(response.status, 200);
  const body = await response.json();
  equal(body.status, "standby");
  equal(body.role, "standby");
  deepStrictEqual(body.failover, { group: "g", takeovers: 0 });
  election().set(true);
  await standby.beginTerm();
  response = await handler(new Request("http://x/healthz"));
  const active = await response.json();
  equal(active.role, "active");
  // Active with no quote yet: the usual health rules apply.
  equal(response.status, 503);
  deepStrictEqual(active.reasons, ["no_quotes_yet"]);
  equal(active.failover.takeovers, 1);
});

/** A Kafka producer as a term sees it: each send is retried through a partition for 300 ms. */
class SlowProducer implements RecordSink {
  readonly stats = { retries: 0, producerResets: 0, deadLettered: {} };
  closed = false;
  inFlight: Promise<void>[] = [];
  constructor(readonly log: string[], readonly name: string) {}
  send(_topic: string, records: readonly OutRecord[]): Promise<void> {
    const sending = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Closing the producer stops its retries: nothing reaches the broker after that.
      if (this.closed) throw new Error("producer closed");
      for (const r of records) this.log.push(`${this.name}:${r.value}`);
    })();
    this.inFlight.push(sending.catch(() => {}));
    return sending;
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

Deno.test("finding 4: a zombie whose send was in flight at lease loss writes nothing after the new leader's first record", async () => {
  const { kafka, election } = fakeKafka(1_000);
  const standby = new Standby(kafka, CONFIG, {
    registry: new Registry(),
    log: () => {},
    topic: "quotes",
  });
  await standby.start();
  election().set(true);
  const term = await standby.beginTerm();
  const topicLog: string[] = [];
  const producers: SlowProducer[] = [];
  const inner = new PerTermSink(() => {
    const p = new SlowProducer(topicLog, "zombie");
    producers.push(p);
    return p;
  });
  const sink = term.sink(inner, () => {});
  const sending = sink.send("quotes", [record(1)]);
  // The lease runs out with the send in flight (a network partition: no event, only time).
  await new Promise((resolve) => setTimeout(resolve, 50));
  election().leader = false;
  await rejects(() => sending, LeadershipLostError);
  // Another producer now leads and writes its first record.
  topicLog.push("leader:first");
  await Promise.all(producers.flatMap((p) => p.inFlight));
  deepStrictEqual(topicLog, ["leader:first"]);
  equal(standby.fencedRecords, 1);
});
