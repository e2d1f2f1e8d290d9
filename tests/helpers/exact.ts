/**
 * The independent reference for the exact channels: decimal texts read with BigInt (no code of
 * the transforms), and the records a seeded feed must make, built from its truth.
 */
import type { BarTruth, Exact, Feed, TradeTruth } from "../../lib/polygon/feed.ts";

/** A JSON number text as an exact decimal, read with BigInt. */
export function exactOf(text: string): Exact {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) throw new Error(`not a JSON number: "${text}"`);
  const [, sign, int, frac = "", exp = "0"] = m;
  let coef = BigInt(int! + frac);
  let scale = frac.length - Number(exp);
  if (scale < 0) {
    coef *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { coef: sign === "-" ? -coef : coef, scale };
}

/** Whether two exact decimals hold the same value. */
export function sameValue(a: Exact, b: Exact): boolean {
  const s = Math.max(a.scale, b.scale);
  return a.coef * 10n ** BigInt(s - a.scale) === b.coef * 10n ** BigInt(s - b.scale);
}

/** The source text of every number of a record value, by key (JSON.parse's own source). */
export function numberTexts(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  JSON.parse(value, function (key, v, context?: { source?: string }) {
    if (typeof v === "number" && context?.source && key !== "" && !/^\d+$/.test(key)) {
      out[key] = context.source;
    }
    return v;
  });
  return out;
}

/** A trade record value checked against its truth: every field, numbers compared exactly. */
export function tradeMismatch(value: string, truth: TradeTruth): string | undefined {
  const v = JSON.parse(value);
  const n = numberTexts(value);
  const want = {
    timestamp: new Date(truth.t).toISOString(),
    symbol: truth.pair,
    id: truth.id,
    exchange: truth.exchange,
    conditions: truth.conditions,
  };
  const got = {
    timestamp: v.timestamp,
    symbol: v.symbol,
    id: v.id,
    exchange: v.exchange,
    conditions: v.conditions,
  };
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    return `fields ${JSON.stringify(got)} != ${JSON.stringify(want)}`;
  }
  if (Object.keys(v).join(",") !== "timestamp,symbol,price,size,id,exchange,conditions") {
    return `keys ${Object.keys(v)}`;
  }
  if (!sameValue(exactOf(n.price!), truth.price)) return `price ${n.price} != ${show(truth.price)}`;
  if (!sameValue(exactOf(n.size!), truth.size)) return `size ${n.size} != ${show(truth.size)}`;
  return undefined;
}

/** A bar record value checked against its truth. */
export function barMismatch(value: string, truth: BarTruth): string | undefined {
  const v = JSON.parse(value);
  const n = numberTexts(value);
  if (
    v.timestamp !== new Date(truth.start).toISOString() ||
    v.end !== new Date(truth.end).toISOString() || v.symbol !== truth.pair
  ) return `fields ${value}`;
  if (Object.keys(v).join(",") !== "timestamp,end,symbol,open,high,low,close,volume,vwap") {
    return `keys ${Object.keys(v)}`;
  }
  for (const k of ["open", "high", "low", "close", "volume", "vwap"] as const) {
    if (!sameValue(exactOf(n[k]!), truth[k])) return `${k} ${n[k]} != ${show(truth[k])}`;
  }
  return undefined;
}

/** The spread of a quote, exactly, as an Exact. */
export function spreadOf(bid: Exact, ask: Exact): Exact {
  const s = Math.max(bid.scale, ask.scale);
  return {
    coef: ask.coef * 10n ** BigInt(s - ask.scale) - bid.coef * 10n ** BigInt(s - bid.scale),
    scale: s,
  };
}

function show(x: Exact): string {
  return `${x.coef}e-${x.scale}`;
}

/**
 * Checks records (values in arrival order) against a feed's truth, record for record; returns
 * the first mismatch, or undefined.
 */
export function checkFeed(
  feed: Feed,
  got: { trades: readonly string[]; bars: readonly string[]; spreads?: readonly string[] },
): string | undefined {
  if (got.trades.length !== feed.trades.length) {
    return `${got.trades.length} trades, want ${feed.trades.length}`;
  }
  for (let i = 0; i < feed.trades.length; i++) {
    const m = tradeMismatch(got.trades[i]!, feed.trades[i]!);
    if (m) return `trade ${i}: ${m}: ${got.trades[i]}`;
  }
  if (got.bars.length !== feed.bars.length) {
    return `${got.bars.length} bars, want ${feed.bars.length}`;
  }
  for (let i = 0; i < feed.bars.length; i++) {
    const m = barMismatch(got.bars[i]!, feed.bars[i]!);
    if (m) return `bar ${i}: ${m}: ${got.bars[i]}`;
  }
  if (got.spreads) {
    if (got.spreads.length !== feed.quotes.length) {
      return `${got.spreads.length} spreads, want ${feed.quotes.length}`;
    }
    const want = feed.quotes.map((q) => `${q.pair} ${q.t} ${show(norm(spreadOf(q.bid, q.ask)))}`)
      .sort();
    const have = got.spreads.map((s) => {
      const v = JSON.parse(s);
      return `${v.symbol} ${Date.parse(v.timestamp)} ${
        show(norm(exactOf(numberTexts(s).spread!)))
      }`;
    }).sort();
    for (let i = 0; i < want.length; i++) {
      if (want[i] !== have[i]) return `spread ${i}: ${have[i]} != ${want[i]}`;
    }
  }
  return undefined;
}

/** Groups values in arrival order by symbol (a consumer reads each key's partition in order). */
export function inSymbolOrder<T extends { pair: string }>(truth: readonly T[]): T[] {
  const pairs = [...new Set(truth.map((t) => t.pair))].sort();
  return pairs.flatMap((p) => truth.filter((t) => t.pair === p));
}

function norm(x: Exact): Exact {
  let { coef, scale } = x;
  while (scale > 0 && coef % 10n === 0n) {
    coef /= 10n;
    scale--;
  }
  return { coef, scale };
}
