/**
 * The QuestDB adapter (the default): rows go in over InfluxDB line protocol on HTTP (`POST /write`,
 * one request per batch, all or nothing), decimals as their exact text with ILP's `d` suffix;
 * tables are made and checked with SQL on `/exec`. Every table is a WAL table with
 * `DEDUP UPSERT KEYS(ts, kafka_partition, kafka_offset)`, so a redelivered record replaces itself.
 * A 204 means the rows are in the table's write-ahead log: the store commits Kafka offsets after it.
 */
import { retry } from "../async.ts";
import { StoreRejectedError, StoreSchemaError, StoreUnreachableError } from "./errors.ts";
import {
  DEAD_SHAPE,
  GAPS_SHAPE,
  keyNames,
  shapeMismatch,
  SPREADS_SHAPE,
  type TableShape,
} from "./schema.ts";
import type {
  HistoryStore,
  SchemaAction,
  SpreadRow,
  StoreBatch,
  StoreConnectOptions,
  StoreTables,
} from "./types.ts";

/** Options for {@linkcode QuestDbStore}. */
export interface QuestDbOptions {
  /** Base URL of QuestDB's HTTP server, e.g. `http://127.0.0.1:9000`; user:password@ for basic auth. */
  url: string;
  tables: StoreTables;
  /** One request's time limit, ms; default 30,000. */
  requestTimeoutMs?: number;
  /** `fetch`; default the global one (tests inject failures). */
  fetch?: typeof fetch;
}

const TAG_SPECIAL_RE = /[\\, =\n\r]/;

