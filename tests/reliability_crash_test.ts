/**
 * Reliability, exactly once into Kafka for a replay of the real capture with its 2023 exchange
 * times (issue 21), across process faults (a broker SIGKILLed mid-stream and restarted, a clean
 * stop and start, a producer that starts the moment a fresh broker answers) and network faults
 * (a 30 s black hole, connections dropped every 3 s for 30 s) injected by a TCP proxy between the
 * replay and the broker (tests/helpers/fault_proxy.ts, the broker's PROXIED listener).
 * `replay.ts --to kafka` (the real capture when it is here, else fixtures/btc.jsonl) runs as a
 * subprocess with the default client, or the one `KAFKA_CLIENT` names, on brokers with Kafka's
 * default retention and producer-id expiry; the topic must then hold every record of the
 * recording exactly as many times as the recording has it.
 *
 * `scripts/reliability_repeat.sh` runs these (and the outage scenario) N times in a row.
 */
import { equal } from "./helpers/assert.ts";
import { EXIT } from "../lib/config/defaults.ts";
import {
  brokerConfig,
  EXTERNAL_KAFKA,
  type KafkaBroker,
  startKafka,
  uniqueTopic,
} from "./helpers/kafka_broker.ts";
import { openKafka } from "../lib/kafka/open.ts";
import { type FaultProxy, startBrokerProxy } from "./helpers/fault_proxy.ts";
import type { ReplaySummary } from "../lib/summary.ts";
import {
  describeReappended,
  KAFKA_TEST,
  readTopic,
  reappended,
  scriptKafka,
  ScriptProcess,
  sleep,
  storedBatches,
  waitUntil,
} from "./helpers/reliability.ts";

const CAPTURE = Deno.env.get("CAPTURE_FILE") ??
  new URL("../../shared/data/polygon-xq-capture-2023-07-26.jsonl", import.meta.url).pathname;
const FIXTURE = new URL("../fixtures/btc.jsonl", import.meta.url).pathname;
const RECORDING = (() => {
  try {
    return Deno.statSync(CAPTURE).isFile ? CAPTURE : FIXTURE;
  } catch {
    return FIXTURE;
  }
})();

let reference: Promise<string[]> | undefined;
/** The recording's records, as `replay.ts` prints them to stdout. */
function referenceValues(): Promise<string[]> {
  reference ??= (async () => {
    const replay = new ScriptProcess("replay.ts", [RECORDING], {});
    const r = await replay.exit(60_000);
    equal(r.code, EXIT.OK, replay.stderr);
    return replay.stdout.split("\n").filter((l) => l !== "");
  })();
  return reference;
}

/** How often each value occurs. */
function counts(values: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const v of values) out.set(v, (out.get(v) ?? 0) + 1);
  return out;
}

/**
 * Compares the topic with the recording: every record must be there as often as the recording
 * has it (nothing missing); returns how many copies are extra.
 */
async function compareWithRecording(
  broker: KafkaBroker,
  topic: string,
  stderr: string,
): Promise<{ records: number; extra: number }> {
  const want = await referenceValues();
  const got = (await readTopic(broker, topic)).map((r) => r.value!);
  const have = counts(got);
  const wanted = counts(want);
  let extra = 0;
  let missing = 0;
  for (const [v, n] of wanted) {
    const h = have.get(v) ?? 0;
    if (h > n) extra += h - n;
    if (h < n) missing += n - h;
  }
  for (const [v, h] of have) if (!wanted.has(v)) extra += h;
  equal(missing, 0, `records are missing; the replay's log ends:\n${stderr.slice(-3000)}`);
  equal(got.length, want.length + extra);
  return { records: got.length, extra };
}

/** `replay.ts --to kafka` as a subprocess, with the summary it writes (`--summary`). */
class ReplayProcess extends ScriptProcess {
  readonly #dir: string;
  constructor(
    broker: KafkaBroker,
    topic: string,
    args: string[],
    dir: string,
    env: Record<string, string> = {},
  ) {
    super(
      "replay.ts",
      [
        RECORDING,
        ...["--to", "kafka", "--topic", topic, "--partitions", "3"],
        ...["--summary", `${dir}/summary.json`, ...args],
      ],
      { ...scriptKafka(broker, "plaintext").env, KAFKA_CONNECT_TIMEOUT: "60", ...env },
    );
    this.#dir = dir;
  }

  /** The summary replay wrote when it ended. */
  async summary(): Promise<ReplaySummary> {
    return JSON.parse(await Deno.readTextFile(`${this.#dir}/summary.json`));
  }

