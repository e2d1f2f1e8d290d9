/**
 * The XT (crypto trades) transform: the text of one Polygon frame in, exact trade records and
 * skip counts out. Pure: no I/O; the clock, when live, is passed in. Live data, replay and the
 * tests all use it.
 *
 * Record value:
 * `{"timestamp":"<t as ISO 8601 UTC ms>","symbol":"<pair>","price":<p>,"size":<s>,"id":"<i>"|null,"exchange":<x>|null,"conditions":[<c>…]}`,
 * with `price` and `size` the number texts exactly as Polygon sent them (never through a float).
 * Key = symbol. Conditions as Polygon sends them: 1 sell side, 2 buy side (README, "Trades").
 *
 * Bounds (lib/bounds.ts, shared with the spread transform): a `t` past 9999-12-31T23:59:59.999Z
 * is `bad_time`, and with a clock passed in (live), a `t` more than `maxAheadMs` (5 minutes)
 * after it, or `maxBehindMs` before it, is `time_out_of_range`.
 */
import {
  type ChannelTransformOptions,
  FRAME_SKIP_REASONS,
  readChannelFrame,
} from "./lib/channels/events.ts";
import { TimeBounds } from "./lib/bounds.ts";
import { IsoClock, NumberText, positiveText, smallIntOf, timeOf } from "./lib/json_text.ts";
import { type FrameTransform, type OutRecord, SCHEMA_VERSION } from "./lib/sink.ts";

/** The Polygon channel the trade transform maps: crypto trades. */
export const TRADE_CHANNEL = "XT";

/** Why a trade event (or a frame) produced no record, in a stable order for reports. */
export const TRADE_SKIP_REASONS = [
  ...FRAME_SKIP_REASONS,
  /** `p` is missing, not a number, not above zero, or longer than 64 characters. */
  "bad_price",
  /** `s` is missing, not a number, not above zero, or longer than 64 characters. */
  "bad_size",
  /** `t` is missing or not a whole non-negative number of ms up to 9999-12-31T23:59:59.999Z. */
  "bad_time",
  /** `t` is further from the local clock than the transform allows (live only). */
  "time_out_of_range",
  /** `i` is neither a whole number ≥ 0 nor a string of 1 to 64 characters. */
  "bad_id",
  /** `x` is present but not a whole number ≥ 0. */
  "bad_exchange",
  /** `c` is present but not an array of whole numbers ≥ 0. */
  "bad_conditions",
] as const;

/** A reason of {@linkcode TRADE_SKIP_REASONS}. */
export type TradeSkipReason = (typeof TRADE_SKIP_REASONS)[number];

/** Trade skip counts by reason. */
export type TradeSkipCounts = Record<TradeSkipReason, number>;

/** The condition codes Polygon documents for crypto trades: 0 none, 1 sell side, 2 buy side. */
export const KNOWN_CONDITIONS: readonly number[] = [0, 1, 2];

/** Headers of every trade record. */
export const TRADE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "schema-version": SCHEMA_VERSION,
  "record-type": "trade",
});

/** One trade record: a Kafka-ready {@linkcode OutRecord} plus the fields telemetry needs. */
export interface TradeRecord extends OutRecord {
  /** The pair, also the key. */
  symbol: string;
  /** Exact price, the number text as sent. */
  price: string;
  /** Exact size, the number text as sent. */
  size: string;
  /** Exchange time `t`, ms. */
  t: number;
}

const MAX_ID_LENGTH = 64;

/** The XT transform; made by {@linkcode createTradeTransform}, one per pipeline. */
export class TradeTransform implements FrameTransform<TradeRecord> {
  /** The Polygon channel it maps: crypto trades. */
  readonly channel = TRADE_CHANNEL;
  /** Skips by reason since it was made. */
  readonly skipped: TradeSkipCounts = Object.fromEntries(
    TRADE_SKIP_REASONS.map((r) => [r, 0]),
  ) as TradeSkipCounts;
  /**
   * Trades kept whose conditions hold a code Polygon does not document (not 0, 1 or 2): a
   * record is still made, with the codes as sent; this counts them.
   */
  unknownConditions = 0;

