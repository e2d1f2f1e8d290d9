/**
 * A seeded feed of every channel the producer carries, for the fake Polygon server
 * (`startFakePolygon({ frames: generateFeed(o).frames })`), the tests and the benchmarks:
 * frames that mix quotes (XQ), trades (XT) and minute bars (XA) as Polygon sends them (see
 * /work/research/issue23.md: `i` a number or a string, fractional `v`, `c` the close of a bar and
 * the conditions of a trade), plus hostile variants of each channel. Beside the frames it returns
 * the truth: every trade and bar as exact decimals (BigInt coefficient and scale), every event
 * that must be skipped with its channel and reason, so a test can build its reference without
 * the transforms' code. Pure: no I/O.
 */

/** An exact decimal: `coef × 10^-scale`. */
export interface Exact {
  coef: bigint;
  scale: number;
}

/** A trade as generated. */
export interface TradeTruth {
  pair: string;
  price: Exact;
  size: Exact;
  t: number;
  /** The id as the record must carry it (a number `i` as its digits). */
  id: string | null;
  exchange: number;
  conditions: number[];
}

/** A minute bar as generated. */
export interface BarTruth {
  pair: string;
  open: Exact;
  high: Exact;
  low: Exact;
  close: Exact;
  volume: Exact;
  vwap: Exact;
  start: number;
  end: number;
}

/** A quote as generated (plain decimals: the spread transform's own tests cover the rest). */
export interface QuoteTruth {
  pair: string;
  bid: Exact;
  ask: Exact;
  t: number;
}

/** An event that must make no record: the channel that counts it, and why. */
export interface SkipTruth {
  channel: string;
  reason: string;
}

/** Options for {@linkcode generateFeed}. */
export interface FeedOptions {
  /** PRNG seed. Default 7. */
  seed?: number;
  /** Frames to generate. Default 100. */
  frames?: number;
  /** Pairs. Default BTC-USD, ETH-USD, SOL-USD. */
  pairs?: readonly string[];
  /** Quotes per frame. Default 5. */
  quotesPerFrame?: number;
  /** Trades per frame. Default 5. */
  tradesPerFrame?: number;
  /** One bar per pair every this many frames (0: none). Default 50. */
  barEvery?: number;
  /** A hostile event every this many frames, cycling through the variants (0: none). Default 0. */
  hostileEvery?: number;
  /** Exchange time of the first frame, ms. Default 2024-03-01T00:00:00Z. */
  startMs?: number;
  /** Exchange ms between frames. Default 3. */
  msPerFrame?: number;
}

/** What {@linkcode generateFeed} returns. */
export interface Feed {
  /** Frame texts, JSON arrays, in order. */
  frames: string[];
  trades: TradeTruth[];
  bars: BarTruth[];
  quotes: QuoteTruth[];
  /** Events that must be skipped, in order. */
  skips: SkipTruth[];
  /** Trades kept whose conditions hold a code Polygon does not document. */
  unknownConditions: number;
}

/** mulberry32: a small seeded PRNG with floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes an exact decimal as JSON number text, in one of several styles Polygon may send. */
function numberText(x: Exact, style: number): string {
  const digits = x.coef.toString();
  if (style === 1 && x.coef !== 0n) {
    // Exponent form: d.ddd e±n
    const exp = digits.length - 1 - x.scale;
    const mantissa = digits.length === 1 ? digits : digits[0] + "." + digits.slice(1);
    return mantissa + (exp < 0 ? "e-" + -exp : "E+" + exp);
  }
  if (style === 2 && x.scale > 0) {
    // Trailing zeros, as a sender that pads may write them.
    return plain({ coef: x.coef * 100n, scale: x.scale + 2 });
  }
  return plain(x);
}

function plain(x: Exact): string {
  let digits = x.coef.toString();
  if (x.scale === 0) return digits;
  if (digits.length <= x.scale) digits = "0".repeat(x.scale - digits.length + 1) + digits;
  return digits.slice(0, digits.length - x.scale) + "." + digits.slice(digits.length - x.scale);
}

const BASE_PRICES: Record<string, [bigint, number]> = {
  "BTC-USD": [6123456n, 2],
  "ETH-USD": [345678n, 2],
  "SOL-USD": [1234567n, 4],
};

/**
 * A seeded feed; the same options give the same frames and truth.
 * @example
 * ```ts
 * const feed = generateFeed({ seed: 1, frames: 10, hostileEvery: 2 });
 * startFakePolygon({ frames: feed.frames });
 * ```
 */
