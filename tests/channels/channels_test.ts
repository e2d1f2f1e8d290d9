import { deepStrictEqual, equal, ok, throws } from "../helpers/assert.ts";
import { checkFeed } from "../helpers/exact.ts";
import { createTradeTransform, TRADE_SKIP_REASONS, type TradeRecord } from "../../trades.ts";
import { BAR_SKIP_REASONS, type BarRecord, createBarTransform } from "../../bars.ts";
import { channelPlans, filtersFor, parseChannels } from "../../lib/channels/registry.ts";
import { createFrameRouter } from "../../lib/channels/router.ts";
import { ConfigError } from "../../lib/config/errors.ts";
import { IsoClock } from "../../lib/json_text.ts";
import { MAX_TIME_MS } from "../../lib/bounds.ts";
import type { ChannelTransformOptions } from "../../lib/channels/events.ts";
import { validateRecord } from "../../lib/consumer_output.ts";
import { generateFeed } from "../../lib/polygon/feed.ts";
import type { FrameTransform, OutRecord } from "../../lib/sink.ts";

const TOPICS = { topic: "q", gapsTopic: "q.gaps" };

/** Runs frames through the registry's transforms behind one router, as the producer does. */
function runChannels(channels: string[], frames: readonly string[]) {
  const plans = channelPlans(channels, TOPICS);
  const router = createFrameRouter(plans);
  const records = plans.map(() => [] as OutRecord[]);
  const events = plans.map(() => 0);
  for (const frame of frames) {
    router.route(frame, (i, part) => events[i]! += plans[i]!.transform.frame(part, records[i]!));
  }
  return plans.map((p, i) => ({
    channel: p.channel,
    events: events[i]!,
    records: records[i]!,
    skipped: Object.fromEntries(Object.entries(p.transform.skipped).filter(([, n]) => n > 0)),
    transform: p.transform,
  }));
}

Deno.test("the trade transform keeps Polygon's example exact, with the id as a string", () => {
  const records: TradeRecord[] = [];
  const n = createTradeTransform().frame(
    '[{"ev":"XT","pair":"BTC-USD","p":33021.9,"t":1610462007425,"s":0.01616617,"c":[2],' +
      '"i":14272084,"x":3,"r":1610462007576}]',
    records,
  );
  equal(n, 1);
  equal(
    records[0]!.value,
    '{"timestamp":"2021-01-12T14:33:27.425Z","symbol":"BTC-USD","price":33021.9,' +
      '"size":0.01616617,"id":"14272084","exchange":3,"conditions":[2]}',
  );
  equal(records[0]!.key, "BTC-USD");
  equal(records[0]!.timestamp, 1610462007425);
  deepStrictEqual(records[0]!.headers, { "schema-version": "1", "record-type": "trade" });
});

Deno.test("the trade transform keeps number text as sent: 20 digits, exponents, trailing zeros", () => {
  const records: TradeRecord[] = [];
  createTradeTransform().frame(
    '[{"ev":"XT","pair":"A-B","p":12345678901234567890.12,"s":1E-9,"t":0,"i":"a7"},' +
      '{"ev":"XT","pair":"A-B","p":1.2300,"s":9007199254740993,"t":1,"c":[],"i":90071992547409931}]',
    records,
  );
  equal(
    records[0]!.value,
    '{"timestamp":"1970-01-01T00:00:00.000Z","symbol":"A-B","price":12345678901234567890.12,' +
      '"size":1E-9,"id":"a7","exchange":null,"conditions":[]}',
  );
  equal(
    records[1]!.value,
    '{"timestamp":"1970-01-01T00:00:00.001Z","symbol":"A-B","price":1.2300,' +
      '"size":9007199254740993,"id":"90071992547409931","exchange":null,"conditions":[]}',
  );
});

