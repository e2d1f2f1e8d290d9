import { deepStrictEqual, equal, ok, throws } from "./helpers/assert.ts";
import { SETTINGS } from "../lib/config/settings.ts";
import { transform } from "../transform.ts";
import { readAllFrames } from "../lib/recording.ts";
import type { ReplaySummary } from "../lib/summary.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURE = new URL("../fixtures/btc.jsonl", import.meta.url).pathname;

function run(
  script: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runWithEnv(script, args, {}, stdin);
}

async function runWithEnv(
  script: string,
  args: string[],
  env: Record<string, string>,
  stdin?: string,
  permissions: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-net=127.0.0.1",
      ...permissions,
      script,
      ...args,
    ],
    cwd: ROOT,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
    // A script that hangs is killed, so its test fails instead of never ending.
    signal: AbortSignal.timeout(60_000),
  });
  const child = cmd.spawn();
  // Write stdin while stdout is being read, or a large input deadlocks both pipes.
  const writing = stdin === undefined
    ? Promise.resolve()
    : ReadableStream.from([new TextEncoder().encode(stdin)]).pipeTo(child.stdin);
  const [out] = await Promise.all([child.output(), writing]);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs replay with `--summary` and returns its output and the summary it wrote. */
async function replayWithSummary(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string; summary: ReplaySummary }> {
  const dir = await Deno.makeTempDir({ prefix: "replay_summary_" });
  try {
    const path = `${dir}/summary.json`;
    const out = await runWithEnv("replay.ts", [...args, "--summary", path], {}, undefined, [
      `--allow-write=${dir}`,
    ]);
    const summary = JSON.parse(await Deno.readTextFile(path)) as ReplaySummary;
    return { ...out, summary };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The fixture's events skipped, by reason. */
const FIXTURE_SKIPS = {
  invalid_json: 2,
  status: 5,
  other_event: 1,
  bad_bid: 1,
  bad_time: 1,
};

async function expectedLines(): Promise<string[]> {
  return (await readAllFrames(FIXTURE)).flatMap((f) => transform(f).records.map((r) => r.value));
}

Deno.test("replay prints exactly the transform's records, and its summary counts them", async () => {
  const { code, stdout, stderr, summary } = await replayWithSummary([FIXTURE]);
  equal(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n");
  deepStrictEqual(lines, await expectedLines());
  equal(lines.length, 8000);
  deepStrictEqual(summary, {
    summary: 1,
    frames: 5248,
    events: 8010,
    records: 8000,
    acked: null,
    skipped: 10,
    skippedByReason: FIXTURE_SKIPS,
    produceRetries: null,
    producerResets: null,
    deadLettered: null,
    deadLetteredByReason: null,
    error: null,
    exitCode: 0,
    channels: {
      XQ: {
        topic: "crypto-topic",
        frames: 5248,
        events: 8010,
        records: 8000,
        acked: null,
        skipped: 10,
        skippedByReason: FIXTURE_SKIPS,
        gaps: 0,
      },
    },
  });
});

Deno.test("replay reads a recording from stdin with -", async () => {
  const text = await Deno.readTextFile(FIXTURE);
  const { code, stdout } = await run("replay.ts", ["-"], text);
  equal(code, 0);
  equal(stdout.trimEnd().split("\n").length, 8000);
});

Deno.test("replay to the in-memory broker counts the same records", async () => {
  const { code, stderr, summary } = await replayWithSummary([FIXTURE, "--to", "memory"]);
  equal(code, 0, stderr);
  deepStrictEqual(
    [summary.events, summary.records, summary.acked, summary.skippedByReason],
    [8010, 8000, 8000, FIXTURE_SKIPS],
  );
});

Deno.test("replay paces by exchange time with --speed", async () => {
  const frames = [0, 300].map((dt) =>
    `[{"ev":"XQ","pair":"A","bp":1,"ap":2,"t":${1_700_000_000_000 + dt}}]`
  );
  const started = performance.now();
  const { code, stdout } = await run("replay.ts", ["-", "--speed", "1"], frames.join("\n"));
  equal(code, 0);
  equal(stdout.trimEnd().split("\n").length, 2);
  ok(performance.now() - started >= 300);
});

Deno.test("replay exits 2 naming a missing file, a bad flag or a bad value", async () => {
  const missing = await run("replay.ts", ["fixtures/missing.jsonl"]);
  equal(missing.code, 2);
  equal(
    missing.stderr.trim(),
    'ConfigError: Cannot read recording "fixtures/missing.jsonl": file not found',
  );
  const flag = await run("replay.ts", [FIXTURE, "--nope"]);
  equal(flag.code, 2);
  equal(flag.stderr.trim(), 'ConfigError: Unknown option "--nope"; see --help');
  const to = await run("replay.ts", [FIXTURE, "--to", "disk"]);
  equal(to.code, 2);
  equal(to.stderr.trim(), 'ConfigError: --to must be one of stdout, kafka, memory, got "disk"');
  const none = await run("replay.ts", []);
  equal(none.code, 2);
});

Deno.test("every entry script answers --help with its usage", async () => {
  for (const script of ["replay.ts", "demo.ts", "producer.ts", "consumer.ts"]) {
    const { code, stdout } = await run(script, ["--help"]);
    equal(code, 0, script);
    ok(stdout.startsWith("Usage: "), `${script}: ${stdout.slice(0, 80)}`);
  }
});

/**
 * The option names of a `--help` text. Throws on a line that is neither an option (its names,
 * then two or more spaces before its text) nor a continuation indented to the text column.
 */
function helpOptionNames(help: string): string[] {
  const section = help.split("\n");
  const start = section.indexOf("Options (flag / environment variable):");
  ok(start >= 0, "no Options section");
  const names: string[] = [];
  for (const line of section.slice(start + 1)) {
    if (line === "") break;
    if (/^ {34}\S/.test(line)) continue;
    const m = /^ {2}(-h, --help|(?:--[a-z-]+ \/ )?[A-Z][A-Z0-9_]*|--[a-z-]+)(?: {2,}\S.*)?$/.exec(
      line,
    );
    ok(m, `a help line runs its name into its text: ${JSON.stringify(line)}`);
    names.push(m[1]!);
  }
  return names;
}

Deno.test("no --help line runs an option's name into its text, and every option is listed", async () => {
  // The three scripts whose help lists the settings table (demo.ts has two flags of its own).
  const scripts = {
    "replay.ts": "replay",
    "producer.ts": "producer",
    "consumer.ts": "consumer",
  } as const;
  for (const [file, script] of Object.entries(scripts)) {
    const { stdout } = await run(file, ["--help"]);
    const expected = SETTINGS.filter((s) => s.scripts.includes(script)).map((s) =>
      [s.flag ? `--${s.flag}` : "", s.env ?? ""].filter((x) => x).join(" / ")
    );
    deepStrictEqual(helpOptionNames(stdout), ["-h, --help", ...expected], file);
  }
  // The check itself catches the old layout, where a long name ran into its text.
  throws(
    () => helpOptionNames("Options (flag / environment variable):\n  SHUTDOWN_TIMEOUTon SIGINT\n"),
    /runs its name into its text/,
  );
});

Deno.test("the demo runs the whole pipeline and prints every record of the fixture", async () => {
  const { code, stdout, stderr } = await run("demo.ts", []);
  equal(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n");
  deepStrictEqual([...lines].sort(), (await expectedLines()).sort());
  ok(stderr.includes("8000 records"), stderr);
  ok(stderr.includes("8000 consumed"), stderr);
  ok(/per symbol BTC-USD=\d+/.test(stderr), stderr);
});

Deno.test("the tasks load .env through ENV_FILE, and a missing settings file says nothing", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<
    string,
    string
  >;
  for (const task of ["produce", "consume", "replay"]) {
    ok(tasks[task]!.startsWith("ENV_FILE=.env deno run "), task);
    ok(!tasks[task]!.includes("--env-file"), task);
  }
  const dir = await Deno.makeTempDir();
  try {
    const missing = await runWithEnv("replay.ts", [FIXTURE, "--to", "memory"], {
      ENV_FILE: `${dir}/.env`,
    });
    equal(missing.code, 0, missing.stderr);
    deepStrictEqual(
      missing.stderr.trimEnd().split("\n").map((l) => l.split(":")[0]),
      ["replay", "memory broker"],
    );
    await Deno.writeTextFile(`${dir}/.env`, "KAFKA_TOPIC=from-the-file\n");
    const present = await runWithEnv("replay.ts", [FIXTURE, "--to", "memory"], {
      ENV_FILE: `${dir}/.env`,
    });
    equal(present.code, 0, present.stderr);
    ok(present.stderr.includes('topic "from-the-file"'), present.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay of an input with no Polygon frame in it says so and exits 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const binary = `${dir}/random.bin`;
    // Fixed bytes, no line holding JSON: 83 lines of noise.
    const bytes = new Uint8Array(83 * 40).map((_, i) => ((i * 7919 + 13) % 200) + 14);
    for (let i = 39; i < bytes.length; i += 40) bytes[i] = 10;
    await Deno.writeFile(binary, bytes);
    for (const to of ["stdout", "memory"]) {
      const r = await run("replay.ts", [binary, "--to", to]);
      equal(r.code, 2, r.stderr);
      equal(r.stdout, "");
      const last = r.stderr.trimEnd().split("\n").at(-1)!;
      ok(
        last.startsWith(
          `ConfigError: Cannot replay "${binary}": not a recording of Polygon frames: 0 of 83 lines`,
        ),
        last,
      );
    }
    const text = await run("replay.ts", ["-"], "plain text\n[1,2]\n42\n");
    equal(text.code, 2, text.stderr);
    ok(text.stderr.includes("0 of 3 lines hold a Polygon event (2 parsed as JSON;"), text.stderr);
    // Bad lines among real frames are counted skips, not a failure; nor is an empty input.
    const mixed = await run(
      "replay.ts",
      ["-"],
      'garbage\n[{"ev":"status","status":"connected"}]\n',
    );
    equal(mixed.code, 0, mixed.stderr);
    const empty = await run("replay.ts", ["-"], "");
    equal(empty.code, 0, empty.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the demo at --speed 50 paces the fixture's 100 s into about 2 s, every record, no warning", async () => {
  const started = performance.now();
  const { code, stdout, stderr } = await run("demo.ts", ["--speed", "50"]);
  const seconds = (performance.now() - started) / 1000;
  equal(code, 0, stderr);
  equal(stdout.trimEnd().split("\n").length, 8000);
  ok(!/Warning/i.test(stderr), stderr);
  // The pacing works at all (it hung for hours before): not instant, not stuck.
  ok(seconds > 1.5 && seconds < 30, `${seconds} s`);
});
