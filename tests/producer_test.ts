import { deepStrictEqual, equal, match, ok } from "./helpers/assert.ts";
import { startKafka, uniqueTopic } from "./helpers/kafka_broker.ts";
import { readTopic } from "./helpers/reliability.ts";
import { startFakePolygon } from "../lib/polygon/fake.ts";
import { readAllFrames } from "../lib/recording.ts";
import { transform } from "../transform.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURE = new URL("../fixtures/btc.jsonl", import.meta.url).pathname;
const KEY = "pk_test_3f9a0c7e5b1d4a2c8e6f";

function values(frames: string[]): string[] {
  return frames.flatMap((f) => transform(f).records.map((r) => r.value));
}

Deno.test({
  name: "producer streams every quote to Kafka, records its frames, and flushes on SIGTERM",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const broker = await startKafka();
    const topic = uniqueTopic("producer");
    const frames = await readAllFrames(FIXTURE);
    const fake = startFakePolygon({ frames, apiKey: KEY });
    const dir = await Deno.makeTempDir();
    const recording = `${dir}/rec.jsonl`;
    const startedAt = Date.now();
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "producer.ts",
          "--url",
          fake.url,
          "--pairs",
          "*",
          "--record",
          recording,
          "--partitions",
          "3",
          "--summary",
          `${dir}/summary.json`,
        ],
        cwd: ROOT,
        env: {
          POLYGON_API_KEY: KEY,
          KAFKA_BROKERS: broker.plaintext,
          KAFKA_SECURITY: "plaintext",
          KAFKA_TOPIC: topic,
          NO_COLOR: "1",
        },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await fake.done;
      // Every frame sent; wait until the producer has had them (the stream goes quiet), then stop.
      await new Promise((r) => setTimeout(r, 1500));
      child.kill("SIGTERM");
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      const stdout = new TextDecoder().decode(out.stdout);
      equal(out.code, 0, stderr);
      const expected = values(frames);
      const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
      equal(summary.records, expected.length);
      equal(summary.acked, expected.length);
      equal(summary.exitCode, 0);
      ok(!stderr.includes(KEY) && !stdout.includes(KEY), "the API key appears in the output");
      // The recording: a header without the key, then every frame, and it replays to the same records.
      const text = await Deno.readTextFile(recording);
      // The recording holds a header and as many frames as the summary says were recorded: the
      // frames the pipeline had and the two before the subscription (connected, auth_success).
      equal(text.trimEnd().split("\n").length - 1, summary.framesRecorded);
      equal(summary.framesRecorded, summary.frames + 2);
      ok(!text.includes(KEY), "the API key appears in the recording");
      const header = JSON.parse(text.slice(0, text.indexOf("\n")));
      equal(header.recording, 2);
      equal(header.source, fake.url);
      equal(header.subscription, "XQ.*");
      deepStrictEqual(values(await readAllFrames(recording)), expected);
      // Kafka holds every record once, keyed by symbol, stamped with the local clock when sent
      // (the exchange time is in the value).
      const got = await readTopic(broker, topic);
      equal(got.length, expected.length);
      deepStrictEqual(got.map((r) => r.value).sort(), [...expected].sort());
      for (const r of got) {
        const v = JSON.parse(r.value!);
        equal(r.key, v.symbol);
        ok(r.timestamp >= startedAt && r.timestamp <= Date.now(), `${r.timestamp} ${v.timestamp}`);
        equal(r.headers["schema-version"], "1");
      }
    } finally {
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "producer exits 5 with a clear message when Kafka cannot be reached at start-up",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "producer.ts", "--connect-timeout", "2", "--summary", `${dir}/s.json`],
      cwd: ROOT,
      env: {
        POLYGON_API_KEY: KEY,
        KAFKA_BROKERS: "127.0.0.1:1",
        KAFKA_SECURITY: "plaintext",
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    equal(out.code, 5, stderr);
    match(stderr, /KafkaUnreachableError: Cannot reach Kafka at "127\.0\.0\.1:1"/);
    ok(!stderr.includes(KEY));
    // A run that never started writes no summary.
    deepStrictEqual([...Deno.readDirSync(dir)], []);
    await Deno.remove(dir);
  },
});
