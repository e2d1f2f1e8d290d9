/**
 * Reliability, the processes (issue 5, scenarios 7 and 8): SIGTERM to the real producer under
 * load, and SIGKILL to the real consumer mid-stream then a restart, both as subprocesses over
 * SASL_SSL against the shared real Kafka broker.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { DEFAULT_SESSION_TIMEOUT_MS } from "../lib/kafka/defaults.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { SCHEMA_VERSION } from "../lib/sink.ts";
import { brokerConfig, startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  assertDelivered,
  assertNoSecrets,
  duplicates,
  health,
  KAFKA_TEST,
  quoteFrames,
  quoteValue,
  readTopic,
  scriptKafka,
  ScriptProcess,
  sleep,
  startScenario,
  waitUntil,
} from "./helpers/reliability.ts";

Deno.test({
  name:
    "SIGTERM under load: the producer acks every record it accepted and exits 0 within the shutdown bound",
  ...KAFKA_TEST,
  async fn() {
    const shutdownS = 10;
    await using s = await startScenario({
      topic: "rel-sigterm",
      fake: { frames: quoteFrames(200_000), rate: 15_000 },
      args: ["--shutdown-timeout", String(shutdownS)],
    });
    const base = await s.telemetry();
    await waitUntil(() => s.fake.stats.framesSent >= 30_000, "30,000 frames sent", 60_000);
    const before = await health(base);
    const ackedBefore = await s.acked();
    const termAt = performance.now();
    s.producer.kill("SIGTERM");
    const { code, ms } = await s.producer.exit(shutdownS * 1000 + 20_000, termAt);
    equal(code, EXIT.OK, s.producer.stderr);
    ok(ms < shutdownS * 1000 + 2000, `exited ${ms} ms after SIGTERM`);

    const final = await s.producer.summary();
    const accepted = final.frames - 1; // the first frame is the subscription confirmation
    equal(final.framesDropped, 0);
    equal(final.records, accepted);
    equal(final.acked, accepted);
    equal(final.exitCode, EXIT.OK);
    const records = await readTopic(s.broker, s.topic);
    // The frames accepted are a prefix of those sent, and each is in the topic.
    const extra = assertDelivered(
      records,
      Array.from({ length: accepted }, (_, i) => quoteValue(i)),
      s.producer.stderr,
    );
    console.log(
      `[reliability] SIGTERM at 15,000 frames/s: ${before.pendingRecords} records pending and ` +
        `${ackedBefore} acked at the signal; exit 0 after ${Math.round(ms)} ms ` +
        `(bound ${shutdownS} s); ${accepted} accepted, ${final.acked} acked, 0 lost, ${extra} duplicated`,
    );
    s.assertNoSecrets();
  },
});

/** Complete lines of a consumer's stdout (a line cut by SIGKILL was not written in full). */
function lines(stdout: string): string[] {
  const all = stdout.split("\n");
  all.pop(); // "" after the last newline, or a cut line
  return all;
}

