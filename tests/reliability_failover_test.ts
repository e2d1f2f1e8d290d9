/**
 * Reliability, producer failover (issue 14): two real `producer.ts` processes with
 * `--standby-group`, the shared real Kafka broker, and the fake Polygon server as a live feed
 * (quotes go out at a fixed rate whether or not anyone is connected, one connection per key).
 * SIGKILL and SIGTERM of the active producer, a zombie (SIGSTOP past the session timeout, then
 * SIGCONT), and flapping. Quote `i` has exchange time `T0 + i` (helpers/reliability.ts), so a
 * record names its quote, and the fake's rate of 1,000 quotes/s makes exchange ms about wall ms.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { type FakePolygon, startFakePolygon } from "../lib/polygon/fake.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { type KafkaBroker, startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  ACKED_METRIC,
  API_KEY,
  duplicates,
  health,
  KAFKA_TEST,
  metric,
  prepareTopics,
  type ProducerProcess,
  quoteFrames,
  quoteIndex,
  readTopic,
  scriptKafka,
  sleep,
  startProducer,
  T0,
  telemetryUrl,
  waitUntil,
} from "./helpers/reliability.ts";
import type { InRecord } from "../lib/sink.ts";

const RATE = 1_000;
const SESSION_S = 6;

/** One producer of the standby group, with its telemetry URL. */
interface Member {
  process: ProducerProcess;
  base: string;
}

async function startMember(
  broker: KafkaBroker,
  fake: FakePolygon,
  topic: string,
  group: string,
): Promise<Member> {
  const process = startProducer({
    url: fake.url,
    kafka: scriptKafka(broker, "plaintext"),
    topic,
    // The gaps are checked against exchange times, so the records are stamped with them (T0 is
    // recent: the broker's retention and producer-id expiry keep them).
    args: [
      "--standby-group",
      group,
      "--session-timeout",
      String(SESSION_S),
      "--kafka-timestamp",
      "exchange",
    ],
  });
  const base = await telemetryUrl(process);
  return { process, base };
}

/** The member's role from `/healthz`, or "gone" when it does not answer. */
async function roleOf(m: Member): Promise<string> {
  if (m.process.exited) return "gone";
  try {
    const h = await health(m.base);
    return String(h.role ?? h.status);
  } catch {
    return "gone";
  }
}

async function acked(m: Member): Promise<number> {
  try {
    return await metric(m.base, ACKED_METRIC);
  } catch {
    return 0;
  }
}

interface Gap {
  from: number;
  to: number;
  reason: string;
}

async function failoverGaps(broker: KafkaBroker, topic: string): Promise<Gap[]> {
  const records = await readTopic(broker, `${topic}.gaps`);
  return records
    .map((r) => JSON.parse(r.value!) as { from: string; to: string; reason: string })
    .filter((g) => g.reason === "failover")
    .map((g) => ({ from: Date.parse(g.from), to: Date.parse(g.to), reason: g.reason }))
    .sort((a, b) => a.from - b.from);
}

/** What the topic holds, by quote index. */
interface Delivered {
  records: InRecord[];
  indexes: Set<number>;
  duplicates: number;
  last: number;
}

async function delivered(broker: KafkaBroker, topic: string): Promise<Delivered> {
  const records = await readTopic(broker, topic);
  const values = records.map((r) => r.value!);
  const indexes = new Set(values.map(quoteIndex));
  return {
    records,
    indexes,
    duplicates: values.length - new Set(values).size,
    last: Math.max(...indexes),
  };
}

/**
 * The quotes missing from the topic, up to its last record, must be exactly those whose exchange
 * time lies strictly inside one of the failover gaps; returns how many lie in each gap.
 */
function assertGapsCoverExactly(d: Delivered, gaps: readonly Gap[]): number[] {
  const missing: number[] = [];
  for (let i = 0; i <= d.last; i++) if (!d.indexes.has(i)) missing.push(i);
  const inGaps: number[] = [];
  const perGap = gaps.map(() => 0);
  for (let i = 0; i <= d.last; i++) {
    const t = T0 + i;
    const g = gaps.findIndex((gap) => t > gap.from && t < gap.to);
    if (g >= 0) {
      inGaps.push(i);
      perGap[g]!++;
    }
  }
  deepStrictEqual(missing, inGaps, "the missing quotes are exactly those inside failover gaps");
  return perGap;
}