export function generateFeed(options: FeedOptions = {}): Feed {
  const random = mulberry32(options.seed ?? 7);
  const pairs = options.pairs ?? ["BTC-USD", "ETH-USD", "SOL-USD"];
  const frameCount = options.frames ?? 100;
  const quotesPerFrame = options.quotesPerFrame ?? 5;
  const tradesPerFrame = options.tradesPerFrame ?? 5;
  const barEvery = options.barEvery ?? 50;
  const hostileEvery = options.hostileEvery ?? 0;
  const startMs = options.startMs ?? Date.UTC(2024, 2, 1);
  const msPerFrame = options.msPerFrame ?? 3;
  const feed: Feed = {
    frames: [],
    trades: [],
    bars: [],
    quotes: [],
    skips: [],
    unknownConditions: 0,
  };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const int = (n: number) => Math.floor(random() * n);
  let tradeId = 100_000_000;
  let hostile = 0;
  const priceOf = (pair: string): Exact => {
    const [coef, scale] = BASE_PRICES[pair] ?? [100000n, 3];
    return { coef: coef + BigInt(int(2000) - 1000), scale };
  };

  for (let f = 0; f < frameCount; f++) {
    const t = startMs + f * msPerFrame;
    const events: string[] = [];
    for (let q = 0; q < quotesPerFrame; q++) {
      const pair = pick(pairs);
      const bid = priceOf(pair);
      const ask = { coef: bid.coef + BigInt(1 + int(50)), scale: bid.scale };
      feed.quotes.push({ pair, bid, ask, t });
      events.push(
        `{"ev":"XQ","pair":"${pair}","bp":${plain(bid)},"bs":0.5,"ap":${plain(ask)},` +
          `"as":1.25,"t":${t},"x":1,"r":${t + 7}}`,
      );
    }
    for (let k = 0; k < tradesPerFrame; k++) {
      const pair = pick(pairs);
      let price = priceOf(pair);
      const roll = random();
      // 1 in 10: a price of 16 to 22 significant digits (beyond a double's 15-17).
      if (roll < 0.1) {
        price = {
          coef: price.coef * 10n ** 14n + BigInt(int(1e9)) * 1000n + 7n,
          scale: price.scale + 14,
        };
      }
      const size: Exact = { coef: BigInt(1 + int(99_999_999)), scale: 8 };
      const numericId = random() < 0.5;
      const id = String(tradeId++);
      const conditionRoll = random();
      const conditions = conditionRoll < 0.45
        ? [1]
        : conditionRoll < 0.9
        ? [2]
        : conditionRoll < 0.95
        ? []
        : [0];
      const exchange = 1 + int(6);
      feed.trades.push({ pair, price, size, t, id, exchange, conditions });
      events.push(
        `{"ev":"XT","pair":"${pair}","p":${numberText(price, int(3))},"t":${t},` +
          `"s":${numberText(size, int(3))},"c":[${conditions.join(",")}],` +
          `"i":${numericId ? id : `"${id}"`},"x":${exchange},"r":${t + 9}}`,
      );
    }
    if (barEvery > 0 && f % barEvery === barEvery - 1) {
      const start = t - (t % 60_000);
      for (const pair of pairs) {
        const open = priceOf(pair);
        const close = priceOf(pair);
        const low = {
          coef: (open.coef < close.coef ? open.coef : close.coef) - 5n,
          scale: open.scale,
        };
        const high = {
          coef: (open.coef > close.coef ? open.coef : close.coef) + 5n,
          scale: open.scale,
        };
        const volume: Exact = { coef: BigInt(1 + int(1e9)), scale: 4 };
        const vwap: Exact = { coef: low.coef * 100n + BigInt(int(1000)), scale: low.scale + 2 };
        const bar = { pair, open, high, low, close, volume, vwap, start, end: start + 60_000 };
        feed.bars.push(bar);
        events.push(
          `{"ev":"XA","pair":"${pair}","v":${numberText(volume, int(3))},` +
            `"vw":${numberText(vwap, int(3))},"z":73,"o":${plain(open)},"c":${plain(close)},` +
            `"h":${plain(high)},"l":${plain(low)},"s":${start},"e":${start + 60_000}}`,
        );
      }
    }
    if (hostileEvery > 0 && f % hostileEvery === 0) {
      const [text, skip] = HOSTILE[hostile++ % HOSTILE.length]!(t);
      if (skip === "unknown_condition") {
        // Kept: a record is still made, with the code as sent.
        feed.unknownConditions++;
        feed.trades.push({
          pair: "BTC-USD",
          price: { coef: 1n, scale: 0 },
          size: { coef: 1n, scale: 0 },
          t,
          id: "h1",
          exchange: 1,
          conditions: [7],
        });
      } else if (skip !== undefined) feed.skips.push(skip);
      events.splice(int(events.length + 1), 0, text);
    }
    // Shuffle lightly: channels interleave within a frame, as on the wire.
    for (let i = events.length - 1; i > 0; i--) {
      if (random() < 0.3) {
        const j = int(i + 1);
        [events[i], events[j]] = [events[j]!, events[i]!];
      }
    }
    feed.frames.push("[" + events.join(",") + "]");
  }
  // Re-derive the truth order: a shuffle moves events within a frame, and a consumer reads
  // each symbol's partition in order; the tests compare per symbol in frame order, so keep the
  // truth in the order of the frames' text.
  feed.trades = orderByText(feed.frames, feed.trades, tradeKey, "XT");
  feed.bars = orderByText(feed.frames, feed.bars, barKey, "XA");
  return feed;
}

