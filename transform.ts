/**
 * The pure transform: the text of one Polygon WebSocket frame in, spread records and skip
 * counts out. No I/O, no clock. Live data, replay, the demo and the tests all use it.
 *
 * Record value: `{"timestamp":"<t as ISO 8601 UTC>","symbol":"<pair>","spread":<ap − bp>}`,
 * with the spread computed exactly in decimal from the JSON number texts.
 */
import { subtract } from "./lib/decimal.ts";
import { type OutRecord, SCHEMA_VERSION } from "./lib/sink.ts";

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
/** A number with 16 or more significant digits, or a tiny exponent: its source text matters. */
const LONG_NUMBER_RE = /[0-9.]{16,}|[eE]-\d{3}/;

let lastT = Number.NaN;
let lastIso = "";
const symbolParts = new Map<string, string>();

function isoOf(t: number): string {
  if (t !== lastT) {
    lastT = t;
    lastIso = new Date(t).toISOString();
  }
  return lastIso;
}

function symbolPart(pair: string): string {
  let part = symbolParts.get(pair);
  if (part === undefined) {
    if (symbolParts.size >= 10_000) symbolParts.clear();
    part = `","symbol":${JSON.stringify(pair)},"spread":`;
    symbolParts.set(pair, part);
  }
  return part;
}

type Sources = WeakMap<object, { bp?: string; ap?: string }>;

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

function event(
  ev: unknown,
  records: SpreadRecord[],
  skipped: SkipCounts,
  sources: Sources | undefined,
): void {
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
  const src = sources?.get(e);
  const spread = subtract(src?.ap ?? String(ap), src?.bp ?? String(bp));
  records.push({
    key: pair,
    value: '{"timestamp":"' + isoOf(t) + symbolPart(pair) + spread + "}",
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

/**
 * Transforms one frame, appending records to `records` and counting skips into `skipped`.
 * Returns the number of events seen. Never throws on bad input. This is the allocation-light
 * form the pipeline uses; {@linkcode transform} wraps it.
 */
export function transformInto(text: string, records: SpreadRecord[], skipped: SkipCounts): number {
  const sources: Sources | undefined = LONG_NUMBER_RE.test(text) ? new WeakMap() : undefined;
  let parsed: unknown;
  try {
    parsed = sources ? parseWithSources(text, sources) : JSON.parse(text);
  } catch {
    skipped.invalid_json++;
    return 1;
  }
  if (Array.isArray(parsed)) {
    for (let i = 0; i < parsed.length; i++) event(parsed[i], records, skipped, sources);
    return parsed.length;
  }
  if (typeof parsed === "object" && parsed !== null) {
    event(parsed, records, skipped, sources);
    return 1;
  }
  skipped.not_a_frame++;
  return 1;
}

/**
 * Transforms the text of one WebSocket frame into spread records, in frame order.
 * @example
 * ```ts
 * const { records } = transform('[{"ev":"XQ","pair":"BTC-USD","bp":29603.82,"ap":29603.83,"t":1626828416892}]');
 * records[0].value; // {"timestamp":"2021-07-21T00:46:56.892Z","symbol":"BTC-USD","spread":0.01}
 * ```
 */
export function transform(text: string): TransformResult {
  const records: SpreadRecord[] = [];
  const skipped = emptySkips();
  const events = transformInto(text, records, skipped);
  return { records, skipped, events };
}
