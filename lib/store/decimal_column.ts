/**
 * Fitting exact decimal text into a `DECIMAL(precision, scale)` column: the plain text the
 * databases are sent, or why it does not fit. Nothing is ever rounded.
 */

/** The spreads column, DECIMAL(38,18); why these numbers: docs/history.md "Exact values". */
export const SPREAD_DECIMAL = { precision: 38, scale: 18 } as const;

/** The gaps' `seconds` column, DECIMAL(18,3): a gap is whole milliseconds long. */
export const SECONDS_DECIMAL = { precision: 18, scale: 3 } as const;

/** A column's precision (all digits) and scale (digits after the point). */
export interface DecimalShape {
  precision: number;
  scale: number;
}

const NUMBER_RE = /^(-)?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/**
 * True when `text` is already the plain text {@linkcode fitDecimal} would give and fits the
 * column: an optional `-`, no leading zero (a lone `0` before the point), no exponent, a
 * fraction that does not end in `0`, and not `-0`. A scan without allocation; the producer's
 * spreads are nearly all like this.
 */
export function isPlainFit(text: string, shape: DecimalShape): boolean {
  const n = text.length;
  let i = text.charCodeAt(0) === 45 ? 1 : 0;
  const first = text.charCodeAt(i);
  if (!(first >= 48 && first <= 57)) return false;
  let integer = 0;
  if (first === 48) i++;
  else {
    while (i < n && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) {
      i++;
      integer++;
    }
  }
  if (i === n) return text !== "-0" && integer <= shape.precision - shape.scale;
  if (text.charCodeAt(i) !== 46) return false;
  const point = ++i;
  while (i < n && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  const fraction = i - point;
  return i === n && fraction > 0 && fraction <= shape.scale && text.charCodeAt(n - 1) !== 48 &&
    integer <= shape.precision - shape.scale;
}

/**
 * The plain decimal text of a JSON number text (`1e-8` → `0.00000001`, `-0.50` → `-0.5`,
 * `-0` → `0`) when it fits the column, else a sentence saying why not: too many digits after
 * the point (it would have to be rounded) or before it (it would overflow).
 * @example fitDecimal("7e-06", { precision: 38, scale: 18 }) // { text: "0.000007" }
 */
export function fitDecimal(
  text: string,
  shape: DecimalShape,
): { text: string } | { error: string } {
  if (isPlainFit(text, shape)) return { text };
  const m = NUMBER_RE.exec(text);
  if (m === null) return { error: `${JSON.stringify(text.slice(0, 40))} is not a decimal number` };
  const negative = m[1] === "-";
  const all = m[2]! + (m[3] ?? "");
  // A huge exponent text is out of range whatever its digits; do not build its string.
  if ((m[4] ?? "").replace(/^[+-]?0*/, "").length > 6) {
    return /^[+-]?0*$/.test(all) ? { text: "0" } : {
      error: `${text.slice(0, 40)} is outside DECIMAL(${shape.precision},${shape.scale})`,
    };
  }
  let exponent = Number(m[4] ?? "0") - (m[3] ?? "").length;
  let start = 0;
  while (start < all.length && all.charCodeAt(start) === 48) start++;
  let digits = all.slice(start);
  let end = digits.length;
  while (end > 0 && digits.charCodeAt(end - 1) === 48) {
    end--;
    exponent++;
  }
  digits = digits.slice(0, end);
  if (digits === "") return { text: "0" };
  const fraction = Math.max(0, -exponent);
  const integer = Math.max(0, digits.length + exponent);
  const name = `DECIMAL(${shape.precision},${shape.scale})`;
  if (fraction > shape.scale) {
    return {
      error: `${text.slice(0, 40)} has ${fraction} digits after the point; ${name} keeps ` +
        `${shape.scale} and the store never rounds`,
    };
  }
  if (integer > shape.precision - shape.scale) {
    return {
      error: `${text.slice(0, 40)} has ${integer} digits before the point; ${name} holds ` +
        `${shape.precision - shape.scale}`,
    };
  }
  let plain: string;
  if (exponent >= 0) plain = digits + "0".repeat(exponent);
  else if (-exponent < digits.length) {
    plain = digits.slice(0, digits.length + exponent) + "." +
      digits.slice(digits.length + exponent);
  } else plain = "0." + "0".repeat(-exponent - digits.length) + digits;
  return { text: negative ? "-" + plain : plain };
}

/** The canonical text of a decimal the database gave back (`0.010000000000000000` → `0.01`). */
export function canonicalDecimal(text: string): string {
  const fitted = fitDecimal(text, { precision: 2_000, scale: 1_000 });
  if ("error" in fitted) throw new RangeError(`Cannot read decimal "${text}": ${fitted.error}`);
  return fitted.text;
}
