import { assertEquals, deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { createSpreadTransform, emptySkips, type SpreadRecord, transform } from "../transform.ts";
import { readAllFrames } from "../lib/recording.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "./helpers/capture.ts";
import { hostileFrames } from "./helpers/hostile_frames.ts";
import { mulberry32 } from "../fixtures/generate.ts";

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
    xq({ pair: "C", t: 253_402_300_800_000 }), // a five-digit year: bad_time (finding 9)
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
  ]);
  deepStrictEqual(a.skipped, { ...emptySkips(), bad_time: 1 });
  deepStrictEqual(b.skipped, { ...emptySkips(), invalid_json: 1, status: 1 });
  deepStrictEqual(alone.skipped, { ...emptySkips(), invalid_json: 1, status: 1, bad_time: 1 });
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

/** What one transform made of some frames: records, skips, events per frame, JSON.parse calls. */
interface PathOutcome {
  records: SpreadRecord[];
  skipped: Record<string, number>;
  events: number[];
  parses: number;
}

/** Runs the frames through a transform with or without the scan, counting its JSON.parse calls. */
function runPath(frames: readonly string[], scan: boolean): PathOutcome {
  const spreads = createSpreadTransform({ scan });
  const records: SpreadRecord[] = [];
  const events: number[] = [];
  const parse = JSON.parse;
  let parses = 0;
  JSON.parse = function (...args: Parameters<typeof JSON.parse>) {
    parses++;
    return parse.apply(JSON, args);
  };
  try {
    for (const f of frames) events.push(spreads.frame(f, records));
  } finally {
    JSON.parse = parse;
  }
  return { records, skipped: { ...spreads.skipped }, events, parses };
}

/**
 * Asserts that the scan and the JSON.parse path make identical records, skips and event counts
 * of the frames, and returns how many frames the scan read without JSON.parse.
 */
function assertSamePaths(frames: readonly string[]): number {
  const scanned = runPath(frames, true);
  const parsed = runPath(frames, false);
  equal(parsed.parses >= frames.length, true);
  deepStrictEqual(scanned.events, parsed.events);
  deepStrictEqual(scanned.skipped, parsed.skipped);
  equal(scanned.records.length, parsed.records.length);
  for (let i = 0; i < parsed.records.length; i++) {
    // Object.is on every field: -0 and 0 differ, so do 1 and 1.0000000000000002.
    deepStrictEqual(scanned.records[i], parsed.records[i], `record ${i}`);
  }
  return frames.length - scanned.parses;
}

/** One frame through both paths: identical outcomes, and whether the scan read it alone. */
function scannedAlone(frame: string): boolean {
  return assertSamePaths([frame]) === 1;
}

captureTest({
  name: "the scan and the JSON.parse path make the same records of the real capture",
  async fn() {
    const frames = await readAllFrames(CAPTURE);
    // Every frame of the capture has the common shape: none needs JSON.parse.
    equal(assertSamePaths(frames), frames.length);
  },
});

Deno.test("the scan and the JSON.parse path make the same records of the fixture and hostile frames", async () => {
  const fixture = await readAllFrames(new URL("../fixtures/btc.jsonl", import.meta.url).pathname);
  // Its trades ("ev":"XT") carry a nested array of conditions, and a few frames are cut short:
  // JSON.parse decides those, the scan reads all the others.
  const nested = fixture.filter((f) => f.includes('"c":[')).length;
  const cut = fixture.filter((f) => !f.endsWith("]")).length;
  ok(nested > 0 && cut > 0);
  equal(assertSamePaths(fixture), fixture.length - nested - cut);
  const decoder = new TextDecoder();
  const hostile = hostileFrames({ seed: 20260105 }).frames.map((f) =>
    typeof f === "string" ? f : decoder.decode(f)
  );
  const alone = assertSamePaths(hostile);
  // Valid frames go by the scan, mutated ones mostly by JSON.parse: both paths are exercised.
  ok(alone > 1000 && alone < hostile.length - 1000, `${alone} of ${hostile.length} scanned`);
});

Deno.test("the scan and the JSON.parse path agree on randomly mutated capture-like frames", () => {
  const random = mulberry32(13);
  const base = [
    '[{"ev":"XQ","pair":"ABC-USD","lp":0,"ls":0,"bp":0.0512,"bs":1234.5,"ap":0.0517,"as":98765.4,"t":1700000000123,"x":3,"r":1700000000131}]',
    '[{"ev":"XQ","pair":"BTC-USD","bp":29603.82,"ap":29603.83,"t":1690329600123,"r":1690329600130},{"ev":"XQ","pair":"ETH-USD","bp":1.5e-7,"ap":2E+1,"t":0}]',
  ];
  const alphabet = '0123456789.eE+-"{}[],: \t\n\\uXQtrbpa\u0001\uD800';
  const frames: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    let f = base[n % base.length]!;
    for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits--) {
      const at = Math.floor(random() * (f.length + 1));
      const ch = alphabet[Math.floor(random() * alphabet.length)]!;
      const op = Math.floor(random() * 3);
      f = op === 0
        ? f.slice(0, at) + ch + f.slice(at)
        : op === 1
        ? f.slice(0, at) + f.slice(at + 1)
        : f.slice(0, at) + ch + f.slice(at + 1);
    }
    frames.push(f);
  }
  const alone = assertSamePaths(frames);
  ok(alone > 2000 && alone < frames.length - 2000, `${alone} of ${frames.length} scanned`);
});

