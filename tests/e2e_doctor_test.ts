/**
 * `deno task doctor` against the real local services and the fake Polygon, one test per
 * verdict, and for each failing setup the script it guards (`produce`, `replay`) run with the
 * same settings: it must fail too, with the same cause in the same words. The doctor's output is
 * read as JSON (`--json`), never as log text.
 */
import { assertEquals, ok } from "./helpers/assert.ts";
import { API_KEY, kafka, KAFKA_TEST, kafkaEnv, run } from "./helpers/e2e.ts";
import { EXTERNAL_KAFKA, requireSecure, startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import { createTopicsAsAdmin, grantTopicAcls } from "./helpers/kafka_acl.ts";
import { startInfluxDb } from "./helpers/influxdb.ts";
import { freePort } from "./helpers/service_process.ts";
import { startFakePolygon } from "../lib/polygon/fake.ts";
import type { CheckResult } from "../lib/doctor/verdict.ts";

interface Report {
  results: CheckResult[];
  counts: { ok: number; warning: number; fail: number };
  exitCode: number;
}

/** Runs the doctor with `--json`; its exit code must be the report's. */
async function doctor(env: Record<string, string>, args: string[] = []): Promise<Report> {
  const done = await run("doctor.ts", ["--json", ...args], env);
  const report = JSON.parse(done.stdout) as Report;
  assertEquals(done.code, report.exitCode, done.stderr);
  return report;
}

/** The one result of a check, by group and name. */
function result(report: Report, group: string, check: string): CheckResult {
  const found = report.results.filter((r) => r.group === group && r.check === check);
  assertEquals(found.length, 1, `one "${group} ${check}" in ${JSON.stringify(report.results)}`);
  return found[0]!;
}

/** Verdicts of every check as "group check: verdict" lines. */
function verdicts(report: Report): string[] {
  return report.results.map((r) => `${r.group} ${r.check}: ${r.verdict}`);
}

/** Settings the tests do not exercise: no Polygon unless asked, the metrics port free. */
const QUIET = { METRICS_PORT: "0" };

Deno.test({
  name: "doctor fails a broker certificate signed by another CA, and so does produce",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const s = requireSecure(b, "the wrong-CA test");
    const env = {
      ...kafkaEnv(b, "scram-sha-512", uniqueTopic("doctor-ca")),
      ...QUIET,
      KAFKA_SSL_CA: s.untrustedCaPem,
      KAFKA_CONNECT_TIMEOUT: "10",
      POLYGON_API_KEY: API_KEY,
    };
    const report = await doctor(env, ["--skip", "polygon"]);
    const reachable = result(report, "kafka", "reachable");
    assertEquals(reachable.verdict, "fail");
    ok(reachable.message.includes("is not signed by the CA in KAFKA_SSL_CA"), reachable.message);
    assertEquals(report.results.filter((r) => r.group === "kafka").length, 1);
    const produce = await run("producer.ts", [], env);
    assertEquals(produce.code, 5);
    ok(produce.stderr.includes(`KafkaAuthError: ${reachable.message}`), produce.stderr);
  },
});

Deno.test({
  name: "doctor fails a bad SASL password without printing it, and so does produce",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const env = {
      ...kafkaEnv(b, "scram-sha-512", uniqueTopic("doctor-sasl")),
      ...QUIET,
      KAFKA_SASL_PASSWORD: "wrong-password-1234",
      POLYGON_API_KEY: API_KEY,
    };
    const done = await run("doctor.ts", ["--skip", "polygon"], env);
    assertEquals(done.code, 1);
    assertEquals(done.stdout.includes("wrong-password-1234"), false);
    const report = await doctor(env, ["--skip", "polygon"]);
    const reachable = result(report, "kafka", "reachable");
    assertEquals(reachable.verdict, "fail");
    ok(reachable.message.includes('SCRAM-SHA-512 authentication failed for user "bob"'));
    const produce = await run("producer.ts", [], env);
    assertEquals(produce.code, 5);
    ok(produce.stderr.includes(reachable.message), produce.stderr);
  },
});

Deno.test({
  name: "doctor fails a client certificate with another's key, and so does produce",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const s = requireSecure(b, "the key test");
    const env = {
      ...kafkaEnv(b, "ssl", uniqueTopic("doctor-key")),
      ...QUIET,
      KAFKA_SSL_KEY: s.untrustedKeyPem,
      POLYGON_API_KEY: API_KEY,
    };
    const report = await doctor(env, ["--skip", "polygon"]);
    assertEquals(result(report, "certificates", "certificate and key").verdict, "fail");
    const reachable = result(report, "kafka", "reachable");
    assertEquals(reachable.verdict, "fail");
    ok(reachable.message.includes("is not the key of the client certificate"), reachable.message);
    const produce = await run("producer.ts", [], env);
    assertEquals(produce.code, 5);
    ok(produce.stderr.includes(reachable.message), produce.stderr);
  },
});

