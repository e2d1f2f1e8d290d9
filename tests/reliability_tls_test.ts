/**
 * Reliability, security (issue 5): the real producer verifies the broker's TLS certificate by
 * default, and the opt-out prints a loud warning; the client key never appears in any output.
 */
import { equal, match, ok } from "./helpers/assert.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { EXTERNAL_KAFKA, requireSecure, startKafka } from "./helpers/kafka_broker.ts";
import { KAFKA_TEST, quoteFrames, startScenario } from "./helpers/reliability.ts";

Deno.test({
  name:
    "TLS verification is on by default, and --insecure-skip-verify warns loudly before it connects",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const s = requireSecure(broker, "the TLS test");
    // The client certificate is good; only the CA we are told to trust is the wrong one.
    const kafka = {
      env: {
        KAFKA_BROKERS: s.ssl,
        KAFKA_SECURITY: "ssl",
        KAFKA_SSL_CA: s.untrustedCaPem,
        KAFKA_SSL_CERT: s.certPem,
        KAFKA_SSL_KEY: s.keyPem,
      },
    };
    // Lines of the key's base64 body: none may appear in any output.
    const keyLines = Deno.readTextFileSync(s.keyPem).split("\n")
      .filter((l) => l.length >= 16 && !l.startsWith("-----"));
    ok(keyLines.length > 0);
    const fake = { frames: quoteFrames(300), rate: 1000 };

    await using verified = await startScenario({ topic: "rel-tls", broker, kafka, fake });
    const { code, ms } = await verified.producer.exit(30_000);
    equal(code, EXIT.KAFKA_UNREACHABLE, verified.producer.stderr);
    // A start-up failure writes no summary: its one line on stderr is the typed error.
    ok(!verified.producer.hasSummary(), "a summary after a failed start-up");
    match(
      verified.producer.stderr,
      /the broker's certificate is not signed by the CA in KAFKA_SSL_CA/,
    );
    ok(!/WARNING/.test(verified.producer.stderr));
    equal(verified.fake.stats.connections, 0, "no quote is read before Kafka is trusted");
    verified.assertNoSecrets({}, keyLines);

    await using insecure = await startScenario({
      topic: "rel-tls",
      broker,
      kafka,
      fake,
      args: ["--insecure-skip-verify"],
    });
    // The warning is what this opt-out must print, so its wording is what is tested here.
    match(
      await insecure.producer.waitForStderr(/^WARNING: --insecure-skip-verify is on.*$/m).then((
        m,
      ) => m[0]),
      /the Kafka broker certificate is NOT verified/,
    );
    await insecure.telemetry();
    await insecure.fake.done;
    await insecure.waitAcked(300);
    const summary = await insecure.stop();
    equal(summary.acked, 300);
    console.log(
      `[reliability] TLS: untrusted broker certificate refused in ${
        Math.round(ms)
      } ms (exit 5); --insecure-skip-verify warned, then acked 300 records`,
    );
    insecure.assertNoSecrets({}, keyLines);
  },
});
