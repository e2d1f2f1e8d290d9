import { assertEquals, deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { createSpreadTransform, emptySkips, type SpreadRecord, transform } from "../transform.ts";
import { readAllFrames } from "../lib/recording.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "./helpers/capture.ts";

function xq(fields: Record<string, unknown>): string {
  return JSON.stringify({ ev: "XQ", pair: "BTC-USD", bp: 1, ap: 2, t: 1626828416892, ...fields });
}

/** Exact decimal text of a JSON number, scaled to an integer at 10^-40, independently. */
function scaled(text: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) throw new Error(`not a number: ${text}`);
  const frac = m[3] ?? "";
  const exp = Number(m[4] ?? 0) - frac.length + 40;
  const digits = BigInt(m[2]! + frac);
  const v = exp >= 0 ? digits * 10n ** BigInt(exp) : digits / 10n ** BigInt(-exp);
  return m[1] === "-" ? -v : v;
}

Deno.test("transform writes the record with keys in order, UTC time and an exact spread", () => {
  const { records, skipped, events } = transform(
    '[{"ev":"XQ","pair":"BTC-USD","bp":29603.82,"ap":29603.83,"t":1626828416892,"x":1,"r":1626828416900}]',
  );
  equal(events, 1);
  equal(records.length, 1);
  equal(
    records[0]!.value,
    '{"timestamp":"2021-07-21T00:46:56.892Z","symbol":"BTC-USD","spread":0.01}',
  );
  equal(records[0]!.key, "BTC-USD");
  equal(records[0]!.timestamp, 1626828416892);
  equal(records[0]!.r, 1626828416900);
  deepStrictEqual(records[0]!.headers, { "schema-version": "1" });
  deepStrictEqual(skipped, emptySkips());
});

Deno.test("transform computes tiny spreads exactly and writes them as JSON numbers", () => {
  const { records } = transform(`[${xq({ bp: 1.2e-7, ap: 1.3e-7 })},${xq({ bp: "x" })}]`);
  equal(records[0]!.spread, "1e-8");
  deepStrictEqual(JSON.parse(records[0]!.value).spread, 1e-8);
});

Deno.test("transform uses the source text of numbers with more digits than a double holds", () => {
  const frame =
    '[{"ev":"XQ","pair":"P","bp":0.12345678901234567891,"ap":0.12345678901234567892,"t":5}]';
  equal(transform(frame).records[0]!.spread, "1e-20");
});

Deno.test("transform keeps crossed quotes as negative spreads and locked quotes as zero", () => {
  const { records } = transform(`[${xq({ bp: 10.5, ap: 10.25 })},${xq({ bp: 7, ap: 7 })}]`);
  deepStrictEqual(records.map((r) => r.spread), ["-0.25", "0"]);
});

Deno.test("transform keeps every quote of a batched frame in frame order", () => {
  const frame = `[${xq({ pair: "A" })},${xq({ pair: "B" })},${xq({ pair: "C" })}]`;
  deepStrictEqual(transform(frame).records.map((r) => r.symbol), ["A", "B", "C"]);
});

Deno.test("transform accepts a single event object as a frame", () => {
  equal(transform(xq({})).records.length, 1);
});

Deno.test("transform counts every skip by reason and lets the rest of the frame through", () => {
  const frame = "[" + [
    xq({ bp: 0 }),
    xq({ ap: -1 }),
    xq({ ap: "2" }),
    xq({ pair: "" }),
    xq({ pair: 7 }),
    xq({ t: "1" }),
    xq({ t: 1.5 }),
    xq({ t: 9e15 }),
    '{"ev":"status","status":"connected"}',
    '{"ev":"XT","pair":"BTC-USD"}',
    "{}",
    "[1]",
    "3",
    "null",
    xq({ pair: "OK-USD" }),
  ].join(",") + "]";
  const { records, skipped, events } = transform(frame);
  deepStrictEqual(records.map((r) => r.symbol), ["OK-USD"]);
  deepStrictEqual(skipped, {
    ...emptySkips(),
    bad_bid: 1,
    bad_ask: 2,
    bad_pair: 2,
    bad_time: 3,
    status: 1,
    other_event: 2,
    nested_array: 1,
    not_an_object: 2,
  });
  equal(events, 15);
});

