import { deepStrictEqual as deepEqual, equal } from "../helpers/assert.ts";
import { canonicalDecimal, fitDecimal, SPREAD_DECIMAL } from "../../lib/store/decimal_column.ts";
import { isoTime, mapGap, mapSpread, mapSpreadGeneral, toBatch } from "../../lib/store/rows.ts";
import { escapeString, escapeTag, lineProtocol } from "../../lib/store/questdb.ts";
import { createTableSql as pgCreate } from "../../lib/store/postgres.ts";
import { createTableSql as qdbCreate } from "../../lib/store/questdb.ts";
import { shapeMismatch, SPREADS_SHAPE, tablesFor } from "../../lib/store/schema.ts";
import type { InRecord } from "../../lib/sink.ts";

function record(value: string | null, offset = "7"): InRecord {
  return {
    topic: "t",
    partition: 2,
    offset,
    key: "k",
    value,
    timestamp: 1690409119847,
    headers: {},
  };
}

Deno.test("fitDecimal gives the plain text of a number that fits and never rounds one that does not", () => {
  deepEqual(fitDecimal("1e-8", SPREAD_DECIMAL), { text: "0.00000001" });
  deepEqual(fitDecimal("7e-06", SPREAD_DECIMAL), { text: "0.000007" });
  deepEqual(fitDecimal("-0.50", SPREAD_DECIMAL), { text: "-0.5" });
  deepEqual(fitDecimal("-0", SPREAD_DECIMAL), { text: "0" });
  deepEqual(fitDecimal("1.3E+2", SPREAD_DECIMAL), { text: "130" });
  deepEqual(fitDecimal("338.9", SPREAD_DECIMAL), { text: "338.9" });
  deepEqual(fitDecimal("0.000000000000000001", SPREAD_DECIMAL), { text: "0.000000000000000001" });
  deepEqual(fitDecimal("99999999999999999999.999999999999999999", SPREAD_DECIMAL), {
    text: "99999999999999999999.999999999999999999",
  });
  deepEqual(fitDecimal("1e-40", SPREAD_DECIMAL), {
    error:
      "1e-40 has 40 digits after the point; DECIMAL(38,18) keeps 18 and the store never rounds",
  });
  deepEqual(fitDecimal("0.1234567890123456789", SPREAD_DECIMAL), {
    error: "0.1234567890123456789 has 19 digits after the point; DECIMAL(38,18) keeps 18 and the " +
      "store never rounds",
  });
  deepEqual(fitDecimal("1e40", SPREAD_DECIMAL), {
    error: "1e40 has 41 digits before the point; DECIMAL(38,18) holds 20",
  });
  deepEqual(fitDecimal("1e999999999999", SPREAD_DECIMAL), {
    error: "1e999999999999 is outside DECIMAL(38,18)",
  });
  deepEqual(fitDecimal("0e999999999999", SPREAD_DECIMAL), { text: "0" });
  deepEqual(fitDecimal("0x10", SPREAD_DECIMAL), { error: '"0x10" is not a decimal number' });
});

Deno.test("canonicalDecimal reads a database's zero-padded decimal back as the record's text", () => {
  equal(canonicalDecimal("0.010000000000000000"), "0.01");
  equal(canonicalDecimal("-390.490000000000000000"), "-390.49");
  equal(canonicalDecimal("1e-8"), "0.00000001");
});

Deno.test("mapSpread keeps a spread's exact source text and the record's Kafka coordinates", () => {
  deepEqual(
    mapSpread(
      record('{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"CHZ-USD","spread":0.0002}'),
    ),
    {
      partition: 2,
      offset: "7",
      ts: 1690409119847,
      symbol: "CHZ-USD",
      spread: "0.0002",
    },
  );
  // Another field order and spacing goes through the JSON parser, still exact.
  deepEqual(
    mapSpread(
      record('{ "spread": 1e-8, "symbol": "BTC-USD", "timestamp": "2023-07-26T22:05:19.847Z" }'),
    ),
    {
      partition: 2,
      offset: "7",
      ts: 1690409119847,
      symbol: "BTC-USD",
      spread: "0.00000001",
    },
  );
});

