/**
 * What the consumer does with records: check that each value is a spread record (or, on the
 * trades and bars topics of `--channels`, a trade or a minute bar), print it (JSON
 * lines) or keep it in the live per-symbol table of `--format table`, count malformed ones, and
 * stop at `--max-messages`, telling the source how many records of a batch were handled.
 */
import type { InRecord } from "./sink.ts";
import { plain } from "./decimal.ts";

/** A spread record value as parsed by the consumer. */
export interface SpreadValue {
  timestamp: string;
  symbol: string;
  spread: number;
}

/** A trade record value (the trades topic), its numbers as their exact texts. */
export interface TradeValue {
  kind: "trade";
  timestamp: string;
  symbol: string;
  price: string;
  size: string;
  /** The aggressor side from the conditions: 2 buy, 1 sell, else "". */
  side: "buy" | "sell" | "";
}

/** A minute-bar record value (the bars topic), its numbers as their exact texts. */
export interface BarValue {
  kind: "bar";
  timestamp: string;
  symbol: string;
  open: string;
  high: string;
  low: string;
  close: string;
  volume: string;
  vwap: string;
}

/** Any record value the consumer shows. */
export type RecordValue = SpreadValue | TradeValue | BarValue;

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The source text of each top-level number of a JSON object text. */
function numberTexts(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  JSON.parse(value, function (this: unknown, key, v, context?: { source?: string }) {
    if (typeof v === "number" && context?.source !== undefined) out[key] = context.source;
    return v;
  });
  return out;
}

/** A trade or bar value, or why it is not one (`o` is the parsed object of `value`). */
function validateOther(o: Record<string, unknown>, value: string): TradeValue | BarValue | string {
  const fields = "price" in o
    ? ["timestamp", "symbol", "price", "size"]
    : ["timestamp", "symbol", "open", "high", "low", "close", "volume", "vwap"];
  for (const field of fields) if (!(field in o)) return `"${field}" is missing`;
  if (typeof o.timestamp !== "string" || !ISO_RE.test(o.timestamp)) {
    return `"timestamp" is not an ISO 8601 UTC time: ${JSON.stringify(o.timestamp)}`;
  }
  if (typeof o.symbol !== "string" || o.symbol === "") {
    return `"symbol" is not a non-empty string: ${JSON.stringify(o.symbol)}`;
  }
  for (const field of fields.slice(2)) {
    if (typeof o[field] !== "number") {
      return `"${field}" is not a number: ${JSON.stringify(o[field])}`;
    }
  }
  const n = numberTexts(value);
  if ("price" in o) {
    const c = Array.isArray(o.conditions) ? o.conditions : [];
    const side = c.includes(2) ? "buy" : c.includes(1) ? "sell" : "";
    return {
      kind: "trade",
      timestamp: o.timestamp,
      symbol: o.symbol,
      price: n.price!,
      size: n.size!,
      side,
    };
  }
  return {
    kind: "bar",
    timestamp: o.timestamp,
    symbol: o.symbol,
    open: n.open!,
    high: n.high!,
    low: n.low!,
    close: n.close!,
    volume: n.volume!,
    vwap: n.vwap!,
  };
}

/**
 * Returns the parsed value, or a sentence saying why it is not a spread record (a value with
 * `price` and no `spread` is read as a trade, one with `close` as a minute bar).
 */
export function validateRecord(value: string | null): RecordValue | string {
  if (value === null) return "the value is empty (a tombstone)";
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return `the value is not JSON: ${JSON.stringify(value.slice(0, 80))}`;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "the value is not an object";
  const o = v as Record<string, unknown>;
  if (!("spread" in o) && ("price" in o || "close" in o)) return validateOther(o, value);
  for (const field of ["timestamp", "symbol", "spread"]) {
    if (!(field in o)) return `"${field}" is missing`;
  }
  if (typeof o.timestamp !== "string" || !ISO_RE.test(o.timestamp)) {
    return `"timestamp" is not an ISO 8601 UTC time: ${JSON.stringify(o.timestamp)}`;
  }
  if (typeof o.symbol !== "string" || o.symbol === "") {
    return `"symbol" is not a non-empty string: ${JSON.stringify(o.symbol)}`;
  }
  if (typeof o.spread !== "number") return `"spread" is not a number: ${JSON.stringify(o.spread)}`;
  return { timestamp: o.timestamp, symbol: o.symbol, spread: o.spread };
}

