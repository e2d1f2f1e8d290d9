/**
 * lib/consumer_output.ts: record validation, the per-symbol table, and the batch handling of
 * consumer.ts (RecordPrinter) against the in-memory broker's at-least-once source. The process
 * itself, against a real broker, is tested in the e2e_*_test.ts suites.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { formatAge, RecordPrinter, SpreadTable, validateRecord } from "../lib/consumer_output.ts";
import { MemoryBroker } from "../lib/memory_broker.ts";
import { LineWriter } from "../lib/cli.ts";
import type { InRecord, OutRecord } from "../lib/sink.ts";

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 0);

function value(symbol: string, spread: string, t = T0): string {
  return `{"timestamp":"${new Date(t).toISOString()}","symbol":"${symbol}","spread":${spread}}`;
}

function out(key: string, text: string, t = T0): OutRecord {
  return { key, value: text, timestamp: t, headers: { "schema-version": "1" } };
}

function inRecord(text: string | null, offset = 0): InRecord {
  return {
    topic: "quotes",
    partition: 2,
    offset: String(offset),
    key: "BTC-USD",
    value: text,
    timestamp: T0,
    headers: {},
  };
}

Deno.test("validateRecord returns the fields of a spread record", () => {
  deepStrictEqual(validateRecord(value("BTC-USD", "0.01")), {
    timestamp: "2026-01-02T03:04:05.000Z",
    symbol: "BTC-USD",
    spread: 0.01,
  });
});

Deno.test("validateRecord says why a value is not a spread record", () => {
  const cases: [string | null, string][] = [
    [null, "the value is empty (a tombstone)"],
    ["not json", 'the value is not JSON: "not json"'],
    ["[1,2]", "the value is not an object"],
    ["null", "the value is not an object"],
    ['{"symbol":"BTC-USD","spread":1}', '"timestamp" is missing'],
    ['{"timestamp":"2026-01-02T03:04:05.000Z","spread":1}', '"symbol" is missing'],
    ['{"timestamp":"2026-01-02T03:04:05.000Z","symbol":"BTC-USD"}', '"spread" is missing'],
    [
      '{"timestamp":"2026-01-02 03:04:05","symbol":"BTC-USD","spread":1}',
      '"timestamp" is not an ISO 8601 UTC time: "2026-01-02 03:04:05"',
    ],
    [
      '{"timestamp":"2026-01-02T03:04:05.000Z","symbol":"","spread":1}',
      '"symbol" is not a non-empty string: ""',
    ],
    [
      '{"timestamp":"2026-01-02T03:04:05.000Z","symbol":"BTC-USD","spread":"1"}',
      '"spread" is not a number: "1"',
    ],
  ];
  for (const [text, reason] of cases) equal(validateRecord(text), reason, String(text));
});

Deno.test("validateRecord quotes at most 80 characters of a value that is not JSON", () => {
  const long = "x".repeat(200);
  equal(validateRecord(long), `the value is not JSON: "${"x".repeat(80)}"`);
});

Deno.test("the table shows each symbol's last spread, rate, age and count, sorted", () => {
  const table = new SpreadTable(5_000);
  const at = T0 + 10_000;
  table.add({ timestamp: new Date(T0).toISOString(), symbol: "ETH-USD", spread: 0.5 }, at - 6_000);
  table.add({ timestamp: new Date(T0).toISOString(), symbol: "BTC-USD", spread: 1.25 }, at - 2_000);
  table.add(
    { timestamp: new Date(T0 + 1_000).toISOString(), symbol: "BTC-USD", spread: 0.75 },
    at - 1_000,
  );
  deepStrictEqual(table.render(at).split("\n"), [
    "symbol             last spread    upd/s       age     count",
    "BTC-USD                   0.75      0.4      9.0s         2",
    "ETH-USD                    0.5      0.0     10.0s         1",
  ]);
});

Deno.test("the table keeps its columns apart and shows an old quote's age as a time, not seconds", () => {
  const table = new SpreadTable(5_000);
  const now = Date.parse("2026-11-27T12:00:00.000Z");
  const add = (symbol: string, timestamp: string, spread: number, n = 1) => {
    for (let i = 0; i < n; i++) table.add({ timestamp, symbol, spread }, now - 100);
  };
  add("BTC-USD", "2023-07-26T10:15:30.123Z", 0.44, 6392); // the 169 million seconds
  add("SHIB-USDT", "2026-11-27T11:47:55.000Z", 0.00000012345678);
  add("A-VERY-LONG-PAIR-NAME-USD", "2026-11-27T09:48:00.000Z", 1278.41689477);
  add("ETH-USD", "2026-11-27T11:59:50.500Z", 0);
  const rows = table.render(now).split("\n");
  deepStrictEqual(rows.map((r) => r.split(/ {2,}/)), [
    ["symbol", "last spread", "upd/s", "age", "count"],
    ["A-VERY-LONG-PAIR-NAME-USD", "1278.41689477", "0.2", "2h12m", "1"],
    ["BTC-USD", "0.44", "1278.4", "2023-07-26 10:15Z", "6392"],
    ["ETH-USD", "0", "0.2", "9.5s", "1"],
    // People read 0.00000012345678, not 1.2345678e-7 (the JSON records keep their form).
    ["SHIB-USDT", "0.00000012345678", "0.2", "12m05s", "1"],
  ]);
  // Right-aligned columns end at the same place on every line.
  equal(new Set(rows.map((r) => r.length)).size, 1);
  equal(formatAge(now, "2026-11-28T12:00:00.000Z"), "2026-11-28 12:00Z");
  equal(formatAge(now, "2026-11-27T11:59:59.000Z"), "1.0s");
});

function printer(lines: string[], reports: string[], maxMessages?: number, table?: SpreadTable) {
  return new RecordPrinter({
    line: (text) => {
      lines.push(text);
    },
    report: (line) => reports.push(line),
    maxMessages,
    table,
    now: () => T0,
  });
}

Deno.test("the printer prints valid records, reports malformed ones with coordinates and counts both", async () => {
  const lines: string[] = [];
  const reports: string[] = [];
  const p = printer(lines, reports);
  const handled = await p.handle([
    inRecord(value("BTC-USD", "1"), 7),
    inRecord("oops", 8),
    inRecord(null, 9),
    inRecord(value("BTC-USD", "2"), 10),
  ]);
  equal(handled, 4);
  deepStrictEqual(lines, [value("BTC-USD", "1"), value("BTC-USD", "2")]);
  deepStrictEqual(reports, [
    'malformed record at quotes/2/8: the value is not JSON: "oops"; skipped',
    "malformed record at quotes/2/9: the value is empty (a tombstone); skipped",
  ]);
  equal(p.consumed, 2);
  equal(p.malformed, 2);
  equal(p.full, false);
});

Deno.test("the printer stops at maxMessages and counts only the records it handled", async () => {
  const lines: string[] = [];
  const p = printer(lines, [], 3);
  equal(await p.handle([inRecord(value("A-B", "1"), 0), inRecord(value("A-B", "2"), 1)]), 2);
  equal(p.full, false);
  // A malformed record before the limit is handled too; the record after the limit is not.
  equal(
    await p.handle([
      inRecord("bad", 2),
      inRecord(value("A-B", "3"), 3),
      inRecord(value("A-B", "4"), 4),
    ]),
    2,
  );
  equal(p.full, true);
  equal(await p.handle([inRecord(value("A-B", "5"), 5)]), 0);
  deepStrictEqual(lines, ["1", "2", "3"].map((s) => value("A-B", s)));
});

Deno.test("the printer flushes its output before it reports a batch as handled", async () => {
  const events: string[] = [];
  const p = new RecordPrinter({
    line: (text) => {
      events.push(`line ${JSON.parse(text).spread}`);
    },
    flush: async () => {
      await Promise.resolve();
      events.push("flush");
    },
    report: () => {},
  });
  equal(await p.handle([inRecord(value("A-B", "1")), inRecord(value("A-B", "2"))]), 2);
  events.push("handled");
  deepStrictEqual(events, ["line 1", "line 2", "flush", "handled"]);
});

Deno.test("in table mode the printer fills the table and prints no lines", async () => {
  const lines: string[] = [];
  const table = new SpreadTable();
  const p = printer(lines, [], undefined, table);
  await p.handle([inRecord(value("BTC-USD", "1.5")), inRecord(value("BTC-USD", "2.5"))]);
  deepStrictEqual(lines, []);
  const rows = table.render(T0).split("\n");
  equal(rows.length, 2);
  ok(/^BTC-USD\s+2\.5\s+0\.4\s+0\.0s\s+2$/.test(rows[1]!), rows[1]);
});

Deno.test("a consumer stopped at maxMessages and restarted in its group misses and repeats nothing", async () => {
  const broker = new MemoryBroker({ defaultPartitions: 2 });
  broker.createTopic("quotes", 2);
  const sent = Array.from(
    { length: 25 },
    (_, i) => out(i % 2 ? "BTC-USD" : "ETH-USD", value(i % 2 ? "BTC-USD" : "ETH-USD", String(i))),
  );
  broker.append("quotes", sent);
  const runOnce = async (maxMessages: number): Promise<string[]> => {
    const lines: string[] = [];
    const p = printer(lines, [], maxMessages);
    const source = broker.source({ topic: "quotes", groupId: "g", from: "earliest", batchMax: 4 });
    const stop = new AbortController();
    await source.consume(async (records) => {
      const handled = await p.handle(records);
      if (p.full) stop.abort();
      return handled;
    }, { signal: stop.signal });
    await source.close();
    return lines;
  };
  const first = await runOnce(7);
  equal(first.length, 7);
  deepStrictEqual(broker.lag("g", "quotes").reduce((a, b) => a + b, 0), 18);
  const second = await runOnce(18);
  equal(second.length, 18);
  deepStrictEqual([...first, ...second].sort(), sent.map((r) => r.value).sort());
  deepStrictEqual(broker.lag("g", "quotes"), [0, 0]);
});

Deno.test("the table shows trades with their exact price, size and aggressor side, and bars with their OHLC", () => {
  const now = Date.parse("2026-11-27T12:00:00.000Z");
  const trades = new SpreadTable(5_000);
  for (
    const v of [
      '{"timestamp":"2026-11-27T11:59:58.000Z","symbol":"BTC-USD","price":12345678901234567890.12,"size":1E-9,"id":"1","exchange":1,"conditions":[2]}',
      '{"timestamp":"2026-11-27T11:59:59.000Z","symbol":"ETH-USD","price":3454.50,"size":0.25,"id":"2","exchange":1,"conditions":[1]}',
    ]
  ) {
    const value = validateRecord(v);
    if (typeof value === "string") throw new Error(value);
    trades.add(value, now - 500);
  }
  deepStrictEqual(trades.render(now).split("\n").map((r) => r.split(/ {2,}/)), [
    ["symbol", "last price", "size", "side", "trades/s", "age", "count"],
    ["BTC-USD", "12345678901234567890.12", "0.000000001", "buy", "0.2", "2.0s", "1"],
    ["ETH-USD", "3454.50", "0.25", "sell", "0.2", "1.0s", "1"],
  ]);
  const bars = new SpreadTable(5_000);
  const bar = validateRecord(
    '{"timestamp":"2021-01-12T14:54:00.000Z","end":"2021-01-12T14:55:00.000Z","symbol":"BCD-USD","open":0.772,"high":0.784,"low":0.771,"close":0.784,"volume":951.6112,"vwap":0.7756}',
  );
  if (typeof bar === "string") throw new Error(bar);
  bars.add(bar, now);
  deepStrictEqual(bars.render(now).split("\n").map((r) => r.split(/ {2,}/)), [
    ["symbol", "bar start", "open", "high", "low", "close", "volume", "vwap", "count"],
    ["BCD-USD", "2021-01-12 14:54Z", "0.772", "0.784", "0.771", "0.784", "951.6112", "0.7756", "1"],
  ]);
  equal(
    validateRecord('{"timestamp":"2026-11-27T11:59:58.000Z","symbol":"A-B","price":"1","size":1}'),
    '"price" is not a number: "1"',
  );
});

/** A stream that takes `ok` writes, keeping their bytes, then fails as a closed pipe does. */
function pipeClosingAfter(ok: number): { stream: WritableStream<Uint8Array>; lines: () => number } {
  let text = "";
  let writes = 0;
  const stream = new WritableStream<Uint8Array>({
    write(chunk) {
      if (writes++ >= ok) throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      text += new TextDecoder().decode(chunk);
    },
  });
  return { stream, lines: () => text.split("\n").length - 1 };
}

