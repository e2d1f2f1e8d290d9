/**
 * The XA (crypto minute bars) transform: the text of one Polygon frame in, exact bar records and
 * skip counts out. Pure: no I/O; the clock, when live, is passed in.
 *
 * Record value:
 * `{"timestamp":"<s as ISO 8601 UTC ms>","end":"<e as ISO>","symbol":"<pair>","open":<o>,"high":<h>,"low":<l>,"close":<c>,"volume":<v>,"vwap":<vw>}`,
 * every number the text exactly as Polygon sent it. Key = symbol. In XA `c` is the close and
 * `s` the start, unlike XT, where they are the conditions and the size.
 *
 * Bounds (lib/bounds.ts, shared with the spread transform): an `s` or `e` past
 * 9999-12-31T23:59:59.999Z is `bad_time`, and with a clock passed in (live), an `s` or `e` more
 * than `maxAheadMs` (5 minutes) after it, or `maxBehindMs` before it, is `time_out_of_range`.
 */
import {
  type ChannelTransformOptions,
  FRAME_SKIP_REASONS,
  readChannelFrame,
} from "./lib/channels/events.ts";
import { isTime, TimeBounds } from "./lib/bounds.ts";
import { IsoClock, nonNegativeText, positiveText, timeOf } from "./lib/json_text.ts";
import { type FrameTransform, type OutRecord, SCHEMA_VERSION } from "./lib/sink.ts";

/** The Polygon channel the bar transform maps: crypto aggregates per minute. */
export const BAR_CHANNEL = "XA";

/** Why a bar event (or a frame) produced no record, in a stable order for reports. */
export const BAR_SKIP_REASONS = [
  ...FRAME_SKIP_REASONS,
  /** `o`, `h`, `l` or `c` is missing, not a number, not above zero, or over 64 characters. */
  "bad_price",
  /** `v` is missing, not a number, below zero, or over 64 characters. */
  "bad_volume",
  /** `vw` is missing, not a number, below zero, or over 64 characters. */
  "bad_vwap",
  /** `s` or `e` is not a whole number of ms ≥ 0 up to 9999-12-31T23:59:59.999Z, or `e` < `s`. */
  "bad_time",
  /** `s` or `e` is further from the local clock than the transform allows (live only). */
  "time_out_of_range",
] as const;

/** A reason of {@linkcode BAR_SKIP_REASONS}. */
export type BarSkipReason = (typeof BAR_SKIP_REASONS)[number];

/** Bar skip counts by reason. */
export type BarSkipCounts = Record<BarSkipReason, number>;

/** Headers of every bar record. */
export const BAR_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "schema-version": SCHEMA_VERSION,
  "record-type": "bar",
});

/** One bar record: a Kafka-ready {@linkcode OutRecord} plus the fields telemetry needs. */
export interface BarRecord extends OutRecord {
  /** The pair, also the key. */
  symbol: string;
  /** Exact close, the number text as sent. */
  close: string;
  /** Start of the bar, ms. */
  start: number;
  /** End of the bar, ms. */
  end: number;
}

/** The XA transform; made by {@linkcode createBarTransform}, one per pipeline. */
export class BarTransform implements FrameTransform<BarRecord> {
  /** The Polygon channel it maps: minute bars. */
  readonly channel = BAR_CHANNEL;
  /** Skips by reason since it was made. */
  readonly skipped: BarSkipCounts = Object.fromEntries(
    BAR_SKIP_REASONS.map((r) => [r, 0]),
  ) as BarSkipCounts;

  readonly #scan: boolean;
  readonly #startClock = new IsoClock();
  readonly #endClock = new IsoClock();
  readonly #bounds: TimeBounds;

  /**
   * Use the factory. `scan: false` reads every frame by the general path (for tests); `clock`
   * bounds a live `s` and `e` (see {@linkcode ChannelTransformOptions}).
   */
  constructor(options: ChannelTransformOptions = {}) {
    this.#scan = options.scan ?? true;
    this.#bounds = new TimeBounds(options);
  }

  /**
   * Appends the records of one frame to `records`, in frame order, and counts skips. Returns
   * the number of events seen. Never throws on bad input.
   */
  frame(text: string, records: BarRecord[]): number {
    this.#bounds.frame();
    return readChannelFrame(text, BAR_CHANNEL, this.skipped, (e, pair) => {
      const record = this.#bar(e, pair);
      if (record !== undefined) records.push(record);
    }, { scan: this.#scan });
  }

  #bar(e: Record<string, unknown>, pair: string): BarRecord | undefined {
    const skipped = this.skipped;
    const open = positiveText(e.o);
    const high = positiveText(e.h);
    const low = positiveText(e.l);
    const close = positiveText(e.c);
    if (open === undefined || high === undefined || low === undefined || close === undefined) {
      skipped.bad_price++;
      return undefined;
    }
    const volume = nonNegativeText(e.v);
    if (volume === undefined) {
      skipped.bad_volume++;
      return undefined;
    }
    const vwap = nonNegativeText(e.vw);
    if (vwap === undefined) {
      skipped.bad_vwap++;
      return undefined;
    }
    const start = timeOf(e.s);
    const end = timeOf(e.e);
    if (!isTime(start) || !isTime(end) || end < start) {
      skipped.bad_time++;
      return undefined;
    }
    if (!this.#bounds.inWindow(start) || !this.#bounds.inWindow(end)) {
      skipped.time_out_of_range++;
      return undefined;
    }
    const value = '{"timestamp":"' + this.#startClock.iso(start) + '","end":"' +
      this.#endClock.iso(end) + '","symbol":' + JSON.stringify(pair) + ',"open":' + open +
      ',"high":' + high + ',"low":' + low + ',"close":' + close + ',"volume":' + volume +
      ',"vwap":' + vwap + "}";
    return {
      key: pair,
      value,
      timestamp: start,
      headers: BAR_HEADERS,
      symbol: pair,
      close,
      start,
      end,
    };
  }
}

/**
 * A new bar transform with its own skip counts: one per pipeline (or replay).
 * @example
 * ```ts
 * const bars = createBarTransform();
 * const records: BarRecord[] = [];
 * bars.frame('[{"ev":"XA","pair":"BCD-USD","v":951.6112,"vw":0.7756,"z":73,"o":0.772,"c":0.784,"h":0.784,"l":0.771,"s":1610463240000,"e":1610463300000}]', records);
 * records[0].value; // {"timestamp":"2021-01-12T14:54:00.000Z","end":"2021-01-12T14:55:00.000Z","symbol":"BCD-USD","open":0.772,…}
 * ```
 */
export function createBarTransform(options: ChannelTransformOptions = {}): BarTransform {
  return new BarTransform(options);
}