Deno.test("transform counts frames that are not JSON or not frames, and never throws", () => {
  for (
    const [text, reason] of [
      ["", "invalid_json"],
      ["[{", "invalid_json"],
      ["\uFFFD\uFFFD", "invalid_json"],
      ['"text"', "not_a_frame"],
      ["42", "not_a_frame"],
      ["null", "not_a_frame"],
    ] as const
  ) {
    const { records, skipped, events } = transform(text);
    equal(records.length, 0, text);
    equal(skipped[reason], 1, text);
    equal(events, 1, text);
  }
});

Deno.test("transform rejects huge numbers that JSON turns into infinity", () => {
  const { skipped } = transform('[{"ev":"XQ","pair":"A","bp":1e400,"ap":2,"t":1}]');
  equal(skipped.bad_bid, 1);
});

Deno.test("two spread transforms in one process keep their own skip counts and caches", () => {
  const a = createSpreadTransform();
  const b = createSpreadTransform();
  const frames = [
    xq({ pair: "A", t: 1_000 }),
    "not json",
    xq({ pair: "B", t: 253_402_300_799_999 }), // 9999-12-31T23:59:59.999Z
    `[${xq({ pair: "A", t: 1_001 })},{"ev":"status"}]`,
    xq({ pair: "C", t: 253_402_300_800_000 }), // a five-digit year
  ];
  // Alternate the frames between two transforms, then run them all through a third alone.
  const split: SpreadRecord[] = [];
  frames.forEach((f, i) => (i % 2 === 0 ? a : b).frame(f, split));
  const alone = createSpreadTransform();
  const together: SpreadRecord[] = [];
  for (const f of frames) alone.frame(f, together);
  deepStrictEqual(split.map((r) => r.value), together.map((r) => r.value));
  deepStrictEqual(split.map((r) => r.value), [
    '{"timestamp":"1970-01-01T00:00:01.000Z","symbol":"A","spread":1}',
    '{"timestamp":"9999-12-31T23:59:59.999Z","symbol":"B","spread":1}',
    '{"timestamp":"1970-01-01T00:00:01.001Z","symbol":"A","spread":1}',
    '{"timestamp":"+010000-01-01T00:00:00.000Z","symbol":"C","spread":1}',
  ]);
  deepStrictEqual(a.skipped, emptySkips());
  deepStrictEqual(b.skipped, { ...emptySkips(), invalid_json: 1, status: 1 });
  deepStrictEqual(alone.skipped, { ...emptySkips(), invalid_json: 1, status: 1 });
});

captureTest({
  name: "transform keeps all 10,795 quotes of the real capture in order with exact spreads",
  async fn() {
    const frames = await readAllFrames(CAPTURE);
    equal(frames.length, 9857);
    const records: SpreadRecord[] = [];
    const spreads = createSpreadTransform();
    let events = 0;
    for (const f of frames) events += spreads.frame(f, records);
    equal(records.length, 10795);
    equal(events, 10795);
    deepStrictEqual(spreads.skipped, emptySkips());
    // An independent reference: source texts of ap and bp, subtracted with BigInt.
    let i = 0;
    let nonTrivial = 0;
    for (const f of frames) {
      const texts: { ap?: string; bp?: string }[] = [];
      const parsed = JSON.parse(f, function (this: unknown, key, value, ctx?: { source?: string }) {
        if (key === "ev") texts.push({});
        if ((key === "ap" || key === "bp") && ctx?.source) {
          texts[texts.length - 1]![key] = ctx.source;
        }
        return value;
      }) as { pair: string; t: number }[];
      for (let j = 0; j < parsed.length; j++) {
        const rec = records[i++]!;
        const ev = parsed[j]!;
        equal(rec.symbol, ev.pair);
        equal(rec.timestamp, ev.t);
        equal(JSON.parse(rec.value).timestamp, new Date(ev.t).toISOString());
        const expected = scaled(texts[j]!.ap!) - scaled(texts[j]!.bp!);
        equal(scaled(rec.spread), expected, `record ${i}: ${rec.value}`);
        // The JSON number in the value is the same exact decimal.
        ok(rec.value.endsWith(`"spread":${rec.spread}}`));
        if (String(ev.t).length === 13 && rec.spread.length > 4) nonTrivial++;
      }
    }
    equal(i, records.length);
    ok(nonTrivial > 1000, "the capture exercises multi-digit spreads");
    // The tutorial's float subtraction would have been wrong for many of these.
    const floatNoise = records.filter((r) => String(r.ap - r.bp) !== r.spread).length;
    ok(floatNoise > 100, `float subtraction differs on ${floatNoise} records`);
    assertEquals(
      records[0]!.value,
      '{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"CHZ-USD","spread":0.0002}',
    );
  },
});
