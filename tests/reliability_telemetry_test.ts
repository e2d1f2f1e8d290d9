/**
 * Reliability, telemetry (issue 5, scenario 9) and the secret grep over every output the
 * producer makes: the real producer (a subprocess, SASL_SSL, `--record`, /metrics, InfluxDB push)
 * keeps its pace while the real InfluxDB is stopped, and counts the telemetry points it drops.
 */
import { equal, ok } from "./helpers/assert.ts";
import { DROP_REPORT_MEASUREMENT } from "../lib/telemetry/influx.ts";
import { startInfluxDb } from "./helpers/influxdb.ts";
import {
  assertDelivered,
  health,
  KAFKA_TEST,
  metric,
  quoteFrames,
  quoteValue,
  readTopic,
  recordTexts,
  sleep,
  startScenario,
  waitUntil,
} from "./helpers/reliability.ts";

const INFLUX_PASSWORD = "influx_pw_Qm4Tz8Ry2Lk6Vb";

Deno.test({
  name:
    "InfluxDB down mid-stream: the producer keeps its pace, counts every telemetry point it drops, and no output holds a secret",
  ...KAFKA_TEST,
  async fn() {
    const influx = await startInfluxDb();
    const recording = await Deno.makeTempFile({ prefix: "reliability_", suffix: ".jsonl" });
    const rate = 2000;
    const total = 24_000;
    try {
      await influx.query("CREATE DATABASE crypto");
      await using s = await startScenario({
        topic: "rel-telemetry",
        fake: { frames: quoteFrames(total), rate },
        args: ["--record", recording],
        env: {
          INFLUX_URL: influx.url,
          INFLUX_USER: "telegraf",
          INFLUX_PASSWORD,
          INFLUX_FLUSH_INTERVAL: "0.25",
          INFLUX_BUFFER_MAX: "300",
          INFLUX_BATCH_SIZE: "100",
        },
      });
      const base = await s.telemetry();
      await waitUntil(
        async () => await metric(base, "crypto_telemetry_points_written_total") > 0,
        "telemetry written to InfluxDB",
      );
      await waitUntil(() => s.fake.stats.framesSent >= 2 * rate, "2 s of quotes", 30_000);

      // InfluxDB down for 5 s while quotes keep flowing.
      await influx.stop();
      const ackedAtStop = await s.acked();
      const stoppedAt = performance.now();
      const pending: number[] = [];
      while (performance.now() - stoppedAt < 5000) {
        pending.push((await health(base)).pendingRecords as number);
        await sleep(250);
      }
      const ackedAtStart = await s.acked();
      const downS = (performance.now() - stoppedAt) / 1000;
      const droppedWhileDown = await metric(base, "crypto_telemetry_points_dropped_total");
      const errorsWhileDown = await metric(base, "crypto_telemetry_write_errors_total");
      await influx.start();
      const throughput = (ackedAtStart - ackedAtStop) / downS;

      await s.fake.done;
      await s.waitAcked(total);
      // Once InfluxDB answers again, the writer reports how many points it dropped meanwhile.
      let reported = 0;
      await waitUntil(async () => {
        const [r] = await influx.query(
          `SELECT sum("dropped") FROM "${DROP_REPORT_MEASUREMENT}"`,
          "crypto",
        );
        reported = Number(r?.series?.[0]?.values[0]?.[1] ?? 0);
        return reported > 0;
      }, "the drop report in InfluxDB");
      const metricsText = await (await fetch(`${base}/metrics`)).text();
      const dropped = await metric(base, "crypto_telemetry_points_dropped_total");
      const final = await s.stop();

      // The data path kept the feed's pace: no backlog, no drops, every record once.
      ok(throughput > 0.85 * rate, `${throughput.toFixed(0)} records/s acked with InfluxDB down`);
      ok(Math.max(...pending) < rate / 2, `pending while InfluxDB was down: ${pending.join(",")}`);
      equal(final.framesDropped, 0);
      equal(final.acked, total);
      // Every frame received was recorded: those before the subscription (connected,
      // auth_success) too, which the pipeline never sees.
      equal(final.framesRecorded, final.frames + 2);
      const records = await readTopic(s.broker, s.topic);
      const extra = assertDelivered(
        records,
        Array.from({ length: total }, (_, i) => quoteValue(i)),
        s.producer.stderr,
      );
      // The telemetry drops are counted, and the count InfluxDB received is the counter's.
      ok(errorsWhileDown >= 2, `${errorsWhileDown} failed writes`);
      ok(droppedWhileDown > 0, "the telemetry buffer overflowed");
      equal(reported, dropped, "the drop report holds every dropped point");
      console.log(
        `[reliability] telemetry: InfluxDB down ${downS.toFixed(1)} s; ${
          throughput.toFixed(0)
        } records/s acked meanwhile (feed ${rate}/s), at most ${
          Math.max(...pending)
        } pending; ${errorsWhileDown} failed writes, ${dropped} points dropped and reported; ` +
          `${total} records, 0 lost, ${extra} duplicated`,
      );

      // Secrets: never in stdout, stderr, the recording, records, /metrics or InfluxDB.
      const [points] = await influx.query("SELECT * FROM /crypto_.*/", "crypto");
      const recorded = await Deno.readTextFile(recording);
      ok(recorded.split("\n").length > total, "the recording holds every frame");
      s.assertNoSecrets({
        recording: recorded,
        records: recordTexts(records),
        metrics: metricsText,
        influxdb: JSON.stringify(points),
      }, [INFLUX_PASSWORD]);
    } finally {
      await influx.close();
      await Deno.remove(recording).catch(() => {});
    }
  },
});