Deno.test("the scan and the JSON.parse path agree on random prices of every length and form", () => {
  const random = mulberry32(1513);
  const digits = (n: number) => {
    let d = "";
    for (let i = 0; i < n; i++) d += Math.floor(random() * 10);
    return d;
  };
  const price = () => {
    const whole = random() < 0.3
      ? "0"
      : String(1 + Math.floor(random() * 9)) + digits(random() * 8);
    const frac = random() < 0.8 ? "." + digits(1 + random() * 18) : "";
    const exp = random() < 0.2 ? (random() < 0.5 ? "e" : "E-") + Math.floor(random() * 30) : "";
    return whole + frac + exp;
  };
  const frames: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    frames.push(`[{"ev":"XQ","pair":"P","bp":${price()},"ap":${price()},"t":${n}}]`);
  }
  equal(assertSamePaths(frames), frames.length);
});

Deno.test("the scan reads the common shape alone and hands everything else to JSON.parse", () => {
  const q = (fields: string) =>
    `{"ev":"XQ","pair":"BTC-USD","bp":1.25,"ap":1.5,"t":1690329600123${fields}}`;
  // Read by the scan alone, with the JSON.parse path's outcome.
  for (
    const frame of [
      `[${q("")}]`,
      q(',"r":1690329600130'),
      "[]",
      " [ ] ",
      "{}",
      "[{},{}]",
      ' \t\n\r[ \t\n\r{ "ev" : "XQ" ,\n"pair"\t:\r"A" , "bp" : 1 , "ap" : 2 , "t" : 3 } \n] \r\n',
      `[${q(',"bp":2')}]`, // duplicate keys: the last one counts
      `[${q(',"ev":"XT"')},${q(',"ev":"status"')}]`,
      '[{"ev":"XT","ev":"XQ","pair":"A","bp":1,"ap":2,"t":3}]',
      `[${q(',"pair":"\uD800"')}]`, // a lone surrogate
      `[${q(',"pair":"\u2028\u007f\uFFFD"')}]`,
      `[${q(',"pair":""')},${q(`,"pair":"${"P".repeat(64)}"`)},${
        q(`,"pair":"${"P".repeat(65)}"`)
      }]`,
      `[${q(',"bp":1e400')},${q(',"ap":1e400')},${q(',"bp":-0')},${q(',"ap":-0.0')}]`,
      `[${q(',"bp":0')},${q(',"bp":-1.5')},${q(',"bp":"1.25"')},${q(',"ap":"1.5"')}]`,
      `[${q(',"bp":29603.8200000000001,"ap":29603.8300000000002')}]`, // 16+ digits
      `[${q(',"bp":0.12345678901234567891,"ap":0.12345678901234567892')}]`,
      `[${q(',"bp":1234567890123456,"ap":1234567890123457')}]`,
      `[${q(',"bp":1.3e-7,"ap":1.2E-7')},${q(',"bp":1e22,"ap":1e23')},${q(',"bp":5e-324')}]`,
      `[${q(',"bp":1E+2,"ap":0.1e3')},${q(',"bp":0.000001,"ap":0.0000011')}]`,
      `[${q(',"bp":1e-30,"ap":1e-29')},${q(',"bp":9007199254740993,"ap":9007199254740995')}]`,
      `[${q(',"t":1.0')},${q(',"t":-0')},${q(',"t":1.5')},${q(',"t":-1')},${q(',"t":8.64e15')}]`,
      `[${q(',"t":8640000000000001')},${q(',"t":12345678901234567890')},${q(',"t":"1"')}]`,
      `[${q(',"r":"x"')},${q(',"r":1.5')},${q(',"r":-0')},${q(',"r":1e400')}]`,
      '[{"ev":"XQ"},{"ev":7},{"pair":"A","bp":1,"ap":2,"t":3},{"ev":"XQ","pair":7}]',
      '{"ev":"status","status":"connected","message":"Connected Successfully"}',
      '{"ev":"statu","pair":"A"}',
    ]
  ) ok(scannedAlone(frame), frame);
  // Outside the common shape or not JSON: the JSON.parse path decides, with the same outcome.
  for (
    const frame of [
      "",
      " ",
      "\uFEFF[]",
      "[",
      "[{",
      "[}",
      "[{}",
      "[{},]",
      "[,{}]",
      "[{}]]",
      "[{}] x",
      "{}{}",
      "[{}][]",
      `[${q("")}]\u0000`,
      '[{"ev":"XQ",}]',
      '[{"ev" "XQ"}]',
      '[{"ev":"XQ""pair":"A"}]',
      '[{,"ev":"XQ"}]',
      '[{"ev":XQ}]',
      `[${q(',"pair":"BTC\\u002dUSD"')}]`, // an escape
      `[${q(',"pair":"A\\"B"')}]`,
      `[${q(',"pair":"A\tB"')}]`, // a raw control character: invalid JSON
      `[${q(',"pair":"AB')}]`,
      '[{"ev\\u0020":"XQ"}]',
      `[${q(',"bp":01')}]`,
      `[${q(',"bp":1.')}]`,
      `[${q(',"bp":.5')}]`,
      `[${q(',"bp":+1')}]`,
      `[${q(',"bp":-')}]`,
      `[${q(',"bp":1e')}]`,
      `[${q(',"bp":1e+')}]`,
      `[${q(',"bp":0x10')}]`,
      `[${q(',"bp":NaN')}]`,
      `[${q(',"bp":Infinity')}]`,
      `[${q(',"bp":1.5.2')}]`,
      `[${q(',"bp":--1')}]`,
      `[${q(',"x":true')}]`,
      `[${q(',"x":null')}]`,
      `[${q(',"x":false')}]`,
      `[${q(',"x":{}')}]`,
      `[${q(',"x":[1]')}]`,
      `[${q(',"bp":null')}]`,
      `[${q("")},3]`,
      `[${q("")},"x"]`,
      `[${q("")},null]`,
      `[${q("")},[1]]`,
      `[[${q("")}]]`,
      "[1,2,3]",
      '"text"',
      "42",
      "null",
      "true",
    ]
  ) ok(!scannedAlone(frame), frame);
});