Deno.test({
  name:
    "a consumer SIGKILLed mid-stream and restarted misses nothing and repeats only what it had not committed",
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const kafka = scriptKafka(broker);
    const topic = uniqueTopic("rel-consumer");
    const groupId = `g-${topic}`;
    const total = 6000;
    const config = brokerConfig(broker, "plaintext", { topic });
    const client = await openKafka(config, { log: () => {} });
    await client.admin.ensureTopic(topic, { partitions: 3, replicationFactor: -1 });
    const sink = client.sink();
    const values = Array.from({ length: total }, (_, i) => quoteValue(i));
    // A steady stream: 100 records every 20 ms, while the consumer reads.
    const producing = (async () => {
      for (let i = 0; i < total; i += 100) {
        await sink.send(
          topic,
          values.slice(i, i + 100).map((value) => ({
            key: JSON.parse(value).symbol,
            value,
            timestamp: Date.parse(JSON.parse(value).timestamp),
            headers: { "schema-version": SCHEMA_VERSION },
          })),
        );
        await sleep(20);
      }
    })();
    const consumerArgs = ["--topic", topic, "--group", groupId, "--from", "earliest"];
    const first = new ScriptProcess("consumer.ts", consumerArgs, kafka.env);
    let second: ScriptProcess | undefined;
    try {
      await waitUntil(() => lines(first.stdout).length >= 1500, "1,500 lines", 60_000);
      // Mid-stream, once it has committed something (every 100 ms), so the restart has a
      // committed position to resume from.
      await waitUntil(
        async () => (await client.admin.lag(groupId, topic)).some((p) => p.committed !== "-1"),
        "a first commit",
        30_000,
      );
      first.kill("SIGKILL");
      await first.exit(10_000);
      const killedAt = performance.now();
      await producing;
      const committed = new Map<number, bigint>();
      for (const p of await client.admin.lag(groupId, topic)) {
        committed.set(p.partition, BigInt(p.committed));
      }

      second = new ScriptProcess("consumer.ts", consumerArgs, kafka.env);
      const restartedAt = performance.now();
      await waitUntil(() => lines(second!.stdout).length > 0, "the restart's first line", 60_000);
      const firstLineMs = performance.now() - restartedAt;
      // The dead member holds its partitions until its session times out (6 s by default,
      // --session-timeout), not the 30 s of kafkajs's default: the restart prints soon after.
      ok(
        firstLineMs < DEFAULT_SESSION_TIMEOUT_MS + 4_000,
        `the restart printed its first line after ${Math.round(firstLineMs)} ms`,
      );
      const run1 = lines(first.stdout);
      const seen = new Set(run1);
      await waitUntil(
        () => {
          for (const l of lines(second!.stdout)) seen.add(l);
          return seen.size >= total;
        },
        `all ${total} records between both runs`,
        120_000,
      ).catch((e) => {
        throw new Error(`${e.message}: ${seen.size} seen\n${second!.stderr}\n${first.stderr}`);
      });
      const resumedMs = performance.now() - killedAt;
      await sleep(500);
      second.kill("SIGTERM");
      equal((await second.exit(20_000)).code, EXIT.OK, second.stderr);
      const run2 = lines(second.stdout);

      equal(duplicates(run1).size, 0, "the first run printed no record twice");
      equal(duplicates(run2).size, 0, "the second run printed no record twice");
      deepStrictEqual(new Set([...run1, ...run2]), new Set(values), "no record is missing");
      // Where each record sits, to compare with the offsets committed when the first run died.
      const where = new Map(
        (await readTopic(broker, topic)).map((r) => [r.value!, { p: r.partition, o: r.offset }]),
      );
      const uncommitted = (v: string) => {
        const w = where.get(v)!;
        return BigInt(w.o) >= (committed.get(w.p) ?? -1n);
      };
      // Commits happen every 100 ms, so a partition whose first records came in the last
      // interval before the kill may have none yet: it is then read again from the start.
      ok([...committed.values()].some((o) => o >= 0n), "the first run had committed");
      // The restart resumes exactly at the committed offsets...
      deepStrictEqual(new Set(run2), new Set(values.filter(uncommitted)));
      // ...so the duplicates are exactly what the first run printed after its last commit.
      const repeated = run1.filter((v) => run2.includes(v));
      deepStrictEqual(new Set(repeated), new Set(run1.filter(uncommitted)));
      console.log(
        `[reliability] consumer SIGKILL: ${run1.length} printed before the kill, ` +
          `${run1.length - repeated.length} committed; restart printed ${run2.length}; ` +
          `0 missing, ${repeated.length} duplicates (all after the last commit); all ${total} ` +
          `seen ${(resumedMs / 1000).toFixed(1)} s after the kill; the restart printed its ` +
          `first line ${(firstLineMs / 1000).toFixed(1)} s after it started (session timeout ` +
          `${DEFAULT_SESSION_TIMEOUT_MS / 1000} s)`,
      );
      assertNoSecrets({
        stdout1: first.stdout,
        stderr1: first.stderr,
        stdout2: second.stdout,
        stderr2: second.stderr,
      }, [kafka.password]);
    } finally {
      await first.dispose();
      await second?.dispose();
      await producing.catch(() => {});
      await sink.close();
      await client.close();
    }
  },
});
