/**
 * The pure transform: the text of one Polygon WebSocket frame in, spread records and skip
 * counts out. No I/O, no clock. Live data, replay, the demo and the tests all use it.
 *
 * Record value: `{"timestamp":"<t as ISO 8601 UTC>","symbol":"<pair>","spread":<ap − bp>}`,
 * with the spread computed exactly in decimal from the JSON number texts.
 *
 * Two paths, one outcome: a frame of the common shape (an object or an array of flat objects
 * whose values are strings without escapes or numbers, as Polygon sends them) is read by one
 * validating pass over its text that notes where the needed values are; every other text goes to
 * `JSON.parse` (with a reviver that keeps each event's own `bp` and `ap` source text). The scan
 * accepts only text `JSON.parse` accepts and reads only each event's own top-level keys (the last
 * of duplicates, as `JSON.parse`), so records, skips and event counts are the same either way
 * (tests/transform_test.ts and tests/transform_fuzz_test.ts check).
 *
 * Bounds (lib/bounds.ts): a price text longer than 64 characters is skipped (`number_too_long`),
 * a `t` past 9999-12-31 is `bad_time`, and with a clock passed in (live), a `t` more than
 * `maxAheadMs` after it (or `maxBehindMs` before it) is `time_out_of_range`.
 */
import { type Clock, MAX_NUMBER_TEXT, MAX_TIME_MS, TimeBounds } from "./lib/bounds.ts";
import { subtract } from "./lib/decimal.ts";
import { type FrameTransform, type OutRecord, SCHEMA_VERSION } from "./lib/sink.ts";

/** Why an event (or a whole frame) produced no record. */
export type SkipReason =
  /** The frame text is not JSON. */
  | "invalid_json"
  /** The frame is JSON but neither an array nor an object. */
  | "not_a_frame"
  /** An element of the frame is itself an array. */
  | "nested_array"
  /** An element of the frame is not an object. */
  | "not_an_object"
  /** A status message (connected, auth_success, …): not a quote. */
  | "status"
  /** Another channel (XT, XA, XAS, XL2, …) or no `ev`: not a quote. */
  | "other_event"
  /** `pair` is missing, empty, not a string, or longer than 64 characters. */
  | "bad_pair"
  /** `bp` is missing or not a finite positive number (one-sided quote). */
  | "bad_bid"
  /** `ap` is missing or not a finite positive number (one-sided quote). */
  | "bad_ask"
  /** `t` is missing or not a whole non-negative number of ms up to 9999-12-31T23:59:59.999Z. */
  | "bad_time"
  /** `bp` or `ap` is a number whose text is longer than 64 characters. */
  | "number_too_long"
  /** `t` is further from the local clock than the transform allows (live only). */
  | "time_out_of_range";

/** Every skip reason, in a stable order for reports. */
export const SKIP_REASONS: readonly SkipReason[] = [
  "invalid_json",
  "not_a_frame",
  "nested_array",
  "not_an_object",
  "status",
  "other_event",
  "bad_pair",
  "bad_bid",
  "bad_ask",
  "bad_time",
  "number_too_long",
  "time_out_of_range",
];

/** The Polygon channel the spread transform maps: crypto quotes. */
export const SPREAD_CHANNEL = "XQ";

/** Skip counts by reason. */
export type SkipCounts = Record<SkipReason, number>;

/** A new all-zero {@linkcode SkipCounts}. */
export function emptySkips(): SkipCounts {
  return Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as SkipCounts;
}

/** Headers shared by every spread record. */
export const RECORD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "schema-version": SCHEMA_VERSION,
});

/** One spread record: a Kafka-ready {@linkcode OutRecord} plus the fields telemetry needs. */
export interface SpreadRecord extends OutRecord {
  /** The pair, also the key. */
  symbol: string;
  /** Exact spread, as JSON number text. */
  spread: string;
  /** Exchange time `t`, ms (also `timestamp`). */
  t: number;
  /** Polygon receive time `r`, ms, when present. */
  r: number | undefined;
  bp: number;
  ap: number;
}

/** The result of {@linkcode transform}. */
export interface TransformResult {
  records: SpreadRecord[];
  skipped: SkipCounts;
  /** Events seen: records.length plus every skip. */
  events: number;
}

const MAX_PAIR_LENGTH = 64;
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, "0"));
const ZEROS = ["", "0", "00", "000", "0000", "00000"];