Deno.test("the trade transform counts every hostile trade by reason and keeps the rest of the frame", () => {
  const t = createTradeTransform();
  const records: TradeRecord[] = [];
  const frame = [
    '{"ev":"XT","pair":"X-Y","s":1,"t":1}',
    '{"ev":"XT","pair":"X-Y","p":-1,"s":1,"t":1}',
    '{"ev":"XT","pair":"X-Y","p":1,"t":1}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":0,"t":1}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":-0.0,"t":1}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":1,"t":1.5}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":1,"t":1,"i":true}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":1,"t":1,"x":-3}',
    '{"ev":"XT","pair":"X-Y","p":1,"s":1,"t":1,"c":[1,"2"]}',
    '{"ev":"XT","p":1,"s":1,"t":1}',
    '{"ev":"status","status":"success"}',
    '{"ev":"XQ"}',
    "[]",
    "7",
    '{"ev":"XT","pair":"X-Y","p":2,"s":3,"t":4,"c":[9],"i":"k"}',
  ];
  equal(t.frame("[" + frame.join(",") + "]", records), frame.length);
  deepStrictEqual(
    Object.fromEntries(Object.entries(t.skipped).filter(([, n]) => n > 0)),
    {
      bad_price: 2,
      bad_size: 3,
      bad_time: 1,
      bad_id: 1,
      bad_exchange: 1,
      bad_conditions: 1,
      bad_pair: 1,
      status: 1,
      other_event: 1,
      nested_array: 1,
      not_an_object: 1,
    },
  );
  equal(records.length, 1);
  equal(t.unknownConditions, 1);
  equal(JSON.parse(records[0]!.value).conditions[0], 9);
  equal(t.frame("[{", records), 1);
  equal(t.skipped.invalid_json, 1);
});

Deno.test("the bar transform keeps Polygon's XA example exact (c is the close, s the start)", () => {
  const records: BarRecord[] = [];
  createBarTransform().frame(
    '[{"ev":"XA","pair":"BCD-USD","v":951.6112,"vw":0.7756,"z":73,"o":0.772,"c":0.784,' +
      '"h":0.784,"l":0.771,"s":1610463240000,"e":1610463300000}]',
    records,
  );
  equal(
    records[0]!.value,
    '{"timestamp":"2021-01-12T14:54:00.000Z","end":"2021-01-12T14:55:00.000Z",' +
      '"symbol":"BCD-USD","open":0.772,"high":0.784,"low":0.771,"close":0.784,' +
      '"volume":951.6112,"vwap":0.7756}',
  );
  equal(records[0]!.key, "BCD-USD");
});

Deno.test("the router sends each event of a mixed frame to its channel, verbatim, losing none", () => {
  const router = createFrameRouter(channelPlans(["XQ", "XT", "XA"], TOPICS));
  const got: [number, string][] = [];
  router.route(
    '[ {"ev":"XT","p":1.10} , {"ev":"XQ","x":{"ev":"XT"}},{"ev":"status"}, {"ev":"XA"},' +
      ' {"ev":"XT","s":"a,]}\\"ev\\":\\"XA"}, 3 ]',
    (i, text) => got.push([i, text]),
  );
  deepStrictEqual(got, [
    [0, '[{"ev":"XQ","x":{"ev":"XT"}},{"ev":"status"},3]'],
    [1, '[{"ev":"XT","p":1.10},{"ev":"XT","s":"a,]}\\"ev\\":\\"XA"}]'],
    [2, '[{"ev":"XA"}]'],
  ]);
  const whole: [number, string][] = [];
  router.route('[{"ev":"XT"},{"ev":"XT"}]', (i, t) => whole.push([i, t]));
  router.route('{"ev":"XA"}', (i, t) => whole.push([i, t]));
  router.route('[{"ev":"XT"},{"ev":"XQ"}', (i, t) => whole.push([i, t]));
  router.route('[{"ev":"XT"},{"ev":"XQ",}]', (i, t) => whole.push([i, t]));
  router.route('[{"ev":"XT"},42]', (i, t) => whole.push([i, t]));
  deepStrictEqual(whole, [
    [1, '[{"ev":"XT"},{"ev":"XT"}]'],
    [2, '{"ev":"XA"}'],
    [0, '[{"ev":"XT"},{"ev":"XQ"}'],
    [0, '[{"ev":"XT"},{"ev":"XQ",}]'],
    [0, "[42]"],
    [1, '[{"ev":"XT"}]'],
  ]);
});

