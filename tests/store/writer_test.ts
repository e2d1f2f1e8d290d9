import { deepStrictEqual as deepEqual, equal } from "../helpers/assert.ts";
import { StoreWriter } from "../../lib/store/writer.ts";
import { StoreRejectedError } from "../../lib/store/errors.ts";
import { tablesFor } from "../../lib/store/schema.ts";
import type { HistoryStore, StoreBatch } from "../../lib/store/types.ts";
import type { InRecord } from "../../lib/sink.ts";

function spread(i: number, spread = "0.01"): InRecord {
  return {
    topic: "t",
    partition: 0,
    offset: String(i),
    key: "BTC-USD",
    value: `{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":${spread}}`,
    timestamp: 1690409119847,
    headers: {},
  };
}

/** A store whose `write` follows a script of outcomes, then succeeds; it keeps what it holds. */
class FakeStore implements HistoryStore {
  readonly name = "questdb" as const;
  readonly address = "fake";
  readonly tables = tablesFor("spreads");
  readonly batchSize = 10_000;
  held: StoreBatch[] = [];
  attempts = 0;
  #fail: (batch: StoreBatch, attempt: number) => Error | undefined;

  constructor(fail: (batch: StoreBatch, attempt: number) => Error | undefined = () => undefined) {
    this.#fail = fail;
  }
  connect(): Promise<void> {
    return Promise.resolve();
  }
  ensureSchema() {
    return Promise.resolve({ spreads: "checked", gaps: "checked", dead: "checked" } as const);
  }
  write(batch: StoreBatch): Promise<void> {
    this.attempts++;
    const error = this.#fail(batch, this.attempts);
    if (error) return Promise.reject(error);
    this.held.push(batch);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const quiet = { log: () => {}, minRetryMs: 1, maxRetryMs: 2 };

Deno.test("the writer retries while the database is down and handles the batch once it answers", async () => {
  const store = new FakeStore((_b, attempt) =>
    attempt <= 3 ? new Error("connection refused") : undefined
  );
  const downs: boolean[] = [];
  const writer = new StoreWriter(store, { ...quiet, onDown: (d) => downs.push(d) });
  const handled = await writer.handle(
    [spread(0), spread(1)],
    "spreads",
    new AbortController().signal,
  );
  equal(handled, 2);
  equal(store.attempts, 4);
  deepEqual(downs, [true, false]);
  deepEqual(store.held.map((b) => b.spreads.map((r) => r.offset)), [["0", "1"]]);
});

Deno.test("a store stopped while the database is down handles nothing, so nothing is committed", async () => {
  const store = new FakeStore(() => new Error("connection refused"));
  const writer = new StoreWriter(store, { log: () => {}, minRetryMs: 50, maxRetryMs: 50 });
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 120);
  equal(await writer.handle([spread(0)], "spreads", stop.signal), 0);
  deepEqual(store.held, []);
  equal(writer.down, true);
});

Deno.test("a record the database refuses is found by halving and kept as a dead letter; the rest is written", async () => {
  // The database refuses any batch holding offset 5 as a spread row.
  const store = new FakeStore((b) =>
    b.spreads.some((r) => r.offset === "5") ? new StoreRejectedError("bad line 5") : undefined
  );
  const writer = new StoreWriter(store, quiet);
  const records = Array.from({ length: 8 }, (_, i) => spread(i));
  equal(await writer.handle(records, "spreads", new AbortController().signal), 8);
  const spreads = store.held.flatMap((b) => b.spreads.map((r) => r.offset)).sort();
  deepEqual(spreads, ["0", "1", "2", "3", "4", "6", "7"]);
  const dead = store.held.flatMap((b) => b.dead);
  deepEqual(dead.map((d) => [d.offset, d.code, d.reason, d.value]), [
    ["5", "refused_by_database", "bad line 5", records[5]!.value],
  ]);
});

Deno.test("a dead letter whose value the database refuses is kept without it, saying why", async () => {
  const store = new FakeStore((b) =>
    b.dead.some((d) => d.value !== null)
      ? new StoreRejectedError("invalid byte sequence 0x00")
      : undefined
  );
  const writer = new StoreWriter(store, quiet);
  const bad = { ...spread(0), value: "nul \u0000 here" };
  equal(await writer.handle([bad], "spreads", new AbortController().signal), 1);
  const dead = store.held.flatMap((b) => b.dead);
  deepEqual(dead.map((d) => [d.code, d.value, d.reason]), [[
    "not_json",
    null,
    'the value is not JSON: "nul \\u0000 here"; the value itself was not kept: invalid byte sequence 0x00',
  ]]);
});

Deno.test("the writer reports each acknowledged write with its rows", async () => {
  const store = new FakeStore();
  const seen: number[] = [];
  const writer = new StoreWriter(store, {
    ...quiet,
    onWritten: (b) => seen.push(b.spreads.length + b.dead.length),
  });
  equal(
    await writer.handle(
      [spread(0), { ...spread(1), value: "x" }],
      "spreads",
      new AbortController().signal,
    ),
    2,
  );
  deepEqual(seen, [2]);
});
