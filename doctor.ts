/**
 * `deno task doctor`: checks a production setup before anything streams. It reads the same
 * settings as produce and consume (flags, environment, `.env`) and prints one line per check
 * with its verdict (ok, warning, fail) and the fix: the certificate files, Kafka (reachable
 * with the configured auth, every topic produce prepares, with `--channels` the trades and bars
 * topics and their gaps topics too, this user's permissions, the records topics' settings),
 * Polygon/Massive (the key, the plan for every channel and pair produce subscribes to, one
 * connection held for a moment and released) and telemetry (the metrics port, InfluxDB). Nothing secret is printed, and nothing is written
 * except one InfluxDB point (when INFLUX_URL is set) and, only with `--probe-topic`, one marked
 * probe record.
 *
 * Doctor flags (the others are produce's): `--json` (one JSON object on stdout), `--role
 * produce|consume|both` (whose permissions to check; default both), `--recording FILE` (check
 * the topic against a replay of this recording), `--probe-topic TOPIC`, `--skip
 * polygon,telemetry,kafka,certificates`.
 *
 * Exit codes: 0 every check passed (warnings included), 1 a check failed, 2 usage.
 *
 * Permissions: --allow-net (Kafka, Polygon, InfluxDB, the metrics port), --allow-read
 * (certificates, .env, the recording), --allow-env (settings).
 */
import { parseArgs } from "node:util";
import { buildKafkaConfig, type KafkaConfig } from "./lib/config/kafka.ts";
import { buildPolygonConfig } from "./lib/config/polygon.ts";
import { buildStandbyConfig } from "./lib/config/standby.ts";
import { buildTelemetryConfig } from "./lib/config/telemetry.ts";
import { ConfigError } from "./lib/config/errors.ts";
import { entryEnv, parseSettings, usage } from "./lib/config/parse.ts";
import { EXIT } from "./lib/config/defaults.ts";
import { runMain } from "./lib/cli.ts";
import { oldestFrameTime } from "./lib/recording.ts";
import { checkCertificates } from "./lib/doctor/certificates.ts";
import { checkKafka, type DoctorRole } from "./lib/doctor/kafka.ts";
import { checkPolygon } from "./lib/doctor/polygon.ts";
import { checkTelemetry } from "./lib/doctor/telemetry.ts";
import { channelTopicsFor, parseChannels } from "./lib/channels/registry.ts";
import {
  byGroup,
  CHECK_GROUPS,
  type CheckGroup,
  type CheckResult,
  doctorExitCode,
  formatReport,
  jsonReport,
} from "./lib/doctor/verdict.ts";

const HELP = usage(
  "producer",
  "deno task doctor [--json] [--role produce|consume|both] [--recording FILE] " +
    "[--probe-topic TOPIC] [--skip GROUPS] [produce's options]",
  "Checks the setup produce and consume would use, one line per check with its verdict and\n" +
    "the fix: with produce's --channels, every channel's topics and subscriptions too.\n" +
    "Exit code 0 when no check failed, 1 otherwise.",
);

/** The doctor's own flags, taken out before produce's settings are parsed. */
const OWN_FLAGS = {
  json: { type: "boolean" },
  role: { type: "string" },
  recording: { type: "string" },
  "probe-topic": { type: "string" },
  skip: { type: "string" },
} as const;

/** Splits the command line into the doctor's flags and the rest (produce's). */
function splitArgs(args: string[]): { own: Record<string, string | boolean>; rest: string[] } {
  const { tokens } = parseArgs({ args, options: OWN_FLAGS, strict: false, tokens: true });
  const own: Record<string, string | boolean> = {};
  const taken = new Set<number>();
  for (const t of tokens) {
    if (t.kind !== "option" || !(t.name in OWN_FLAGS)) continue;
    own[t.name] = t.value ?? true;
    taken.add(t.index);
    if (t.value !== undefined && !t.inlineValue) taken.add(t.index + 1);
  }
  return { own, rest: args.filter((_, i) => !taken.has(i)) };
}

