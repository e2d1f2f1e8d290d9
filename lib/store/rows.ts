/**
 * Records to rows, pure: a spread record (`{"timestamp","symbol","spread"}`) or a gap record
 * (`{"from","to","reason","seconds"}`) becomes a row keyed by its Kafka coordinates, or a dead
 * letter saying why not. Numbers are read as their JSON source text, never as floats.
 */
import type { InRecord } from "../sink.ts";
import { deadLetter, MAX_TIME_MS, type Refusal } from "./dead_letters.ts";
import { fitDecimal, isPlainFit, SECONDS_DECIMAL, SPREAD_DECIMAL } from "./decimal_column.ts";
import type { GapRow, SpreadRow, StoreBatch } from "./types.ts";

/** A symbol the store keeps: a pair such as `BTC-USD`, at most 64 characters of `A-Z a-z 0-9 . _ : / -`. */
export const SYMBOL_RE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;

/** A gap's reason: a short lower-case word. */
export const REASON_RE = /^[a-z][a-z0-9_-]{0,63}$/;

const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

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
 * Epoch ms of the 24 characters of `v` from `at` when they are shaped as {@linkcode ISO_MS_RE}
 * (checked by the caller) and that time exists (not 2023-02-30, not 24:00 or a leap second) in
 * 1970 … 9999, read digit by digit: the store's hot path, where `Date.parse` and a
 * `toISOString()` round trip per record cost more than the rest of the mapping
 * (bench/store_bench.ts).
 */
function isoShapedTime(v: string, at = 0): number | undefined {
  // Each field's digits, as numbers: "0" is 48, so `10 * a + b - 528` reads two digits.
  const year = 1000 * v.charCodeAt(at) + 100 * v.charCodeAt(at + 1) +
    10 * v.charCodeAt(at + 2) + v.charCodeAt(at + 3) - 53_328;
  const month = 10 * v.charCodeAt(at + 5) + v.charCodeAt(at + 6) - 528;
  const day = 10 * v.charCodeAt(at + 8) + v.charCodeAt(at + 9) - 528;
  const hour = 10 * v.charCodeAt(at + 11) + v.charCodeAt(at + 12) - 528;
  const minute = 10 * v.charCodeAt(at + 14) + v.charCodeAt(at + 15) - 528;
  const second = 10 * v.charCodeAt(at + 17) + v.charCodeAt(at + 18) - 528;
  const milli = 100 * v.charCodeAt(at + 20) + 10 * v.charCodeAt(at + 21) +
    v.charCodeAt(at + 22) - 5_328;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59) {
    return undefined;
  }
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : MONTH_DAYS[month - 1]!) || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, milli);
  return ms <= MAX_TIME_MS ? ms : undefined;
}

/** The ISO time shape, `d` a digit: `dddd-dd-ddTdd:dd:dd.dddZ`. */
const ISO_SHAPE = "dddd-dd-ddTdd:dd:dd.dddZ";

/** True when the 24 characters of `v` from `at` have the shape of {@linkcode ISO_SHAPE}. */
function isIsoShaped(v: string, at: number): boolean {
  for (let i = 0; i < 24; i++) {
    const c = v.charCodeAt(at + i);
    const want = ISO_SHAPE.charCodeAt(i);
    if (want === 100 ? c < 48 || c > 57 : c !== want) return false;
  }
  return true;
}

/** True for a character of {@linkcode SYMBOL_RE}'s class; `first`: a letter or digit only. */
function isSymbolChar(c: number, first: boolean): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) ||
    (!first && (c === 46 || c === 95 || c === 58 || c === 47 || c === 45));
}

const SPREAD_HEAD = '{"timestamp":"';
const SPREAD_SYMBOL = '","symbol":"';
const SPREAD_NUMBER = '","spread":';

/**
 * The producer's own spread record, exactly as it writes it
 * (`{"timestamp":"…","symbol":"…","spread":…}` with a plain decimal that fits the column), as a
 * row, read in one scan without a parser; undefined for anything else, which the general reading
 * then maps or refuses. Gives what the general reading gives (tests/store/rows_test.ts).
 */
function quickSpread(r: InRecord, v: string): SpreadRow | undefined {
  const n = v.length;
  if (!v.startsWith(SPREAD_HEAD) || v.charCodeAt(n - 1) !== 125) return undefined;
  const time = SPREAD_HEAD.length;
  if (!isIsoShaped(v, time) || !v.startsWith(SPREAD_SYMBOL, time + 24)) return undefined;
  const symbolAt = time + 24 + SPREAD_SYMBOL.length;
  let i = symbolAt;
  while (i < n && i - symbolAt < 64 && isSymbolChar(v.charCodeAt(i), i === symbolAt)) i++;
  if (i === symbolAt || !v.startsWith(SPREAD_NUMBER, i)) return undefined;
  const ts = isoShapedTime(v, time);
  const spread = v.slice(i + SPREAD_NUMBER.length, n - 1);
  if (ts === undefined || !isPlainFit(spread, SPREAD_DECIMAL)) return undefined;
  return { partition: r.partition, offset: r.offset, ts, symbol: v.slice(symbolAt, i), spread };
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
  return (r.value === null ? undefined : quickSpread(r, r.value)) ?? mapSpreadGeneral(r);
}

/** {@linkcode mapSpread} without its quick reading of the producer's own records. */
export function mapSpreadGeneral(r: InRecord): SpreadRow | Refusal {
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
