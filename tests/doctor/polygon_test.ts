/**
 * The doctor's Polygon check (lib/doctor/polygon.ts) against the fake Polygon server, whose plan
 * can refuse topics: it subscribes to what produce subscribes to, every pair on every channel of
 * `--channels` (issue 25), and fails a plan that lacks one.
 */
import { assertEquals } from "../helpers/assert.ts";
import { checkPolygon } from "../../lib/doctor/polygon.ts";
import { startFakePolygon } from "../../lib/polygon/fake.ts";
import type { CheckResult } from "../../lib/doctor/verdict.ts";

const KEY = "doctor-key";

/** Runs the check against a fake whose plan refuses `notInPlan`; returns results and stats. */
async function check(
  pairs: string[],
  channels: string[] | undefined,
  notInPlan: string[] = [],
) {
  const fake = startFakePolygon({ apiKey: KEY, notInPlan });
  try {
    const results = await checkPolygon(
      { url: fake.url, apiKey: KEY, pairs },
      { timeoutMs: 5000, ...(channels ? { channels } : {}) },
    );
    return { results, stats: { ...fake.stats } };
  } finally {
    await fake.close();
  }
}

function verdicts(results: readonly CheckResult[]): string[] {
  return results.map((r) => `${r.check}: ${r.verdict}`);
}

function plan(results: readonly CheckResult[]): CheckResult {
  return results.find((r) => r.check === "plan")!;
}

Deno.test("doctor subscribes every pair on every channel of --channels, as produce does", async () => {
  const { results, stats } = await check(["BTC-USD", "ETH-USD"], ["XQ", "XT", "XA"]);
  assertEquals(stats.subscriptions, [
    "XQ.BTC-USD,XQ.ETH-USD,XT.BTC-USD,XT.ETH-USD,XA.BTC-USD,XA.ETH-USD",
  ]);
  assertEquals(verdicts(results), ["API key: ok", "plan: ok", "one connection: warning"]);
  assertEquals(
    plan(results).message,
    "subscription to XQ.BTC-USD,XQ.ETH-USD,XT.BTC-USD,XT.ETH-USD,XA.BTC-USD,XA.ETH-USD confirmed",
  );
  // Released at once: one connection.
  assertEquals(stats.connections, 1);
});

Deno.test("doctor without --channels subscribes quotes alone, every pair; * as produce sends it", async () => {
  const quotes = await check(["BTC-USD", "ETH-USD"], undefined);
  assertEquals(quotes.stats.subscriptions, ["XQ.BTC-USD,XQ.ETH-USD"]);
  assertEquals(plan(quotes.results).verdict, "ok");
  const all = await check(["*"], ["XQ", "XT"]);
  assertEquals(all.stats.subscriptions, ["XQ.*,XT.*"]);
  assertEquals(plan(all.results).message, "subscription to XQ.*,XT.* confirmed");
});

Deno.test("doctor fails a plan without trades when --channels has XT: produce would stream without them", async () => {
  const { results, stats } = await check(["BTC-USD"], ["XQ", "XT"], ["XT.BTC-USD"]);
  assertEquals(stats.refusals, 1);
  assertEquals(verdicts(results), ["API key: ok", "plan: fail", "one connection: warning"]);
  assertEquals(
    plan(results).message,
    "your Polygon plan does not include XT.BTC-USD (subscription to XQ.BTC-USD confirmed): produce would stream without XT",
  );
  assertEquals(
    plan(results).fix,
    "use a Massive plan that includes XT (massive.com/pricing), or leave XT out of --channels " +
      "(POLYGON_CHANNELS)",
  );
});

Deno.test("doctor fails a plan that refuses every channel of --channels, as produce exits 6", async () => {
  const { results } = await check(["BTC-USD"], ["XT", "XA"], ["*"]);
  assertEquals(verdicts(results), ["API key: ok", "plan: fail"]);
  assertEquals(
    plan(results).message.startsWith(
      "Cannot subscribe to XT.BTC-USD,XA.BTC-USD on Polygon at ",
    ),
    true,
  );
  assertEquals(
    plan(results).message.includes("your Polygon plan does not include XT, XA"),
    true,
  );
});
