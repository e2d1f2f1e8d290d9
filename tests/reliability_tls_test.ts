/**
 * Reliability, security (issue 5): the real producer verifies the broker's TLS certificate by
 * default, and the opt-out prints a loud warning; the client key never appears in any output.
 */
import { equal, match, ok } from "./helpers/assert.ts";
import { startFakePolygon } from "../lib/polygon_fake.ts";
import { EXIT } from "../lib/config.ts";
import { EXTERNAL_KAFKA, requireSecure, startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import {
  API_KEY,
  assertNoSecrets,
  KAFKA_TEST,
  metric,
  parseFinal,
  prepareTopics,
  quoteFrames,
  startProducer,
  telemetryUrl,
  waitUntil,
} from "./helpers/reliability.ts";

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
    const topic = uniqueTopic("rel-tls");
    await prepareTopics(broker, topic);
    const fake = startFakePolygon({ apiKey: API_KEY, frames: quoteFrames(300), rate: 1000 });
    try {
      const verified = startProducer({ url: fake.url, kafka, topic });
      let code: number;
      let ms: number;
      try {
        ({ code, ms } = await verified.exit(30_000));
      } finally {
        await verified.dispose();
      }
      equal(code, EXIT.KAFKA_UNREACHABLE, verified.stderr);
      match(verified.stderr, /the broker's certificate is not signed by the CA in KAFKA_SSL_CA/);
      ok(!/WARNING/.test(verified.stderr));
      equal(fake.stats.connections, 0, "no quote is read before Kafka is trusted");

      const insecure = startProducer({
        url: fake.url,
        kafka,
        topic,
        args: ["--insecure-skip-verify"],
      });
      try {
        match(
          await insecure.waitForStderr(/^WARNING: --insecure-skip-verify is on.*$/m).then((m) =>
            m[0]
          ),
          /the Kafka broker certificate is NOT verified/,
        );
        const base = await telemetryUrl(insecure);
        await fake.done;
        await waitUntil(
          async () => await metric(base, "crypto_sink_records_acked_total") === 300,
          "300 records acked",
        );
        insecure.kill("SIGTERM");
        equal((await insecure.exit(20_000)).code, EXIT.OK, insecure.stderr);
        equal(parseFinal(insecure.stderr).acked, 300);
        console.log(
          `[reliability] TLS: untrusted broker certificate refused in ${
            Math.round(ms)
          } ms (exit 5); --insecure-skip-verify warned, then acked 300 records`,
        );
        assertNoSecrets({
          stdout: verified.stdout + insecure.stdout,
          stderr: verified.stderr + insecure.stderr,
        }, [API_KEY, ...keyLines]);
      } finally {
        await insecure.dispose();
      }
    } finally {
      await fake.close();
    }
  },
});