Deno.test("mapSpread refuses each kind of hostile record with its code", () => {
  const ts = '"timestamp":"2023-07-26T22:05:19.847Z"';
  const cases: [string | null, string][] = [
    [null, "tombstone"],
    ["nope", "not_json"],
    ["3", "not_object"],
    ["[]", "not_object"],
    [`{${ts},"symbol":"BTC-USD"}`, "missing_field"],
    [`{${ts},"symbol":"BTC-USD","spread":"0.1"}`, "bad_type"],
    [`{${ts},"symbol":null,"spread":0.1}`, "bad_type"],
    [`{"timestamp":"2023-02-30T00:00:00.000Z","symbol":"BTC-USD","spread":0.1}`, "bad_timestamp"],
    [`{"timestamp":"1969-12-31T23:59:59.999Z","symbol":"BTC-USD","spread":0.1}`, "bad_timestamp"],
    [`{"timestamp":1690409119847,"symbol":"BTC-USD","spread":0.1}`, "bad_type"],
    [`{${ts},"symbol":"BTC-USD' OR 1=1 --","spread":0.1}`, "bad_symbol"],
    [`{${ts},"symbol":"${"X".repeat(65)}","spread":0.1}`, "bad_symbol"],
    [`{${ts},"symbol":"","spread":0.1}`, "bad_symbol"],
    [`{${ts},"symbol":"BTC-USD","spread":1e40}`, "out_of_range"],
    [`{${ts},"symbol":"BTC-USD","spread":-1e-40}`, "out_of_range"],
  ];
  for (const [value, code] of cases) {
    const got = mapSpread(record(value));
    equal("code" in got ? got.code : "row", code, String(value).slice(0, 80));
  }
});

Deno.test("mapGap reads a gap record with its seconds exact", () => {
  deepEqual(
    mapGap(
      record(
        '{"from":"2023-07-26T22:05:19.847Z","to":"2023-07-26T22:05:21.000Z","reason":"reconnect","seconds":1.153}',
      ),
    ),
    {
      partition: 2,
      offset: "7",
      ts: 1690409119847,
      to: 1690409121000,
      reason: "reconnect",
      seconds: "1.153",
    },
  );
  const bad = mapGap(
    record('{"from":"2023-07-26T22:05:19.847Z","to":"x","reason":"r","seconds":1}'),
  );
  equal("code" in bad ? bad.code : "row", "bad_timestamp");
});

Deno.test("toBatch puts rows and dead letters of one topic's batch apart, the dead letters verbatim", () => {
  const batch = toBatch([
    record('{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"A-B","spread":1}', "1"),
    record("garbage\n", "2"),
  ], "spreads");
  equal(batch.spreads.length, 1);
  deepEqual(batch.dead.map((d) => [d.offset, d.code, d.value, d.ts, d.topic]), [
    ["2", "not_json", "garbage\n", 1690409119847, "t"],
  ]);
});

Deno.test("line protocol escapes tags and strings so no value can start another field or line", () => {
  equal(escapeTag("a,b c=d\\e\nf"), "a\\,b\\ c\\=d\\\\e\\nf");
  equal(escapeString('say "hi"\\\nbye'), 'say \\"hi\\"\\\\\\\nbye');
  const text = new TextDecoder().decode(lineProtocol({
    spreads: [{ partition: 1, offset: "5", ts: 1690409119847, symbol: "BTC-USD", spread: "-0.5" }],
    gaps: [{ partition: 0, offset: "0", ts: 1000, to: 3500, reason: "reconnect", seconds: "2.5" }],
    dead: [{
      topic: "t",
      partition: 0,
      offset: "9",
      ts: 0,
      code: "not_json",
      reason: 'the value is not JSON: "x"',
      value: 'x"\n',
    }],
  }, tablesFor("spreads")));
  equal(
    text,
    "spreads,symbol=BTC-USD spread=-0.5d,kafka_partition=1i,kafka_offset=5i 1690409119847000\n" +
      "spreads_gaps,reason=reconnect to_ts=3500000t,seconds=2.5d,kafka_partition=0i,kafka_offset=0i 1000000\n" +
      'spreads_dead_letters,topic=t,code=not_json kafka_partition=0i,kafka_offset=9i,reason="the value is ' +
      'not JSON: \\"x\\"",value="x\\"\\\n" 0\n',
  );
});

