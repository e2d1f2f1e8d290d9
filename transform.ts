/**
 * The pure transform: the text of one Polygon WebSocket frame in, spread records and skip
 * counts out. No I/O, no clock. Live data, replay, the demo and the tests all use it.
 *
 * Record value: `{"timestamp":"<t as ISO 8601 UTC>","symbol":"<pair>","spread":<ap − bp>}`,
 * with the spread computed exactly in decimal from the JSON number texts.
 */
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
  /** `t` is missing or not a whole non-negative number of ms within the Date range. */
  | "bad_time";

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
];

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
const MAX_DATE_MS = 8.64e15;
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, "0"));
const ZEROS = ["", "0", "00", "000", "0000", "00000"];

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

/**
 * The XQ (crypto quote) transform. Its caches (the value prefix of the current second, the
 * symbol parts) and its per-frame scan state are its own, so two transforms in one process never
 * interfere. Made by {@linkcode createSpreadTransform}.
 */
export class SpreadTransform implements FrameTransform<SpreadRecord> {
  /** The Polygon channel it maps: crypto quotes. */
  readonly channel = "XQ";
  /** Skips by reason since it was made. */
  readonly skipped: SkipCounts = emptySkips();

  #secondStart = Number.NaN;
  #secondPrefix = "";
  #symbolParts = new Map<string, string>();
  // Result registers of #scanNumber (avoids an allocation per number).
  #scanCoef = 0;
  #scanPlaces = 0;
  // Per-frame state of the source-text lookup, in fields rather than an object per frame (a
  // frame is transformed synchronously, so one is in flight at a time).
  #frameText = "";
  /** Where the next event's numbers are searched from. */
  #frameCursor = 0;
  /** Events of the slow-path parse and their number texts, made on first need. */
  #slowEvents: unknown[] | undefined;
  #slowSourceMap: Sources | undefined;

  /**
   * Transforms one frame, appending its records to `records` and counting skips in
   * {@linkcode SpreadTransform.skipped}. Returns the number of events seen. Never throws on
   * bad input.
   */
  frame(text: string, records: SpreadRecord[]): number {
    const skipped = this.skipped;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      skipped.invalid_json++;
      return 1;
    }
    this.#frameText = text;
    this.#frameCursor = 0;
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
   * Reads the number after `key` (at or after `from`) straight from the frame text as an integer
   * coefficient and a count of decimal places, for numbers of at most 15 significant digits.
   * Returns the end index, or -1 when the key is not found, the number needs the general path,
   * or its value is not `value` (then the text found is not this event's number).
   */
  #scanNumber(text: string, key: string, from: number, value: number): number {
    const k = text.indexOf(key, from);
    if (k === -1) return -1;
    let i = k + key.length;
    const n = text.length;
    let coef = 0;
    let digits = 0;
    let frac = 0;
    let dot = false;
    let c = text.charCodeAt(i);
    if (c === 45) return -1; // negative prices are rejected before this point anyway
    for (; i < n; i++) {
      c = text.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        if (coef !== 0 || c !== 48) {
          coef = coef * 10 + (c - 48);
          digits++;
        }
        if (dot) frac++;
      } else if (c === 46 && !dot) dot = true;
      else break;
    }
    if (digits > 15) return -1;
    let places = frac;
    if (c === 101 || c === 69) {
      let j = i + 1;
      let sign = 1;
      c = text.charCodeAt(j);
      if (c === 45 || c === 43) {
        if (c === 45) sign = -1;
        j++;
      }
      let exp = 0;
      const expStart = j;
      for (; j < n; j++) {
        c = text.charCodeAt(j);
        if (c < 48 || c > 57 || exp > 1000) break;
        exp = exp * 10 + (c - 48);
      }
      if (j === expStart) return -1;
      i = j;
      places -= sign * exp;
    }
    if (places < 0) {
      if (places < -15 || digits - places > 15) return -1;
      coef *= POW10[-places]!;
      places = 0;
    }
    if (places > 22 || coef / POW10[places]! !== value) return -1;
    this.#scanCoef = coef;
    this.#scanPlaces = places;
    return i;
  }

  #slowSources(index: number): { bp?: string; ap?: string } | undefined {
    if (this.#slowSourceMap === undefined) {
      this.#slowSourceMap = new WeakMap();
      const parsed = parseWithSources(this.#frameText, this.#slowSourceMap);
      this.#slowEvents = Array.isArray(parsed) ? parsed : [parsed];
    }
    const ev = this.#slowEvents![index];
    return typeof ev === "object" && ev !== null ? this.#slowSourceMap.get(ev) : undefined;
  }

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
    const t = e.t;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > MAX_DATE_MS) {
      skipped.bad_time++;
      return;
    }
    const r = typeof e.r === "number" ? e.r : undefined;
    // Exact arithmetic needs the numbers' decimal digits: read them from the frame text (fast
    // path), or parse again with a source-keeping reviver when that fails (more than 15 digits,
    // odd spacing or key order).
    let spread: string | undefined;
    const text = this.#frameText;
    const cursor = this.#frameCursor;
    const bpEnd = this.#scanNumber(text, '"bp":', cursor, bp);
    if (bpEnd !== -1) {
      const bc = this.#scanCoef;
      const bs = this.#scanPlaces;
      // Polygon sends "ap" after "bp": look there first, then anywhere after the cursor.
      let apEnd = this.#scanNumber(text, '"ap":', bpEnd, ap);
      if (apEnd === -1) apEnd = this.#scanNumber(text, '"ap":', cursor, ap);
      if (apEnd !== -1) {
        this.#frameCursor = apEnd > bpEnd ? apEnd : bpEnd;
        const as = this.#scanPlaces;
        const s = bs > as ? bs : as;
        const ai = this.#scanCoef * POW10[s - as]!;
        const bi = bc * POW10[s - bs]!;
        const d = ai - bi;
        if (ai < 1e15 && bi < 1e15 && d < 1e15 && d > -1e15) spread = formatScaled(d, s);
      }
    }
    if (spread === undefined) {
      const src = this.#slowSources(index);
      spread = subtract(src?.ap ?? String(ap), src?.bp ?? String(bp));
    }
    records.push({
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
    });
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
export function createSpreadTransform(): SpreadTransform {
  return new SpreadTransform();
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