Deno.test("the registry checks --channels and subscribes every pair on each channel", () => {
  deepStrictEqual(parseChannels(["xq", "XT", "XQ", " XA "]), ["XQ", "XT", "XA"]);
  throws(
    () => parseChannels(["XQ", "XL2"]),
    ConfigError,
    '--channels must list channels among XQ, XT, XA, got "XL2"',
  );
  throws(
    () => parseChannels([]),
    ConfigError,
    "--channels must list at least one channel among XQ, XT, XA",
  );
  deepStrictEqual(filtersFor(["XQ", "XT"], ["BTC-USD", "ETH-USD"]), [
    "XQ.BTC-USD",
    "XQ.ETH-USD",
    "XT.BTC-USD",
    "XT.ETH-USD",
  ]);
  deepStrictEqual(filtersFor(["XT", "XA"], ["*"]), ["XT.*", "XA.*"]);
  deepStrictEqual(
    channelPlans(["XQ", "XT", "XA"], { ...TOPICS, barsTopic: "my-bars" }).map((
      p,
    ) => [p.topic, p.gapsTopic]),
    [["q", "q.gaps"], ["q.trades", "q.trades.gaps"], ["my-bars", "my-bars.gaps"]],
  );
});

Deno.test("the seeded feed's trades, bars and spreads equal the BigInt reference, record for record", () => {
  const feed = generateFeed({ seed: 11, frames: 400, hostileEvery: 3 });
  const [xq, xt, xa] = runChannels(["XQ", "XT", "XA"], feed.frames);
  const mismatch = checkFeed(feed, {
    trades: xt!.records.map((r) => r.value),
    bars: xa!.records.map((r) => r.value),
    spreads: xq!.records.map((r) => r.value),
  });
  equal(mismatch, undefined);
  ok(
    feed.trades.length > 2000 && feed.bars.length > 20,
    `${feed.trades.length} ${feed.bars.length}`,
  );
  // Hostile events of every channel, counted by reason where the truth says.
  const want: Record<string, Record<string, number>> = { XQ: {}, XT: {}, XA: {} };
  for (const s of feed.skips) {
    const c = s.channel === "primary" ? "XQ" : s.channel;
    want[c]![s.reason] = (want[c]![s.reason] ?? 0) + 1;
  }
  deepStrictEqual(xq!.skipped, want.XQ);
  deepStrictEqual(xt!.skipped, want.XT);
  deepStrictEqual(xa!.skipped, want.XA);
  equal(
    (xt!.transform as unknown as { unknownConditions: number }).unknownConditions,
    feed.unknownConditions,
  );
  ok(feed.unknownConditions > 0 && Object.keys(want.XA!).length === 3);
  // Counts balance per channel.
  for (const c of [xq!, xt!, xa!]) {
    const skips = Object.values(c.skipped).reduce((a, b) => a + b, 0);
    equal(c.events, c.records.length + skips, c.channel);
  }
});

