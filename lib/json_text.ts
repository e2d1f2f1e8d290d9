/**
 * JSON read with every number kept as its text: the exact reader of the trade and bar
 * transforms. `JSON.parse` runs with a reviver that replaces each number by a
 * {@linkcode NumberText} holding its source text, so no price or size ever passes through a
 * float. Pure: no I/O.
 */
import { MAX_NUMBER_TEXT } from "./bounds.ts";

/** A JSON number as it was written in the text (e.g. `"33021.90"`, `"1e-8"`). */
export class NumberText {
  /** The number's source text, a valid JSON number token. */
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** The reviver: every number becomes its {@linkcode NumberText}. */
function keepNumbers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number") return new NumberText(context?.source ?? String(value));
  return value;
}

/**
 * Parses `text` like `JSON.parse`, with every number as a {@linkcode NumberText}. Throws
 * `SyntaxError` as `JSON.parse` does.
 * @example
 * ```ts
 * const v = parseKeepingNumbers('{"p":0.10}') as { p: NumberText };
 * v.p.text; // "0.10"
 * ```
 */
export function parseKeepingNumbers(text: string): unknown {
  return JSON.parse(text, keepNumbers);
}

/** Whether JSON number text is above zero, decided on its digits (`1e-400` is positive). */
export function isPositiveText(text: string): boolean {
  if (text.charCodeAt(0) === 45) return false;
  return hasNonZeroDigit(text);
}

/** Whether JSON number text is zero or above, decided on its digits (`-0` is zero). */
export function isNonNegativeText(text: string): boolean {
  return text.charCodeAt(0) !== 45 || !hasNonZeroDigit(text);
}

/** Whether the coefficient (before any exponent) of JSON number text has a digit 1-9. */
function hasNonZeroDigit(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 101 || c === 69) return false;
    if (c >= 49 && c <= 57) return true;
  }
  return false;
}

/**
 * The number `value` holds as a time, ms, for `TimeBounds.check` (lib/bounds.ts); `NaN` when it is no
 * number (missing, a string), which the check counts as `bad_time`.
 */
export function timeOf(value: unknown): number {
  return value instanceof NumberText ? Number(value.text) : Number.NaN;
}

/** The exact decimal text of a positive number of at most `MAX_NUMBER_TEXT` (64) chars. */
export function positiveText(value: unknown): string | undefined {
  if (!(value instanceof NumberText)) return undefined;
  const text = value.text;
  return text.length <= MAX_NUMBER_TEXT && isPositiveText(text) ? text : undefined;
}

/** The exact decimal text of a number ≥ 0 of at most `MAX_NUMBER_TEXT` (64) chars. */
export function nonNegativeText(value: unknown): string | undefined {
  if (!(value instanceof NumberText)) return undefined;
  const text = value.text;
  return text.length <= MAX_NUMBER_TEXT && isNonNegativeText(text) ? text : undefined;
}

/** A small whole number ≥ 0 (an exchange id, a condition code), or undefined. */
export function smallIntOf(value: unknown): number | undefined {
  if (!(value instanceof NumberText)) return undefined;
  const n = Number(value.text);
  return Number.isInteger(n) && n >= 0 && n <= 2 ** 31 - 1 ? n : undefined;
}

const isWs = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;

/**
 * The fast path of {@linkcode parseKeepingNumbers} for the shape Polygon sends: an array of flat
 * objects (or one such object) whose values are numbers, strings without escapes, or arrays of
 * numbers. Returns the events as {@linkcode parseKeepingNumbers} makes them (numbers as
 * {@linkcode NumberText}, the last of duplicate keys wins), or undefined for any other text
 * (then the general path decides, so invalid JSON and unusual shapes keep its outcome).
 */
export function scanFlatEvents(text: string): Record<string, unknown>[] | undefined {
  const n = text.length;
  let i = 0;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  const array = text.charCodeAt(i) === 91;
  const events: Record<string, unknown>[] = [];
  if (array) {
    i++;
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (text.charCodeAt(i) === 93) {
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      return i === n ? events : undefined;
    }
  }
  for (;;) {
    if (text.charCodeAt(i) !== 123) return undefined;
    i++;
    const e: Record<string, unknown> = {};
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (text.charCodeAt(i) !== 125) {
      for (;;) {
        if (text.charCodeAt(i) !== 34) return undefined;
        const keyStart = ++i;
        let c = text.charCodeAt(i);
        while (c !== 34) {
          if (c === 92 || !(c >= 32)) return undefined;
          c = text.charCodeAt(++i);
        }
        const key = text.slice(keyStart, i);
        // JSON.parse makes `__proto__` an own property; assignment would not: the general path.
        if (key === "__proto__") return undefined;
        i++;
        while (i < n && isWs(text.charCodeAt(i))) i++;
        if (text.charCodeAt(i) !== 58) return undefined;
        i++;
        while (i < n && isWs(text.charCodeAt(i))) i++;
        c = text.charCodeAt(i);
        if (c === 34) {
          const start = ++i;
          c = text.charCodeAt(i);
          while (c !== 34) {
            if (c === 92 || !(c >= 32)) return undefined;
            c = text.charCodeAt(++i);
          }
          e[key] = text.slice(start, i);
          i++;
        } else if (c === 91) {
          const list: NumberText[] = [];
          i++;
          while (i < n && isWs(text.charCodeAt(i))) i++;
          if (text.charCodeAt(i) !== 93) {
            for (;;) {
              const end = numberEnd(text, i);
              if (end < 0) return undefined;
              list.push(new NumberText(text.slice(i, end)));
              i = end;
              while (i < n && isWs(text.charCodeAt(i))) i++;
              c = text.charCodeAt(i);
              if (c === 93) break;
              if (c !== 44) return undefined;
              i++;
              while (i < n && isWs(text.charCodeAt(i))) i++;
            }
          }
          i++;
          e[key] = list;
        } else {
          const end = numberEnd(text, i);
          if (end < 0) return undefined;
          e[key] = new NumberText(text.slice(i, end));
          i = end;
        }
        while (i < n && isWs(text.charCodeAt(i))) i++;
        c = text.charCodeAt(i);
        if (c === 125) break;
        if (c !== 44) return undefined;
        i++;
        while (i < n && isWs(text.charCodeAt(i))) i++;
      }
    }
    events.push(e);
    i++;
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (!array) break;
    const c = text.charCodeAt(i);
    if (c === 93) {
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      break;
    }
    if (c !== 44) return undefined;
    i++;
    while (i < n && isWs(text.charCodeAt(i))) i++;
  }
  return i === n ? events : undefined;
}

/**
 * The end of the JSON number token at `i` (grammar `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`),
 * or -1 when there is none.
 */
function numberEnd(text: string, i: number): number {
  let c = text.charCodeAt(i);
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
  return i;
}

/**
 * `new Date(t).toISOString()` with the text up to the second cached: events arrive in time
 * order, so most share the last second. One per transform.
 */
export class IsoClock {
  #second = Number.NaN;
  #prefix = "";

  /** The ISO 8601 UTC text of `t` (ms), as `Date.prototype.toISOString` writes it. */
  iso(t: number): string {
    const second = t - (t % 1000);
    if (second !== this.#second) {
      const iso = new Date(second).toISOString();
      this.#prefix = iso.slice(0, iso.length - 5);
      this.#second = second;
    }
    return this.#prefix + PAD3[t % 1000] + "Z";
  }
}

const PAD3 = Array.from({ length: 1000 }, (_, i) => "." + String(i).padStart(3, "0"));