  override async dispose(): Promise<void> {
    await super.dispose();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

function replayInto(
  broker: KafkaBroker,
  topic: string,
  args: string[],
  env: Record<string, string> = {},
): ReplayProcess {
  const dir = Deno.makeTempDirSync({ prefix: "replay_summary_" });
  return new ReplayProcess(broker, topic, args, dir, env);
}

/**
 * Replays the recording at `speed` into a new topic and runs `fault` once the first record is
 * on the topic; then checks that the topic holds every record exactly once and prints the
 * scenario's `[reliability]` line. `through` routes the replay through a fault proxy.
 */
async function replayWithFault(
  broker: KafkaBroker,
  name: string,
  speed: number,
  fault: () => Promise<string>,
  through?: FaultProxy,
): Promise<void> {
  const topic = uniqueTopic("rel-eos");
  await referenceValues();
  const env: Record<string, string> = through ? { KAFKA_BROKERS: `127.0.0.1:${through.port}` } : {};
  // A broker slow to come back on a loaded machine must not end the replay's flush early.
  const replay = replayInto(broker, topic, [
    ...["--speed", String(speed), "--shutdown-timeout", "300"],
  ], env);
  try {
    await waitForRecords(broker, topic);
    const during = await fault();
    const r = await replay.exit(240_000);
    equal(r.code, EXIT.OK, replay.stderr);
    const result = await compareWithRecording(broker, topic, replay.stderr);
    const summary = await replay.summary();
    equal(summary.exitCode, EXIT.OK);
    equal(summary.acked, result.records - result.extra);
    const again = result.extra > 0 ? reappended(await storedBatches(broker, topic)) : [];
    equal(
      result.extra,
      0,
      `${result.extra} duplicates; the batches the broker stored twice: ${
        describeReappended(again)
      }`,
    );
    console.log(
      `[reliability] ${name}: ${result.records} records, ${during}; ${summary.produceRetries} ` +
        `produce retries, ${summary.producerResets} producer resets; 0 missing, 0 duplicated`,
    );
  } finally {
    await replay.dispose();
  }
}

/** Waits until `topic` holds a record: the replay is streaming. */
async function waitForRecords(broker: KafkaBroker, topic: string): Promise<void> {
  const kafka = await openKafka(brokerConfig(broker, "plaintext", { topic }), { log: () => {} });
  try {
    await waitUntil(
      async () => {
        const lag = await kafka.admin.lag("none", topic).catch(() => []);
        return lag.some((p) => p.lag > 0);
      },
      `a first record in "${topic}"`,
      60_000,
    );
  } finally {
    await kafka.close();
  }
}

Deno.test({
  name: "a broker SIGKILLed 3 s into a 10× replay of 2023 quotes and restarted 4 s later: " +
    "every record exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka({ private: true });
    try {
      await replayWithFault(broker, "broker SIGKILL mid-replay", 10, async () => {
        await sleep(3_000);
        await broker.pause({ crash: true });
        const killedAt = performance.now();
        await sleep(4_000);
        await broker.resume();
        return `broker back ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill`;
      });
    } finally {
      await broker.stop();
    }
  },
});

Deno.test({
  name: "a broker stopped cleanly 3 s into a 10× replay of 2023 quotes and started 4 s later: " +
    "every record exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka({ private: true });
    try {
      await replayWithFault(broker, "broker clean stop mid-replay", 10, async () => {
        await sleep(3_000);
        const stoppedAt = performance.now();
        const { killed } = await broker.pause();
        await sleep(4_000);
        await broker.resume();
        return `broker back ${((performance.now() - stoppedAt) / 1000).toFixed(1)} s after ` +
          `the stop${killed ? " (the stop escalated to SIGKILL)" : ""}`;
      });
    } finally {
      await broker.stop();
    }
  },
});

Deno.test({
  name: "a 30 s network black hole between a 3× replay of 2023 quotes and the broker: " +
    "every record exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const proxy = startBrokerProxy(broker);
    try {
      await replayWithFault(broker, "30 s black hole mid-replay", 3, async () => {
        await sleep(2_000);
        await proxy.blackHole(30_000);
        return `30 s black hole over ${proxy.stats.connections} connections`;
      }, proxy);
    } finally {
      await proxy.close();
    }
  },
});

Deno.test({
  name: "connections between a 3× replay of 2023 quotes and the broker dropped every 3 s for " +
    "30 s: every record exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    const broker = await startKafka();
    const proxy = startBrokerProxy(broker);
    try {
      await replayWithFault(broker, "connections dropped every 3 s for 30 s", 3, async () => {
        await sleep(1_000);
        await proxy.dropEvery(3_000, 30_000);
        return `${proxy.stats.dropped} connections dropped, ${proxy.stats.connections} opened`;
      }, proxy);
    } finally {
      await proxy.close();
    }
  },
});

Deno.test({
  name: "a replay that starts the moment a fresh broker answers writes every record exactly once",
  ignore: EXTERNAL_KAFKA,
  ...KAFKA_TEST,
  async fn() {
    await referenceValues();
    const broker = await startKafka({ private: true });
    try {
      const topic = uniqueTopic("rel-fresh");
      const replay = replayInto(broker, topic, []);
      try {
        const r = await replay.exit(180_000);
        equal(r.code, EXIT.OK, replay.stderr);
        const result = await compareWithRecording(broker, topic, replay.stderr);
        equal(result.extra, 0, `${result.extra} duplicates on a fresh broker`);
        equal((await replay.summary()).acked, result.records);
        console.log(
          `[reliability] fresh broker: ${result.records} records, 0 missing, 0 duplicated`,
        );
      } finally {
        await replay.dispose();
      }
    } finally {
      await broker.stop();
    }
  },
});
