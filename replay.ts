/**
 * `deno task replay FILE`: recorded Polygon frames through the production transform, to stdout
 * (records as JSON lines), Kafka, or the in-memory broker. The summary goes to stderr, and with
 * --summary FILE as JSON to a file.
 *
 * Permissions: --allow-read (the recording, certificates), --allow-env (settings),
 * --allow-net (Kafka, only with --to kafka), --allow-write (only with --summary, and for the
 * dead-letter file when the broker refuses a record for good).
 */
import { buildKafkaConfig } from "./lib/config/kafka.ts";
import { ConfigError } from "./lib/config/errors.ts";
import { DEFAULTS, gapsTopicFor } from "./lib/config/defaults.ts";
import { entryEnv, parseSettings, usage } from "./lib/config/parse.ts";
import { type SettingsOf } from "./lib/config/settings.ts";
import { delay } from "./lib/async.ts";
import { exitCodeOf, formatCounts, LineWriter, runMain } from "./lib/cli.ts";
import { oldestFrameTime, openRecording, RecordingError } from "./lib/recording.ts";
import { MemoryBroker } from "./lib/memory_broker.ts";
import { sumCounts } from "./lib/pipeline.ts";
import type { OutRecord, RecordSink } from "./lib/sink.ts";
import { channelPlans, channelTopicsFor, parseChannels } from "./lib/channels/registry.ts";
import { ChannelPipelines } from "./lib/channels/pipelines.ts";
import { createFrameRouter } from "./lib/channels/router.ts";
import { connectSink } from "./lib/kafka/connect.ts";
import { openKafka } from "./lib/kafka/open.ts";
import { timestampPolicyOf } from "./lib/kafka/topic_check.ts";
import { DeadLetterFile } from "./lib/dead_letter.ts";
import type { KafkaClient, KafkaSink } from "./lib/kafka/types.ts";
import {
  type ChannelSummaryParts,
  replaySummary,
  type ReplaySummaryParts,
  writeSummary,
} from "./lib/summary.ts";

const HELP = usage(
  "replay",
  "deno task replay FILE [--to stdout|kafka|memory] [--speed N]",
  "Replays a JSON Lines recording of Polygon frames (FILE, or - for stdin) through the same\n" +
    "transform as production. Records go to stdout as JSON lines by default; the summary and\n" +
    "errors go to stderr.",
);

/** Frames queued ahead of the transform during a replay into a sink. */
export const REPLAY_QUEUE_MAX = 10_000;

/** Replay's settings and the recording's path (undefined with --help). */
function parseReplay(args: string[]): { path?: string; settings: SettingsOf<"replay"> } {
  const parsed = parseSettings("replay", args, {
    env: entryEnv(),
    allowPositionals: true,
  });
  if (parsed.help) return { settings: parsed.settings };
  if (parsed.positionals.length !== 1) {
    throw new ConfigError(
      `Expected one recording FILE (or - for stdin), got ${parsed.positionals.length}; see --help`,
    );
  }
  return { path: parsed.positionals[0]!, settings: parsed.settings };
}