// The fields the scan keeps of each event: where the value tokens of ev, pair, bp, ap, t and r
// start and end in the frame text (start -1: absent), two slots each.
const EV = 0;
const PAIR = 2;
const BP = 4;
const AP = 6;
const T = 8;
const R = 10;
const SPAN = 12;

/**
 * `d × 10^-s` as `Number.prototype.toString` writes it (`0.01`, `1e-8`), for an integer d with
 * at most 15 digits: as `String(d / 10 ** s)`, without the division and the shortest-digits
 * search.
 */
function formatScaled(d: number, s: number): string {
  if (d === 0) return "0";
  while (s > 0 && d % 10 === 0) {
    d /= 10;
    s--;
  }
  if (s === 0) return String(d);
  const negative = d < 0;
  const digits = String(negative ? -d : d);
  const k = digits.length;
  const n = k - s;
  let out: string;
  if (n > 0) out = digits.slice(0, n) + "." + digits.slice(n);
  else if (n > -6) out = "0." + ZEROS[-n]! + digits;
  else out = (k === 1 ? digits : digits[0] + "." + digits.slice(1)) + "e-" + (1 - n);
  return negative ? "-" + out : out;
}

type Sources = WeakMap<object, { bp?: string; ap?: string }>;

/** Parses with a reviver that keeps the source text of every `bp` and `ap` (the slow path). */
function parseWithSources(text: string, sources: Sources): unknown {
  return JSON.parse(
    text,
    function (this: object, key: string, value: unknown, context?: { source?: string }) {
      if ((key === "bp" || key === "ap") && typeof value === "number" && context?.source) {
        let s = sources.get(this);
        if (s === undefined) sources.set(this, s = {});
        s[key] = context.source;
      }
      return value;
    },
  );
}

/** Options for {@linkcode createSpreadTransform}. */
export interface SpreadTransformOptions {
  /**
   * Whether frames of the common shape (an object, or an array of objects, whose values are all
   * strings without escapes or numbers) are read by a validating scan of the text instead of
   * `JSON.parse`. Both give the same records and skips for every input; `false` exists for tests
   * that compare them. Default: true.
   */
  scan?: boolean;
  /**
   * The local clock: a `t` outside `[now − maxBehindMs, now + maxAheadMs]` is skipped as
   * `time_out_of_range`. Read lazily: for the first quote, then at most every 256 frames, and
   * again before any skip, so the ahead bound is exact and the behind bound at most 256 frames
   * late. Entry scripts of live data pass the real clock; replay
   * passes none (a recording's times are old), so only the fixed bounds apply. Default none.
   */
  clock?: Clock;
  /** How far ahead of the clock a `t` may be. Default 5 minutes (`DEFAULT_MAX_AHEAD_MS`, lib/bounds.ts). */
  maxAheadMs?: number;
  /**
   * How far behind the clock a `t` may be. Default unbounded: a late quote is still exact data,
   * its Kafka timestamp is not `t`, and the fake replays old recordings live in tests and the demo.
   */
  maxBehindMs?: number;
}

/**
 * The XQ (crypto quote) transform. Its caches (the value prefix of the current second, the
 * symbol parts) and its per-frame scan state are its own, so two transforms in one process never
 * interfere. Made by {@linkcode createSpreadTransform}.
 */
export class SpreadTransform implements FrameTransform<SpreadRecord> {
  /** The Polygon channel it maps: crypto quotes. */
  readonly channel = SPREAD_CHANNEL;
  /** Skips by reason since it was made. */
  readonly skipped: SkipCounts = emptySkips();

  #secondStart = Number.NaN;
  #secondPrefix = "";
  #symbolParts = new Map<string, string>();
  // Result registers of #decimal (avoids an allocation per number).
  #scanCoef = 0;
  #scanPlaces = 0;
  // The general path's frame, and its events and their number texts from a second parse with
  // the source-keeping reviver, made on first need (a frame is transformed synchronously).
  #frameText = "";
  #slowEvents: unknown[] | undefined;
  #slowSourceMap: Sources | undefined;
  readonly #scanFrames: boolean;
  /** The time bounds every channel transform shares (lib/bounds.ts), with the lazy clock. */
  readonly #bounds: TimeBounds;
  /** Per event of the scanned frame, {@linkcode SPAN} token bounds (see {@linkcode EV}). */
  #spans = new Int32Array(SPAN * 16);