/** Missed quotes (sent while no producer was connected) up to `last`, all inside `gap`. */
function missedIn(fake: FakePolygon, gap: Gap, last: number): number {
  const missed = fake.stats.missed.filter((i) => i <= last);
  for (const i of missed) {
    ok(T0 + i > gap.from && T0 + i < gap.to, `missed quote ${i} lies inside the failover gap`);
  }
  return missed.length;
}

async function withGroup(
  name: string,
  fn: (ctx: {
    broker: KafkaBroker;
    fake: FakePolygon;
    topic: string;
    group: string;
    members: Member[];
  }) => Promise<void>,
): Promise<void> {
  const broker = await startKafka();
  const topic = uniqueTopic(`rel-failover-${name}`);
  const group = `standby-${topic}`;
  await prepareTopics(broker, topic);
  const fake = startFakePolygon({
    apiKey: API_KEY,
    frames: quoteFrames(400_000),
    rate: RATE,
    live: true,
  });
  const members: Member[] = [];
  try {
    await fn({ broker, fake, topic, group, members });
  } finally {
    for (const m of members) await m.process.dispose();
    await fake.close();
  }
}

/** Starts A, waits until it is active and acking, then starts B and waits until it stands by. */
async function activeAndStandby(
  ctx: { broker: KafkaBroker; fake: FakePolygon; topic: string; group: string; members: Member[] },
): Promise<[Member, Member]> {
  const a = await startMember(ctx.broker, ctx.fake, ctx.topic, ctx.group);
  ctx.members.push(a);
  await waitUntil(async () => (await acked(a)) > 0, "A acks its first record", 60_000);
  equal(await roleOf(a), "active");
  const b = await startMember(ctx.broker, ctx.fake, ctx.topic, ctx.group);
  ctx.members.push(b);
  await waitUntil(async () => (await roleOf(b)) === "standby", "B stands by", 30_000);
  const h = await health(b.base);
  equal(h.status, "standby");
  return [a, b];
}

Deno.test({
  name: "SIGKILL of the active producer: the standby acks within 10 s and the failover gap " +
    "covers exactly the lost quotes",
  ...KAFKA_TEST,
  async fn() {
    await withGroup("kill", async (ctx) => {
      const [a, b] = await activeAndStandby(ctx);
      await sleep(2_000);
      const killAt = performance.now();
      a.process.kill("SIGKILL");
      await waitUntil(async () => (await acked(b)) > 0, "B acks its first record", 30_000);
      const takeoverMs = performance.now() - killAt;
      equal(await roleOf(b), "active");
      equal(await metric(b.base, "crypto_producer_takeovers_total"), 1);
      await sleep(2_000);
      b.process.kill("SIGTERM");
      equal((await b.process.exit(30_000)).code, EXIT.OK, b.process.stderr);
      const final = await b.process.summary();
      equal(final.acked, final.records, "B acked every record it accepted");

      const d = await delivered(ctx.broker, ctx.topic);
      const gaps = await failoverGaps(ctx.broker, ctx.topic);
      equal(gaps.length, 1, "one takeover, one failover gap");
      const gap = gaps[0]!;
      const [inGap] = assertGapsCoverExactly(d, gaps);
      const missed = missedIn(ctx.fake, gap, d.last);
      // Duplicates can only be records the killed producer sent and did not see acked; its
      // idempotent producer makes even those unlikely.
      const dups = duplicates(d.records.map((r) => r.value!));
      for (const v of dups.keys()) ok(T0 + quoteIndex(v) <= gap.from, `duplicate ${v} is A's`);
      ok(takeoverMs < 10_000, `the standby acked ${Math.round(takeoverMs)} ms after the kill`);
      console.log(
        `[reliability] failover SIGKILL: standby acked ${
          Math.round(takeoverMs)
        } ms after the kill (session timeout ${SESSION_S} s); gap ${gap.to - gap.from} ms of ` +
          `exchange time = ${inGap} quotes not in the topic: ${missed} sent while no producer ` +
          `was connected + ${inGap! - missed} received by the killed one and never written; ` +
          `0 lost outside the gap; ${d.duplicates} duplicated`,
      );
    });
  },
});