Deno.test({
  name: "doctor fails a topic whose retention is shorter than the replay's age, and so does replay",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const topic = uniqueTopic("doctor-retention");
    // Kafka's and Aiven's default retention, set on the topic (the test broker keeps all).
    await createTopicsAsAdmin(b, [
      { name: topic, partitions: 3, configs: { "retention.ms": String(7 * 86_400_000) } },
    ]);
    const env = { ...kafkaEnv(b, "plaintext", topic), ...QUIET, KAFKA_TIMESTAMP: "exchange" };
    const recording = "fixtures/btc.jsonl"; // Recorded in 2021.
    const report = await doctor(env, ["--skip", "polygon", "--recording", recording]);
    const retention = result(report, "kafka", `topic "${topic}" retention.ms`);
    assertEquals(retention.verdict, "fail");
    assertEquals(report.exitCode, 1);
    const replay = await run("replay.ts", [recording, "--to", "kafka"], env);
    assertEquals(replay.code, 2);
    ok(replay.stderr.includes(`ConfigError: Cannot send: ${retention.message}`), replay.stderr);
  },
});

Deno.test({
  name: "doctor shows the plan's refusal of crypto quotes, and produce exits 6 with it",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const fake = startFakePolygon({ apiKey: API_KEY, notInPlan: ["*"] });
    try {
      const env = {
        ...kafkaEnv(b, "plaintext", uniqueTopic("doctor-plan")),
        ...QUIET,
        POLYGON_API_KEY: API_KEY,
        POLYGON_URL: fake.url,
        POLYGON_PAIRS: "BTC-USD",
      };
      const report = await doctor(env, ["--skip", "kafka"]);
      assertEquals(verdicts(report).filter((v) => v.startsWith("polygon")), [
        "polygon API key: ok",
        "polygon plan: fail",
      ]);
      const plan = result(report, "polygon", "plan");
      ok(
        plan.message.includes("your Polygon plan does not include XQ crypto quotes"),
        plan.message,
      );
      const produce = await run("producer.ts", [], env);
      assertEquals(produce.code, 6);
      ok(produce.stderr.includes(`PlanError: ${plan.message}`), produce.stderr);
      // The doctor's connection was released at once: one each, none left open.
      assertEquals(fake.stats.connections, 2);
    } finally {
      await fake.close();
    }
  },
});

Deno.test({
  name: "doctor fails InfluxDB that does not answer",
  ...KAFKA_TEST,
  async fn() {
    const report = await doctor({
      ...QUIET,
      KAFKA_BROKERS: "127.0.0.1:1",
      INFLUX_URL: `http://127.0.0.1:${freePort()}`,
    }, ["--skip", "kafka,polygon"]);
    assertEquals(verdicts(report), ["telemetry metrics port: ok", "telemetry InfluxDB ping: fail"]);
  },
});

Deno.test({
  name: "doctor passes a complete setup: SASL, the topics, Polygon, the metrics port, InfluxDB",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const influx = await startInfluxDb();
    const cleanup: (() => Promise<void>)[] = [() => influx.close()];
    try {
      await influx.query("CREATE DATABASE crypto");
      const fake = startFakePolygon({ apiKey: API_KEY });
      cleanup.push(() => fake.close());
      const topic = uniqueTopic("doctor-ok");
      const env = {
        ...kafkaEnv(b, "scram-sha-512", topic),
        METRICS_PORT: String(freePort()),
        POLYGON_API_KEY: API_KEY,
        POLYGON_URL: fake.url,
        INFLUX_URL: influx.url,
        INFLUX_DB: "crypto",
      };
      const report = await doctor(env);
      assertEquals(report.exitCode, 0);
      assertEquals(verdicts(report), [
        "certificates KAFKA_SSL_CA: ok",
        "kafka reachable: ok",
        `kafka topic "${topic}": ok`,
        `kafka topic "${topic}.gaps": ok`,
        'kafka consumer group "crypto-consumer": ok',
        "polygon API key: ok",
        "polygon plan: ok",
        "polygon one connection: warning",
        "telemetry metrics port: ok",
        "telemetry InfluxDB ping: ok",
        "telemetry InfluxDB write: ok",
      ]);
      const [series] = await influx.query(
        'SELECT count("ok") FROM "crypto_doctor_check"',
        "crypto",
      );
      assertEquals(series?.series?.[0]?.values[0]?.[1], 1);
    } finally {
      for (const c of cleanup.reverse()) await c();
    }
  },
});

