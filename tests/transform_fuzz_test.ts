/**
 * Both paths of the spread transform (the scan and JSON.parse) against an independent reference:
 * exact BigInt subtraction and the rules of transform.ts written out again, on seeded random
 * frames built to hit the scan's edges (nested keys, duplicate keys, whitespace around `:`,
 * several events, huge exponents, long number texts, times at the bounds).
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { createSpreadTransform, SKIP_REASONS, type SpreadRecord } from "../transform.ts";
import { MAX_NUMBER_TEXT, MAX_TIME_MS } from "../lib/bounds.ts";
import { mulberry32 } from "../fixtures/generate.ts";

/** An exact decimal: sign × int × 10^exp. */
function decimal(text: string): { negative: boolean; int: bigint; exp: number } {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) throw new Error(`not a number: ${text}`);
  const frac = m[3] ?? "";
  return {
    negative: m[1] === "-",
    int: BigInt(m[2]! + frac),
    exp: Number(m[4] ?? 0) - frac.length,
  };
}

/** `a − b` exactly, laid out as ECMAScript's Number::toString lays out digits. */
function referenceSubtract(a: string, b: string): string {
  const x = decimal(a);
  const y = decimal(b);
  const e = Math.min(x.exp, y.exp);
  const xv = (x.negative ? -1n : 1n) * x.int * 10n ** BigInt(x.exp - e);
  const yv = (y.negative ? -1n : 1n) * y.int * 10n ** BigInt(y.exp - e);
  let d = xv - yv;
  if (d === 0n) return "0";
  const negative = d < 0n;
  if (negative) d = -d;
  let s = d.toString();
  let exp = e;
  while (s.endsWith("0")) {
    s = s.slice(0, -1);
    exp++;
  }
  const k = s.length;
  const n = k + exp;
  let out: string;
  if (k <= n && n <= 21) out = s + "0".repeat(n - k);
  else if (0 < n && n <= 21) out = s.slice(0, n) + "." + s.slice(n);
  else if (-6 < n && n <= 0) out = "0." + "0".repeat(-n) + s;
  else {
    out = (k === 1 ? s : s[0] + "." + s.slice(1)) + "e" + (n - 1 < 0 ? "-" : "+") +
      Math.abs(n - 1);
  }
  return (negative ? "-" : "") + out;
}

interface Outcome {
  events: number;
  records: { key: string; value: string; timestamp: number }[];
  skipped: Record<string, number>;
}

/** The transform's rules, written out again, for one frame, with the time window `[min, max]`. */
function reference(text: string, min: number, max: number): Outcome {
  const skipped: Record<string, number> = Object.fromEntries(SKIP_REASONS.map((r) => [r, 0]));
  const records: Outcome["records"] = [];
  const sources = new WeakMap<object, Record<string, string>>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      text,
      function (this: object, key: string, value: unknown, context?: { source?: string }) {
        if (typeof value === "number" && context?.source !== undefined) {
          let m = sources.get(this);
          if (!m) sources.set(this, m = {});
          m[key] = context.source;
        }
        return value;
      },
    );
  } catch {
    skipped.invalid_json!++;
    return { events: 1, records, skipped };
  }
  let events: unknown[];
  if (Array.isArray(parsed)) events = parsed;
  else if (typeof parsed === "object" && parsed !== null) events = [parsed];
  else {
    skipped.not_a_frame!++;
    return { events: 1, records, skipped };
  }
  for (const ev of events) {
    if (typeof ev !== "object" || ev === null) {
      skipped.not_an_object!++;
      continue;
    }
    if (Array.isArray(ev)) {
      skipped.nested_array!++;
      continue;
    }
    const e = ev as Record<string, unknown>;
    if (e.ev !== "XQ") {
      skipped[e.ev === "status" ? "status" : "other_event"]!++;
      continue;
    }
    const pair = e.pair;
    if (typeof pair !== "string" || pair.length === 0 || pair.length > 64) {
      skipped.bad_pair!++;
      continue;
    }
    if (typeof e.bp !== "number" || !(e.bp > 0) || !Number.isFinite(e.bp)) {
      skipped.bad_bid!++;
      continue;
    }
    if (typeof e.ap !== "number" || !(e.ap > 0) || !Number.isFinite(e.ap)) {
      skipped.bad_ask!++;
      continue;
    }
    const s = sources.get(e)!;
    if (s.bp!.length > MAX_NUMBER_TEXT || s.ap!.length > MAX_NUMBER_TEXT) {
      skipped.number_too_long!++;
      continue;
    }
    const t = e.t;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > MAX_TIME_MS) {
      skipped.bad_time!++;
      continue;
    }
    if (t < min || t > max) {
      skipped.time_out_of_range!++;
      continue;
    }
    const spread = referenceSubtract(s.ap!, s.bp!);
    records.push({
      key: pair,
      value: `{"timestamp":"${new Date(t).toISOString()}","symbol":${
        JSON.stringify(pair)
      },"spread":${spread}}`,
      timestamp: t,
    });
  }
  return { events: events.length, records, skipped };
}

