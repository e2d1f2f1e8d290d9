/**
 * JSON read with every number kept as its text: the exact reader of the trade and bar
 * transforms. `JSON.parse` runs with a reviver that replaces each number by a
 * {@linkcode NumberText} holding its source text, so no price or size ever passes through a
 * float. Pure: no I/O.
 */

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

/** Longest number text a record carries (a longer one is hostile, not a price). */
export const MAX_NUMBER_TEXT = 64;

/** Latest time a `Date` can hold, ms since the epoch. */
export const MAX_DATE_MS = 8.64e15;

/**
 * The whole non-negative number of ms within the `Date` range that `value` holds, or undefined
 * (missing, a string, a fraction, negative, out of range). The same rule as the spread
 * transform's `t`.
 */
export function timeOf(value: unknown): number | undefined {
  if (!(value instanceof NumberText)) return undefined;
  const t = Number(value.text);
  return Number.isInteger(t) && t >= 0 && t <= MAX_DATE_MS ? t : undefined;
}

/** The exact decimal text of a positive number of at most {@linkcode MAX_NUMBER_TEXT} chars. */
export function positiveText(value: unknown): string | undefined {
  if (!(value instanceof NumberText)) return undefined;
  const text = value.text;
  return text.length <= MAX_NUMBER_TEXT && isPositiveText(text) ? text : undefined;
}

/** The exact decimal text of a number ≥ 0 of at most {@linkcode MAX_NUMBER_TEXT} chars. */
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