Deno.test("line protocol bytes are the UTF-8 of each row's line, also for rows the quick path does not take", () => {
  const rows = [
    { partition: 0, offset: "0", ts: 1690409119847, symbol: "BTC-USD", spread: "0.01" },
    {
      partition: 5,
      offset: "9223372036854775807",
      ts: 253402300799999,
      symbol: "X",
      spread: "-338.9",
    },
    // Written as text: a symbol a tag escapes, one that is not ASCII, time 0, odd numbers.
    { partition: 3, offset: "12", ts: 1000, symbol: "a,b c=d\\e\nf", spread: "1" },
    { partition: 3, offset: "13", ts: 1001, symbol: "ÉTH-€", spread: "2" },
    { partition: 1, offset: "14", ts: 0, symbol: "SOL-USD", spread: "3" },
    { partition: -1, offset: "15", ts: 1.5, symbol: "SOL-USD", spread: "4" },
  ];
  const lines = [
    "s,symbol=BTC-USD spread=0.01d,kafka_partition=0i,kafka_offset=0i 1690409119847000\n",
    "s,symbol=X spread=-338.9d,kafka_partition=5i,kafka_offset=9223372036854775807i " +
    "253402300799999000\n",
    "s,symbol=a\\,b\\ c\\=d\\\\e\\nf spread=1d,kafka_partition=3i,kafka_offset=12i 1000000\n",
    "s,symbol=ÉTH-€ spread=2d,kafka_partition=3i,kafka_offset=13i 1001000\n",
    "s,symbol=SOL-USD spread=3d,kafka_partition=1i,kafka_offset=14i 0\n",
    "s,symbol=SOL-USD spread=4d,kafka_partition=-1i,kafka_offset=15i 1.5000\n",
  ];
  const tables = { spreads: "s", gaps: "s_gaps", dead: "s_dead" };
  for (const [i, row] of rows.entries()) {
    deepEqual(
      lineProtocol({ spreads: [row], gaps: [], dead: [] }, tables),
      new TextEncoder().encode(lines[i]!),
    );
  }
  // A batch larger than the first guess of its size grows its buffer and keeps every byte.
  const many = Array.from(
    { length: 3000 },
    (_, i) => ({ ...rows[i % 4]!, symbol: "S".repeat(i % 200 + 1) }),
  );
  const expected = many.map((r) =>
    new TextDecoder().decode(lineProtocol({ spreads: [r], gaps: [], dead: [] }, tables))
  ).join("");
  equal(
    new TextDecoder().decode(lineProtocol({ spreads: many, gaps: [], dead: [] }, tables)),
    expected,
  );
});

Deno.test("the tables are created with the exchange time designated, by day, keyed by Kafka coordinates", () => {
  equal(
    qdbCreate("spreads", SPREADS_SHAPE),
    "CREATE TABLE IF NOT EXISTS spreads (ts TIMESTAMP, symbol SYMBOL, spread DECIMAL(38,18), " +
      "kafka_partition INT, kafka_offset LONG) TIMESTAMP(ts) PARTITION BY DAY WAL " +
      "DEDUP UPSERT KEYS(ts, kafka_partition, kafka_offset)",
  );
  equal(
    pgCreate("spreads", SPREADS_SHAPE),
    "CREATE TABLE IF NOT EXISTS spreads (ts timestamp with time zone NOT NULL, symbol text NOT NULL, " +
      "spread numeric(38,18) NOT NULL, kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL, " +
      "PRIMARY KEY (ts, kafka_partition, kafka_offset))",
  );
});