Deno.test("the trade and bar transforms' scan and their general path make the same records and skips", () => {
  const feed = generateFeed({ seed: 4, frames: 300, hostileEvery: 2 });
  const odd = [
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3,"p":4}]',
    '[ {"ev" : "XT" , "pair":"A-B","p": 1.50 ,"s":2e0,"t":3, "c" : [ 1 , 2 ] } ]',
    '{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3}',
    '[{"ev":"XT","pair":"A\\u002dB","p":1,"s":2,"t":3}]',
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3,"x":null}]',
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3,"c":[1,[2]]}]',
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3,"__proto__":"x"}]',
    '[{"ev":"XT","pair":"A-B","p":01,"s":2,"t":3}]',
    '[{"ev":"XT","pair":"A-B","p":1.,"s":2,"t":3}]',
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3},]',
    '[{"ev":"XT","pair":"A-B","p":-0,"s":2,"t":3}]',
    '[{"ev":"XA","pair":"A-B","o":1,"h":1,"l":1,"c":1,"v":0,"vw":0,"s":0,"e":0}] ',
    "[]",
    " [ ] ",
    "[1,2]",
    '"x"',
    "",
    '[{"ev":"XT","pair":"A-B","p":1,"s":2,"t":3}',
  ];
  const makers: ((o?: { scan?: boolean }) => FrameTransform)[] = [
    createTradeTransform,
    createBarTransform,
  ];
  for (const make of makers) {
    const fast = make();
    const slow = make({ scan: false });
    const a: OutRecord[] = [];
    const b: OutRecord[] = [];
    for (const frame of [...feed.frames, ...odd]) {
      equal(fast.frame(frame, a), slow.frame(frame, b), frame);
    }
    deepStrictEqual(a.map((r) => r.value), b.map((r) => r.value));
    deepStrictEqual(fast.skipped, slow.skipped);
    ok(a.length > 10);
  }
});

Deno.test("the cached ISO clock writes what toISOString writes, across seconds, up to 9999-12-31", () => {
  const clock = new IsoClock();
  // No transform passes it a later time (bad_time, below): a five-digit year is no ISO 8601 our
  // consumer reads.
  for (const t of [0, 1, 999, 1000, 1610462007425, MAX_TIME_MS - 1000, MAX_TIME_MS, 42]) {
    equal(clock.iso(t), new Date(t).toISOString(), String(t));
  }
  equal(clock.iso(MAX_TIME_MS), "9999-12-31T23:59:59.999Z");
});

/** A trade event's text, Polygon's example with `fields` changed. */
function xt(fields: Record<string, unknown>): string {
  return JSON.stringify({ ev: "XT", pair: "BTC-USD", p: 1, s: 2, t: 1610462007425, ...fields });
}

/** A bar event's text, Polygon's example with `fields` changed. */
function xa(fields: Record<string, unknown>): string {
  return JSON.stringify({
    ev: "XA",
    pair: "BTC-USD",
    o: 1,
    h: 1,
    l: 1,
    c: 1,
    v: 1,
    vw: 1,
    s: 1610463240000,
    e: 1610463300000,
    ...fields,
  });
}

type ChannelMaker = (options?: ChannelTransformOptions) => FrameTransform;

/**
 * One frame through a new transform on the scan and on the `JSON.parse` path: they must agree,
 * and the counts must balance (events = records + skips). Returns the values and the skips > 0.
 */
function bothPaths(
  make: ChannelMaker,
  frame: string,
  options: ChannelTransformOptions = {},
): { values: string[]; skipped: Record<string, number> } {
  const outcomes = [true, false].map((scan) => {
    const transform = make({ ...options, scan });
    const records: OutRecord[] = [];
    const events = transform.frame(frame, records);
    const skipped = Object.fromEntries(
      Object.entries(transform.skipped).filter(([, n]) => n > 0),
    );
    equal(events, records.length + Object.values(skipped).reduce((a, b) => a + b, 0), frame);
    return { values: records.map((r) => r.value), skipped };
  });
  deepStrictEqual(outcomes[0], outcomes[1], `scan and JSON.parse differ on ${frame}`);
  return outcomes[0]!;
}

/** The value's timestamp as our own consumer reads it, or why it refuses the record. */
function consumed(value: string): string {
  const v = validateRecord(value);
  return typeof v === "string" ? v : v.timestamp;
}