  readonly #scan: boolean;
  readonly #iso = new IsoClock();
  readonly #bounds: TimeBounds;

  /**
   * Use the factory. `scan: false` reads every frame by the general path (for tests); `clock`
   * bounds a live `t` (see {@linkcode ChannelTransformOptions}).
   */
  constructor(options: ChannelTransformOptions = {}) {
    this.#scan = options.scan ?? true;
    this.#bounds = new TimeBounds(options);
  }

  /**
   * Appends the records of one frame to `records`, in frame order, and counts skips. Returns
   * the number of events seen. Never throws on bad input.
   */
  frame(text: string, records: TradeRecord[]): number {
    this.#bounds.frame();
    return readChannelFrame(text, TRADE_CHANNEL, this.skipped, (e, pair) => {
      const record = this.#trade(e, pair);
      if (record !== undefined) records.push(record);
    }, { scan: this.#scan });
  }

  #trade(e: Record<string, unknown>, pair: string): TradeRecord | undefined {
    const skipped = this.skipped;
    const price = positiveText(e.p);
    if (price === undefined) {
      skipped.bad_price++;
      return undefined;
    }
    const size = positiveText(e.s);
    if (size === undefined) {
      skipped.bad_size++;
      return undefined;
    }
    const t = timeOf(e.t);
    const late = this.#bounds.check(t);
    if (late !== undefined) {
      skipped[late]++;
      return undefined;
    }
    let id: string | null = null;
    if (e.i !== undefined && e.i !== null) {
      if (e.i instanceof NumberText && isDigits(e.i.text)) id = e.i.text;
      else if (typeof e.i === "string" && e.i.length > 0 && e.i.length <= MAX_ID_LENGTH) id = e.i;
      else {
        skipped.bad_id++;
        return undefined;
      }
    }
    let exchange: number | null = null;
    if (e.x !== undefined && e.x !== null) {
      const x = smallIntOf(e.x);
      if (x === undefined) {
        skipped.bad_exchange++;
        return undefined;
      }
      exchange = x;
    }
    const conditions: number[] = [];
    if (e.c !== undefined && e.c !== null) {
      if (!Array.isArray(e.c)) {
        skipped.bad_conditions++;
        return undefined;
      }
      let unknown = false;
      for (const code of e.c) {
        const n = smallIntOf(code);
        if (n === undefined) {
          skipped.bad_conditions++;
          return undefined;
        }
        if (!KNOWN_CONDITIONS.includes(n)) unknown = true;
        conditions.push(n);
      }
      if (unknown) this.unknownConditions++;
    }
    const value = '{"timestamp":"' + this.#iso.iso(t) + '","symbol":' +
      JSON.stringify(pair) + ',"price":' + price + ',"size":' + size + ',"id":' +
      (id === null ? "null" : JSON.stringify(id)) + ',"exchange":' +
      (exchange === null ? "null" : String(exchange)) + ',"conditions":[' + conditions.join(",") +
      "]}";
    return { key: pair, value, timestamp: t, headers: TRADE_HEADERS, symbol: pair, price, size, t };
  }
}

/** A trade id sent as a number: a whole number ≥ 0 in plain digits (no sign, point, exponent). */
function isDigits(text: string): boolean {
  if (text.length > MAX_ID_LENGTH) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * A new trade transform with its own skip counts: one per pipeline (or replay).
 * @example
 * ```ts
 * const trades = createTradeTransform();
 * const records: TradeRecord[] = [];
 * trades.frame('[{"ev":"XT","pair":"BTC-USD","p":33021.90,"s":0.01616617,"t":1610462007425,"i":14272084,"x":3,"c":[2]}]', records);
 * records[0].value;
 * // {"timestamp":"2021-01-12T14:33:27.425Z","symbol":"BTC-USD","price":33021.90,"size":0.01616617,"id":"14272084","exchange":3,"conditions":[2]}
 * ```
 */
export function createTradeTransform(options: ChannelTransformOptions = {}): TradeTransform {
  return new TradeTransform(options);
}