Deno.test({
  name:
    "doctor on a broker with ACLs: a user without rights fails on the topics as produce does; " +
    "with read only produce is refused by both; a missing trades topic of --channels fails both; " +
    "with every topic and write and read ACLs it passes",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const b = await startKafka({ authorizer: "acl" });
    try {
      const s = requireSecure(b, "the ACL test");
      const topic = uniqueTopic("doctor-acl");
      const env = {
        ...kafkaEnv(b, "scram-sha-512", topic),
        ...QUIET,
        KAFKA_SASL_USERNAME: s.limited.username,
        KAFKA_SASL_PASSWORD: s.limited.password,
        POLYGON_API_KEY: API_KEY,
        // Trades too: their topics are produce's as much as the quotes' (issue 25).
        POLYGON_CHANNELS: "XQ,XT",
      };
      const denied = await doctor(env, ["--skip", "polygon"]);
      assertEquals(verdicts(denied), [
        "certificates KAFKA_SSL_CA: ok",
        "kafka reachable: ok",
        `kafka topic "${topic}": fail`,
        `kafka topic "${topic}.gaps": fail`,
        `kafka topic "${topic}.trades": fail`,
        `kafka topic "${topic}.trades.gaps": fail`,
        'kafka consumer group "crypto-consumer": fail',
        "telemetry metrics port: ok",
      ]);
      const missing = result(denied, "kafka", `topic "${topic}"`);
      const produce = await run("producer.ts", [], env);
      assertEquals(produce.code, 5);
      // The doctor says `"<topic>" <why>`; produce `Cannot prepare topic "<topic>": it <why>`.
      const why = missing.message.slice(topic.length + 3);
      ok(produce.stderr.includes(`Cannot prepare topic "${topic}": it ${why}`), produce.stderr);

      // As an Aiven admin would: create the topics, grant the user write and read on them.
      await createTopicsAsAdmin(b, [
        { name: topic, partitions: 6 },
        { name: `${topic}.gaps`, partitions: 1 },
      ]);
      // Read only: the doctor fails produce's permission, and produce refuses before sending.
      await grantTopicAcls(b, {
        user: s.limited.username,
        topics: { prefix: topic },
        operations: ["READ"],
        groups: true,
      });
      const readOnly = await doctor(env, ["--skip", "polygon"]);
      const write = result(readOnly, "kafka", `produce to "${topic}"`);
      assertEquals(write.verdict, "fail");
      assertEquals(result(readOnly, "kafka", `consume from "${topic}"`).verdict, "ok");
      const refused = await run("producer.ts", [], env);
      assertEquals(refused.code, 5);
      ok(refused.stderr.includes(`Cannot produce: ${write.message}`), refused.stderr);

      await grantTopicAcls(b, {
        user: s.limited.username,
        topics: { prefix: topic },
        operations: ["WRITE"],
      });
      // Write and read on the quotes' topics, but the trades topics of --channels are missing:
      // the doctor fails them, and produce refuses to start on the first, in the same words.
      const noTrades = await doctor(env, ["--skip", "polygon"]);
      const trades = result(noTrades, "kafka", `topic "${topic}.trades"`);
      assertEquals(trades.verdict, "fail");
      assertEquals(result(noTrades, "kafka", `topic "${topic}.trades.gaps"`).verdict, "fail");
      assertEquals(result(noTrades, "kafka", `produce to "${topic}"`).verdict, "ok");
      assertEquals(noTrades.exitCode, 1);
      const refusedTrades = await run("producer.ts", [], env);
      assertEquals(refusedTrades.code, 5);
      const tradesWhy = trades.message.slice(`${topic}.trades`.length + 3);
      ok(
        refusedTrades.stderr.includes(`Cannot prepare topic "${topic}.trades": it ${tradesWhy}`),
        refusedTrades.stderr,
      );

      await createTopicsAsAdmin(b, [
        { name: `${topic}.trades`, partitions: 6 },
        { name: `${topic}.trades.gaps`, partitions: 1 },
      ]);
      const granted = await doctor(env, ["--skip", "polygon"]);
      assertEquals(verdicts(granted), [
        "certificates KAFKA_SSL_CA: ok",
        "kafka reachable: ok",
        `kafka topic "${topic}": ok`,
        `kafka produce to "${topic}": ok`,
        `kafka consume from "${topic}": ok`,
        // On Aiven too, DescribeConfigs is an admin permission: said, not failed.
        `kafka topic "${topic}" (all): warning`,
        `kafka topic "${topic}.gaps": ok`,
        `kafka produce to "${topic}.gaps": ok`,
        `kafka topic "${topic}.trades": ok`,
        `kafka produce to "${topic}.trades": ok`,
        `kafka topic "${topic}.trades" (all): warning`,
        `kafka topic "${topic}.trades.gaps": ok`,
        `kafka produce to "${topic}.trades.gaps": ok`,
        'kafka consumer group "crypto-consumer": ok',
        "telemetry metrics port: ok",
      ]);
      assertEquals(granted.exitCode, 0);
    } finally {
      await b.stop();
    }
  },
});