/** Seeded frames aimed at the scan's edges (after /work/shared/repro/fuzz.ts). */
function generator(seed: number): () => string {
  const random = mulberry32(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(random() * a.length)]!;
  const int = (n: number) => Math.floor(random() * n);
  const digits = (n: number, lead = true) => {
    let s = lead ? String(1 + int(9)) : String(int(10));
    for (let i = 1; i < n; i++) s += int(10);
    return s;
  };
  const num = (): string => {
    const r = random();
    if (r < 0.08) {
      return pick([
        "0.1",
        "0.10000000000000001",
        "0.1000000000000000055511151231257827",
        "0.30000000000000004",
        "1.00000000000000011",
        "9007199254740993",
        "123456789012345.6",
        "0." + "0".repeat(999) + "15e1000",
        "0." + "0".repeat(999) + "15e10000",
        "1" + "0".repeat(1005) + "e-1005",
        "0." + "0".repeat(30) + "1e31",
        "1" + "0".repeat(63),
        "1" + "0".repeat(64),
        "0." + "0".repeat(61) + "1",
        "0." + "0".repeat(62) + "1",
      ]);
    }
    if (r < 0.1) {
      return pick(["0", "-0", "1", "-1", "1E5", "1e+5", "1e-5", "5e-324", "1e309", "1e-400"]);
    }
    let s = random() < 0.05 ? "-" : "";
    s += random() < 0.3 ? "0" : digits(1 + int(random() < 0.8 ? 6 : 25));
    if (random() < 0.8) s += "." + digits(1 + int(random() < 0.8 ? 10 : 30), false);
    if (random() < 0.2) {
      s += pick(["e", "E"]) + pick(["", "+", "-"]) + (random() < 0.1 ? "0".repeat(int(20)) : "") +
        String(int(random() < 0.8 ? 25 : 400));
    }
    return s;
  };
  const ws = () => random() < 0.85 ? "" : pick([" ", "\n", "\t", "\r", "  ", " \r\n"]);
  const str = () =>
    JSON.stringify(
      random() < 0.7
        ? pick(["BTC-USD", "ETH-USD", "X", "ÄÖ-€", "😀-USD", "A".repeat(64), "A".repeat(65), ""])
        : pick(['a"b', "a\\b", "a\nb", "\u0001", "/"]),
    );
  const value = (key: string): string => {
    const r = random();
    if (key === "ev") {
      return r < 0.8 ? '"XQ"' : pick(['"status"', '"XT"', "1", "null", '"\\u0058Q"']);
    }
    if (key === "pair") return r < 0.9 ? str() : pick(["null", "7", "[]"]);
    if (key === "t" || key === "r") {
      if (r < 0.7) return String(1626828416892 + int(1e6));
      return pick([
        "-1",
        "0",
        "1e3",
        "1.5",
        "8.64e15",
        String(MAX_TIME_MS),
        String(MAX_TIME_MS + 1),
        '"1"',
        "null",
        "1626828416892.0000000000000001",
        num(),
      ]);
    }
    if (key === "bp" || key === "ap") {
      return r < 0.9 ? num() : pick(['"1.5"', "null", "true", "[1]", '{"bp":1.5}']);
    }
    return pick([num(), str(), "true", "null", "[]", '{"bp":0.1,"ap":0.2}', '[1,"x"]']);
  };
  const event = (): string => {
    const keys = ["ev", "pair", "bp", "ap", "t"];
    if (random() < 0.5) keys.push("r");
    for (let i = int(3); i > 0; i--) {
      keys.push(pick(["x", "bx", "ev", "bp", "ap", "t", "pair", "bp ", "\\u0062p", "m"]));
    }
    if (random() < 0.3) keys.sort(() => random() - 0.5);
    const drop = random() < 0.1 ? pick(keys) : undefined;
    const parts: string[] = [];
    for (const k of keys) {
      if (k === drop) continue;
      const name = k === "\\u0062p" ? '"\\u0062p"' : JSON.stringify(k);
      parts.push(ws() + name + ws() + ":" + ws() + value(k) + ws());
    }
    return "{" + parts.join(",") + "}";
  };
  return () => {
    if (random() < 0.03) return pick(["", " ", "[]", "{}", "3", "null", "[[]]", "[1]", "[{},]"]);
    const n = 1 + int(random() < 0.8 ? 3 : 12);
    const events: string[] = [];
    for (let i = 0; i < n; i++) events.push(random() < 0.03 ? pick(["1", "null", "[]"]) : event());
    const body = n === 1 && random() < 0.4
      ? events[0]!
      : "[" + ws() + events.join(ws() + "," + ws()) + ws() + "]";
    return ws() + body + ws();
  };
}