function inRecords(count: number): InRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    topic: "t",
    partition: 0,
    offset: String(i),
    key: "BTC-USD",
    value: value("BTC-USD", `0.${String(i).padStart(4, "0")}`),
    timestamp: T0,
    headers: {},
  }));
}

Deno.test("finding 2: a batch written into a closed pipe counts as handled only up to the lines the reader surely took", async () => {
  for (const capacity of [0, 65_536]) {
    const pipe = pipeClosingAfter(1);
    const out = new LineWriter(pipe.stream, capacity);
    const printer = new RecordPrinter({
      line: (t) => out.line(t),
      flush: () => out.flush(),
      report: () => {},
      delivered: () => out.broken ? out.delivered() : undefined,
    });
    const handled = await printer.handle(inRecords(2_000));
    // The first 64 KiB chunk went out, the second hit the closed pipe. With a capacity of 0
    // (a file) the first chunk's lines are delivered; a pipe may still hold all of them.
    const firstChunk = pipe.lines();
    ok(firstChunk > 500 && firstChunk < 2_000, `first chunk: ${firstChunk} lines`);
    deepStrictEqual({ capacity, handled, consumed: printer.consumed, broken: out.broken }, {
      capacity,
      handled: capacity === 0 ? firstChunk : 0,
      consumed: capacity === 0 ? firstChunk : 0,
      broken: true,
    });
  }
});

Deno.test("finding 2: output that never breaks counts every record of a batch as handled", async () => {
  const pipe = pipeClosingAfter(Infinity);
  const out = new LineWriter(pipe.stream);
  const printer = new RecordPrinter({
    line: (t) => out.line(t),
    flush: () => out.flush(),
    report: () => {},
    delivered: () => out.broken ? out.delivered() : undefined,
  });
  deepStrictEqual(await printer.handle(inRecords(2_000)), 2_000);
  deepStrictEqual(pipe.lines(), 2_000);
});
