import { deepStrictEqual, equal, match } from "./helpers/assert.ts";
import { CAPTURE_TAG, ignoredCaptureTests } from "./helpers/capture.ts";

const HELPER = new URL("./helpers/capture.ts", import.meta.url).pathname;

/** Runs deno with the given environment added; returns exit code and output. */
async function deno(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A test module with two capture tests (one reads the file) and one plain test. */
async function suite(dir: string): Promise<string> {
  const file = `${dir}/sample_test.ts`;
  await Deno.writeTextFile(
    file,
    `import { CAPTURE_PATH, captureTest } from ${JSON.stringify(HELPER)};
captureTest({ name: "reads the capture", async fn() {
  if ((await Deno.readTextFile(CAPTURE_PATH)) !== "frames\\n") throw new Error("wrong capture");
} });
captureTest({ name: "also needs it", fn() {} });
Deno.test("plain", () => {});
`,
  );
  return file;
}

/** Outcome of each test case of a JUnit report: "passed", "failed" or "skipped". */
function outcomes(xml: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const m of xml.matchAll(/<testcase\b[^>]*\bname="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g)) {
    result[m[1]!] = /<skipped/.test(m[2]!)
      ? "skipped"
      : /<failure/.test(m[2]!)
      ? "failed"
      : "passed";
  }
  return result;
}

Deno.test("without the capture, capture tests are ignored, not passed, and the report says how many and why", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = await suite(dir);
    const missing = `${dir}/no-such-capture.jsonl`;
    const report = `${dir}/junit.xml`;
    const run = await deno(["test", "-A", `--junit-path=${report}`, file], {
      CAPTURE_FILE: missing,
    });
    equal(run.code, 0, run.stderr);
    const xml = await Deno.readTextFile(report);
    deepStrictEqual(outcomes(xml), {
      [`reads the capture ${CAPTURE_TAG}`]: "skipped",
      [`also needs it ${CAPTURE_TAG}`]: "skipped",
      plain: "passed",
    });
    equal(ignoredCaptureTests(xml), 2);
    const line = await deno(["run", "--allow-read", "--allow-env", HELPER, report], {
      CAPTURE_FILE: missing,
    });
    equal(line.code, 0, line.stderr);
    const lines = line.stdout.trimEnd().split("\n");
    equal(lines.length, 1);
    match(lines[0]!, /^2 capture tests did not run \(ignored, not passed\): /);
    match(lines[0]!, new RegExp(`not at "${missing.replaceAll(".", "\\.")}"`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with the capture, capture tests run and can fail, and the report stays silent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = await suite(dir);
    const capture = `${dir}/capture.jsonl`;
    const report = `${dir}/junit.xml`;
    await Deno.writeTextFile(capture, "frames\n");
    const run = await deno(["test", "-A", `--junit-path=${report}`, file], {
      CAPTURE_FILE: capture,
    });
    equal(run.code, 0, run.stderr);
    deepStrictEqual(outcomes(await Deno.readTextFile(report)), {
      [`reads the capture ${CAPTURE_TAG}`]: "passed",
      [`also needs it ${CAPTURE_TAG}`]: "passed",
      plain: "passed",
    });
    const line = await deno(["run", "--allow-read", "--allow-env", HELPER, report], {
      CAPTURE_FILE: capture,
    });
    equal(line.stdout, "");
    // The capture test really reads the file: a different file fails it.
    await Deno.writeTextFile(capture, "other\n");
    const failing = await deno(["test", "-A", `--junit-path=${report}`, file], {
      CAPTURE_FILE: capture,
    });
    equal(failing.code, 1);
    equal(outcomes(await Deno.readTextFile(report))[`reads the capture ${CAPTURE_TAG}`], "failed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