Deno.test("shapeMismatch names the first column that is missing, of another type or keyed otherwise", () => {
  const good = SPREADS_SHAPE.columns.map((c) => ({ name: c.name, type: c.questdb, key: c.key }));
  equal(shapeMismatch("s", SPREADS_SHAPE, good, "questdb"), undefined);
  equal(
    shapeMismatch("s", SPREADS_SHAPE, good.filter((c) => c.name !== "symbol"), "questdb"),
    'table "s" has no column "symbol" (SYMBOL)',
  );
  equal(
    shapeMismatch(
      "s",
      SPREADS_SHAPE,
      good.map((c) => c.name === "spread" ? { ...c, type: "DOUBLE" } : c),
      "questdb",
    ),
    'column "spread" of table "s" is DOUBLE, expected DECIMAL(38,18)',
  );
  equal(
    shapeMismatch(
      "s",
      SPREADS_SHAPE,
      good.map((c) => c.name === "kafka_offset" ? { ...c, key: false } : c),
      "questdb",
    ),
    'column "kafka_offset" of table "s" is not part of the key, expected it in the key ' +
      "(ts, kafka_partition, kafka_offset)",
  );
});

Deno.test("isoTime reads exactly the times Date reads back to the same text, and refuses the rest", () => {
  // What the store accepted before it read times digit by digit: Date.parse and a round trip.
  const reference = (v: string) => {
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(v)) return undefined;
    const ms = Date.parse(v);
    return ms >= 0 && ms <= 253_402_300_799_999 && new Date(ms).toISOString() === v
      ? ms
      : undefined;
  };
  const texts = [
    "2023-07-26T22:05:19.847Z",
    "1970-01-01T00:00:00.000Z",
    "1969-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59.999Z",
    "2024-02-29T12:00:00.000Z",
    "2023-02-29T12:00:00.000Z",
    "2000-02-29T00:00:00.000Z",
    "1900-02-29T00:00:00.000Z",
    "2100-02-29T00:00:00.000Z",
    "2023-04-31T00:00:00.000Z",
    "2023-12-31T24:00:00.000Z",
    "2023-12-31T23:60:00.000Z",
    "2023-12-31T23:59:60.000Z",
    "2023-00-10T00:00:00.000Z",
    "2023-13-10T00:00:00.000Z",
    "2023-01-00T00:00:00.000Z",
    "0000-01-01T00:00:00.000Z",
    "2023-07-26T22:05:19.847",
    "2023-07-26 22:05:19.847Z",
    "+02023-07-26T22:05:19.847Z",
  ];
  // And every day of four years around a leap year and a century, at a varying time of day.
  for (let t = Date.UTC(2099, 0, 1); t < Date.UTC(2101, 0, 1); t += 86_400_000 + 3_723_001) {
    const text = new Date(t).toISOString();
    texts.push(
      text,
      text.replace(/-(\d\d)T/, (_m, d) => `-${String(Number(d) + 1).padStart(2, "0")}T`),
    );
  }
  for (let day = 28; day <= 32; day++) {
    for (let month = 1; month <= 12; month++) {
      const mm = String(month).padStart(2, "0");
      texts.push(`2024-${mm}-${day}T00:00:00.000Z`, `2023-${mm}-${day}T23:59:59.999Z`);
    }
  }
  const differ = texts.filter((v) => isoTime(v) !== reference(v));
  deepEqual(differ, []);
  equal(isoTime("2023-07-26T22:05:19.847Z"), 1690409119847);
  equal(isoTime("2023-02-29T12:00:00.000Z"), undefined);
  equal(isoTime(1690409119847), undefined);
});

