/**
 * The PostgreSQL adapter (npm:postgres): each batch is one transaction of
 * `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` per table, with every value a bind
 * parameter (decimals as text into `numeric`, never a float). The primary key holds the record's
 * Kafka partition and offset, so a redelivered record is skipped. Works with Aiven for PostgreSQL
 * (`sslmode=require` in the URL, or a CA file).
 */
import postgres from "postgres";
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
  StoreBatch,
  StoreConnectOptions,
  StoreTables,
} from "./types.ts";

/** Options for {@linkcode PostgresStore}. */
export interface PostgresOptions {
  /** `postgres://user:password@host:port/db?sslmode=require`. */
  url: string;
  tables: StoreTables;
  /** A CA certificate (PEM text) to verify the server with (Aiven's `ca.pem`); default none. */
  ca?: string;
}

/** `host:port/database` of a URL, without user or password. */
export function postgresAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "5432"}${u.pathname}`;
  } catch {
    return "(an unreadable POSTGRES_URL)";
  }
}

/** SQLSTATE classes of data the server refused: data exceptions (22) and constraints (23). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && /^2[23][0-9A-Z]{3}$/.test(code);
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

const ARRAY_SPECIAL_RE = /["\\]/;

/**
 * The text of a PostgreSQL array of the values, each quoted (so `NULL` stays the text "NULL")
 * and `"` or `\` escaped: the client passes such a string as is, and building it in one join
 * costs a fraction of the client's own per-element serialising.
 */
