/**
 * The doctor's verdicts: one result per check, how it prints (a line, or JSON for scripts) and
 * the exit code. Pure.
 */

/** Passed; passed but a guarantee is weaker or something needs attention soon; would fail. */
export type Verdict = "ok" | "warning" | "fail";

/** The check groups, in the order they print. */
export const CHECK_GROUPS = ["certificates", "kafka", "polygon", "telemetry"] as const;

/** A check group. */
export type CheckGroup = (typeof CHECK_GROUPS)[number];

/** One check's result. Nothing in it is a secret: messages name files and users, never keys. */
export interface CheckResult {
  group: CheckGroup;
  /** Short name of what was checked (`reachable`, `topic "quotes"`, `ca.pem expiry`, …). */
  check: string;
  verdict: Verdict;
  /** What was found, with the values. */
  message: string;
  /** What to do, when the verdict is not ok. */
  fix?: string;
}

/** The doctor's exit code: 0 when no check failed (warnings pass), 1 otherwise. */
export function doctorExitCode(results: readonly CheckResult[]): number {
  return results.some((r) => r.verdict === "fail") ? 1 : 0;
}

/** Counts of each verdict. */
export function verdictCounts(results: readonly CheckResult[]): Record<Verdict, number> {
  const out: Record<Verdict, number> = { ok: 0, warning: 0, fail: 0 };
  for (const r of results) out[r.verdict]++;
  return out;
}

/** One line per check: `fail    kafka  reachable: <message>; fix: <fix>`. */
export function formatResult(r: CheckResult): string {
  const fix = r.fix && r.verdict !== "ok" ? `; fix: ${r.fix}` : "";
  return `${r.verdict.padEnd(7)} ${r.group.padEnd(12)} ${r.check}: ${r.message}${fix}`;
}

/** The whole report as text: one line per check, then the counts. */
export function formatReport(results: readonly CheckResult[]): string {
  const c = verdictCounts(results);
  return [
    ...results.map(formatResult),
    `doctor: ${c.ok} ok, ${c.warning} warning${c.warning === 1 ? "" : "s"}, ${c.fail} failed`,
  ].join("\n");
}

/** The report for `--json`: every result, the counts and the exit code. */
export function jsonReport(results: readonly CheckResult[]): string {
  return JSON.stringify({
    results,
    counts: verdictCounts(results),
    exitCode: doctorExitCode(results),
  });
}

/** Orders results by group (as {@linkcode CHECK_GROUPS}), keeping each group's own order. */
export function byGroup(results: readonly CheckResult[]): CheckResult[] {
  return CHECK_GROUPS.flatMap((g) => results.filter((r) => r.group === g));
}
