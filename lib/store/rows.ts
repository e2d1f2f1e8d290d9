/**
 * Records to rows, pure: a spread record (`{"timestamp","symbol","spread"}`) or a gap record
 * (`{"from","to","reason","seconds"}`) becomes a row keyed by its Kafka coordinates, or a dead
 * letter saying why not. Numbers are read as their JSON source text, never as floats.
 */
import type { InRecord } from "../sink.ts";
import { deadLetter, MAX_TIME_MS, type Refusal } from "./dead_letters.ts";
import { fitDecimal, SECONDS_DECIMAL, SPREAD_DECIMAL } from "./decimal_column.ts";
import type { GapRow, SpreadRow, StoreBatch } from "./types.ts";

/** A symbol the store keeps: a pair such as `BTC-USD`, at most 64 characters of `A-Z a-z 0-9 . _ : / -`. */
export const SYMBOL_RE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;

/** A gap's reason: a short lower-case word. */
export const REASON_RE = /^[a-z][a-z0-9_-]{0,63}$/;

const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The producer's own spread record, exactly as it writes it: read without a JSON parser. */
const CANONICAL_SPREAD_RE =
  /^\{"timestamp":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)","symbol":"([A-Za-z0-9._:/-]{1,64})","spread":(-?\d+(?:\.\d+)?(?:e[+-]\d+)?)\}$/;

/** A JSON number as its source text, so `0.1` stays `0.1`, `1e-40` stays `1e-40`. */
class NumberText {
  constructor(readonly text: string) {}
}

type Parsed = { value: Record<string, unknown> } | Refusal;

function parseObject(text: string | null): Parsed {
  if (text === null) return { code: "tombstone", reason: "the value is empty (a tombstone)" };
  let v: unknown;
  try {
    v = JSON.parse(
      text,
      (_key, value, context?: { source?: string }) =>
        typeof value === "number" && context?.source !== undefined
          ? new NumberText(context.source)
          : value,
    );
  } catch {
    return {
      code: "not_json",
      reason: `the value is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
    };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof NumberText) {
    return { code: "not_object", reason: "the value is not a JSON object" };
  }
  return { value: v as Record<string, unknown> };
}

function describe(v: unknown): string {
  const text = v instanceof NumberText ? v.text : JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 80)}… (${text.length} characters)` : text;
}

/** Days in each month of a common year. */
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Epoch ms of text already shaped as {@linkcode ISO_MS_RE} when that time exists (not
 * 2023-02-30, not 24:00 or a leap second) in 1970 … 9999, read digit by digit: the store's hot
 * path, where `Date.parse` and a `toISOString()` round trip per record cost more than the rest of
 * the mapping (bench/store_bench.ts).
 */
function isoShapedTime(v: string): number | undefined {
  // Each field's digits, as numbers: "0" is 48, so `10 * a + b - 528` reads two digits.
  const year = 1000 * v.charCodeAt(0) + 100 * v.charCodeAt(1) + 10 * v.charCodeAt(2) +
    v.charCodeAt(3) - 53_328;
  const month = 10 * v.charCodeAt(5) + v.charCodeAt(6) - 528;
  const day = 10 * v.charCodeAt(8) + v.charCodeAt(9) - 528;
  const hour = 10 * v.charCodeAt(11) + v.charCodeAt(12) - 528;
  const minute = 10 * v.charCodeAt(14) + v.charCodeAt(15) - 528;
  const second = 10 * v.charCodeAt(17) + v.charCodeAt(18) - 528;
  const milli = 100 * v.charCodeAt(20) + 10 * v.charCodeAt(21) + v.charCodeAt(22) - 5_328;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59) {
    return undefined;
  }
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : MONTH_DAYS[month - 1]!) || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, milli);
  return ms <= MAX_TIME_MS ? ms : undefined;
}

/** Epoch ms of an ISO 8601 UTC time with milliseconds that exists (not 2023-02-30), 1970 … 9999. */
export function isoTime(v: unknown): number | undefined {
  if (typeof v !== "string" || !ISO_MS_RE.test(v)) return undefined;
  return isoShapedTime(v);
}

function missing(o: Record<string, unknown>, fields: readonly string[]): Refusal | undefined {
  for (const f of fields) {
    if (!(f in o)) return { code: "missing_field", reason: `"${f}" is missing` };
  }
  return undefined;
}

