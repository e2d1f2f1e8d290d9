/**
 * What the store's end-to-end and reliability tests share: `store.ts` as a subprocess against a
 * real broker and a real database, the topic read back as the reference, and the comparison of a
 * table with it, record for record, on exact decimal text.
 */
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { canonicalDecimal } from "../../lib/store/decimal_column.ts";
import type { StoreName } from "../../lib/store/types.ts";
import { readTopic, ScriptProcess } from "./e2e.ts";
import type { KafkaBroker } from "./kafka_broker.ts";
import { type Postgres, postgresSpreads } from "./postgres.ts";
import { type QuestDb, questDbSpreads, type StoredSpread } from "./questdb.ts";

/** The databases of a test file; a test uses the one its adapter names. */
export interface Databases {
  questdb?: QuestDb;
  postgres?: Postgres;
}

/** The environment of a store process for `db`, on the broker's plaintext listener. */
export function storeEnv(
  broker: KafkaBroker,
  dbs: Databases,
  db: StoreName,
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    KAFKA_BROKERS: broker.plaintext,
    STORE_DB: db,
    KAFKA_SESSION_TIMEOUT: "6",
    ...extra,
  };
  if (db === "questdb") env.QUESTDB_URL = dbs.questdb!.url;
  else env.POSTGRES_URL = dbs.postgres!.url;
  return env;
}

/** Starts `store.ts` with these flags. */
export function startStore(args: string[], env: Record<string, string>): ScriptProcess {
  return new ScriptProcess("store.ts", args, env);
}

/** Every row of the spreads table `table` by `partition/offset`, with the row count. */
export function tableSpreads(
  dbs: Databases,
  db: StoreName,
  table: string,
): Promise<{ rows: Map<string, StoredSpread>; count: number }> {
  return db === "questdb"
    ? questDbSpreads(dbs.questdb!, table)
    : postgresSpreads(dbs.postgres!, table);
}

/** Rows of any table (`SELECT count(*)`), 0 when it does not exist yet. */
export async function tableCount(dbs: Databases, db: StoreName, table: string): Promise<number> {
  try {
    if (db === "questdb") {
      const r = await dbs.questdb!.exec(`SELECT count() FROM ${table}`);
      return Number(r.dataset[0]![0]);
    }
    const r = await dbs.postgres!.sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`);
    return r[0]!.n as number;
  } catch {
    return 0;
  }
}

/** The topic's spread records by `partition/offset`: the reference a table must equal. */
export async function topicSpreads(
  config: KafkaConfig,
  topic: string,
  count: number,
): Promise<Map<string, StoredSpread>> {
  const records = await readTopic(config, topic, count);
  const out = new Map<string, StoredSpread>();
  for (const r of records) {
    const v = JSON.parse(
      r.value!,
      (k, value, context?: { source?: string }) =>
        k === "spread" ? context?.source ?? value : value,
    );
    out.set(`${r.partition}/${r.offset}`, {
      timestamp: v.timestamp,
      symbol: v.symbol,
      spread: canonicalDecimal(String(v.spread)),
    });
  }
  return out;
}

/** How a table differs from the topic: keys missing, rows stored more than once, rows that differ. */
export interface TableDiff {
  expected: number;
  rows: number;
  missing: number;
  duplicated: number;
  extra: number;
  differing: string[];
}

/** Compares a table with the topic, record for record. */
export function diffTable(
  expected: Map<string, StoredSpread>,
  table: { rows: Map<string, StoredSpread>; count: number },
): TableDiff {
  let missing = 0;
  const differing: string[] = [];
  for (const [key, want] of expected) {
    const have = table.rows.get(key);
    if (!have) missing++;
    else if (
      have.timestamp !== want.timestamp || have.symbol !== want.symbol ||
      have.spread !== want.spread
    ) {
      if (differing.length < 5) {
        differing.push(`${key}: ${JSON.stringify(have)} ≠ ${JSON.stringify(want)}`);
      }
    }
  }
  let extra = 0;
  for (const key of table.rows.keys()) if (!expected.has(key)) extra++;
  return {
    expected: expected.size,
    rows: table.count,
    missing,
    duplicated: table.count - table.rows.size,
    extra,
    differing,
  };
}

/** Polls until `done()` holds, for at most `timeoutMs`; returns its last value's description. */
export async function waitFor(
  what: string,
  done: () => Promise<boolean>,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