Deno.test("finding 9: a trade's t past 9999-12-31T23:59:59.999Z is bad_time on both paths; the last ms is a record the consumer reads", () => {
  const last = bothPaths(createTradeTransform, `[${xt({ t: MAX_TIME_MS })}]`);
  deepStrictEqual(last, {
    values: [
      '{"timestamp":"9999-12-31T23:59:59.999Z","symbol":"BTC-USD","price":1,"size":2,' +
      '"id":null,"exchange":null,"conditions":[]}',
    ],
    skipped: {},
  });
  equal(consumed(last.values[0]!), "9999-12-31T23:59:59.999Z");
  for (const t of [MAX_TIME_MS + 1, 8.64e15, 8.64e15 + 1]) {
    deepStrictEqual(bothPaths(createTradeTransform, xt({ t })), {
      values: [],
      skipped: { bad_time: 1 },
    });
  }
  // The one frame: the good trade comes through, the five-digit year is counted.
  deepStrictEqual(
    bothPaths(createTradeTransform, `[${xt({ t: MAX_TIME_MS + 1 })},${xt({ t: 0 })}]`),
    {
      values: [
        '{"timestamp":"1970-01-01T00:00:00.000Z","symbol":"BTC-USD","price":1,"size":2,' +
        '"id":null,"exchange":null,"conditions":[]}',
      ],
      skipped: { bad_time: 1 },
    },
  );
});

Deno.test("finding 9: a bar's s or e past 9999-12-31T23:59:59.999Z is bad_time on both paths; the last minute is a record the consumer reads", () => {
  const start = MAX_TIME_MS - 59_999;
  const last = bothPaths(createBarTransform, xa({ s: start, e: MAX_TIME_MS }));
  deepStrictEqual(last, {
    values: [
      '{"timestamp":"9999-12-31T23:59:00.000Z","end":"9999-12-31T23:59:59.999Z",' +
      '"symbol":"BTC-USD","open":1,"high":1,"low":1,"close":1,"volume":1,"vwap":1}',
    ],
    skipped: {},
  });
  equal(consumed(last.values[0]!), "9999-12-31T23:59:00.000Z");
  for (
    const [s, e] of [[start, MAX_TIME_MS + 1], [MAX_TIME_MS + 1, MAX_TIME_MS + 60_001], [
      8.64e15,
      8.64e15,
    ]]
  ) {
    deepStrictEqual(bothPaths(createBarTransform, xa({ s, e })), {
      values: [],
      skipped: { bad_time: 1 },
    });
  }
});

Deno.test("finding 9: with a clock, a trade's t more than 5 minutes ahead of it is time_out_of_range on both paths; behind only when bounded", () => {
  const now = Date.UTC(2026, 11, 2, 1, 0, 0);
  const clock = { now: () => now };
  const value = (t: number) =>
    `{"timestamp":"${
      new Date(t).toISOString()
    }","symbol":"BTC-USD","price":1,"size":2,"id":null,"exchange":null,"conditions":[]}`;
  for (const t of [now + 2 * 3_600_000, now + 300_001]) {
    deepStrictEqual(bothPaths(createTradeTransform, xt({ t }), { clock }), {
      values: [],
      skipped: { time_out_of_range: 1 },
    });
  }
  for (const t of [now + 300_000, now, Date.UTC(2021, 0, 12)]) {
    deepStrictEqual(bothPaths(createTradeTransform, xt({ t }), { clock }), {
      values: [value(t)],
      skipped: {},
    });
  }
  deepStrictEqual(
    bothPaths(createTradeTransform, xt({ t: now - 3_600_001 }), {
      clock,
      maxBehindMs: 3_600_000,
    }),
    { values: [], skipped: { time_out_of_range: 1 } },
  );
  // Without a clock (replay) no window at all; the fixed bound still holds.
  deepStrictEqual(bothPaths(createTradeTransform, xt({ t: now + 2 * 3_600_000 })), {
    values: [value(now + 2 * 3_600_000)],
    skipped: {},
  });
  deepStrictEqual(bothPaths(createTradeTransform, xt({ t: MAX_TIME_MS + 1 }), { clock }), {
    values: [],
    skipped: { bad_time: 1 },
  });
});

