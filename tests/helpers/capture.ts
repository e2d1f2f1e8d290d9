/**
 * The real Polygon capture (10,795 quotes in 9,857 frames). It is not ours to redistribute, so it
 * never enters the repository: it lives in `../shared/data/` beside the clone (CI always has it),
 * or wherever `CAPTURE_FILE` points.
 *
 * Tests that need it are declared with {@linkcode captureTest}: without the file they are
 * registered as ignored (Deno counts them as ignored, never as passed) and their names carry
 * {@linkcode CAPTURE_TAG}. `scripts/test.sh` runs this module on the JUnit report of the run and
 * prints one line saying how many of them did not run, and why. `.ci/run` fails on any ignored
 * test, so in CI every capture test must run.
 *
 * Run as a script: `deno run --allow-read --allow-env tests/helpers/capture.ts REPORT.xml`.
 */

/** Path of the real capture: `CAPTURE_FILE`, or `../shared/data/` beside the clone. */
export const CAPTURE_PATH: string = Deno.env.get("CAPTURE_FILE") ||
  new URL("../../../shared/data/polygon-xq-capture-2023-07-26.jsonl", import.meta.url).pathname;

/** Whether the capture is there to read. */
export const HAVE_CAPTURE: boolean = (() => {
  try {
    return Deno.statSync(CAPTURE_PATH).isFile;
  } catch {
    return false;
  }
})();

/** Ends the name of every test that needs the capture, so a report can count them. */
export const CAPTURE_TAG = "[real capture]";

/**
 * Registers a test that needs the real capture: it runs when the file is there, and is
 * registered as ignored (not passed) when it is not.
 */
export function captureTest(definition: Deno.TestDefinition): void {
  Deno.test({
    ...definition,
    name: `${definition.name} ${CAPTURE_TAG}`,
    ignore: !HAVE_CAPTURE || (definition.ignore ?? false),
  });
}

/** Counts the ignored capture tests in the text of a Deno JUnit report (`--junit-path`). */
export function ignoredCaptureTests(junitXml: string): number {
  let count = 0;
  const testcase = /<testcase\b[^>]*\bname="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g;
  for (const m of junitXml.matchAll(testcase)) {
    if (m[1]!.endsWith(CAPTURE_TAG) && /<skipped\s*\/?>/.test(m[2]!)) count++;
  }
  return count;
}

/** The one line a run prints when capture tests did not run; undefined when all ran. */
export function captureReport(ignored: number, havePath = HAVE_CAPTURE): string | undefined {
  if (ignored === 0) return undefined;
  const tests = ignored === 1 ? "1 capture test" : `${ignored} capture tests`;
  const why = havePath
    ? "they were ignored for another reason (see the ignored tests above)"
    : `the real capture is not at "${CAPTURE_PATH}" (it is not in this repository: put it in ` +
      "../shared/data/ beside the clone, or set CAPTURE_FILE)";
  return `${tests} did not run (ignored, not passed): ${why}`;
}

if (import.meta.main) {
  const report = Deno.args[0];
  if (!report) {
    console.error("Usage: deno run --allow-read --allow-env tests/helpers/capture.ts REPORT.xml");
    Deno.exit(2);
  }
  let text: string | undefined;
  try {
    text = await Deno.readTextFile(report);
  } catch {
    // No report: deno test stopped before writing one, and has said why.
  }
  const line = text === undefined ? undefined : captureReport(ignoredCaptureTests(text));
  if (line) console.log(line);
}