/** One path's outcome of a frame, in the reference's terms. */
function run(
  spreads: ReturnType<typeof createSpreadTransform>,
  text: string,
): Outcome {
  const before = { ...spreads.skipped };
  const records: SpreadRecord[] = [];
  const events = spreads.frame(text, records);
  const skipped: Record<string, number> = {};
  for (const r of SKIP_REASONS) skipped[r] = spreads.skipped[r] - before[r];
  return {
    events,
    records: records.map((r) => ({ key: r.key, value: r.value, timestamp: r.timestamp })),
    skipped,
  };
}

Deno.test("finding 8: both transform paths agree exactly with an independent BigInt reference on 10,000 seeded edge-case frames", () => {
  const now = 1626828416892 + 500_000;
  const clock = { now: () => now };
  const window = { clock, maxAheadMs: 300_000, maxBehindMs: 300_000 };
  const scan = createSpreadTransform({ scan: true, ...window });
  const parse = createSpreadTransform({ scan: false, ...window });
  const next = generator(20261202);
  let records = 0;
  const reasons = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const text = next();
    const want = reference(text, now - 300_000, now + 300_000);
    const wanted = JSON.stringify(want);
    for (const [name, spreads] of [["scan", scan], ["JSON.parse", parse]] as const) {
      const got = run(spreads, text);
      // Compared as text for speed; on a difference, deepStrictEqual shows it.
      if (JSON.stringify(got) !== wanted) {
        deepStrictEqual(got, want, `${name}, frame ${i}: ${JSON.stringify(text)}`);
      }
    }
    records += want.records.length;
    for (const [r, n] of Object.entries(want.skipped)) if (n > 0) reasons.add(r);
  }
  // The frames reach every outcome, records included.
  ok(records > 1000, `${records} records`);
  deepStrictEqual([...reasons].sort(), [...SKIP_REASONS].sort());
  equal(scan.skipped.time_out_of_range > 0 && scan.skipped.number_too_long > 0, true);
});
