/**
 * The Kafka adapters without a broker: config to client options (TLS, SASL), redaction and the
 * throttled client logs, and how a closed sink ends its resend pause.
 */
import { deepStrictEqual, equal, rejects } from "node:assert/strict";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { redact, throttledLog } from "../../lib/kafka/diagnosis.ts";
import { resendUntilClosed } from "../../lib/kafka/resend.ts";
import { kafkaJsConfig, kafkaLogCreator } from "../../lib/kafka/kafkajs/client.ts";
import { platformaticOptions } from "../../lib/kafka/platformatic/client.ts";
import { brokerConfig, type KafkaBroker } from "../helpers/kafka_broker.ts";

Deno.test("kafkaJsConfig maps ssl to the CA, client certificate and key", () => {
  const config = {
    ...brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker),
    brokers: ["h:9092"],
    security: "ssl",
    ssl: { ca: "CA", cert: "CERT", key: "KEY", rejectUnauthorized: true },
  } satisfies KafkaConfig;
  const out = kafkaJsConfig(config);
  deepStrictEqual(out.ssl, { ca: ["CA"], cert: "CERT", key: "KEY", rejectUnauthorized: true });
  equal(out.sasl, undefined);
  deepStrictEqual(out.brokers, ["h:9092"]);
});

Deno.test("kafkaJsConfig maps sasl_ssl to SCRAM with the CA and no client certificate", () => {
  const config = {
    ...brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker),
    security: "sasl_ssl",
    ssl: { ca: "CA", rejectUnauthorized: true },
    sasl: { mechanism: "scram-sha-256", username: "u", password: "p" },
  } satisfies KafkaConfig;
  const out = kafkaJsConfig(config);
  deepStrictEqual(out.ssl, { ca: ["CA"], rejectUnauthorized: true });
  deepStrictEqual(out.sasl, { mechanism: "scram-sha-256", username: "u", password: "p" });
});

Deno.test("redact hides the SASL password and any private key", () => {
  const config = {
    ...brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker),
    sasl: { mechanism: "plain", username: "u", password: "hunter2" },
  } satisfies KafkaConfig;
  const key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
  equal(redact(`pw=hunter2 key=${key}`, config), "pw=(hidden) key=(private key hidden)");
});

Deno.test("platformaticOptions maps ssl and sasl_ssl like the kafkajs config, and retries forever", () => {
  const base = brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker);
  const ssl = platformaticOptions({
    ...base,
    brokers: ["h:9092"],
    security: "ssl",
    ssl: { ca: "CA", cert: "CERT", key: "KEY", rejectUnauthorized: true },
  }, { clientId: "c" });
  deepStrictEqual(ssl.tls, { ca: ["CA"], cert: "CERT", key: "KEY", rejectUnauthorized: true });
  deepStrictEqual(ssl.bootstrapBrokers, ["h:9092"]);
  equal(ssl.sasl, undefined);
  equal(ssl.retries, Number.MAX_SAFE_INTEGER);
  const sasl = platformaticOptions({
    ...base,
    security: "sasl_ssl",
    ssl: { ca: "CA", rejectUnauthorized: true },
    sasl: { mechanism: "scram-sha-256", username: "u", password: "p" },
  }, { clientId: "c", retries: 5 });
  deepStrictEqual(sasl.tls, { ca: ["CA"], rejectUnauthorized: true });
  deepStrictEqual(sasl.sasl, { mechanism: "SCRAM-SHA-256", username: "u", password: "p" });
  equal(sasl.retries, 5);
});

Deno.test("closing a sink ends its resend pause at once with SinkClosedError", async () => {
  const closing = new AbortController();
  const failed = Promise.withResolvers<void>();
  const attempts: number[] = [];
  const sending = resendUntilClosed(() => Promise.reject(new Error("broker down")), {
    closed: closing.signal,
    minTimeout: 4_000, // The test sanitizer fails it if this pause's timer is left behind.
    onRetry: (_error, attempt) => {
      attempts.push(attempt);
      failed.resolve();
    },
  });
  await failed.promise;
  closing.abort();
  await rejects(sending, {
    name: "SinkClosedError",
    message: "Cannot send to Kafka: the sink is closed",
  });
  deepStrictEqual(attempts, [1]);
});

Deno.test("a send that fails after its sink closed is not retried and keeps its cause", async () => {
  const closing = new AbortController();
  const failure = new Error("connection closed");
  let calls = 0;
  const sending = resendUntilClosed(() => {
    calls++;
    closing.abort();
    return Promise.reject(failure);
  }, { closed: closing.signal, minTimeout: 1, onRetry: () => {} });
  await rejects(sending, (error: Error) => {
    equal(error.name, "SinkClosedError");
    equal(error.message, "Cannot send to Kafka: the sink was closed while retrying");
    equal(error.cause, failure);
    return true;
  });
  equal(calls, 1);
});

Deno.test("client log lines are redacted, and repeats within 10 s are counted, not printed", () => {
  const config = {
    ...brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker),
    sasl: { mechanism: "plain", username: "u", password: "hunter2" },
  } satisfies KafkaConfig;
  const lines: string[] = [];
  let now = 0;
  const log = throttledLog(config, (l) => lines.push(l), () => now);
  log("retry", "retrying produce with hunter2");
  now = 9_999;
  log("retry", "retrying produce with hunter2");
  log("other", "another line");
  now = 10_000;
  log("retry", "retrying produce again");
  deepStrictEqual(lines, [
    "retrying produce with (hidden)",
    "another line",
    "retrying produce again (1 more like it not shown)",
  ]);
});

Deno.test("kafkajs's expected coordinator-loading retries are not shown as errors", () => {
  const config = brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker);
  const lines: string[] = [];
  const log = kafkaLogCreator(config, (l) => lines.push(l))();
  log({
    namespace: "Connection",
    level: 1,
    label: "ERROR",
    log: {
      timestamp: "t",
      logger: "kafkajs",
      message: "Response GroupCoordinator(key: 10, version: 2)",
      error: "The coordinator is loading and hence can't process requests",
    },
  });
  deepStrictEqual(lines, []);
});

Deno.test("kafkajs log lines are concise, redacted, and repeats within 10 s are counted", () => {
  const config = {
    ...brokerConfig({ plaintext: "h:1", external: true } as KafkaBroker),
    sasl: { mechanism: "plain", username: "u", password: "hunter2" },
  } satisfies KafkaConfig;
  const lines: string[] = [];
  let now = 0;
  const log = kafkaLogCreator(config, (l) => lines.push(l), () => now)();
  const entry = (message: string, extra: Record<string, unknown> = {}) => ({
    namespace: "Connection",
    level: 1,
    label: "ERROR",
    log: { timestamp: "t", logger: "kafkajs", message, broker: "h:1", sasl: "x", ...extra },
  });
  log(entry("Connection error: refused", { retryCount: 0 }));
  now = 5_000;
  log(entry("Connection error: refused", { retryCount: 1 }));
  log(entry("Connection error: refused", { retryCount: 2 }));
  now = 10_001;
  log(entry("Connection error: refused", { retryCount: 3 }));
  log(entry("auth with hunter2"));
  deepStrictEqual(lines, [
    'kafka error [Connection] Connection error: refused broker="h:1" retryCount="0"',
    'kafka error [Connection] Connection error: refused broker="h:1" retryCount="3" ' +
    "(2 more like it not shown)",
    'kafka error [Connection] auth with (hidden) broker="h:1"',
  ]);
});