interface Row {
  last: RecordValue;
  count: number;
  /** Local receive times within the rate window. */
  recent: number[];
}

/** The live per-symbol view: last spread, updates per second, age of the last quote. */
export class SpreadTable {
  #rows = new Map<string, Row>();
  #windowMs: number;

  /** `windowMs`: the window of the updates-per-second rate; default 5000. */
  constructor(windowMs = 5000) {
    this.#windowMs = windowMs;
  }

  /** Adds one record received at local time `now`. */
  add(value: RecordValue, now: number): void {
    let row = this.#rows.get(value.symbol);
    if (!row) this.#rows.set(value.symbol, row = { last: value, count: 0, recent: [] });
    row.last = value;
    row.count++;
    row.recent.push(now);
  }

  /**
   * The table as text, symbols sorted, with ages relative to `now`. Columns widen to fit their
   * longest cell, so two columns are always at least two spaces apart.
   */
  render(now: number): string {
    const spreads: string[][] = [["symbol", "last spread", "upd/s", "age", "count"]];
    const trades: string[][] = [[
      "symbol",
      "last price",
      "size",
      "side",
      "trades/s",
      "age",
      "count",
    ]];
    const bars: string[][] = [
      ["symbol", "bar start", "open", "high", "low", "close", "volume", "vwap", "count"],
    ];
    for (const [symbol, row] of [...this.#rows].sort((a, b) => a[0].localeCompare(b[0]))) {
      const cutoff = now - this.#windowMs;
      while (row.recent.length > 0 && row.recent[0]! < cutoff) row.recent.shift();
      const rate = (row.recent.length / (this.#windowMs / 1000)).toFixed(1);
      const last = row.last;
      const age = formatAge(now, last.timestamp);
      if (!("kind" in last)) {
        spreads.push([symbol, plain(String(last.spread)), rate, age, String(row.count)]);
      } else if (last.kind === "trade") {
        trades.push([
          symbol,
          plain(last.price),
          plain(last.size),
          last.side,
          rate,
          age,
          String(row.count),
        ]);
      } else {
        const start = `${last.timestamp.slice(0, 10)} ${last.timestamp.slice(11, 16)}Z`;
        bars.push([
          symbol,
          start,
          plain(last.open),
          plain(last.high),
          plain(last.low),
          plain(last.close),
          plain(last.volume),
          plain(last.vwap),
          String(row.count),
        ]);
      }
    }
    const sections: string[] = [];
    if (spreads.length > 1 || (trades.length === 1 && bars.length === 1)) {
      sections.push(layout(spreads, MIN_WIDTHS));
    }
    if (trades.length > 1) sections.push(layout(trades, [14, 16, 14, 6, 10, 10, 10]));
    if (bars.length > 1) sections.push(layout(bars, [14, 19, 12, 12, 12, 12, 14, 12, 8]));
    return sections.join("\n\n");
  }
}

/** Rows as aligned text: the first column left-aligned, the others right-aligned. */
function layout(rows: string[][], minWidths: readonly number[]): string {
  const widths = minWidths.map((min, i) => Math.max(min, ...rows.map((r) => r[i]!.length + 2)));
  return rows.map((r) =>
    r.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join("")
      .trimEnd()
  ).join("\n");
}

/** Least width of each table column: symbol, last spread, upd/s, age, count. */
const MIN_WIDTHS = [14, 16, 9, 10, 10];

/**
 * The age of a quote for the table: seconds under a minute (`9.0s`), then minutes (`12m05s`),
 * then hours (`3h12m`); a quote a day old or more shows its UTC time instead
 * (`2021-07-21 00:46Z`), since a count of seconds that large reads as nothing.
 */
export function formatAge(now: number, timestamp: string): string {
  const ms = now - Date.parse(timestamp);
  const seconds = ms / 1000;
  if (Math.abs(seconds) < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 0 || seconds >= 86_400) {
    return `${timestamp.slice(0, 10)} ${timestamp.slice(11, 16)}Z`;
  }
  const whole = Math.floor(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor(whole / 60) % 60).padStart(2, "0")}m`;
}

/** Options for {@linkcode RecordPrinter}. */
export interface RecordPrinterOptions {
  /** Writes one output line (JSON mode); the printer calls `flush` once per batch. */
  line: (text: string) => Promise<void> | void;
  /** Writes out buffered lines; called before a batch counts as handled. Default none. */
  flush?: () => Promise<void> | void;
  /**
   * Once the output broke (a closed pipe), how many of the lines printed since the start the
   * reader surely took; undefined while the output is fine. A batch then counts as handled only
   * up to the first record whose line is not among them. Default: never broken.
   */
  delivered?: () => number | undefined;
  /** Reports a malformed record (one line, for stderr). */
  report: (line: string) => void;
  /** Stop after this many valid records; default no limit. */
  maxMessages?: number;
  /** When set, records go into this table instead of being printed as lines. */
  table?: SpreadTable;
  /** Called for each valid record with the local time, e.g. for metrics. Default none. */
  onRecord?: (record: InRecord, now: number) => void;
  /** Called once per batch with its valid spread values (per-symbol metrics). Default none. */
  onValues?: (values: SpreadValue[], now: number) => void;
  /** Clock in epoch ms; default `Date.now`. */
  now?: () => number;
}

/**
 * Handles the consumer's batches: prints valid records, reports and skips malformed ones, and
 * stops at `maxMessages`. {@linkcode RecordPrinter.handle} returns how many records of the batch
 * were handled, so the source commits exactly those (see `RecordSource.consume`).
 */
export class RecordPrinter {
  /** Valid records printed (or added to the table). */
  consumed = 0;
  /** Malformed records reported and skipped. */
  malformed = 0;
  /** Lines printed so far (JSON mode). */
  #lines = 0;
  #options: RecordPrinterOptions;

  constructor(options: RecordPrinterOptions) {
    this.#options = options;
  }

  /** True once `maxMessages` records were handled: the consumer should stop. */
  get full(): boolean {
    const max = this.#options.maxMessages;
    return max !== undefined && this.consumed >= max;
  }

  /** Handles a batch in order; resolves to the number of records handled, after the flush. */
  async handle(records: readonly InRecord[]): Promise<number> {
    const { line, flush, report, table, onRecord, onValues } = this.#options;
    const now = (this.#options.now ?? Date.now)();
    const values: SpreadValue[] | undefined = onValues ? [] : undefined;
    let handled = 0;
    // The line number of each record printed in this batch, by its index in the batch.
    const printed: [index: number, line: number][] = [];
    for (const r of records) {
      if (this.full) break;
      handled++;
      const value = validateRecord(r.value);
      if (typeof value === "string") {
        this.malformed++;
        report(`malformed record at ${r.topic}/${r.partition}/${r.offset}: ${value}; skipped`);
        continue;
      }
      this.consumed++;
      onRecord?.(r, now);
      if (!("kind" in value)) values?.push(value);
      if (table) table.add(value, now);
      else {
        printed.push([handled - 1, this.#lines++]);
        await line(r.value!);
      }
    }
    await flush?.();
    if (values && values.length > 0) onValues?.(values, now);
    const delivered = this.#options.delivered?.();
    if (delivered !== undefined) {
      // The output broke: what the reader may not have taken is not handled (not committed).
      const lost = printed.find(([, n]) => n >= delivered);
      if (lost !== undefined) {
        const kept = lost[0];
        this.consumed -= printed.filter(([i]) => i >= kept).length;
        handled = kept;
      }
    }
    return handled;
  }
}