/** One frame through both paths (asserting they agree), with the transform options given. */
function bothPaths(
  frame: string,
  options: Parameters<typeof createSpreadTransform>[0] = {},
): { values: string[]; skipped: Record<string, number> } {
  const outcomes = [true, false].map((scan) => {
    const spreads = createSpreadTransform({ ...options, scan });
    const records: SpreadRecord[] = [];
    spreads.frame(frame, records);
    const skipped = Object.fromEntries(Object.entries(spreads.skipped).filter(([, n]) => n > 0));
    return { values: records.map((r) => r.value), skipped };
  });
  deepStrictEqual(outcomes[0], outcomes[1], `scan and JSON.parse differ on ${frame}`);
  return outcomes[0]!;
}

Deno.test("finding 7: a price with an exponent of 1000 or more is bad_bid on both paths, not a record", () => {
  const huge = "0." + "0".repeat(999) + "15e10000"; // JSON.parse: Infinity
  deepStrictEqual(
    bothPaths(`{"ev":"XQ","pair":"BTC-USD","bp":${huge},"ap":2,"t":1}`),
    { values: [], skipped: { bad_bid: 1 } },
  );
  deepStrictEqual(
    bothPaths(`{"ev":"XQ","pair":"BTC-USD","bp":1,"ap":${huge},"t":1}`),
    { values: [], skipped: { bad_ask: 1 } },
  );
  // A large exponent that JSON.parse makes finite goes by the general path too.
  deepStrictEqual(bothPaths(`{"ev":"XQ","pair":"A","bp":1.5e-1000,"ap":2,"t":1}`), {
    values: [],
    skipped: { bad_bid: 1 },
  });
});

Deno.test("finding 8: the spread uses the event's own top-level bp, never a nested, earlier or other event's one", () => {
  const exact =
    '{"timestamp":"1970-01-01T00:00:00.001Z","symbol":"B","spread":0.19999999999999999}';
  const cases = [
    // A duplicate key with the same double: the last one counts, as in JSON.parse.
    '{"ev":"XQ","pair":"B","bp":0.1,"bp":0.10000000000000001,"ap":0.3,"t":1,"x":null}',
    // A nested object's bp before the event's own.
    '{"ev":"XQ","pair":"B","m":{"bp":0.1},"bp":0.10000000000000001,"ap":0.3,"t":1}',
    // The same, the real key with whitespace before its colon.
    '{"ev":"XQ","pair":"B","m":{"bp":0.1},"bp" : 0.10000000000000001,"ap":0.3,"t":1}',
  ];
  for (const frame of cases) {
    deepStrictEqual(bothPaths(frame), { values: [exact], skipped: {} }, frame);
  }
  // Another event's bp, earlier in the frame.
  deepStrictEqual(
    bothPaths(
      '[{"ev":"XQ","pair":"A","bp":0.1,"ap":0.3,"t":-1},' +
        '{"ev":"XQ","pair":"B","bp":0.10000000000000001,"ap":0.3,"t":1,"x":true}]',
    ),
    { values: [exact], skipped: { bad_time: 1 } },
  );
});