function tradeKey(t: TradeTruth): string {
  return t.id ?? "";
}
function barKey(b: BarTruth): string {
  return `${b.pair}@${b.start}`;
}

/** The truth in the order its events appear in the frames (found by id or pair and start). */
function orderByText<T>(
  frames: readonly string[],
  truth: readonly T[],
  key: (x: T) => string,
  ev: string,
): T[] {
  const byKey = new Map<string, T[]>();
  for (const x of truth) {
    const list = byKey.get(key(x)) ?? [];
    list.push(x);
    byKey.set(key(x), list);
  }
  const out: T[] = [];
  for (const frame of frames) {
    for (const e of JSON.parse(frame) as unknown[]) {
      if (typeof e !== "object" || e === null) continue;
      const o = e as Record<string, unknown>;
      if (o.ev !== ev) continue;
      const k = ev === "XT" ? String(o.i) : `${o.pair}@${o.s}`;
      const x = byKey.get(k)?.shift();
      if (x !== undefined) out.push(x);
    }
  }
  return out;
}

type Hostile = (t: number) => [string, SkipTruth | "unknown_condition" | undefined];

/** The hostile variants, one per call in turn; what each must be counted as. */
const HOSTILE: readonly Hostile[] = [
  (t) => [`{"ev":"XT","pair":"BTC-USD","t":${t},"s":0.1,"c":[1],"i":"x1","x":1}`, {
    channel: "XT",
    reason: "bad_price",
  }],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":100.5,"t":${t},"c":[1],"i":"x2","x":1}`, {
    channel: "XT",
    reason: "bad_size",
  }],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":100.5,"s":-0.5,"t":${t},"i":"x3","x":1}`, {
    channel: "XT",
    reason: "bad_size",
  }],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":100.5,"s":0,"t":${t},"i":"x4","x":1}`, {
    channel: "XT",
    reason: "bad_size",
  }],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":"100.5","s":1,"t":${t},"i":"x5","x":1}`, {
    channel: "XT",
    reason: "bad_price",
  }],
  (
    t,
  ) => [
    `{"ev":"XT","pair":"BTC-USD","p":1,"s":1,"t":${t},"c":[7],"i":"h1","x":1}`,
    "unknown_condition",
  ],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":1,"s":1,"t":${t},"i":1.5,"x":1}`, {
    channel: "XT",
    reason: "bad_id",
  }],
  (t) => [`{"ev":"XT","pair":"BTC-USD","p":1,"s":1,"t":${t},"c":"2","i":"x6","x":1}`, {
    channel: "XT",
    reason: "bad_conditions",
  }],
  () => [`{"ev":"XT","pair":"BTC-USD","p":1,"s":1,"i":"x7","x":1}`, {
    channel: "XT",
    reason: "bad_time",
  }],
  (t) => [`{"ev":"XQ","pair":"BTC-USD","ap":2,"t":${t}}`, { channel: "XQ", reason: "bad_bid" }],
  (t) => [`{"ev":"XQ","pair":"BTC-USD","bp":1,"ap":0,"t":${t}}`, {
    channel: "XQ",
    reason: "bad_ask",
  }],
  (t) => [`{"ev":"XA","pair":"BTC-USD","v":1,"vw":1,"o":1,"h":1,"l":1,"s":${t},"e":${t + 60000}}`, {
    channel: "XA",
    reason: "bad_price",
  }],
  (
    t,
  ) => [
    `{"ev":"XA","pair":"BTC-USD","v":-1,"vw":1,"o":1,"c":1,"h":1,"l":1,"s":${t},"e":${t + 60000}}`,
    {
      channel: "XA",
      reason: "bad_volume",
    },
  ],
  (
    t,
  ) => [`{"ev":"XA","pair":"BTC-USD","v":1,"vw":1,"o":1,"c":1,"h":1,"l":1,"s":${t},"e":${t - 1}}`, {
    channel: "XA",
    reason: "bad_time",
  }],
  // No channel's: counted by the primary channel (the first of --channels).
  () => [`42`, { channel: "primary", reason: "not_an_object" }],
  () => [`{"ev":"XL2","t":1}`, { channel: "primary", reason: "other_event" }],
];
