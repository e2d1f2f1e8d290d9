/**
 * End to end over each auth path Aiven offers (plaintext, TLS client certificate, SCRAM over SASL_SSL), and how each auth failure reads.
 * Against a real Apache Kafka broker (tests/helpers/kafka_broker.ts) with the scripts as
 * processes (tests/helpers/e2e.ts). With KAFKA_BROKERS set, the TLS and SCRAM tests are skipped;
 * the capture tests need the real capture (tests/helpers/capture.ts) and are ignored without it.
 */
import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import {
  EXTERNAL_KAFKA,
  type KafkaBroker,
  requireSecure,
  uniqueTopic,
} from "./helpers/kafka_broker.ts";
import { KAFKA_CLIENTS } from "../lib/kafka/defaults.ts";
import {
  API_KEY,
  assertNoSecrets,
  bySymbol,
  expectedValues,
  freshFrames,
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  lines,
  produceThroughFake,
  run,
  sorted,
} from "./helpers/e2e.ts";

for (
  const [client, auth] of KAFKA_CLIENTS.flatMap((c) =>
    (["ssl", "scram-sha-256", "scram-sha-512"] as const).map((a) => [c, a] as const)
  )
) {
  Deno.test({
    name: `${client}: producer and consumer processes work end to end over ${auth} and print ` +
      "no secret",
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const s = requireSecure(b, "an auth test");
      const topic = uniqueTopic(`e2e-${auth}`);
      const env: Record<string, string> = { ...kafkaEnv(b, auth, topic), KAFKA_CLIENT: client };
      const frames = freshFrames(150);
      const want = expectedValues(frames);
      equal(want.length, 200);

      const producer = await produceThroughFake(frames, env, ["--partitions", "2"]);
      equal(producer.code, 0, producer.stderr);
      match(producer.stderr, new RegExp(`created topic "${topic}" with 2 partitions`));
      const counts = producer.summary;
      equal(counts.records, 200);
      equal(counts.acked, 200);

      const consumer = await run(
        "consumer.ts",
        ["--from", "earliest", "--max-messages", "200", "--group", `g-${topic}`],
        env,
      );
      equal(consumer.code, 0, consumer.stderr);
      deepStrictEqual(sorted(lines(consumer.stdout)), sorted(want));
      deepStrictEqual(bySymbol(lines(consumer.stdout)), bySymbol(want));

      const output = [producer, consumer].map((r) => r.stdout + r.stderr).join("\n");
      assertNoSecrets(output, {
        password: env.KAFKA_SASL_PASSWORD,
        pemFiles: [s.keyPem, s.certPem],
      });
    },
  });
}

interface AuthFailure {
  what: string;
  env: (b: KafkaBroker, topic: string) => Record<string, string>;
  /** Text stderr must hold, naming the problem. */
  says: (b: KafkaBroker) => string[];
  secrets: (b: KafkaBroker, env: Record<string, string>) => Parameters<typeof assertNoSecrets>[1];
}

const WRONG_PASSWORD = `wrong-${crypto.randomUUID()}`;
const AUTH_FAILURES: AuthFailure[] = [
  {
    what: "a CA that did not sign the broker certificate",
    env: (b, topic) => ({
      ...kafkaEnv(b, "ssl", topic),
      KAFKA_SSL_CA: requireSecure(b, "TLS").untrustedCaPem,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.ssl}" (ssl): TLS handshake failed`,
      "the broker's certificate is not signed by the CA in KAFKA_SSL_CA",
    ],
    secrets: (b) => ({ pemFiles: [b.secure!.keyPem, b.secure!.certPem] }),
  },
  {
    what: "a client certificate the broker does not trust",
    env: (b, topic) => ({
      ...kafkaEnv(b, "ssl", topic),
      KAFKA_SSL_CERT: requireSecure(b, "TLS").untrustedCertPem,
      KAFKA_SSL_KEY: requireSecure(b, "TLS").untrustedKeyPem,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.ssl}" (ssl): TLS handshake failed`,
      "the broker rejected the client certificate (KAFKA_SSL_CERT, KAFKA_SSL_KEY)",
    ],
    secrets: (b) => ({ pemFiles: [b.secure!.untrustedKeyPem, b.secure!.untrustedCertPem] }),
  },
  {
    what: "a wrong SCRAM password",
    env: (b, topic) => ({
      ...kafkaEnv(b, "scram-sha-256", topic),
      KAFKA_SASL_PASSWORD: WRONG_PASSWORD,
    }),
    says: (b) => [
      `KafkaAuthError: Cannot connect to Kafka at "${b.secure!.saslSsl}" (sasl_ssl): ` +
      `SCRAM-SHA-256 authentication failed for user "${b.secure!.scramSha256.username}"`,
      "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM",
    ],
    secrets: () => ({ password: WRONG_PASSWORD }),
  },
];

for (
  const [client, failure] of KAFKA_CLIENTS.flatMap((c) => AUTH_FAILURES.map((f) => [c, f] as const))
) {
  Deno.test({
    name: `${client}: ${failure.what} makes producer and consumer exit 5 at once, saying so on ` +
      "stderr",
    ignore: EXTERNAL_KAFKA,
    ...KAFKA_TEST,
    async fn() {
      const b = await kafka();
      const topic = uniqueTopic("e2e-refused");
      // A long connect timeout: exiting well before it proves the failure is not retried.
      const env = { ...failure.env(b, topic), KAFKA_CONNECT_TIMEOUT: "120", KAFKA_CLIENT: client };
      const runs = {
        // Kafka is checked before Polygon is dialled, so the URL is never used.
        producer: await run("producer.ts", ["--url", "ws://127.0.0.1:9/crypto"], {
          ...env,
          POLYGON_API_KEY: API_KEY,
        }),
        consumer: await run("consumer.ts", ["--group", `g-${topic}`], env),
      };
      for (const [name, r] of Object.entries(runs)) {
        equal(r.code, 5, `${name}: ${r.stderr}`);
        for (const text of failure.says(b)) {
          ok(r.stderr.includes(text), `${name} stderr lacks ${JSON.stringify(text)}:\n${r.stderr}`);
        }
        ok(r.ms < 60_000, `${name} took ${Math.round(r.ms)} ms`);
        equal(r.stdout, "");
        assertNoSecrets(r.stdout + r.stderr, failure.secrets(b, env));
      }
    },
  });
}
