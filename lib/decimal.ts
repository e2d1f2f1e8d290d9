/**
 * Exact decimal subtraction of JSON number texts, formatted the way JavaScript formats numbers
 * (`0.01`, `1e-8`), so the result is a valid JSON number with no binary float noise.
 */

/** A parsed decimal: value = (negative ? -1 : 1) × coefficient × 10^exponent. */
interface Parsed {
  negative: boolean;
  /** Coefficient digits without leading zeros; "" means zero. */
  digits: string;
  exponent: number;
}

/** Thrown when a text is not a decimal number. */
export class DecimalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DecimalError";
  }
}

const DECIMAL_RE = /^(-)?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** Parses a JSON/JavaScript number text (`-12.5`, `7e-06`, `1.3E+2`) into an exact decimal. */
function parse(text: string): Parsed {
  const m = DECIMAL_RE.exec(text);
  if (m === null || (m[2] === "" && (m[3] ?? "") === "")) {
    throw new DecimalError(`Cannot parse decimal "${text}"`);
  }
  const intPart = m[2] ?? "";
  const fracPart = m[3] ?? "";
  let digits = intPart + fracPart;
  let exponent = (m[4] === undefined ? 0 : Number.parseInt(m[4], 10)) - fracPart.length;
  let start = 0;
  while (start < digits.length && digits.charCodeAt(start) === 48) start++;
  digits = digits.slice(start);
  let end = digits.length;
  while (end > 0 && digits.charCodeAt(end - 1) === 48) {
    end--;
    exponent++;
  }
  digits = digits.slice(0, end);
  return { negative: m[1] === "-" && digits !== "", digits, exponent };
}

/**
 * Formats sign, digits and exponent as ECMAScript's Number::toString would format that value,
 * but exactly, whatever the number of digits.
 */
function format(negative: boolean, digits: string, exponent: number): string {
  if (digits === "") return "0";
  const k = digits.length;
  const n = k + exponent;
  let out: string;
  if (k <= n && n <= 21) out = digits + "0".repeat(n - k);
  else if (0 < n && n <= 21) out = digits.slice(0, n) + "." + digits.slice(n);
  else if (-6 < n && n <= 0) out = "0." + "0".repeat(-n) + digits;
  else {
    const e = n - 1;
    const mantissa = k === 1 ? digits : digits[0] + "." + digits.slice(1);
    out = mantissa + "e" + (e < 0 ? "-" : "+") + Math.abs(e);
  }
  return negative ? "-" + out : out;
}

/** Largest coefficient digit count for which plain numbers stay exact integers. */
const SAFE_DIGITS = 15;

/**
 * Returns `a - b`, exactly, as JSON number text. Both arguments are number texts as they appear
 * in JSON or as `String(number)` writes them.
 * @example subtract("29603.83", "29603.82") // "0.01"
 * @example subtract("1.3e-7", "1.2e-7") // "1e-8"
 */
export function subtract(a: string, b: string): string {
  const x = parse(a);
  const y = parse(b);
  if (y.digits === "") return format(x.negative, x.digits, x.exponent);
  if (x.digits === "") return format(!y.negative, y.digits, y.exponent);
  const e = Math.min(x.exponent, y.exponent);
  const xShift = x.exponent - e;
  const yShift = y.exponent - e;
  let negative: boolean;
  let digits: string;
  if (x.digits.length + xShift <= SAFE_DIGITS && y.digits.length + yShift <= SAFE_DIGITS) {
    const xv = Number(x.digits) * 10 ** xShift * (x.negative ? -1 : 1);
    const yv = Number(y.digits) * 10 ** yShift * (y.negative ? -1 : 1);
    const d = xv - yv;
    negative = d < 0;
    digits = d === 0 ? "" : String(Math.abs(d));
  } else {
    const xv = BigInt(x.digits) * 10n ** BigInt(xShift) * (x.negative ? -1n : 1n);
    const yv = BigInt(y.digits) * 10n ** BigInt(yShift) * (y.negative ? -1n : 1n);
    const d = xv - yv;
    negative = d < 0n;
    digits = d === 0n ? "" : (negative ? -d : d).toString();
  }
  let exponent = e;
  let end = digits.length;
  while (end > 0 && digits.charCodeAt(end - 1) === 48) {
    end--;
    exponent++;
  }
  return format(negative, digits.slice(0, end), exponent);
}

/** Normalises a number text to the exact JavaScript-style form (`7e-06` → `0.000007`). */
export function normalize(text: string): string {
  const p = parse(text);
  return format(p.negative, p.digits, p.exponent);
}

/**
 * Writes a number text in plain positional notation, never with an exponent, for people to read
 * (`1e-7` → `0.0000001`, `1.5e+22` → `15000000000000000000000`). The value and its digits are
 * unchanged (`3454.50` stays `3454.50`); JSON records keep the form they have.
 */
export function plain(text: string): string {
  const { negative, digits, exponent } = parse(text);
  if (!/[eE]/.test(text)) return text;
  if (digits === "") return "0";
  const n = digits.length + exponent;
  let out: string;
  if (exponent >= 0) out = digits + "0".repeat(exponent);
  else if (n > 0) out = digits.slice(0, n) + "." + digits.slice(n);
  else out = "0." + "0".repeat(-n) + digits;
  return negative ? "-" + out : out;
}