/** Escapes a tag value (a symbol) for line protocol: `,`, `=`, space, `\` and line breaks. */
export function escapeTag(text: string): string {
  if (!TAG_SPECIAL_RE.test(text)) return text;
  return text.replace(/[\\, =\n\r]/g, (c) => c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\" + c);
}

/** Escapes a string field for line protocol: `"` and `\`, and a line break as `\` + line break. */
export function escapeString(text: string): string {
  return text.replace(/["\\\n\r]/g, (c) => "\\" + c);
}

/** Epoch ms as µs text, exactly (ms × 1000 can pass 2^53). */
function micros(ms: number): string {
  return ms === 0 ? "0" : `${ms}000`;
}

const encoder = new TextEncoder();

/**
 * One request's line protocol, written as bytes as it is built: no text to join and encode
 * afterwards. That text and its encoding cost more than the rest of a write in the store's
 * profile (bench/store_bench.ts), and a spread row is nearly all ASCII digits.
 */
class LineBuffer {
  bytes: Uint8Array<ArrayBuffer>;
  length = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(Math.max(size, 256));
  }

  /** Room for `extra` more bytes. */
  reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    const next = new Uint8Array(Math.max(this.bytes.length * 2, this.length + extra));
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  /** Bytes as they are. */
  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  /**
   * ASCII text as it is, after `reserve`; false at the first character that is not ASCII or,
   * with `tag`, one a tag would escape (the caller then writes the line as text).
   */
  ascii(text: string, tag = false): boolean {
    const { bytes } = this;
    let at = this.length;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // ` ` 32, `,` 44, `=` 61, `\` 92, and control characters (line breaks among them).
      if (c > 127 || (tag && (c < 33 || c === 44 || c === 61 || c === 92))) return false;
      bytes[at++] = c;
    }
    this.length = at;
    return true;
  }

  /** A non-negative safe integer's digits, after `reserve`. */
  digits(n: number): void {
    let width = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) width++;
    let at = this.length + width;
    this.length = at;
    do {
      this.bytes[--at] = 48 + n % 10;
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  /** Any text, UTF-8. */
  text(text: string): void {
    this.reserve(text.length * 3);
    this.length += encoder.encodeInto(text, this.bytes.subarray(this.length)).written;
  }

  /** What was written. */
  done(): Uint8Array<ArrayBuffer> {
    return this.bytes.subarray(0, this.length);
  }
}

function spreadLine(table: string, r: SpreadRow): string {
  return `${table},symbol=${escapeTag(r.symbol)} spread=${r.spread}d,kafka_partition=` +
    `${r.partition}i,kafka_offset=${r.offset}i ${micros(r.ts)}\n`;
}

/** A spread row's line; as text when a value is not plain ASCII (never for the mapper's rows). */
function writeSpread(out: LineBuffer, prefix: Uint8Array, table: string, r: SpreadRow): void {
  const start = out.length;
  out.reserve(prefix.length + r.symbol.length + r.spread.length + r.offset.length + 64);
  out.raw(prefix);
  const plain = out.ascii(r.symbol, true) && out.ascii(" spread=") && out.ascii(r.spread) &&
    out.ascii("d,kafka_partition=") && Number.isSafeInteger(r.partition) && r.partition >= 0;
  if (plain) {
    out.digits(r.partition);
    if (out.ascii("i,kafka_offset=") && out.ascii(r.offset) && out.ascii("i ")) {
      if (Number.isSafeInteger(r.ts) && r.ts > 0) {
        out.digits(r.ts);
        out.ascii("000\n");
        return;
      }
    }
  }
  out.length = start;
  out.text(spreadLine(table, r));
}

/** The line protocol of a batch, µs timestamps (`precision=u`), as the request's bytes. */
export function lineProtocol(batch: StoreBatch, tables: StoreTables): Uint8Array<ArrayBuffer> {
  const out = new LineBuffer(
    batch.spreads.length * 96 + (batch.gaps.length + batch.dead.length) * 256,
  );
  const prefix = encoder.encode(`${tables.spreads},symbol=`);
  for (const r of batch.spreads) writeSpread(out, prefix, tables.spreads, r);
  for (const g of batch.gaps) {
    out.text(
      `${tables.gaps},reason=${escapeTag(g.reason)} to_ts=${micros(g.to)}t,` +
        `seconds=${g.seconds}d,kafka_partition=${g.partition}i,kafka_offset=${g.offset}i ` +
        `${micros(g.ts)}\n`,
    );
  }
  for (const d of batch.dead) {
    const value = d.value === null ? "" : `,value="${escapeString(d.value)}"`;
    out.text(
      `${tables.dead},topic=${escapeTag(d.topic)},code=${escapeTag(d.code)} ` +
        `kafka_partition=${d.partition}i,kafka_offset=${d.offset}i,` +
        `reason="${escapeString(d.reason)}"${value} ${micros(d.ts)}\n`,
    );
  }
  return out.done();
}

/** The `CREATE TABLE` statement of a shape. */
export function createTableSql(name: string, shape: TableShape): string {
  const columns = shape.columns.map((c) => `${c.name} ${c.questdb}`).join(", ");
  return `CREATE TABLE IF NOT EXISTS ${name} (${columns}) TIMESTAMP(ts) PARTITION BY DAY WAL ` +
    `DEDUP UPSERT KEYS(${keyNames(shape).join(", ")})`;
}

interface ExecResult {
  columns?: { name: string; type: string }[];
  dataset?: unknown[][];
  error?: string;
}

/** A history store in QuestDB over HTTP. */
export class QuestDbStore implements HistoryStore {
  readonly name = "questdb" as const;
  readonly address: string;
  readonly tables: StoreTables;
  /**
   * 40,000: each request is one WAL transaction, and a transaction whose rows fall among rows
   * already in the partition (a backlog of several partitions read side by side) makes QuestDB
   * merge and rewrite the partition; fewer, larger transactions rewrite it less. Over the
   * capture × 20 backlog, 40,000 ran about 1.3-1.5× as fast as 10,000, for ~100 MB more peak
   * RSS (bench/store_bench.ts).
   */
  readonly batchSize = 40_000;
  #base: string;
  #auth: string | undefined;
  #timeoutMs: number;
  #fetch: typeof fetch;

  constructor(options: QuestDbOptions) {
    const url = new URL(options.url);
    this.#auth = url.username
      ? "Basic " + btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`)
      : undefined;
    url.username = "";
    url.password = "";
    this.#base = url.origin + url.pathname.replace(/\/+$/, "");
    this.address = this.#base;
    this.tables = options.tables;
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#fetch = options.fetch ?? fetch;
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.#auth ? { ...extra, authorization: this.#auth } : extra;
  }

  /** Runs one SQL statement on `/exec`; throws with QuestDB's error text. */
  async exec(sql: string): Promise<ExecResult> {
    const response = await this.#fetch(`${this.#base}/exec?query=${encodeURIComponent(sql)}`, {
      headers: this.#headers(),
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    const text = await response.text();
    let body: ExecResult;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(
        `QuestDB at "${this.address}" answered HTTP ${response.status}: ${text.slice(0, 200)}`,
      );
    }
    if (!response.ok || body.error) {
      throw new StoreRejectedError(
        `QuestDB at "${this.address}" refused "${sql.slice(0, 120)}": ${
          body.error ?? response.status
        }`,
      );
    }
    return body;
  }

  async connect(options: StoreConnectOptions): Promise<void> {
    const started = Date.now();
    const end = started + options.timeoutMs;
    let last = "no attempt was made";
    let attempts = 0;
    try {
      await retry(async () => {
        attempts++;
        try {
          await this.exec("SELECT 1");
        } catch (error) {
          last = error instanceof Error ? error.message : String(error);
          throw error;
        }
      }, {
        maxAttempts: Infinity,
        minTimeout: 250,
        maxTimeout: 2_000,
        jitter: 0,
        signal: options.signal,
        shouldRetry: (error) => !(error instanceof StoreRejectedError) && Date.now() < end,
        onRetry: () =>
          options.onRetry?.(`Cannot reach QuestDB at "${this.address}" yet (${last}); retrying`),
      });
    } catch (error) {
      options.signal?.throwIfAborted();
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      throw new StoreUnreachableError(
        `Cannot reach QuestDB at "${this.address}" within ${seconds} s after ${attempts} ` +
          `attempt(s): ${last}; check QUESTDB_URL (--questdb-url) and that QuestDB is up`,
        { cause: error },
      );
    }
  }

  async ensureSchema(): Promise<Record<keyof StoreTables, SchemaAction>> {
    const actions = {} as Record<keyof StoreTables, SchemaAction>;
    for (const shape of [SPREADS_SHAPE, GAPS_SHAPE, DEAD_SHAPE]) {
      const name = this.tables[shape.kind];
      const existed = await this.#tableInfo(name) !== undefined;
      if (!existed) {
        // Another store starting at the same moment may have created it in between.
        await this.exec(createTableSql(name, shape)).catch(async (error) => {
          if (await this.#tableInfo(name) === undefined) throw error;
        });
      }
      await this.#check(name, shape);
      actions[shape.kind] = existed ? "checked" : "created";
    }
    return actions;
  }

  async #tableInfo(name: string): Promise<Record<string, unknown> | undefined> {
    const result = await this.exec(
      `SELECT table_name, designatedTimestamp, partitionBy, walEnabled, dedup FROM tables() ` +
        `WHERE table_name = '${name}'`,
    );
    const row = result.dataset?.[0];
    if (!row) return undefined;
    const names = (result.columns ?? []).map((c) => c.name);
    return Object.fromEntries(names.map((n, i) => [n, row[i]]));
  }

  async #check(name: string, shape: TableShape): Promise<void> {
    const info = await this.#tableInfo(name);
    const where = `in QuestDB at "${this.address}"`;
    const fail = (what: string) => {
      throw new StoreSchemaError(
        `Cannot store into table "${name}" ${where}: ${what}; drop the table or set STORE_TABLE ` +
          `(--table) to another name`,
      );
    };
    if (!info) return fail("it was not created");
    if (info.designatedTimestamp !== "ts") {
      fail(
        `its designated timestamp is ${JSON.stringify(info.designatedTimestamp)}, expected "ts"`,
      );
    }
    if (info.partitionBy !== "DAY") fail(`it is partitioned by ${info.partitionBy}, expected DAY`);
    if (info.walEnabled !== true || info.dedup !== true) {
      fail(`it is not a WAL table with DEDUP UPSERT KEYS(${keyNames(shape).join(", ")})`);
    }
    const columns = await this.exec(
      `SELECT "column", type, upsertKey FROM table_columns('${name}')`,
    );
    const found = (columns.dataset ?? []).map((r) => ({
      name: String(r[0]),
      type: String(r[1]),
      key: r[2] === true,
    }));
    const mismatch = shapeMismatch(name, shape, found, "questdb");
    if (mismatch) fail(mismatch);
  }

  async write(batch: StoreBatch): Promise<void> {
    const body = lineProtocol(batch, this.tables);
    if (body.length === 0) return;
    const response = await this.#fetch(`${this.#base}/write?precision=u`, {
      method: "POST",
      headers: this.#headers({ "content-type": "text/plain; charset=utf-8" }),
      body,
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (response.status === 204) {
      await response.body?.cancel();
      return;
    }
    const text = (await response.text()).slice(0, 500);
    if (response.status === 400) {
      throw new StoreRejectedError(`QuestDB at "${this.address}" refused the rows: ${text}`);
    }
    throw new Error(`QuestDB at "${this.address}" answered HTTP ${response.status}: ${text}`);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