Deno.test("fitDecimal's quick path for plain text gives what the general reading gives", () => {
  const texts = [
    "0",
    "-0",
    "0.5",
    "-0.5",
    "0.50",
    "00.5",
    "01",
    "1",
    "-1",
    "10",
    "338.9",
    "-390.49",
    "1.",
    ".5",
    "-",
    "",
    "1.0",
    "0.000000000000000001",
    "0.0000000000000000001",
    "99999999999999999999.999999999999999999",
    "999999999999999999999",
    "-99999999999999999999",
    "12345678901234567890.5",
    "0.123456789012345678",
    "0.1234567890123456789",
    "--1",
    "1.2.3",
    "0x10",
    " 1",
    "1 ",
  ];
  for (let i = 0; i < 2_000; i++) {
    const digits = (n: number) =>
      Array.from({ length: n }, () => "0123456789"[Math.floor(Math.random() * 10)]).join("");
    const sign = Math.random() < 0.3 ? "-" : "";
    const integer = digits(Math.floor(Math.random() * 23));
    const fraction = Math.random() < 0.8 ? "." + digits(Math.floor(Math.random() * 21)) : "";
    texts.push(sign + integer + fraction);
  }
  // "e0" sends the same number down the general path.
  const general = (text: string) => {
    const fitted = fitDecimal(text + "e0", SPREAD_DECIMAL);
    return "text" in fitted ? fitted.text : "error";
  };
  const quick = (text: string) => {
    const fitted = fitDecimal(text, SPREAD_DECIMAL);
    return "text" in fitted ? fitted.text : "error";
  };
  const differ = texts.filter((t) => /^-?\d+(\.\d+)?$/.test(t) && quick(t) !== general(t));
  deepEqual(differ, []);
  const refused = texts.filter((t) => !/^-?\d+(\.\d+)?$/.test(t) && quick(t) !== "error");
  deepEqual(refused, []);
  deepEqual(fitDecimal("-0", SPREAD_DECIMAL), { text: "0" });
  deepEqual(fitDecimal("0.50", SPREAD_DECIMAL), { text: "0.5" });
});

Deno.test("mapSpread's quick reading of the producer's records gives what the general reading gives", () => {
  const canonical = [
    '{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"CHZ-USD","spread":0.0002}',
    '{"timestamp":"2024-02-29T23:59:59.999Z","symbol":"BTC-USD","spread":-338.9}',
    `{"timestamp":"9999-12-31T23:59:59.999Z","symbol":"${"A".repeat(64)}","spread":0}`,
    '{"timestamp":"1970-01-01T00:00:00.000Z","symbol":"a.b_c:d/e-f","spread":12}',
  ];
  const values = new Set<string>(canonical);
  // Every one-character change, deletion and insertion of a few characters: each must be
  // mapped or refused exactly as the general reading does.
  const alphabet = [
    '"',
    "{",
    "}",
    ",",
    ":",
    "0",
    "9",
    "-",
    ".",
    "e",
    "Z",
    "T",
    " ",
    "\\",
    "A",
    "é",
  ];
  for (const v of canonical) {
    for (let i = 0; i <= v.length; i++) {
      values.add(v.slice(0, i) + v.slice(i + 1));
      for (const c of alphabet) {
        values.add(v.slice(0, i) + c + v.slice(i + 1));
        values.add(v.slice(0, i) + c + v.slice(i));
      }
    }
  }
  values.add(canonical[0]!.replace("CHZ-USD", "X".repeat(65)));
  values.add(canonical[0]!.replace("0.0002", "2e-4"));
  values.add(canonical[0]!.replace("0.0002", "0.00020"));
  values.add(canonical[0]!.replace("0.0002", "1e-40"));
  values.add(canonical[0]!.replace("2023-07-26", "2023-02-30"));
  values.add(canonical[0]!.replace("22:05:19", "24:00:00"));
  values.add(canonical[0]!.replace("}", ',"spread":1}'));
  let quick = 0;
  for (const value of values) {
    const r = record(value);
    const got = mapSpread(r);
    deepEqual(got, mapSpreadGeneral(r), value);
    if (!("code" in got)) quick++;
  }
  // Both kinds occur: rows (canonical and mutations that stay valid) and refusals.
  equal(quick > canonical.length && quick < values.size, true);
});