Deno.test("finding 9: with a clock, a bar whose s or e is more than 5 minutes ahead of it is time_out_of_range on both paths", () => {
  const now = Date.UTC(2026, 11, 2, 1, 0, 0);
  const clock = { now: () => now };
  const cases: [number, number, Record<string, number>][] = [
    [now - 60_000, now, {}],
    [now + 240_000, now + 300_000, {}],
    [now + 250_000, now + 310_000, { time_out_of_range: 1 }],
    [now + 3_600_000, now + 3_660_000, { time_out_of_range: 1 }],
    // Out of range and e before s: bad_time first, as the fixed bounds come first.
    [now + 3_600_000, now, { bad_time: 1 }],
  ];
  for (const [s, e, skipped] of cases) {
    const got = bothPaths(createBarTransform, xa({ s, e }), { clock });
    deepStrictEqual(got.skipped, skipped, `${s} ${e}`);
    equal(got.values.length, Object.keys(skipped).length === 0 ? 1 : 0);
  }
  deepStrictEqual(
    bothPaths(createBarTransform, xa({ s: now - 3_660_000, e: now - 3_600_000 }), {
      clock,
      maxBehindMs: 3_600_000,
    }).skipped,
    { time_out_of_range: 1 },
  );
  deepStrictEqual(
    bothPaths(createBarTransform, xa({ s: now + 3_600_000, e: now + 3_660_000 })).skipped,
    {},
  );
});

Deno.test("finding 9: the trade and bar transforms read the clock lazily: first event, every 256 frames, before a skip", () => {
  const now = Date.UTC(2026, 11, 2, 1, 0, 0);
  const makers: [ChannelMaker, (t: number) => string][] = [
    [createTradeTransform, (t) => xt({ t })],
    [createBarTransform, (t) => xa({ s: t - 60_000, e: t })],
  ];
  for (const [make, event] of makers) {
    let reads = 0;
    let later = now;
    const transform = make({ clock: { now: () => (reads++, later) } });
    const records: OutRecord[] = [];
    for (let i = 0; i < 300; i++) transform.frame(`[${event(now)},${event(now)}]`, records);
    equal(records.length, 600);
    equal(reads, 2);
    // Ahead of the last reading but within the window of the clock now: a record.
    later = now + 60_000;
    transform.frame(event(now + 330_000), records);
    equal(records.length, 601);
    equal(reads, 3);
    transform.frame(event(now + 2 * 3_600_000), records);
    equal(reads, 4);
    equal(records.length, 601);
    equal(transform.skipped.time_out_of_range, 1);
  }
});

Deno.test("finding 9: the registry gives every channel's transform the producer's clock", () => {
  const now = Date.UTC(2026, 11, 2, 1, 0, 0);
  const plans = channelPlans(["XQ", "XT", "XA"], TOPICS, { clock: { now: () => now } });
  const ahead = now + 3_600_000;
  const frames = [
    JSON.stringify({ ev: "XQ", pair: "BTC-USD", bp: 1, ap: 2, t: ahead }),
    xt({ t: ahead }),
    xa({ s: ahead, e: ahead + 60_000 }),
  ];
  const skipped = plans.map((p, i) => {
    const records: OutRecord[] = [];
    equal(p.transform.frame(frames[i]!, records), 1);
    equal(records.length, 0, p.channel);
    return Object.fromEntries(Object.entries(p.transform.skipped).filter(([, n]) => n > 0));
  });
  deepStrictEqual(skipped, [
    { time_out_of_range: 1 },
    { time_out_of_range: 1 },
    { time_out_of_range: 1 },
  ]);
  // Every channel reports the same time skip reasons, by the same names.
  for (const reasons of [TRADE_SKIP_REASONS, BAR_SKIP_REASONS]) {
    deepStrictEqual(
      reasons.filter((r) => r === "bad_time" || r === "time_out_of_range"),
      ["bad_time", "time_out_of_range"],
    );
  }
});