function badTime(field: string, v: unknown): Refusal {
  return typeof v === "string"
    ? {
      code: "bad_timestamp",
      reason: `"${field}" is not an ISO 8601 UTC time with ms in 1970…9999: ${describe(v)}`,
    }
    : { code: "bad_type", reason: `"${field}" is not a string: ${describe(v)}` };
}

function symbolRefusal(v: unknown): Refusal | undefined {
  if (typeof v !== "string") {
    return { code: "bad_type", reason: `"symbol" is not a string: ${describe(v)}` };
  }
  if (!SYMBOL_RE.test(v)) {
    return {
      code: "bad_symbol",
      reason: `"symbol" is not a pair of at most 64 characters A-Z a-z 0-9 . _ : / -: ${
        describe(v)
      }`,
    };
  }
  return undefined;
}

function spreadRow(r: InRecord, ts: number, symbol: string, number: string): SpreadRow | Refusal {
  const fitted = fitDecimal(number, SPREAD_DECIMAL);
  if ("error" in fitted) return { code: "out_of_range", reason: `"spread" ${fitted.error}` };
  return { partition: r.partition, offset: r.offset, ts, symbol, spread: fitted.text };
}

/** A spread record as a row, or why it is refused. */
export function mapSpread(r: InRecord): SpreadRow | Refusal {
  const fast = r.value === null ? null : CANONICAL_SPREAD_RE.exec(r.value);
  if (fast) {
    // The expression has already checked the time's shape.
    const ts = isoShapedTime(fast[1]!);
    if (ts !== undefined && SYMBOL_RE.test(fast[2]!)) return spreadRow(r, ts, fast[2]!, fast[3]!);
  }
  const parsed = parseObject(r.value);
  if (!("value" in parsed)) return parsed;
  const o = parsed.value;
  const gone = missing(o, ["timestamp", "symbol", "spread"]);
  if (gone) return gone;
  const ts = isoTime(o.timestamp);
  if (ts === undefined) return badTime("timestamp", o.timestamp);
  const symbolBad = symbolRefusal(o.symbol);
  if (symbolBad) return symbolBad;
  if (!(o.spread instanceof NumberText)) {
    return { code: "bad_type", reason: `"spread" is not a JSON number: ${describe(o.spread)}` };
  }
  return spreadRow(r, ts, o.symbol as string, o.spread.text);
}

/** A gap record as a row, or why it is refused. */
export function mapGap(r: InRecord): GapRow | Refusal {
  const parsed = parseObject(r.value);
  if (!("value" in parsed)) return parsed;
  const o = parsed.value;
  const gone = missing(o, ["from", "to", "reason", "seconds"]);
  if (gone) return gone;
  const from = isoTime(o.from);
  if (from === undefined) return badTime("from", o.from);
  const to = isoTime(o.to);
  if (to === undefined) return badTime("to", o.to);
  if (typeof o.reason !== "string") {
    return { code: "bad_type", reason: `"reason" is not a string: ${describe(o.reason)}` };
  }
  if (!REASON_RE.test(o.reason)) {
    return {
      code: "bad_symbol",
      reason: `"reason" is not a short lower-case word: ${describe(o.reason)}`,
    };
  }
  if (!(o.seconds instanceof NumberText)) {
    return { code: "bad_type", reason: `"seconds" is not a JSON number: ${describe(o.seconds)}` };
  }
  const seconds = fitDecimal(o.seconds.text, SECONDS_DECIMAL);
  if ("error" in seconds) return { code: "out_of_range", reason: `"seconds" ${seconds.error}` };
  return {
    partition: r.partition,
    offset: r.offset,
    ts: from,
    to,
    reason: o.reason,
    seconds: seconds.text,
  };
}

/** Which table a topic's records go to. */
export type RecordKind = "spreads" | "gaps";

/** The batch for a run of one topic's records: rows, and dead letters for the rest. */
export function toBatch(records: readonly InRecord[], kind: RecordKind): StoreBatch {
  const batch: StoreBatch = { spreads: [], gaps: [], dead: [] };
  for (const r of records) {
    if (kind === "spreads") {
      const row = mapSpread(r);
      if ("code" in row) batch.dead.push(deadLetter(r, row));
      else batch.spreads.push(row);
    } else {
      const row = mapGap(r);
      if ("code" in row) batch.dead.push(deadLetter(r, row));
      else batch.gaps.push(row);
    }
  }
  return batch;
}