/** Paces frames by exchange time: waits until (t - t0) / speed has elapsed since the start. */
class Pacer {
  #speed: number;
  #t0: number | undefined;
  #start = 0;
  constructor(speed: number) {
    this.#speed = speed;
  }
  async wait(t: number | undefined): Promise<void> {
    if (this.#speed === 0 || t === undefined) return;
    if (this.#t0 === undefined) {
      this.#t0 = t;
      this.#start = performance.now();
      return;
    }
    const due = this.#start + (t - this.#t0) / this.#speed;
    const wait = due - performance.now();
    if (wait > 1) await delay(wait);
  }
}

function firstTime(text: string): number | undefined {
  const m = /"t":(\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

async function main(): Promise<number> {
  const { path, settings } = parseReplay(Deno.args);
  if (path === undefined) {
    console.log(HELP);
    return 0;
  }
  const { to, speed } = settings;
  let recording;
  try {
    recording = await openRecording(path);
  } catch (error) {
    if (error instanceof RecordingError) throw new ConfigError(error.message, { cause: error });
    throw error;
  }
  const pacer = new Pacer(speed);
  const started = performance.now();
  const channels = parseChannels(settings.channels);
  const topicConfig = {
    topic: settings.topic,
    gapsTopic: gapsTopicFor(settings.topic),
    tradesTopic: settings.tradesTopic,
    barsTopic: settings.barsTopic,
  };
  let frames = 0;

  if (to === "stdout") {
    // The same routing as the producer: each event to its channel's transform.
    const plans = channelPlans(channels, topicConfig);
    const router = createFrameRouter(plans);
    const out = new LineWriter();
    const records: OutRecord[] = [];
    const events = plans.map(() => 0);
    const made = plans.map(() => 0);
    const framesOf = plans.map(() => 0);
    let count = 0;
    for await (const frame of recording.frames) {
      frames++;
      if (speed > 0) await pacer.wait(firstTime(frame));
      router.route(frame, (i, part) => {
        const before = records.length;
        framesOf[i]!++;
        events[i]! += plans[i]!.transform.frame(part, records);
        made[i]! += records.length - before;
      });
      for (const r of records) await out.line(r.value);
      count += records.length;
      records.length = 0;
      if (out.broken) break;
      if (speed > 0) await out.flush();
    }
    await out.close();
    const parts: ChannelSummaryParts = {};
    plans.forEach((p, i) => {
      parts[p.channel] = {
        topic: p.topic,
        counts: {
          ...sumCounts([]),
          framesIn: framesOf[i]!,
          events: events[i]!,
          records: made[i]!,
          skipped: p.transform.skipped,
        },
      };
    });
    const skipped = mergeSkips(plans.map((p) => p.transform.skipped));
    const eventsAll = events.reduce((a, b) => a + b, 0);
    summary(frames, eventsAll, count, skipped, performance.now() - started);
    return await finish(
      settings.summary,
      { frames, events: eventsAll, records: count, skipped, channels: parts },
      () => checkPolygon(path, frames, count, skipped),
    );
  }

  let sink: RecordSink;
  let kafka: KafkaClient | undefined;
  let topic = settings.topic;
  let batchMax = settings.batchMax;
  let lingerMs = settings.lingerMs;
  let shutdownMs: number = DEFAULTS.shutdownTimeoutMs;
  const memory = to === "memory" ? new MemoryBroker() : undefined;
  // Records the broker refuses for good (issue 24, finding 1) go here, never resent.
  const deadLetters = new DeadLetterFile(settings.deadLetterFile);
  if (memory) {
    sink = memory.sink();
  } else {
    const config = buildKafkaConfig(settings);
    // The topic check reads retention and timestamp limits against the oldest record's age.
    const oldestRecordMs = timestampPolicyOf(config) === "exchange"
      ? await oldestFrameTime(path)
      : undefined;
    const log = (line: string) => console.error(line);
    ({ sink, kafka } = await connectSink(config, {
      kafka: await openKafka(config, { log }),
      log,
      channelTopics: channelTopicsFor(channels, config),
      oldestRecordMs,
      deadLetter: (letter) => deadLetters.write(letter),
    }));
    topic = config.topic;
    batchMax = config.batchMax;
    lingerMs = config.lingerMs;
    shutdownMs = config.shutdownTimeoutMs;
  }
  // A file can wait (offer() blocks while the queue is full), so a small bound keeps memory
  // flat without dropping anything; the live producer's larger bound absorbs network bursts.
  const plans = channelPlans(channels, { ...topicConfig, topic });
  const pipeline = new ChannelPipelines(sink, plans, {
    batchMax,
    lingerMs,
    timestamps: settings.kafkaTimestamp,
    queueMax: REPLAY_QUEUE_MAX,
  });
  pipeline.start();
  try {
    for await (const frame of recording.frames) {
      frames++;
      if (speed > 0) await pacer.wait(firstTime(frame));
      await pipeline.offer(frame, Date.now());
    }
    await pipeline.close(Math.max(shutdownMs, 60_000));
  } finally {
    await sink.close();
    await kafka?.close();
    await deadLetters.close();
  }
  const c = pipeline.counts;
  const skipped = c.skipped;
  const parts: ChannelSummaryParts = {};
  for (const [channel, counts] of pipeline.countsByChannel()) {
    parts[channel] = { topic: pipeline.topics().get(channel)!, counts };
  }
  summary(frames, c.events, c.acked, skipped, performance.now() - started);
  if (kafka) {
    const stats = (sink as KafkaSink).stats;
    console.error(
      `kafka sink: ${stats.retries} produce retries, ${stats.producerResets} producer resets ` +
        `(${kafka.library})` +
        (deadLetters.written > 0
          ? `; ${deadLetters.written} records refused by the broker, kept in "${deadLetters.path}"`
          : ""),
    );
  }
  if (memory) {
    for (const t of pipeline.topics().values()) {
      const sizes = memory.records(t).map((p) => p.length);
      console.error(`memory broker: topic "${t}" partitions ${JSON.stringify(sizes)}`);
    }
  }
  return await finish(
    settings.summary,
    {
      frames,
      events: c.events,
      records: c.records,
      acked: c.acked,
      skipped,
      sinkStats: kafka ? (sink as KafkaSink).stats : undefined,
      channels: parts,
    },
    () => checkPolygon(path, frames, c.records, skipped),
  );
}

/**
 * Runs the last check (its result is the exit code; it may throw), then writes the `--summary`
 * file, when one is set, with that code or the error.
 */
async function finish(
  path: unknown,
  parts: Omit<ReplaySummaryParts, "error" | "exitCode">,
  check: () => number,
): Promise<number> {
  let exitCode: number;
  let error: unknown;
  try {
    exitCode = check();
  } catch (e) {
    error = e;
    exitCode = exitCodeOf(e);
  }
  if (typeof path === "string") {
    await writeSummary(path, replaySummary({ ...parts, error, exitCode }));
  }
  if (error !== undefined) throw error;
  return exitCode;
}

/** Every channel's skips added up, by reason. */
function mergeSkips(all: readonly Readonly<Record<string, number>>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of all) for (const [k, v] of Object.entries(s)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Skip reasons of a line that is not a Polygon frame at all (no event object in it). */
const NOT_POLYGON: readonly string[] = [
  "invalid_json",
  "not_a_frame",
  "nested_array",
  "not_an_object",
];

/**
 * A non-empty input in which no line holds a single Polygon event (an object: a quote, a status,
 * another channel) is not a recording at all, such as a binary or a text file: say so, and fail.
 */
function checkPolygon(
  path: string,
  frames: number,
  records: number,
  skipped: Readonly<Record<string, number>>,
): number {
  const events = Object.entries(skipped).filter(([r]) => !NOT_POLYGON.includes(r))
    .reduce((n, [, v]) => n + v, records);
  if (frames === 0 || events > 0) return 0;
  const parsed = frames - (skipped.invalid_json ?? 0);
  throw new ConfigError(
    `Cannot replay "${path === "-" ? "stdin" : path}": not a recording of Polygon frames: ` +
      `0 of ${frames} lines hold a Polygon event (${parsed} parsed as JSON; ` +
      `${formatCounts(skipped)}); see fixtures/btc.jsonl for the format`,
  );
}

function summary(
  frames: number,
  events: number,
  records: number,
  skipped: Readonly<Record<string, number>>,
  ms: number,
): void {
  const skips = Object.values(skipped).reduce((a, b) => a + b, 0);
  console.error(
    `replay: ${frames} frames, ${events} events, ${records} records, ${skips} skipped ` +
      `(${formatCounts(skipped)}) in ${(ms / 1000).toFixed(2)} s`,
  );
}

if (import.meta.main) runMain(main);