export function arrayLiteral(values: readonly (string | number)[]): string {
  let text = "{";
  for (let i = 0; i < values.length; i++) {
    const v = String(values[i]);
    text += (i === 0 ? '"' : ',"') +
      (ARRAY_SPECIAL_RE.test(v) ? v.replace(/["\\]/g, (c) => "\\" + c) : v) + '"';
  }
  return text + "}";
}

/** The `CREATE TABLE` statement of a shape. */
export function createTableSql(name: string, shape: TableShape): string {
  const columns = shape.columns.map((c) =>
    `${c.name} ${c.postgres} NOT NULL`.replace(
      /^value text NOT NULL$/,
      "value text",
    )
  );
  return `CREATE TABLE IF NOT EXISTS ${name} (${columns.join(", ")}, ` +
    `PRIMARY KEY (${keyNames(shape).join(", ")}))`;
}

/** The advisory lock key that serialises table creation between stores ("crypto-store"). */
const SCHEMA_LOCK = 0x63727970;

/** A history store in PostgreSQL. */
export class PostgresStore implements HistoryStore {
  readonly name = "postgres" as const;
  readonly address: string;
  readonly tables: StoreTables;
  /**
   * 10,000: one transaction's fixed cost is small by then, and two transactions in flight keep
   * the server busy; 40,000 was no faster over the capture × 20 backlog (bench/store_bench.ts).
   */
  readonly batchSize = 10_000;
  #sql: postgres.Sql;

  constructor(options: PostgresOptions) {
    this.address = postgresAddress(options.url);
    this.tables = options.tables;
    this.#sql = postgres(options.url, {
      max: 4,
      connect_timeout: 10,
      idle_timeout: 60,
      onnotice: () => {},
      ...(options.ca ? { ssl: { ca: options.ca, rejectUnauthorized: true } } : {}),
    });
  }

  /** The client, for tests and queries. */
  get sql(): postgres.Sql {
    return this.#sql;
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
          await this.#sql`SELECT 1`;
        } catch (error) {
          last = reason(error);
          throw error;
        }
      }, {
        maxAttempts: Infinity,
        minTimeout: 250,
        maxTimeout: 2_000,
        jitter: 0,
        signal: options.signal,
        shouldRetry: () => Date.now() < end,
        onRetry: () =>
          options.onRetry?.(`Cannot reach PostgreSQL at "${this.address}" yet (${last}); retrying`),
      });
    } catch (error) {
      options.signal?.throwIfAborted();
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      throw new StoreUnreachableError(
        `Cannot reach PostgreSQL at "${this.address}" within ${seconds} s after ${attempts} ` +
          `attempt(s): ${last}; check POSTGRES_URL and that the server is up`,
        { cause: error },
      );
    }
  }

  async ensureSchema(): Promise<Record<keyof StoreTables, SchemaAction>> {
    const actions = {} as Record<keyof StoreTables, SchemaAction>;
    for (const shape of [SPREADS_SHAPE, GAPS_SHAPE, DEAD_SHAPE]) {
      const name = this.tables[shape.kind];
      const before = await this.#columns(name);
      if (before.length === 0) {
        // Two stores starting at once would race in CREATE TABLE IF NOT EXISTS (a unique
        // violation on pg_type): one creates while the other waits on the lock.
        await this.#sql.begin(async (tx) => {
          await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK})`;
          await tx.unsafe(createTableSql(name, shape));
          if (shape.kind !== "dead") {
            const on = shape.kind === "spreads" ? "(symbol, ts)" : "(ts)";
            await tx.unsafe(`CREATE INDEX IF NOT EXISTS ${name}_ts ON ${name} ${on}`);
          }
        });
      }
      const mismatch = shapeMismatch(name, shape, await this.#columns(name), "postgres");
      if (mismatch) {
        throw new StoreSchemaError(
          `Cannot store into table "${name}" in PostgreSQL at "${this.address}": ${mismatch}; ` +
            `drop the table or set STORE_TABLE (--table) to another name`,
        );
      }
      actions[shape.kind] = before.length === 0 ? "created" : "checked";
    }
    return actions;
  }

  async #columns(table: string): Promise<{ name: string; type: string; key: boolean }[]> {
    const rows = await this.#sql<{ name: string; type: string; key: boolean }[]>`
      SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
             coalesce(a.attnum = ANY(i.indkey), false) AS key
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
       WHERE c.relname = ${table} AND n.nspname = current_schema()
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum`;
    return rows.map((r) => ({ name: r.name, type: r.type, key: r.key }));
  }

  async write(batch: StoreBatch): Promise<void> {
    const t = this.tables;
    try {
      await this.#sql.begin(async (tx) => {
        if (batch.spreads.length > 0) {
          const s = batch.spreads;
          await tx.unsafe(
            `INSERT INTO ${t.spreads} (ts, symbol, spread, kafka_partition, kafka_offset)
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::numeric[], $4::integer[],
                                  $5::bigint[])
             ON CONFLICT DO NOTHING`,
            [
              arrayLiteral(s.map((r) => iso(r.ts))),
              arrayLiteral(s.map((r) => r.symbol)),
              arrayLiteral(s.map((r) => r.spread)),
              arrayLiteral(s.map((r) => r.partition)),
              arrayLiteral(s.map((r) => r.offset)),
            ] as never,
          );
        }
        if (batch.gaps.length > 0) {
          const g = batch.gaps;
          await tx.unsafe(
            `INSERT INTO ${t.gaps} (ts, to_ts, reason, seconds, kafka_partition, kafka_offset)
             SELECT * FROM unnest($1::timestamptz[], $2::timestamptz[], $3::text[], $4::numeric[],
                                  $5::integer[], $6::bigint[])
             ON CONFLICT DO NOTHING`,
            [
              arrayLiteral(g.map((r) => iso(r.ts))),
              arrayLiteral(g.map((r) => iso(r.to))),
              arrayLiteral(g.map((r) => r.reason)),
              arrayLiteral(g.map((r) => r.seconds)),
              arrayLiteral(g.map((r) => r.partition)),
              arrayLiteral(g.map((r) => r.offset)),
            ] as never,
          );
        }
        if (batch.dead.length > 0) {
          const d = batch.dead;
          await tx.unsafe(
            `INSERT INTO ${t.dead} (ts, topic, kafka_partition, kafka_offset, code, reason, value)
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::integer[], $4::bigint[],
                                  $5::text[], $6::text[], $7::text[])
             ON CONFLICT DO NOTHING`,
            [
              d.map((r) => iso(r.ts)),
              d.map((r) => r.topic),
              d.map((r) => r.partition),
              d.map((r) => r.offset),
              d.map((r) => r.code),
              d.map((r) => r.reason),
              d.map((r) => r.value),
            ] as never,
          );
        }
      });
    } catch (error) {
      if (isDataError(error)) {
        throw new StoreRejectedError(
          `PostgreSQL at "${this.address}" refused the rows: ${reason(error)}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}
