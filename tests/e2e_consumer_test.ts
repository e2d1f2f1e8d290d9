/**
 * End to end: the consumer as a process: from, formats, signals, limits, malformed records.
 * Against a real Apache Kafka broker (tests/helpers/kafka_broker.ts) with the scripts as
 * processes (tests/helpers/e2e.ts). With KAFKA_BROKERS set, the TLS and SCRAM tests are skipped;
 * the capture tests need the real capture (tests/helpers/capture.ts) and are ignored without it.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { withAdmin } from "./helpers/kafka_check.ts";
import { partitionFor } from "../lib/kafka/murmur2.ts";
import { type OutRecord } from "../lib/sink.ts";
import { EXIT } from "../lib/config/defaults.ts";
import {
  baseEnv,
  bySymbol,
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  lines,
  partitionLag,
  PERMISSIONS,
  produce,
  ROOT,
  run,
  ScriptProcess,
  sorted,
  spreadRecords,
} from "./helpers/e2e.ts";

Deno.test({
  name:
    "a consumer stopped after N records and started again in its group misses and repeats nothing",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-restart");
    const groupId = `g-${topic}`;
    const sent = spreadRecords(60, Date.now() - 60_000, ["BTC-USD", "ETH-USD", "SOL-USD"]);
    await produce(config, topic, sent, 3);
    const env = kafkaEnv(b, "plaintext", topic);
    const args = ["--from", "earliest", "--group", groupId];
    const first = await run("consumer.ts", [...args, "--max-messages", "25"], env);
    equal(first.code, 0, first.stderr);
    equal(lines(first.stdout).length, 25);
    const lagAfterFirst = await partitionLag(config, groupId, topic);
    equal(lagAfterFirst.reduce((sum, p) => sum + p.lag, 0), 35);

    const second = await run("consumer.ts", [...args, "--max-messages", "35"], env);
    equal(second.code, 0, second.stderr);
    equal(lines(second.stdout).length, 35);
    const all = [...lines(first.stdout), ...lines(second.stdout)];
    deepStrictEqual(sorted(all), sorted(sent.map((r) => r.value)));
    deepStrictEqual(bySymbol(all), bySymbol(sent.map((r) => r.value)));
    const lag = await partitionLag(config, groupId, topic);
    deepStrictEqual(lag.map((p) => p.lag), [0, 0, 0]);
  },
});

Deno.test({
  name: "a consumer started --from an ISO time begins at the first record at or after it",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-from");
    const t0 = Math.floor((Date.now() - 600_000) / 1000) * 1000;
    const sent = spreadRecords(30, t0, ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"], 1000);
    await produce(config, topic, sent, 3);
    const from = new Date(t0 + 20_000).toISOString();
    const r = await run(
      "consumer.ts",
      ["--from", from, "--max-messages", "10", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    deepStrictEqual(sorted(lines(r.stdout)), sorted(sent.slice(20).map((x) => x.value)));
  },
});

Deno.test({
  name: "two consumer processes in one group split the partitions and consume each record once",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-scale");
    const groupId = `g-${topic}`;
    const symbols = Array.from({ length: 16 }, (_, i) => `S${i}-USD`);
    // murmur2 is fixed: these keys cover all four partitions, so both members get records.
    deepStrictEqual([...new Set(symbols.map((s) => partitionFor(s, 4)))].sort(), [0, 1, 2, 3]);
    await produce(config, topic, [], 4);
    const env = kafkaEnv(b, "plaintext", topic);
    const consumers = [0, 1].map(() =>
      new ScriptProcess("consumer.ts", ["--from", "earliest", "--group", groupId], env)
    );
    const assignment = (c: ScriptProcess): number[] => {
      const all = [...c.stderr.matchAll(/joined group "[^"]+": partitions \[([\d,]*)\]/g)];
      const last = all.at(-1)?.[1];
      return last ? last.split(",").map(Number) : [];
    };
    try {
      await consumers[0]!.waitFor("a stable split", () => {
        const [a, b] = consumers.map(assignment);
        return a!.length > 0 && b!.length > 0 && sorted([...a!, ...b!].map(String)).join() ===
            "0,1,2,3";
      });
      const sent = spreadRecords(400, Date.now() - 60_000, symbols);
      await produce(config, topic, sent, 4);
      await consumers[0]!.waitFor(
        "400 records across both",
        () => consumers.reduce((n, c) => n + lines(c.stdout).length, 0) >= 400,
      );
      for (const c of consumers) c.kill("SIGTERM");
      const [one, two] = await Promise.all(consumers.map((c) => c.finished));
      equal(one!.code, 0, one!.stderr);
      equal(two!.code, 0, two!.stderr);
      const got = [lines(one!.stdout), lines(two!.stdout)];
      deepStrictEqual(sorted(got.flat()), sorted(sent.map((r) => r.value)));
      ok(got[0]!.length > 0 && got[1]!.length > 0, `split ${got[0]!.length}/${got[1]!.length}`);
      const symbolsOf = (values: string[]) => new Set(Object.keys(bySymbol(values)));
      for (const s of symbolsOf(got[0]!)) ok(!symbolsOf(got[1]!).has(s), `${s} went to both`);
      match(one!.stderr, new RegExp(`consumed ${got[0]!.length} records, 0 malformed`));
      match(two!.stderr, new RegExp(`consumed ${got[1]!.length} records, 0 malformed`));
    } finally {
      for (const c of consumers) c.kill("SIGKILL");
      await Promise.all(consumers.map((c) => c.finished));
    }
  },
});

Deno.test({
  name: "the consumer reports malformed records with their coordinates, skips them and goes on",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-malformed");
    const groupId = `g-${topic}`;
    const good = spreadRecords(3, Date.now() - 60_000, ["BTC-USD"]);
    const bad = (value: string): OutRecord => ({ ...good[0]!, value });
    await produce(config, topic, [
      good[0]!,
      bad("not json"),
      bad('{"timestamp":"2026-01-02T03:04:05.000Z","symbol":"BTC-USD"}'),
      bad("[1,2]"),
      good[1]!,
      bad('{"timestamp":"yesterday","symbol":"BTC-USD","spread":1}'),
      good[2]!,
    ], 1);
    const r = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "3", "--group", groupId],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    deepStrictEqual(lines(r.stdout), good.map((g) => g.value));
    const reported = r.stderr.split("\n").filter((l) => l.startsWith("malformed record"));
    deepStrictEqual(reported, [
      `malformed record at ${topic}/0/1: the value is not JSON: "not json"; skipped`,
      `malformed record at ${topic}/0/2: "spread" is missing; skipped`,
      `malformed record at ${topic}/0/3: the value is not an object; skipped`,
      `malformed record at ${topic}/0/5: "timestamp" is not an ISO 8601 UTC time: "yesterday"; ` +
      "skipped",
    ]);
    ok(r.stderr.includes(`consumed 3 records, 4 malformed (skipped), group "${groupId}"`));
    // Malformed records count as handled: everything is committed.
    const lag = await partitionLag(config, groupId, topic);
    deepStrictEqual(lag, [{ partition: 0, end: "7", committed: "7", lag: 0 }]);
  },
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test({
    name: `${signal} makes the consumer commit, leave its group and exit 0`,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const config = brokerConfig(b);
      const topic = uniqueTopic("e2e-signal");
      const groupId = `g-${topic}`;
      const sent = spreadRecords(5, Date.now() - 60_000, ["BTC-USD", "ETH-USD"]);
      await produce(config, topic, sent, 1);
      const consumer = new ScriptProcess(
        "consumer.ts",
        ["--from", "earliest", "--group", groupId],
        kafkaEnv(b, "plaintext", topic),
      );
      try {
        await consumer.waitFor("5 records", () => lines(consumer.stdout).length >= 5);
        consumer.kill(signal);
        const r = await consumer.finished;
        equal(r.code, 0, r.stderr);
        equal(r.signal, null);
        deepStrictEqual(lines(r.stdout), sent.map((x) => x.value));
        ok(r.stderr.includes(`consumed 5 records, 0 malformed (skipped), group "${groupId}"`));
      } finally {
        consumer.kill("SIGKILL");
        await consumer.finished;
      }
      await withAdmin(config, async (admin) => {
        deepStrictEqual(await partitionLag(config, groupId, topic), [
          { partition: 0, end: "5", committed: "5", lag: 0 },
        ]);
        const { groups } = await admin.describeGroups([groupId]);
        equal(groups[0]!.state, "Empty");
        deepStrictEqual(groups[0]!.members, []);
      });
    },
  });
}

Deno.test({
  name: "--format table prints a per-symbol table with the last spread and the count",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-table");
    const sent = spreadRecords(5, Date.now() - 120_000, ["BTC-USD", "ETH-USD"]);
    await produce(config, topic, sent, 1);
    const r = await run(
      "consumer.ts",
      ["--from", "earliest", "--max-messages", "5", "--format", "table", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    // The last table printed is the final one.
    const out = lines(r.stdout);
    const start = out.findLastIndex((l) => l.startsWith("symbol"));
    const table = out.slice(start);
    equal(table.length, 3, r.stdout);
    match(table[0]!, /^symbol\s+last spread\s+upd\/s\s+age\s+count$/);
    // BTC-USD: records 0, 2, 4 (spread 4.25); ETH-USD: records 1, 3 (spread 3.25).
    // The records are two minutes old: the age reads as minutes and seconds.
    match(table[1]!, /^BTC-USD {2,}4\.25 {2,}\d+\.\d {2,}\dm\d\ds {2,}3$/);
    match(table[2]!, /^ETH-USD {2,}3\.25 {2,}\d+\.\d {2,}\dm\d\ds {2,}2$/);
    ok(!r.stdout.includes('{"timestamp"'), "table mode printed JSON lines");
  },
});

Deno.test({
  name: "bad consumer flags exit 2 naming the flag, and so do a missing KAFKA_BROKERS and topic",
  ...KAFKA_TEST,
  async fn() {
    const env = { KAFKA_BROKERS: "127.0.0.1:9", KAFKA_SECURITY: "plaintext" };
    const cases: [string[], Record<string, string>, string][] = [
      [["--bogus"], env, 'Unknown option "--bogus"; see --help'],
      [["--from", "yesterday"], env, "--from must be latest, earliest or an ISO 8601 time"],
      [["--format", "xml"], env, '--format must be one of json, table, got "xml"'],
      [["--max-messages", "0"], env, '--max-messages must be at least 1, got "0"'],
      [["--max-messages", "ten"], env, '--max-messages must be a whole number, got "ten"'],
      [["--timeout=soon"], env, '--timeout must be a number of seconds, got "soon"'],
      [[], {}, '"KAFKA_BROKERS" environment variable (or --brokers) must be set; set it in .env'],
    ];
    for (const [args, e, says] of cases) {
      const r = await run("consumer.ts", args, e);
      equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      ok(r.stderr.includes(says), `${args.join(" ")}: ${r.stderr}`);
      equal(r.stdout, "");
    }
    const b = await kafka();
    const topic = uniqueTopic("e2e-missing");
    const r = await run("consumer.ts", ["--group", `g-${topic}`], kafkaEnv(b, "plaintext", topic));
    equal(r.code, 2, r.stderr);
    ok(r.stderr.includes(`Cannot consume topic "${topic}": it does not exist`), r.stderr);
  },
});

Deno.test({
  name: "--timeout stops a consumer that has nothing to read with exit 0",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const topic = uniqueTopic("e2e-timeout");
    await produce(brokerConfig(b), topic, [], 1);
    const r = await run(
      "consumer.ts",
      ["--timeout", "2", "--group", `g-${topic}`],
      kafkaEnv(b, "plaintext", topic),
    );
    equal(r.code, 0, r.stderr);
    equal(r.stdout, "");
    ok(r.stderr.includes(`consumed 0 records, 0 malformed (skipped), group "g-${topic}"`));
    ok(r.stderr.includes(`joined group "g-${topic}": partitions [0] of "${topic}"`), r.stderr);
  },
});

Deno.test({
  name:
    "finding 2: consume | head -n 100 on a backlog of 10,000 exits 8 and commits only what head took, so the next run prints every record after them",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-pipe");
    const groupId = `g-${topic}`;
    const sent = spreadRecords(10_000, Date.now() - 60_000, ["BTC-USD", "ETH-USD", "SOL-USD"]);
    await produce(config, topic, sent, 3);
    const env = { ...baseEnv(), ...kafkaEnv(b, "plaintext", topic) };
    const consume = [Deno.execPath(), "run", ...PERMISSIONS["consumer.ts"]!, "consumer.ts"]
      .concat(["--from", "earliest", "--group", groupId]).join(" ");
    // As a user types it: the consumer's exit code is the pipeline's first status.
    const piped = await new Deno.Command("bash", {
      args: ["-c", `${consume} | head -n 100; echo "consumer exit ${"$"}{PIPESTATUS[0]}" >&2`],
      cwd: ROOT,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const first = lines(new TextDecoder().decode(piped.stdout));
    const firstErr = new TextDecoder().decode(piped.stderr);
    equal(first.length, 100, firstErr);
    match(firstErr, /consumer exit 8\n$/);
    // Committed: per partition, no more than the records of it that head printed.
    const lagAfter = await partitionLag(config, groupId, topic);
    const printedBy = new Map<number, number>();
    const partitionOf = new Map(sent.map((r) => [r.value, partitionFor(r.key, 3)]));
    for (const v of first) {
      printedBy.set(partitionOf.get(v)!, (printedBy.get(partitionOf.get(v)!) ?? 0) + 1);
    }
    const committed = lagAfter.map((p) => Number(p.committed));
    deepStrictEqual(
      committed.map((c, p) => Math.max(c, 0) <= (printedBy.get(p) ?? 0)),
      [true, true, true],
      `committed ${JSON.stringify(committed)} after head printed ${JSON.stringify([...printedBy])}`,
    );

    const second = await run("consumer.ts", ["--group", groupId, "--timeout", "30"], env);
    equal(second.code, 0, second.stderr);
    const again = lines(second.stdout);
    // Every record after what was committed, each once: nothing after the first 100 skipped.
    const index = new Map<number, number>();
    const expected = sent.filter((r) => {
      const p = partitionOf.get(r.value)!;
      const i = index.get(p) ?? 0;
      index.set(p, i + 1);
      return i >= Math.max(committed[p]!, 0);
    }).map((r) => r.value);
    deepStrictEqual(again.length, expected.length);
    deepStrictEqual(sorted(again), sorted(expected));
    const seen = new Set([...first, ...again]);
    deepStrictEqual(sent.filter((r) => !seen.has(r.value)).length, 0);
    deepStrictEqual((await partitionLag(config, groupId, topic)).map((p) => p.lag), [0, 0, 0]);
  },
});

Deno.test({
  name:
    "issue 21: a consumer whose group join cannot finish (a member stopped mid-session) exits " +
    "9 at its --stall-after bound instead of reading nothing for ever",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-stall");
    const groupId = `g-${topic}`;
    await produce(config, topic, spreadRecords(50, Date.now() - 60_000, ["BTC-USD"]), 2);
    const env = kafkaEnv(b, "plaintext", topic);
    // A member with a 90 s session, then stopped: a join must wait for it to rejoin or for its
    // session to end, so the newcomer gets no assignment for up to 90 s.
    const held = new ScriptProcess(
      "consumer.ts",
      ["--from", "earliest", "--group", groupId, "--session-timeout", "90"],
      env,
    );
    try {
      await held.waitFor("the first member printed the backlog", () => {
        return lines(held.stdout).length >= 50;
      });
      held.kill("SIGSTOP");
      const stuck = await run(
        "consumer.ts",
        ["--group", groupId, "--stall-after", "8", "--session-timeout", "6"],
        env,
      );
      // Without the bound it would wait out the stopped member's session and then read nothing
      // new, until the test's process limit kills it (another exit code).
      equal(stuck.code, EXIT.STALLED, stuck.stderr);
      equal(lines(stuck.stdout).length, 0);
    } finally {
      held.kill("SIGCONT");
      held.kill("SIGKILL");
      await held.finished;
    }
  },
});