Deno.test("finding 9: a t past 9999-12-31T23:59:59.999Z is bad_time on both paths", () => {
  deepStrictEqual(bothPaths(xq({ pair: "A", t: 253_402_300_799_999 })), {
    values: ['{"timestamp":"9999-12-31T23:59:59.999Z","symbol":"A","spread":1}'],
    skipped: {},
  });
  for (const t of [253_402_300_800_000, 8.64e15]) {
    deepStrictEqual(bothPaths(xq({ t })), { values: [], skipped: { bad_time: 1 } });
  }
});

Deno.test("finding 9: with a clock, a t more than 5 minutes ahead of it is time_out_of_range; behind only when bounded", () => {
  const now = Date.UTC(2026, 11, 2, 1, 0, 0);
  const clock = { now: () => now };
  const value = (t: number) =>
    `{"timestamp":"${new Date(t).toISOString()}","symbol":"BTC-USD","spread":1}`;
  for (const t of [now + 2 * 3_600_000, now + 300_001]) {
    deepStrictEqual(bothPaths(xq({ t }), { clock }), {
      values: [],
      skipped: { time_out_of_range: 1 },
    });
  }
  const inside = [now + 300_000, now, Date.UTC(2023, 6, 26)];
  for (const t of inside) {
    deepStrictEqual(bothPaths(xq({ t }), { clock }), { values: [value(t)], skipped: {} });
  }
  // A bound behind the clock, when asked for; without a clock (replay) no window at all.
  deepStrictEqual(bothPaths(xq({ t: now - 3_600_001 }), { clock, maxBehindMs: 3_600_000 }), {
    values: [],
    skipped: { time_out_of_range: 1 },
  });
  deepStrictEqual(bothPaths(xq({ t: now + 2 * 3_600_000 })), {
    values: [value(now + 2 * 3_600_000)],
    skipped: {},
  });
  // The clock is read for the first quote, then every 256 frames, and again before a skip.
  let reads = 0;
  let later = now;
  const counting = createSpreadTransform({ clock: { now: () => (reads++, later) } });
  const records: SpreadRecord[] = [];
  for (let i = 0; i < 300; i++) counting.frame(`[${xq({ t: now })},${xq({ t: now })}]`, records);
  equal(records.length, 600);
  equal(reads, 2);
  // A t ahead of the last reading but within the window of the clock now is a record.
  later = now + 60_000;
  counting.frame(xq({ t: now + 330_000 }), records);
  equal(records.length, 601);
  equal(reads, 3);
  counting.frame(xq({ t: now + 2 * 3_600_000 }), records);
  equal(reads, 4);
  deepStrictEqual(counting.skipped, { ...emptySkips(), time_out_of_range: 1 });
});

Deno.test("finding 1: a price whose text is longer than 64 characters is number_too_long on both paths", () => {
  const long = "1." + "0".repeat(62); // 64 characters: accepted
  equal(long.length, 64);
  deepStrictEqual(bothPaths(`{"ev":"XQ","pair":"A","bp":${long},"ap":2,"t":1}`), {
    values: ['{"timestamp":"1970-01-01T00:00:00.001Z","symbol":"A","spread":1}'],
    skipped: {},
  });
  for (
    const frame of [
      `{"ev":"XQ","pair":"A","bp":${long}0,"ap":2,"t":1}`,
      `{"ev":"XQ","pair":"A","bp":1,"ap":2${"0".repeat(64)},"t":1}`,
      `{"ev":"XQ","pair":"A","bp":1.${"5".repeat(1_500_000)},"ap":2,"t":1}`,
    ]
  ) {
    deepStrictEqual(bothPaths(frame), { values: [], skipped: { number_too_long: 1 } });
  }
});

Deno.test("finding 8: a frame nested too deep for the reviver keeps JSON.parse's outcome: nested_array, and its quotes' records", () => {
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  deepStrictEqual(bothPaths(`[${deep}]`), { values: [], skipped: { nested_array: 1 } });
  // A quote beside it still makes its record, from the doubles' shortest texts.
  deepStrictEqual(
    bothPaths(`[{"ev":"XQ","pair":"A","bp":1.5,"ap":1.75,"t":1,"x":${deep}},${deep}]`),
    {
      values: ['{"timestamp":"1970-01-01T00:00:00.001Z","symbol":"A","spread":0.25}'],
      skipped: { nested_array: 1 },
    },
  );
});
