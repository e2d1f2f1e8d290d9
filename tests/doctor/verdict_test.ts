import { assertEquals } from "../helpers/assert.ts";
import {
  byGroup,
  type CheckResult,
  doctorExitCode,
  formatResult,
  jsonReport,
} from "../../lib/doctor/verdict.ts";

const ok: CheckResult = { group: "kafka", check: "reachable", verdict: "ok", message: "answers" };
const warn: CheckResult = {
  group: "polygon",
  check: "one connection",
  verdict: "warning",
  message: "evicts",
  fix: "one producer",
};
const fail: CheckResult = {
  group: "certificates",
  check: "KAFKA_SSL_CA",
  verdict: "fail",
  message: "Cannot read",
  fix: "put it there",
};

Deno.test("doctor exits 0 when no check failed, warnings included, and 1 on a failure", () => {
  assertEquals([doctorExitCode([ok, warn]), doctorExitCode([ok, fail]), doctorExitCode([])], [
    0,
    1,
    0,
  ]);
});

Deno.test("doctor prints one line per check with the fix only when it is not ok", () => {
  assertEquals(formatResult(ok), "ok      kafka        reachable: answers");
  assertEquals(
    formatResult(fail),
    "fail    certificates KAFKA_SSL_CA: Cannot read; fix: put it there",
  );
});

Deno.test("doctor's JSON report holds every result in group order, the counts and the code", () => {
  assertEquals(JSON.parse(jsonReport(byGroup([warn, ok, fail]))), {
    results: [fail, ok, warn],
    counts: { ok: 1, warning: 1, fail: 1 },
    exitCode: 1,
  });
});