Deno.test({
  name: "SIGTERM of the active producer: handover under 2 s, nothing lost, nothing duplicated",
  ...KAFKA_TEST,
  async fn() {
    await withGroup("term", async (ctx) => {
      const [a, b] = await activeAndStandby(ctx);
      await sleep(2_000);
      const termAt = performance.now();
      a.process.kill("SIGTERM");
      const exitA = await a.process.exit(30_000, termAt);
      equal(exitA.code, EXIT.OK, a.process.stderr);
      const finalA = await a.process.summary();
      await waitUntil(async () => (await acked(b)) > 0, "B acks its first record", 30_000);
      const takeoverMs = performance.now() - termAt;
      await sleep(2_000);
      b.process.kill("SIGTERM");
      equal((await b.process.exit(30_000)).code, EXIT.OK, b.process.stderr);
      const finalB = await b.process.summary();
      equal(finalB.acked, finalB.records, "B acked every record it accepted");

      const d = await delivered(ctx.broker, ctx.topic);
      const gaps = await failoverGaps(ctx.broker, ctx.topic);
      equal(gaps.length, 1);
      const gap = gaps[0]!;
      const [inGap] = assertGapsCoverExactly(d, gaps);
      const missed = missedIn(ctx.fake, gap, d.last);
      // Nothing accepted was lost: every record A accepted is in the topic before the gap, and
      // the gap holds quotes sent while neither was connected, plus any the fake sent to A's
      // socket after A stopped reading on SIGTERM (before the close reached the fake).
      const beforeGap = d.records.filter((r) => T0 + quoteIndex(r.value!) <= gap.from).length;
      equal(beforeGap, finalA.acked, "every record A accepted is in the topic, before the gap");
      equal(finalA.acked, finalA.records, "A acked every record it accepted");
      ok(inGap! >= missed, "the gap holds every quote sent while no producer was connected");
      const afterStop = inGap! - missed;
      equal(d.duplicates, 0, "no record twice");
      equal(d.records.length, finalA.acked + finalB.acked, "the topic holds what was acked");
      ok(gap.to - gap.from < 2_000, `handover gap ${gap.to - gap.from} ms`);
      console.log(
        `[reliability] failover SIGTERM: A exited ${Math.round(exitA.ms)} ms after SIGTERM, B ` +
          `acked ${Math.round(takeoverMs)} ms after it; handover gap ${
            gap.to - gap.from
          } ms of exchange time (${missed} quotes sent while no producer was connected, ` +
          `${afterStop} sent to A after it stopped reading); ` +
          `${d.records.length} records = ${finalA.acked} + ${finalB.acked} acked, 0 lost, 0 duplicated`,
      );
    });
  },
});

Deno.test({
  name: "a zombie (SIGSTOP past the session timeout, then SIGCONT) writes nothing after the new " +
    "leader's first record",
  ...KAFKA_TEST,
  async fn() {
    await withGroup("zombie", async (ctx) => {
      const [a, b] = await activeAndStandby(ctx);
      await sleep(2_000);
      const stopAt = performance.now();
      a.process.kill("SIGSTOP");
      await waitUntil(async () => (await acked(b)) > 0, "B acks its first record", 30_000);
      const takeoverMs = performance.now() - stopAt;
      // Let the zombie's socket buffers fill with what the fake sent it before the eviction.
      await sleep(Math.max(0, SESSION_S * 1000 + 4_000 - (performance.now() - stopAt)));
      a.process.kill("SIGCONT");
      await waitUntil(async () => (await roleOf(a)) === "standby", "A stands by", 30_000);
      const fenced = await metric(a.base, "crypto_producer_fenced_records_total");
      equal(await metric(a.base, "crypto_producer_role"), 0);
      const lost = await metric(a.base, "crypto_producer_leadership_lost_total");
      await sleep(3_000);
      equal(await roleOf(b), "active", "B still leads");
      for (const m of [a, b]) m.process.kill("SIGTERM");
      equal((await a.process.exit(30_000)).code, EXIT.OK, a.process.stderr);
      equal((await b.process.exit(30_000)).code, EXIT.OK, b.process.stderr);
      const finalA = await a.process.summary();

      const d = await delivered(ctx.broker, ctx.topic);
      const gaps = await failoverGaps(ctx.broker, ctx.topic);
      equal(gaps.length, 1);
      const gap = gaps[0]!;
      try {
        assertGapsCoverExactly(d, gaps);
      } catch (error) {
        // What each producer said is the evidence of how a record landed inside the gap.
        throw new Error(
          `${error instanceof Error ? error.message : error}\n=== A (the zombie)\n` +
            `${a.process.stderr}\n=== B\n${b.process.stderr}`,
          { cause: error },
        );
      }
      // In every partition, once the new leader's first record is there, every later record is
      // the new leader's (its quotes come after the gap): the zombie appended nothing.
      let zombieAfter = 0;
      const byPartition = new Map<number, InRecord[]>();
      for (const r of d.records) {
        byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r]);
      }
      for (const records of byPartition.values()) {
        records.sort((x, y) => Number(BigInt(x.offset) - BigInt(y.offset)));
        let seenNew = false;
        for (const r of records) {
          const t = T0 + quoteIndex(r.value!);
          if (t >= gap.to) seenNew = true;
          else if (seenNew) zombieAfter++;
        }
      }
      equal(zombieAfter, 0, "no record of the zombie after the new leader's first");
      equal(ctx.fake.stats.evictions, 1, "the new leader's connection evicted the zombie's");
      ok(lost >= 1, "the zombie noticed it lost the leadership");
      equal(d.duplicates, 0);
      console.log(
        `[reliability] failover zombie: SIGSTOP ${SESSION_S + 4} s (session ${SESSION_S} s), B ` +
          `acked ${Math.round(takeoverMs)} ms after the stop; on SIGCONT the zombie refused ` +
          `a batch of ${fenced} records (never sent) and stood by (${finalA.frames} frames ` +
          `received, ${finalA.acked} acked in all), Polygon evicted it once, 0 records of it after the ` +
          `new leader's first; gap ${gap.to - gap.from} ms, ${d.duplicates} duplicated`,
      );
    });
  },
});

