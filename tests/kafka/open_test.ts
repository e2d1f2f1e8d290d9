/**
 * The Kafka boundary (lib/kafka/open.ts) and both adapters (@platformatic/kafka, kafkajs) against a
 * real Apache Kafka 4.1 broker (tests/helpers/kafka_broker.ts): the round trip, each auth path
 * Aiven offers, the failures that must be fast and clear, topics, offsets and lag. Every broker
 * test runs once per client. With KAFKA_BROKERS set, the TLS/SCRAM and restart tests are skipped.
 */
import { deepStrictEqual, equal, match, ok, rejects } from "node:assert/strict";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { KAFKA_CLIENTS } from "../../lib/kafka/defaults.ts";
import { KafkaAuthError, KafkaUnreachableError } from "../../lib/kafka/errors.ts";
import { type KafkaClient, type KafkaClientName, type StartFrom } from "../../lib/kafka/types.ts";
import { openKafka } from "../../lib/kafka/open.ts";
import { type InRecord, type OutRecord, SCHEMA_VERSION } from "../../lib/sink.ts";
import {
  brokerConfig,
  EXTERNAL_KAFKA,
  type KafkaBroker,
  requireSecure,
  startKafka,
  uniqueTopic,
} from "../helpers/kafka_broker.ts";

// Clients keep timers and sockets past close(); the broker is shared across files.
const KAFKA_TEST = { sanitizeOps: false, sanitizeResources: false } as const;
/** An hour ago, whole seconds: within the broker's default retention. */
const T0 = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;

function records(count: number, symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]): OutRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const symbol = symbols[i % symbols.length]!;
    return {
      key: symbol,
      value: JSON.stringify({ timestamp: new Date(T0 + i).toISOString(), symbol, spread: i }),
      timestamp: T0 + i,
      headers: { "schema-version": SCHEMA_VERSION },
    };
  });
}

/** Runs `use` with a client for the config, closing it after. */
async function withClient<T>(config: KafkaConfig, use: (k: KafkaClient) => Promise<T>): Promise<T> {
  const kafka = await openKafka(config, { log: () => {} });
  try {
    return await use(kafka);
  } finally {
    await kafka.close();
  }
}

/** Creates the topic and sends the records through a fresh sink. */
function produce(
  config: KafkaConfig,
  topic: string,
  batch: OutRecord[],
  partitions = 3,
): Promise<void> {
  return withClient(config, async (kafka) => {
    await kafka.admin.ensureTopic(topic, { partitions, replicationFactor: -1 });
    const sink = kafka.sink();
    try {
      await sink.send(topic, batch);
    } finally {
      await sink.close();
    }
  });
}

interface CollectOptions {
  groupId: string;
  from?: StartFrom;
  /** Stop once this many records arrived. */
  count: number;
  timeoutMs?: number;
  onBatch?: (records: InRecord[]) => void;
}

/** Consumes until `count` records arrived (or the timeout), then stops and closes. */
function collect(
  config: KafkaConfig,
  topic: string,
  options: CollectOptions,
): Promise<InRecord[]> {
  return withClient(config, async (kafka) => {
    const source = kafka.source({
      groupId: options.groupId,
      topic,
      from: options.from ?? "earliest",
    });
    const got: InRecord[] = [];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeoutMs ?? 30_000);
    try {
      await source.consume((batch) => {
        options.onBatch?.(batch);
        got.push(...batch);
        if (got.length >= options.count) controller.abort();
      }, { signal: controller.signal });
    } finally {
      clearTimeout(timer);
      await source.close();
    }
    return got;
  });
}

/** Runs the client's start-up connect and returns the error and how long it took. */
async function failure(config: KafkaConfig): Promise<{ error: Error; ms: number }> {
  const started = performance.now();
  try {
    await withClient(config, (k) => k.connect());
  } catch (error) {
    return { error: error as Error, ms: performance.now() - started };
  }
  throw new Error("connect succeeded but was expected to fail");
}