  /** Use {@linkcode createSpreadTransform}. */
  constructor(options: SpreadTransformOptions = {}) {
    this.#scanFrames = options.scan ?? true;
    this.#bounds = new TimeBounds(options);
  }

  /**
   * Transforms one frame, appending its records to `records` and counting skips in
   * {@linkcode SpreadTransform.skipped}. Returns the number of events seen. Never throws on
   * bad input.
   */
  frame(text: string, records: SpreadRecord[]): number {
    const skipped = this.skipped;
    // The clock is read lazily: reading it for every frame costs about a tenth of the transform.
    this.#bounds.frame();
    if (this.#scanFrames) {
      const events = this.#scan(text);
      if (events >= 0) {
        for (let k = 0; k < events; k++) this.#scannedEvent(text, k * SPAN, records, skipped);
        return events;
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      skipped.invalid_json++;
      return 1;
    }
    this.#frameText = text;
    this.#slowEvents = undefined;
    this.#slowSourceMap = undefined;
    if (Array.isArray(parsed)) {
      for (let i = 0; i < parsed.length; i++) this.#event(parsed[i], i, records, skipped);
      return parsed.length;
    }
    if (typeof parsed === "object" && parsed !== null) {
      this.#event(parsed, 0, records, skipped);
      return 1;
    }
    skipped.not_a_frame++;
    return 1;
  }

  /**
   * The record value up to the milliseconds of its timestamp, `{"timestamp":"2021-07-21T00:46:56.`,
   * for the second holding `t`. Cached: quotes arrive in time order, so most share the last second.
   */
  #valuePrefix(t: number): string {
    const second = t - (t % 1000);
    if (second !== this.#secondStart) {
      const iso = new Date(second).toISOString();
      // Years beyond 9999 have a longer date part; the milliseconds are the last four characters.
      this.#secondPrefix = '{"timestamp":"' + iso.slice(0, iso.length - 4);
      this.#secondStart = second;
    }
    return this.#secondPrefix;
  }