Deno.test({
  name: "flapping: 10 SIGKILLs and restarts in 2 minutes, always at most one active producer " +
    "and one Polygon connection",
  ...KAFKA_TEST,
  async fn() {
    await withGroup("flap", async (ctx) => {
      let pair = await activeAndStandby(ctx);
      const startedAt = performance.now();
      const watch = { samples: 0, twoActive: 0 };
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const roles = await Promise.all(ctx.members.map(roleOf));
          watch.samples++;
          if (roles.filter((r) => r === "active").length > 1) watch.twoActive++;
          await sleep(100);
        }
      })();
      const takeoverMs: number[] = [];
      try {
        for (let round = 0; round < 10; round++) {
          const roles = await Promise.all(pair.map(roleOf));
          equal(roles.filter((r) => r === "active").length, 1, `round ${round}: ${roles}`);
          const active = pair[roles.indexOf("active")]!;
          const other = pair[1 - roles.indexOf("active")]!;
          const killAt = performance.now();
          active.process.kill("SIGKILL");
          const restarted = await startMember(ctx.broker, ctx.fake, ctx.topic, ctx.group);
          ctx.members.push(restarted);
          pair = [other, restarted];
          const ackedBefore = await Promise.all(pair.map(acked));
          await waitUntil(
            async () => {
              const now = await Promise.all(pair.map(acked));
              return now.some((n, i) => n > ackedBefore[i]!);
            },
            `round ${round}: a new active producer acks`,
            30_000,
          );
          takeoverMs.push(performance.now() - killAt);
          await waitUntil(
            async () => {
              const r = await Promise.all(pair.map(roleOf));
              return r.includes("active") && r.includes("standby");
            },
            `round ${round}: one active, one standby`,
            30_000,
          );
        }
      } finally {
        watching = false;
        await watcher;
      }
      const elapsedMs = performance.now() - startedAt;
      for (const m of pair) m.process.kill("SIGTERM");
      for (const m of pair) equal((await m.process.exit(30_000)).code, EXIT.OK, m.process.stderr);

      equal(watch.twoActive, 0, `two producers said active in ${watch.twoActive} samples`);
      equal(ctx.fake.stats.authenticatedMax, 1, "never two authenticated Polygon connections");
      equal(ctx.fake.stats.evictions, 0, "no producer connected while another streamed");
      const d = await delivered(ctx.broker, ctx.topic);
      const gaps = await failoverGaps(ctx.broker, ctx.topic);
      equal(gaps.length, 10, "one failover gap per takeover");
      const perGap = assertGapsCoverExactly(d, gaps);
      ok(elapsedMs < 120_000, `10 rounds took ${Math.round(elapsedMs)} ms`);
      const sorted = [...takeoverMs].sort((x, y) => x - y);
      console.log(
        `[reliability] failover flapping: 10 SIGKILL+restart rounds in ${
          Math.round(elapsedMs / 1000)
        } s; takeover (kill to first ack) median ${Math.round(sorted[5]!)} ms, max ${
          Math.round(sorted[9]!)
        } ms; ${watch.samples} role samples, never two active; fake: at most ` +
          `${ctx.fake.stats.authenticatedMax} authenticated connection, ` +
          `${ctx.fake.stats.evictions} evictions; 10 failover gaps cover exactly the ` +
          `${perGap.reduce((x, y) => x + y, 0)} missing quotes; ${d.duplicates} duplicated`,
      );
    });
  },
});