/** One way to fail authentication with the broker, and what the error must say. */
interface AuthFailureCase {
  name: string;
  /** The client config that fails. */
  config(): KafkaConfig;
  /** How the message starts, when that matters. */
  startsWith?: string;
  /** Texts the message holds. */
  says: string[];
  /** A secret neither the message nor the client's log lines may hold. */
  secret?: string;
}

let broker: KafkaBroker | undefined;
async function kafka(): Promise<KafkaBroker> {
  broker ??= await startKafka();
  return broker;
}

for (const client of KAFKA_CLIENTS) {
  /** The broker's config for this client. */
  const cfg = (...args: Parameters<typeof brokerConfig>): KafkaConfig => ({
    ...brokerConfig(...args),
    client: client as KafkaClientName,
    ...args[2],
  });

  Deno.test({
    name: `${client}: records sent over plaintext come back with key, value, timestamp and headers`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("roundtrip");
      const sent = records(30);
      await produce(config, topic, sent);
      const got = await collect(config, topic, { groupId: `g-${topic}`, count: sent.length });
      equal(got.length, sent.length);
      for (const symbol of ["BTC-USD", "ETH-USD", "SOL-USD"]) {
        const want = sent.filter((r) => r.key === symbol);
        const have = got.filter((r) => r.key === symbol);
        // One key, one partition: order per symbol is kept.
        equal(new Set(have.map((r) => r.partition)).size, 1);
        deepStrictEqual(
          have.map((r) => ({
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers: r.headers,
          })),
          want.map((r) => ({
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers: r.headers,
          })),
        );
      }
      equal(got[0]!.topic, topic);
    },
  });

  Deno.test({
    name:
      `${client}: ensureTopic creates the configured partitions and leaves an existing topic alone`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("ensure");
      await withClient(config, async ({ admin }) => {
        const ensure = (name: string, partitions: number, replicationFactor: number) =>
          admin.ensureTopic(name, { partitions, replicationFactor });
        deepStrictEqual(await ensure(topic, 4, -1), { created: true, partitions: 4 });
        deepStrictEqual(await ensure(topic, 7, 1), { created: false, partitions: 4 });
        // replication factor -1 took the broker default (1 on the test broker).
        deepStrictEqual(await admin.describeTopic(topic), {
          partitions: 4,
          replicas: [1, 1, 1, 1],
        });
        const explicit = uniqueTopic("ensure-rf");
        deepStrictEqual(await ensure(explicit, 2, 1), { created: true, partitions: 2 });
      });
    },
  });

  Deno.test({
    name: `${client}: a client certificate signed by the broker's CA works over SSL`,
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka(), "ssl");
      await withClient(config, (k) => k.connect({ timeoutMs: 15_000 }));
      const topic = uniqueTopic("ssl");
      await produce(config, topic, records(5), 1);
      const got = await collect(config, topic, { groupId: `g-${topic}`, count: 5 });
      deepStrictEqual(got.map((r) => r.offset), ["0", "1", "2", "3", "4"]);
    },
  });

  for (const mechanism of ["scram-sha-256", "scram-sha-512"] as const) {
    Deno.test({
      name: `${client}: a ${mechanism.toUpperCase()} user sends over SASL_SSL`,
      ignore: EXTERNAL_KAFKA,
      ...KAFKA_TEST,
      async fn() {
        const b = await kafka();
        const s = requireSecure(b, "a SCRAM test");
        const user = mechanism === "scram-sha-256" ? s.scramSha256 : s.scramSha512;
        const config = cfg(b, "sasl_ssl", { sasl: { mechanism, ...user } });
        await withClient(config, (k) => k.connect({ timeoutMs: 15_000 }));
        const topic = uniqueTopic(mechanism);
        await produce(config, topic, records(3), 1);
        // Read back over plaintext: proves the SASL producer's records were written.
        const got = await collect(cfg(b), topic, { groupId: `g-${topic}`, count: 3 });
        deepStrictEqual(got.map((r) => r.value), records(3).map((r) => r.value));
      },
    });
  }

  Deno.test({
    name:
      `${client}: an untrusted CA, an untrusted client certificate or a wrong SCRAM password fails fast with KafkaAuthError, the password never shown`,
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn(t) {
      const b = await kafka();
      const s = requireSecure(b, "a TLS and SCRAM test");
      const password = `wrong-${crypto.randomUUID()}`;
      const cases: AuthFailureCase[] = [
        {
          name: "a CA that did not sign the broker certificate",
          config() {
            const config = cfg(b, "ssl", { connectTimeoutMs: 20_000 });
            config.ssl!.ca = Deno.readTextFileSync(s.untrustedCaPem);
            return config;
          },
          startsWith: `Cannot connect to Kafka at "${s.ssl}" (ssl): TLS handshake`,
          says: ["not signed by the CA in KAFKA_SSL_CA"],
        },
        {
          name: "a client certificate the broker does not trust",
          config() {
            const config = cfg(b, "ssl", { connectTimeoutMs: 20_000 });
            config.ssl!.cert = Deno.readTextFileSync(s.untrustedCertPem);
            config.ssl!.key = Deno.readTextFileSync(s.untrustedKeyPem);
            return config;
          },
          says: ["the broker rejected the client certificate", `"${s.ssl}"`],
        },
        {
          name: "a wrong SCRAM password",
          config: () =>
            cfg(b, "sasl_ssl", {
              connectTimeoutMs: 20_000,
              sasl: { mechanism: "scram-sha-512", username: s.scramSha512.username, password },
            }),
          says: [
            `SCRAM-SHA-512 authentication failed for user "${s.scramSha512.username}"`,
            "KAFKA_SASL_PASSWORD",
          ],
          secret: password,
        },
      ];
      for (const c of cases) {
        await t.step(c.name, async () => {
          const config = c.config();
          const { error, ms } = await failure(config);
          ok(error instanceof KafkaAuthError, `${error}`);
          ok(error instanceof KafkaUnreachableError);
          equal(error.name, "KafkaAuthError");
          equal(error.exitCode, 5);
          if (c.startsWith) ok(error.message.startsWith(c.startsWith), error.message);
          for (const text of c.says) ok(error.message.includes(text), error.message);
          ok(ms < 5_000, `took ${ms} ms`);
          if (c.secret === undefined) return;
          ok(!error.message.includes(c.secret));
          // Whatever the client logs meanwhile never shows the secret.
          const lines: string[] = [];
          const k = await openKafka(config, { log: (l) => lines.push(l) });
          await rejects(k.admin.listTopics());
          await k.close();
          deepStrictEqual(lines.filter((l) => l.includes(c.secret!)), []);
        });
      }
    },
  });

  Deno.test({
    name:
      `${client}: an unreachable broker fails with KafkaUnreachableError once the timeout runs out`,
    ...KAFKA_TEST,
    async fn() {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close(); // Nothing listens there now: connection refused.
      const config = cfg({ plaintext: `127.0.0.1:${port}` } as KafkaBroker, "plaintext", {
        connectTimeoutMs: 1_500,
      });
      const retries: string[] = [];
      const started = performance.now();
      const error = await withClient(config, (k) => k.connect({ onRetry: (m) => retries.push(m) }))
        .then(
          () => undefined,
          (e: Error) => e,
        );
      const ms = performance.now() - started;
      ok(error instanceof KafkaUnreachableError, `${error}`);
      ok(!(error instanceof KafkaAuthError));
      equal(error.name, "KafkaUnreachableError");
      equal(error.exitCode, 5);
      ok(error.message.startsWith(`Cannot reach Kafka at "127.0.0.1:${port}" (plaintext) within`));
      ok(error.message.includes("ECONNREFUSED"), error.message);
      ok(ms >= 1_400 && ms < 4_000, `took ${ms} ms`);
      ok(retries.length >= 2, `retried ${retries.length} times`);
    },
  });

  Deno.test({
    name:
      `${client}: a failing batch handler leaves its offsets uncommitted, so the records come again`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("atleastonce");
      const groupId = `g-${topic}`;
      await produce(config, topic, records(6), 1);
      await withClient(config, async (k) => {
        const source = k.source({ groupId, topic, from: "earliest" });
        try {
          await rejects(
            source.consume(() => {
              throw new Error("stdout closed");
            }, { signal: new AbortController().signal }),
            { message: "stdout closed" },
          );
        } finally {
          await source.close();
        }
      });
      // Nothing handled is committed. The default client gives a new group with --from earliest
      // its position at once (the earliest offset, 0), so a later run resumes there too.
      const committed = client === "platformatic" ? "0" : "-1";
      await withClient(config, async ({ admin }) => {
        deepStrictEqual(await admin.lag(groupId, topic), [
          { partition: 0, end: "6", committed, lag: 6 },
        ]);
      });
      const got = await collect(config, topic, { groupId, count: 6 });
      deepStrictEqual(got.map((r) => r.offset), ["0", "1", "2", "3", "4", "5"]);
    },
  });

  Deno.test({
    name:
      `${client}: a restarted consumer resumes after its committed offset with nothing missed or repeated`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("resume");
      const groupId = `g-${topic}`;
      await produce(config, topic, records(10), 1);
      const first = await collect(config, topic, { groupId, count: 1 });
      const lastFirst = Number(first.at(-1)!.offset);
      await withClient(config, async ({ admin }) => {
        deepStrictEqual(await admin.lag(groupId, topic), [
          { partition: 0, end: "10", committed: String(lastFirst + 1), lag: 9 - lastFirst },
        ]);
      });
      await produce(config, topic, records(15).slice(10), 1);
      const rest = await collect(config, topic, { groupId, count: 14 - lastFirst });
      deepStrictEqual(
        [...first, ...rest].map((r) => r.offset),
        Array.from({ length: 15 }, (_, i) => String(i)),
      );
      await withClient(config, async ({ admin }) => {
        deepStrictEqual(await admin.lag(groupId, topic), [
          { partition: 0, end: "15", committed: "15", lag: 0 },
        ]);
      });
    },
  });

  Deno.test({
    name: `${client}: a new group starting from a time gets the first record at or after that time`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("fromtime");
      const sent = records(10);
      await produce(config, topic, sent, 1);
      const got = await collect(config, topic, {
        groupId: `g-${topic}`,
        from: new Date(T0 + 6),
        count: 4,
      });
      deepStrictEqual(got.map((r) => r.timestamp), [T0 + 6, T0 + 7, T0 + 8, T0 + 9]);
      deepStrictEqual(got.map((r) => r.offset), ["6", "7", "8", "9"]);
      // Once the group has committed, a restart with the same time resumes instead.
      await produce(config, topic, records(12).slice(10), 1);
      const again = await collect(config, topic, {
        groupId: `g-${topic}`,
        from: new Date(T0 + 6),
        count: 2,
      });
      deepStrictEqual(again.map((r) => r.offset), ["10", "11"]);
    },
  });

  Deno.test({
    name: `${client}: a new group starting at latest skips what was written before it joined`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("latest");
      await produce(config, topic, records(5), 1);
      const batches: InRecord[][] = [];
      let joined!: () => void;
      const ready = new Promise<void>((resolve) => joined = resolve);
      const kafkaClient = await openKafka(config, { log: () => {} });
      const source = kafkaClient.source({
        groupId: `g-${topic}`,
        topic,
        from: "latest",
        onAssign: () => joined(),
      });
      const controller = new AbortController();
      const guard = setTimeout(() => controller.abort(), 30_000);
      const done = source.consume((batch) => {
        batches.push(batch);
        controller.abort();
      }, { signal: controller.signal });
      try {
        await ready;
        // Give the fetcher a moment to resolve "latest" before writing the new record.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await produce(config, topic, records(6).slice(5), 1);
        await done;
      } finally {
        clearTimeout(guard);
        controller.abort();
        await source.close();
        await kafkaClient.close();
      }
      deepStrictEqual(batches.flat().map((r) => r.offset), ["5"]);
    },
  });

  Deno.test({
    name:
      `${client}: the idempotent sink rides out a broker restart without losing or repeating records`,
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const own = await startKafka({ private: true });
      try {
        const config = cfg(own);
        const topic = uniqueTopic("restart");
        const kafkaClient = await openKafka(config, { log: () => {} });
        await kafkaClient.admin.ensureTopic(topic, { partitions: 1, replicationFactor: 1 });
        const resets: string[] = [];
        const sink = kafkaClient.sink({ onReset: (line) => resets.push(line) });
        const all = records(40);
        await sink.send(topic, all.slice(0, 20));
        await own.pause();
        // The sink retries inside the client with the same batch and sequence numbers until the
        // broker is back: nothing is lost, and a copy the broker already has is dropped.
        const pending = sink.send(topic, all.slice(20));
        await new Promise((resolve) => setTimeout(resolve, 500));
        await own.resume();
        await pending;
        await sink.close();
        const got = await collect(config, topic, { groupId: `g-${topic}`, count: 40 });
        deepStrictEqual(got.map((r) => r.value), all.map((r) => r.value));
        // Exactly 40 records in the log: no copy written twice across the restart and the retries.
        deepStrictEqual((await kafkaClient.admin.lag(`none-${topic}`, topic)).map((p) => p.end), [
          "40",
        ]);
        await kafkaClient.close();
        if (client === "platformatic") {
          deepStrictEqual(resets, [], "no producer reset: every retry kept its sequence numbers");
        } else {
          // kafkajs (at least once, docs/kafka_client.md) may give up on a broker that refuses
          // connections for longer than its retries last, and our sink sends the batch again
          // under a new producer id. Only a refused connection may cause that: nothing of the
          // batch can have been written, and the log above holds each record once.
          for (const line of resets) match(line, /Connection error: connect ECONNREFUSED/);
        }
      } finally {
        await own.stop();
      }
    },
  });

  Deno.test({
    name: `${client}: two consumers in one group split the partitions and each record arrives once`,
    ...KAFKA_TEST,
    async fn() {
      const config = cfg(await kafka());
      const topic = uniqueTopic("scaleout");
      const groupId = `g-${topic}`;
      const sent = records(40, ["A", "B", "C", "D", "E", "F", "G", "H"]);
      await produce(config, topic, [], 4);
      const controller = new AbortController();
      const assigned = new Map<number, number[]>();
      const got = new Map<number, InRecord[]>([[0, []], [1, []]]);
      const clients = await Promise.all([0, 1].map(() => openKafka(config, { log: () => {} })));
      const sources = clients.map((k, i) =>
        k.source({
          groupId,
          topic,
          from: "earliest",
          onAssign: (partitions) => assigned.set(i, partitions),
        })
      );
      const runs = sources.map((source, i) =>
        source.consume((batch) => {
          got.get(i)!.push(...batch);
          if ([...got.values()].flat().length >= 40) controller.abort();
        }, { signal: controller.signal })
      );
      const timer = setTimeout(() => controller.abort(), 60_000);
      try {
        // Both members hold partitions, and all four are covered: the group is stable.
        const deadline = Date.now() + 30_000;
        while (
          Date.now() < deadline &&
          !([...assigned.values()].every((p) => p.length > 0) &&
            [...assigned.values()].flat().length === 4 && assigned.size === 2)
        ) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await produce(config, topic, sent, 4);
        await Promise.all(runs);
      } finally {
        clearTimeout(timer);
        controller.abort();
        await Promise.all(sources.map((s) => s.close()));
        await Promise.all(clients.map((k) => k.close()));
      }
      deepStrictEqual([...assigned.values()].flat().sort(), [0, 1, 2, 3]);
      const all = [...got.values()].flat();
      deepStrictEqual(all.map((r) => r.value).sort(), sent.map((r) => r.value).sort());
      // The keys hash to all four partitions (murmur2 is fixed), so each member has records.
      deepStrictEqual([...new Set(all.map((r) => r.partition))].sort(), [0, 1, 2, 3]);
      ok(got.get(0)!.length > 0 && got.get(1)!.length > 0, "both consumers got records");
      const partitionsOf = (i: number) => new Set(got.get(i)!.map((r) => r.partition));
      for (const p of partitionsOf(0)) ok(!partitionsOf(1).has(p), `partition ${p} in both`);
    },
  });
}