  /** The record value from the `Z` of the timestamp to the spread: `Z","symbol":"…","spread":`. */
  #symbolPart(pair: string): string {
    const parts = this.#symbolParts;
    let part = parts.get(pair);
    if (part === undefined) {
      if (parts.size >= 10_000) parts.clear();
      part = `Z","symbol":${JSON.stringify(pair)},"spread":`;
      parts.set(pair, part);
    }
    return part;
  }

  /**
   * The fast path's first half: checks that `text` is JSON of the common shape (an object, or an
   * array of objects, every value a string without escapes or a number) and notes where the
   * values of the keys the transform reads are, without making any value. Returns the number of
   * events, or -1 when the text is anything else (then `JSON.parse` decides, so invalid JSON and
   * every unusual shape keep the general path's outcome). Duplicate keys: the last one counts,
   * as in `JSON.parse`.
   */
  #scan(text: string): number {
    // charCodeAt past the end is NaN, which every comparison below rejects: no bounds checks.
    let i = 0;
    let c = text.charCodeAt(0);
    while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
    const array = c === 91;
    if (array) {
      c = text.charCodeAt(++i);
      while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
      if (c === 93) {
        c = text.charCodeAt(++i);
        while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
        return i === text.length ? 0 : -1;
      }
    }
    let spans = this.#spans;
    let events = 0;
    for (;;) {
      if (c !== 123) return -1;
      const base = events * SPAN;
      if (base + SPAN > spans.length) {
        const grown = new Int32Array(spans.length * 2);
        grown.set(spans);
        this.#spans = spans = grown;
      }
      spans[base + EV] = -1;
      spans[base + PAIR] = -1;
      spans[base + BP] = -1;
      spans[base + AP] = -1;
      spans[base + T] = -1;
      spans[base + R] = -1;
      c = text.charCodeAt(++i);
      while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
      if (c !== 125) {
        for (;;) {
          // Key: a string without escapes or control characters.
          if (c !== 34) return -1;
          const keyStart = ++i;
          c = text.charCodeAt(i);
          while (c !== 34) {
            if (c === 92 || !(c >= 32)) return -1;
            c = text.charCodeAt(++i);
          }
          let slot = -1;
          const k0 = text.charCodeAt(keyStart);
          switch (i - keyStart) {
            case 1:
              if (k0 === 116) slot = T;
              else if (k0 === 114) slot = R;
              break;
            case 2:
              if (text.charCodeAt(keyStart + 1) === 112) {
                if (k0 === 98) slot = BP;
                else if (k0 === 97) slot = AP;
              } else if (k0 === 101 && text.charCodeAt(keyStart + 1) === 118) slot = EV;
              break;
            case 4:
              if (k0 === 112 && text.startsWith("air", keyStart + 1)) slot = PAIR;
              break;
          }
          c = text.charCodeAt(++i);
          while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
          if (c !== 58) return -1;
          c = text.charCodeAt(++i);
          while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
          const valueStart = i;
          if (c === 34) {
            c = text.charCodeAt(++i);
            while (c !== 34) {
              if (c === 92 || !(c >= 32)) return -1;
              c = text.charCodeAt(++i);
            }
            c = text.charCodeAt(++i);
          } else {
            // A number, in JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
            if (c === 45) c = text.charCodeAt(++i);
            if (c === 48) c = text.charCodeAt(++i);
            else if (c >= 49 && c <= 57) {
              do c = text.charCodeAt(++i); while (c >= 48 && c <= 57);
            } else return -1;
            if (c === 46) {
              c = text.charCodeAt(++i);
              if (!(c >= 48 && c <= 57)) return -1;
              do c = text.charCodeAt(++i); while (c >= 48 && c <= 57);
            }
            if (c === 101 || c === 69) {
              c = text.charCodeAt(++i);
              if (c === 43 || c === 45) c = text.charCodeAt(++i);
              if (!(c >= 48 && c <= 57)) return -1;
              do c = text.charCodeAt(++i); while (c >= 48 && c <= 57);
            }
          }
          if (slot !== -1) {
            spans[base + slot] = valueStart;
            spans[base + slot + 1] = i;
          }
          while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
          if (c === 125) break;
          if (c !== 44) return -1;
          c = text.charCodeAt(++i);
          while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
        }
      }
      events++;
      c = text.charCodeAt(++i);
      while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
      if (!array) break;
      if (c === 93) {
        c = text.charCodeAt(++i);
        while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
        break;
      }
      if (c !== 44) return -1;
      c = text.charCodeAt(++i);
      while (c === 32 || c === 10 || c === 13 || c === 9) c = text.charCodeAt(++i);
    }
    return i === text.length ? events : -1;
  }

  /**
   * The value of the JSON number token `text[start, end)`, as `JSON.parse` makes it. For a
   * non-negative number of at most 15 significant digits whose scale fits (the usual price), also
   * its integer coefficient and decimal places in the scan registers (places -1: not available).
   */
  #decimal(text: string, start: number, end: number): number {
    let i = start;
    let c = text.charCodeAt(i);
    if (c !== 45) {
      let coef = 0;
      let digits = 0;
      let frac = 0;
      let dot = false;
      for (; i < end; i++) {
        c = text.charCodeAt(i);
        if (c >= 48 && c <= 57) {
          if (coef !== 0 || c !== 48) {
            coef = coef * 10 + (c - 48);
            digits++;
          }
          if (dot) frac++;
        } else if (c === 46) dot = true;
        else break;
      }
      let places = frac;
      if (i < end) {
        // The exponent (the scan checked its grammar).
        c = text.charCodeAt(++i);
        const negative = c === 45;
        if (c === 45 || c === 43) i++;
        let exp = 0;
        for (; i < end && exp < 1000; i++) exp = exp * 10 + (text.charCodeAt(i) - 48);
        if (i < end) {
          // An exponent of 1000 or more: the general path (the value may be Infinity or 0).
          this.#scanPlaces = -1;
          return Number(text.slice(start, end));
        }
        places += negative ? exp : -exp;
      }
      if (places < 0 && places >= -15 && digits - places <= 15) {
        coef *= POW10[-places]!;
        places = 0;
      }
      if (digits <= 15 && places >= 0 && places <= 22) {
        // Both exact doubles, so the one rounding of the division is the correct rounding of
        // the decimal: the value JSON.parse makes.
        this.#scanCoef = coef;
        this.#scanPlaces = places;
        return coef / POW10[places]!;
      }
    }
    this.#scanPlaces = -1;
    return Number(text.slice(start, end));
  }

  /** The value of the JSON number token `text[start, end)`, as `JSON.parse` makes it. */
  #number(text: string, start: number, end: number): number {
    if (end - start <= 15) {
      // A whole number of at most 15 digits (a time) is exact as it is read.
      let v = 0;
      let i = start;
      for (; i < end; i++) {
        const c = text.charCodeAt(i);
        if (c < 48 || c > 57) break;
        v = v * 10 + (c - 48);
      }
      if (i === end) return v;
    }
    return Number(text.slice(start, end));
  }

  /** {@linkcode SpreadTransform.#event} for an event the scan found, with the same checks. */
  #scannedEvent(text: string, base: number, records: SpreadRecord[], skipped: SkipCounts): void {
    const spans = this.#spans;
    const evStart = spans[base + EV]!;
    const evEnd = spans[base + EV + 1]!;
    // ev === "XQ" (a number token holds no letters).
    if (
      evStart === -1 || evEnd - evStart !== 4 || text.charCodeAt(evStart + 1) !== 88 ||
      text.charCodeAt(evStart + 2) !== 81
    ) {
      if (
        evStart !== -1 && evEnd - evStart === 8 && text.charCodeAt(evStart) === 34 &&
        text.startsWith("status", evStart + 1)
      ) skipped.status++;
      else skipped.other_event++;
      return;
    }
    const pairStart = spans[base + PAIR]!;
    const pairLength = spans[base + PAIR + 1]! - pairStart - 2;
    if (
      pairStart === -1 || text.charCodeAt(pairStart) !== 34 || pairLength === 0 ||
      pairLength > MAX_PAIR_LENGTH
    ) {
      skipped.bad_pair++;
      return;
    }
    const bpStart = spans[base + BP]!;
    const bpEnd = spans[base + BP + 1]!;
    if (bpStart === -1 || text.charCodeAt(bpStart) === 34) {
      skipped.bad_bid++;
      return;
    }
    const bp = this.#decimal(text, bpStart, bpEnd);
    if (!(bp > 0) || bp === Infinity) {
      skipped.bad_bid++;
      return;
    }
    const bc = this.#scanCoef;
    const bs = this.#scanPlaces;
    const apStart = spans[base + AP]!;
    const apEnd = spans[base + AP + 1]!;
    if (apStart === -1 || text.charCodeAt(apStart) === 34) {
      skipped.bad_ask++;
      return;
    }
    const ap = this.#decimal(text, apStart, apEnd);
    if (!(ap > 0) || ap === Infinity) {
      skipped.bad_ask++;
      return;
    }
    if (bpEnd - bpStart > MAX_NUMBER_TEXT || apEnd - apStart > MAX_NUMBER_TEXT) {
      skipped.number_too_long++;
      return;
    }
    const tStart = spans[base + T]!;
    if (tStart === -1 || text.charCodeAt(tStart) === 34) {
      skipped.bad_time++;
      return;
    }
    const t = this.#number(text, tStart, spans[base + T + 1]!);
    if (!Number.isInteger(t) || t < 0 || t > MAX_TIME_MS) {
      skipped.bad_time++;
      return;
    }
    if (!this.#bounds.inWindow(t)) {
      skipped.time_out_of_range++;
      return;
    }
    const rStart = spans[base + R]!;
    const r = rStart === -1 || text.charCodeAt(rStart) === 34
      ? undefined
      : this.#number(text, rStart, spans[base + R + 1]!);
    const spread = this.#spread(bc, bs) ??
      subtract(text.slice(apStart, apEnd), text.slice(bpStart, bpEnd));
    const pair = text.slice(pairStart + 1, pairStart + 1 + pairLength);
    records.push(this.#record(pair, spread, t, r, bp, ap));
  }

  /**
   * The exact spread `ap − bp` from the scan registers, when both numbers fit them: `bc` and
   * `bs` of the bid (saved), the registers themselves holding the ask. Undefined otherwise (then
   * {@linkcode subtract} decides).
   */
  #spread(bc: number, bs: number): string | undefined {
    const as = this.#scanPlaces;
    if (bs === -1 || as === -1) return undefined;
    const s = bs > as ? bs : as;
    const ai = this.#scanCoef * POW10[s - as]!;
    const bi = bc * POW10[s - bs]!;
    const d = ai - bi;
    if (ai < 1e15 && bi < 1e15 && d < 1e15 && d > -1e15) return formatScaled(d, s);
    return undefined;
  }

  /** The record of a valid quote (both paths make it here, so they make the same). */
  #record(
    pair: string,
    spread: string,
    t: number,
    r: number | undefined,
    bp: number,
    ap: number,
  ): SpreadRecord {
    return {
      key: pair,
      value: this.#valuePrefix(t) + PAD3[t % 1000] + this.#symbolPart(pair) + spread + "}",
      timestamp: t,
      headers: RECORD_HEADERS,
      symbol: pair,
      spread,
      t,
      r,
      bp,
      ap,
    };
  }

  /**
   * The source texts of event `index`'s own `bp` and `ap`, from a parse with the reviver (its
   * objects are not `JSON.parse`'s, hence the index). Undefined when that parse fails: the
   * reviver recurses, and a frame nested thousands deep elsewhere overflows the stack.
   */
  #slowSources(index: number): { bp?: string; ap?: string } | undefined {
    if (this.#slowSourceMap === undefined) {
      this.#slowSourceMap = new WeakMap();
      try {
        const parsed = parseWithSources(this.#frameText, this.#slowSourceMap);
        this.#slowEvents = Array.isArray(parsed) ? parsed : [parsed];
      } catch {
        this.#slowEvents = [];
      }
    }
    const ev = this.#slowEvents![index];
    return typeof ev === "object" && ev !== null ? this.#slowSourceMap.get(ev) : undefined;
  }

  /** One event of the general path; the number texts come from {@linkcode SpreadTransform.#slowSources}. */
  #event(ev: unknown, index: number, records: SpreadRecord[], skipped: SkipCounts): void {
    if (typeof ev !== "object" || ev === null) {
      skipped.not_an_object++;
      return;
    }
    if (Array.isArray(ev)) {
      skipped.nested_array++;
      return;
    }
    const e = ev as Record<string, unknown>;
    const kind = e.ev;
    if (kind !== "XQ") {
      if (kind === "status") skipped.status++;
      else skipped.other_event++;
      return;
    }
    const pair = e.pair;
    if (typeof pair !== "string" || pair.length === 0 || pair.length > MAX_PAIR_LENGTH) {
      skipped.bad_pair++;
      return;
    }
    const bp = e.bp;
    if (typeof bp !== "number" || !(bp > 0) || bp === Infinity) {
      skipped.bad_bid++;
      return;
    }
    const ap = e.ap;
    if (typeof ap !== "number" || !(ap > 0) || ap === Infinity) {
      skipped.bad_ask++;
      return;
    }
    // The reviver saw this very event's own bp and ap (the last of duplicate keys); without it
    // (a frame too deep for the reviver), the shortest text of the double.
    const src = this.#slowSources(index);
    const bpText = src?.bp ?? String(bp);
    const apText = src?.ap ?? String(ap);
    if (bpText.length > MAX_NUMBER_TEXT || apText.length > MAX_NUMBER_TEXT) {
      skipped.number_too_long++;
      return;
    }
    const t = e.t;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > MAX_TIME_MS) {
      skipped.bad_time++;
      return;
    }
    if (!this.#bounds.inWindow(t)) {
      skipped.time_out_of_range++;
      return;
    }
    const r = typeof e.r === "number" ? e.r : undefined;
    this.#decimal(bpText, 0, bpText.length);
    const bc = this.#scanCoef;
    const bs = this.#scanPlaces;
    this.#decimal(apText, 0, apText.length);
    const spread = this.#spread(bc, bs) ?? subtract(apText, bpText);
    records.push(this.#record(pair, spread, t, r, bp, ap));
  }
}

/**
 * A new spread transform with its own caches and skip counts: one per pipeline (or replay).
 * @example
 * ```ts
 * const spreads = createSpreadTransform();
 * const records: SpreadRecord[] = [];
 * spreads.frame('[{"ev":"XQ","pair":"BTC-USD","bp":1.5,"ap":1.75,"t":0}]', records);
 * records[0].spread; // "0.25"
 * ```
 */
export function createSpreadTransform(options: SpreadTransformOptions = {}): SpreadTransform {
  return new SpreadTransform(options);
}

/**
 * Transforms the text of one WebSocket frame into spread records, in frame order, with a new
 * {@linkcode SpreadTransform} (for one-off use: a pipeline keeps one transform).
 * @example
 * ```ts
 * const { records } = transform('[{"ev":"XQ","pair":"BTC-USD","bp":29603.82,"ap":29603.83,"t":1626828416892}]');
 * records[0].value; // {"timestamp":"2021-07-21T00:46:56.892Z","symbol":"BTC-USD","spread":0.01}
 * ```
 */
export function transform(text: string): TransformResult {
  const spreads = createSpreadTransform();
  const records: SpreadRecord[] = [];
  const events = spreads.frame(text, records);
  return { records, skipped: spreads.skipped, events };
}
