/**
 * The broker dashboard against the local broker: the real capture is replayed into Kafka with
 * `replay.ts --to kafka` while a real Prometheus scrapes the broker's JMX exporter
 * (`scripts/kafka/jmx_exporter.yml`, Aiven's metric names). Every query of every broker panel
 * must return data, except the one Aiven computes itself (`aivenOnly`), and "messages in per
 * second" must add up to the records the replay had acknowledged. Then `consumer.ts` reads the
 * topic back (bytes out, fetch requests, and our own lag, scraped from its `/metrics`).
 */
import { CAPTURE_PATH, captureTest } from "./helpers/capture.ts";
import assert from "node:assert/strict";
import { BROKER_PANELS } from "../dashboards/build_dashboards.ts";
import { EXTERNAL_KAFKA, startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import { startPrometheus } from "./helpers/prometheus.ts";
import { freePort } from "./helpers/service_process.ts";

const ROOT = new URL("../", import.meta.url);
const CAPTURE = new URL(`file://${CAPTURE_PATH}`);
/** Quotes in the capture: each one is a record (its README: 10,795 quotes). */
const CAPTURE_QUOTES = 10_795;
const SCRAPE_S = 1;

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function fill(expr: string, topic: string): string {
  return expr.replaceAll("$__rate_interval", `${4 * SCRAPE_S}s`).replaceAll("$topic", topic);
}

captureTest({
  name:
    "after a replay into the local broker every broker panel has data in Aiven's names, and messages in/s adds up to the acked records",
  ignore: EXTERNAL_KAFKA,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = await startKafka();
    assert.ok(broker.metrics, "the local broker runs without its JMX exporter");
    const [host, port] = broker.metrics.split(":");
    assert.equal(host, "127.0.0.1");
    const consumerPort = freePort();
    const prom = await startPrometheus([
      { job: "kafka", port: Number(port) },
      { job: "consumer", port: consumerPort },
    ], { scrapeInterval: `${SCRAPE_S}s` });
    try {
      const topic = uniqueTopic("broker-metrics");
      const env = {
        ...baseEnv(),
        KAFKA_BROKERS: broker.plaintext,
        KAFKA_SECURITY: "plaintext",
        KAFKA_TOPIC: topic,
      };
      const replay = async (args: string[], stdin?: string) => {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "replay.ts", "--to", "kafka", ...args],
          cwd: ROOT.pathname,
          env,
          clearEnv: true,
          stdin: stdin === undefined ? "null" : "piped",
          stdout: "null",
          stderr: "piped",
        }).spawn();
        if (stdin !== undefined) {
          const writer = child.stdin.getWriter();
          await writer.write(new TextEncoder().encode(stdin));
          await writer.close();
        }
        const out = await child.output();
        // Exit 0 means every record was acknowledged (a flush that times out exits 1).
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      };
      const counter = `kafka_server_BrokerTopicMetrics_MessagesInPerSec_Count{topic="${topic}"}`;
      const scraped = async () => {
        const data = await prom.api<{ result: { value: [number, string] }[] }>("/api/v1/query", {
          query: counter,
        });
        return Number(data.result[0]?.value[1]);
      };
      const settled = async (what: string) => {
        const deadline = Date.now() + 20_000;
        let previous = NaN;
        while (Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 2 * SCRAPE_S * 1_000));
          const now = await scraped();
          if (now > 0 && now === previous) return now;
          previous = now;
        }
        throw new Error(`The broker's counter did not settle after ${what}`);
      };

      // A few frames first, so that the topic's counter exists and is scraped before the replay
      // starts: rate() cannot see what a series held at its first sample.
      const text = await Deno.readTextFile(CAPTURE);
      await replay(["-"], text.split("\n").slice(0, 5).join("\n") + "\n");
      const baseline = await settled("the first frames");
      await new Promise((resolve) => setTimeout(resolve, 4 * SCRAPE_S * 1_000));

      const startMs = Date.now();
      // The 112 s capture at 10× speed: about 11 s of steady traffic.
      await replay(["--speed", "10", CAPTURE.pathname]);
      const ackedMs = Date.now();
      const replayEnd = ackedMs + 5 * SCRAPE_S * 1_000;
      // Once scraped after the replay, the counter grew by exactly the records acked.
      assert.equal(await settled("the replay") - baseline, CAPTURE_QUOTES);

      // Then our consumer reads the topic (bytes out, fetches, and our side of the lag).
      const consumer = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "consumer.ts",
          "--from",
          "earliest",
          "--group",
          `${topic}-reader`,
          "--timeout",
          "8",
          "--metrics-port",
          String(consumerPort),
        ],
        cwd: ROOT.pathname,
        env: {
          ...baseEnv(),
          KAFKA_BROKERS: broker.plaintext,
          KAFKA_SECURITY: "plaintext",
          KAFKA_TOPIC: topic,
        },
        clearEnv: true,
        stdout: "null",
      }).output();
      assert.equal(consumer.code, 0, new TextDecoder().decode(consumer.stderr));

      await new Promise((resolve) => setTimeout(resolve, 2 * SCRAPE_S * 1_000));
      const endMs = Date.now();

      const range = async (expr: string) => {
        const data = await prom.api<
          { result: { metric: Record<string, string>; values: [number, string][] }[] }
        >("/api/v1/query_range", {
          query: expr,
          start: String(startMs / 1000),
          end: String(endMs / 1000),
          step: String(SCRAPE_S),
        });
        return data.result;
      };

      // Every query of every panel has data (for this topic, and for All).
      const failures: string[] = [];
      let ran = 0;
      for (const panel of BROKER_PANELS) {
        for (const q of panel.queries) {
          if (q.aivenOnly) {
            if (!panel.description.includes("Aiven")) {
              failures.push(`"${panel.title}": an Aiven-only query the description does not name`);
            }
            continue;
          }
          for (const selection of [topic, ".*"]) {
            const result = await range(fill(q.promql, selection));
            ran++;
            const values = result.flatMap((r) => r.values.map(([, v]) => Number(v)));
            if (values.length === 0) {
              failures.push(`"${panel.title}" ${q.legend} (${selection}): no data`);
            }
            if (q.promql.includes("$topic") && selection === topic) {
              const topics = [...new Set(result.map((r) => r.metric.topic))];
              if (JSON.stringify(topics) !== JSON.stringify([topic])) {
                failures.push(`"${panel.title}" ${q.legend}: topics ${topics.join(",")}`);
              }
            }
          }
        }
      }
      assert.deepEqual(failures, [], failures.join("\n"));
      assert.ok(ran >= 2 * 10, `only ${ran} queries ran`);

      // The partition-health panel counts running brokers from each broker's own BrokerState
      // (3, RUNNING), not from a controller metric: this single broker reports itself running,
      // at every step of the run, and the count holds no controller metric (Aiven's KRaft
      // controller is its own process, whose metrics it mostly does not expose).
      const health = BROKER_PANELS.find((p) => p.title === "Partition health and running brokers")!;
      const running = health.queries.find((q) => q.legend === "running brokers")!;
      assert.equal(running.promql, "sum(kafka_server_KafkaServer_BrokerState_Value == bool 3)");
      const states = await range("kafka_server_KafkaServer_BrokerState_Value");
      assert.equal(states.length, 1, "one BrokerState series: one broker");
      assert.deepEqual(new Set(states[0]!.values.map(([, v]) => Number(v))), new Set([3]));
      const runningSeries = await range(running.promql);
      assert.equal(runningSeries.length, 1);
      const steps = runningSeries[0]!.values;
      assert.ok(steps.length >= (endMs - startMs) / 1000 - 1, `only ${steps.length} steps`);
      assert.deepEqual(new Set(steps.map(([, v]) => Number(v))), new Set([1]));
      assert.deepEqual(
        BROKER_PANELS.flatMap((p) => p.queries).filter((q) =>
          /ActiveControllerCount|ActiveBrokerCount/.test(q.promql)
        ),
        [],
      );

      // Messages in/s over the replay, added up second by second, is the records acked then:
      // rate() over 4 s windows at 1 s steps covers each second four times.
      const messagesIn = BROKER_PANELS[0]!.queries[0]!;
      const [series] = await range(fill(messagesIn.promql, topic));
      const perSecond = series!.values.map(([t, v]) => [t * 1000, Number(v)] as const)
        .filter(([t]) => t <= replayEnd);
      console.log(
        "messages in/s, [seconds since the replay started, rate]:",
        JSON.stringify(
          perSecond.map(([t, v]) => [Math.round((t - startMs) / 1000), Math.round(v)]),
        ),
      );
      const total = perSecond.reduce((sum, [, v]) => sum + v * SCRAPE_S, 0);
      const peak = Math.max(...perSecond.map(([, v]) => v));
      const replaySeconds = (ackedMs - startMs) / 1000;
      console.log(
        `replay: ${CAPTURE_QUOTES} records acked in ${replaySeconds.toFixed(1)} s; messages in/s ` +
          `added up: ${total.toFixed(0)}; peak ${peak.toFixed(0)}/s`,
      );
      // Within one scrape interval's worth of the peak rate (rate() extrapolates at both ends).
      assert.ok(
        Math.abs(total - CAPTURE_QUOTES) <= peak * SCRAPE_S,
        `messages in/s adds up to ${total}, not ${CAPTURE_QUOTES}`,
      );
    } finally {
      await prom.close();
      await broker.stop();
    }
  },
});
