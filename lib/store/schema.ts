/**
 * The shape of the three tables, stated once for both databases: each column's name, its QuestDB
 * and PostgreSQL types, and whether it is part of the key that makes a redelivery a no-op (the
 * record's Kafka partition and offset; QuestDB's DEDUP keys must also hold the designated
 * timestamp). The adapters create tables from it and check existing ones against it.
 */
import { SECONDS_DECIMAL, SPREAD_DECIMAL } from "./decimal_column.ts";
import type { StoreTables } from "./types.ts";

/** One column of a table the store writes. */
export interface ColumnShape {
  name: string;
  /** The type as QuestDB's `table_columns()` reports it. */
  questdb: string;
  /** The type as PostgreSQL's `format_type()` reports it. */
  postgres: string;
  /** Part of the key (QuestDB: DEDUP UPSERT KEYS; PostgreSQL: the primary key). */
  key: boolean;
}

/** A table the store writes: its columns, in order; `ts` is the designated timestamp. */
export interface TableShape {
  kind: keyof StoreTables;
  columns: readonly ColumnShape[];
}

const spread = `${SPREAD_DECIMAL.precision},${SPREAD_DECIMAL.scale}`;
const seconds = `${SECONDS_DECIMAL.precision},${SECONDS_DECIMAL.scale}`;

const PARTITION: ColumnShape = {
  name: "kafka_partition",
  questdb: "INT",
  postgres: "integer",
  key: true,
};
const OFFSET: ColumnShape = {
  name: "kafka_offset",
  questdb: "LONG",
  postgres: "bigint",
  key: true,
};

/** The spreads table: one row per spread record, at the exchange time. */
export const SPREADS_SHAPE: TableShape = {
  kind: "spreads",
  columns: [
    { name: "ts", questdb: "TIMESTAMP", postgres: "timestamp with time zone", key: true },
    { name: "symbol", questdb: "SYMBOL", postgres: "text", key: false },
    {
      name: "spread",
      questdb: `DECIMAL(${spread})`,
      postgres: `numeric(${spread})`,
      key: false,
    },
    PARTITION,
    OFFSET,
  ],
};

/** The gaps table: one row per gap record, at the time the stream was lost. */
export const GAPS_SHAPE: TableShape = {
  kind: "gaps",
  columns: [
    { name: "ts", questdb: "TIMESTAMP", postgres: "timestamp with time zone", key: true },
    { name: "to_ts", questdb: "TIMESTAMP", postgres: "timestamp with time zone", key: false },
    { name: "reason", questdb: "SYMBOL", postgres: "text", key: false },
    {
      name: "seconds",
      questdb: `DECIMAL(${seconds})`,
      postgres: `numeric(${seconds})`,
      key: false,
    },
    PARTITION,
    OFFSET,
  ],
};

/** The dead letters table: one row per refused record, at its Kafka timestamp. */
export const DEAD_SHAPE: TableShape = {
  kind: "dead",
  columns: [
    { name: "ts", questdb: "TIMESTAMP", postgres: "timestamp with time zone", key: true },
    { name: "topic", questdb: "SYMBOL", postgres: "text", key: true },
    PARTITION,
    OFFSET,
    { name: "code", questdb: "SYMBOL", postgres: "text", key: false },
    { name: "reason", questdb: "VARCHAR", postgres: "text", key: false },
    { name: "value", questdb: "VARCHAR", postgres: "text", key: false },
  ],
};

/** The three tables, in creation order. */
export const SHAPES: readonly TableShape[] = [SPREADS_SHAPE, GAPS_SHAPE, DEAD_SHAPE];

/** A table name the store accepts: letters, digits and `_`, starting with a letter or `_`. */
export const TABLE_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The table names for a spreads table name: `<name>`, `<name>_gaps`, `<name>_dead_letters`. */
export function tablesFor(spreads: string): StoreTables {
  return { spreads, gaps: `${spreads}_gaps`, dead: `${spreads}_dead_letters` };
}

/**
 * What is wrong with an existing table's columns, or undefined when it has the shape: the first
 * missing column, column of another type, or key that differs, named.
 */
export function shapeMismatch(
  table: string,
  shape: TableShape,
  found: readonly { name: string; type: string; key: boolean }[],
  which: "questdb" | "postgres",
): string | undefined {
  const byName = new Map(found.map((c) => [c.name, c]));
  for (const want of shape.columns) {
    const have = byName.get(want.name);
    if (!have) return `table "${table}" has no column "${want.name}" (${want[which]})`;
    if (have.type.toLowerCase() !== want[which].toLowerCase()) {
      return `column "${want.name}" of table "${table}" is ${have.type}, expected ${want[which]}`;
    }
    if (have.key !== want.key) {
      return `column "${want.name}" of table "${table}" is ${have.key ? "" : "not "}part of the ` +
        `key, expected it ${want.key ? "in" : "out of"} the key (${keyNames(shape).join(", ")})`;
    }
  }
  return undefined;
}

/** The key columns of a table, in order. */
export function keyNames(shape: TableShape): string[] {
  return shape.columns.filter((c) => c.key).map((c) => c.name);
}