async function main(): Promise<number> {
  const { own, rest } = splitArgs(Deno.args);
  const env = entryEnv();
  const parsed = parseSettings("producer", rest, { env });
  if (parsed.help) {
    console.log(HELP);
    return EXIT.OK;
  }
  const role = (own.role ?? "both") as DoctorRole;
  if (!["produce", "consume", "both"].includes(role)) {
    throw new ConfigError(`--role must be produce, consume or both, got "${own.role}"`);
  }
  const skip = new Set(String(own.skip ?? "").split(",").map((s) => s.trim()).filter(Boolean));
  for (const g of skip) {
    if (!(CHECK_GROUPS as readonly string[]).includes(g)) {
      throw new ConfigError(`--skip lists groups of ${CHECK_GROUPS.join(", ")}, got "${g}"`);
    }
  }
  const runs = (g: CheckGroup) => !skip.has(g);
  const s = parsed.settings;
  const consumer = parseSettings("consumer", [], { env }).settings;
  const results: CheckResult[] = [];
  const configFailure = (group: CheckGroup, error: unknown) => {
    if (!(error instanceof ConfigError)) throw error;
    results.push({
      group,
      check: "settings",
      verdict: "fail",
      message: error.message,
      fix: "fix the setting named (.env.example lists them all)",
    });
  };

  // The channels produce carries (--channels, POLYGON_CHANNELS): their topics and subscriptions.
  let channels: string[] = ["XQ"];
  try {
    channels = parseChannels(s.channels);
  } catch (error) {
    configFailure("polygon", error);
  }

  // The security mode, resolved as produce resolves it, without reading a file yet.
  let security: KafkaConfig["security"] | undefined;
  try {
    security = buildKafkaConfig(s, { readTextFile: () => "", warn: () => {} }).security;
  } catch (error) {
    configFailure("kafka", error);
  }
  if (runs("certificates") && security && security !== "plaintext") {
    results.push(...checkCertificates({
      ca: String(s.sslCa),
      ...(security === "ssl" ? { cert: String(s.sslCert), key: String(s.sslKey) } : {}),
    }));
  }
  if (runs("kafka") && security) {
    let kafka: KafkaConfig | undefined;
    try {
      kafka = buildKafkaConfig(s, { warn: () => {} });
    } catch (error) {
      configFailure("kafka", error);
    }
    if (kafka) {
      let oldestRecordMs: number | undefined;
      if (typeof own.recording === "string") {
        try {
          oldestRecordMs = await oldestFrameTime(own.recording);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new ConfigError(`${reason} (--recording)`);
        }
      }
      let leaderTopic: string | undefined;
      try {
        leaderTopic = buildStandbyConfig(s, kafka.topic)?.leaderTopic;
      } catch (error) {
        configFailure("kafka", error);
      }
      results.push(
        ...await checkKafka(kafka, {
          role,
          groupId: role === "produce" ? undefined : consumer.groupId,
          channelTopics: channelTopicsFor(channels, kafka),
          leaderTopic,
          oldestRecordMs,
          probeTopic: typeof own["probe-topic"] === "string" ? own["probe-topic"] : undefined,
        }),
      );
    }
  }
  if (runs("polygon") && role !== "consume") {
    try {
      results.push(
        ...await checkPolygon(buildPolygonConfig(s, { warn: () => {} }), { channels }),
      );
    } catch (error) {
      configFailure("polygon", error);
    }
  }
  if (runs("telemetry")) {
    try {
      results.push(...await checkTelemetry(buildTelemetryConfig(s)));
    } catch (error) {
      configFailure("telemetry", error);
    }
  }
  const ordered = byGroup(results);
  console.log(own.json ? jsonReport(ordered) : formatReport(ordered));
  return doctorExitCode(ordered);
}

if (import.meta.main) runMain(main);
