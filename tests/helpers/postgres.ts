/**
 * A real PostgreSQL for tests, run by `scripts/postgres_local.sh` (Debian's initdb and pg_ctl) in
 * a folder of its own on a free port, never the machine's own service. One per test file: the
 * file that starts it stops it (`stop()` in a `finally`, and a watchdog as the backstop).
 */
import postgres from "postgres";
import { canonicalDecimal } from "../../lib/store/decimal_column.ts";
import type { StoredSpread } from "./questdb.ts";

const SCRIPT = new URL("../../scripts/postgres_local.sh", import.meta.url).pathname;

/** A running PostgreSQL cluster. */
export interface Postgres {
  /** postgres://postgres@127.0.0.1:port/postgres */
  url: string;
  dir: string;
  /** A client (closed by `stop()`). */
  sql: postgres.Sql;
  /** Stops the server (fast shutdown; `crash` SIGKILLs the postmaster), keeping the data. */
  pause(options?: { crash?: boolean }): Promise<void>;
  /** Starts it again on the same port with the same data. */
  resume(): Promise<void>;
  /** Stops it and removes its folder. */
  stop(): Promise<void>;
}

async function script(args: string[]): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [SCRIPT, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `Cannot run "postgres_local.sh ${args.join(" ")}": exit code ${out.code}\n` +
        new TextDecoder().decode(out.stderr),
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** True when initdb and pg_ctl are installed (scripts/setup.sh installs them). */
export const HAVE_POSTGRES: boolean = (() => {
  try {
    return new Deno.Command("bash", { args: [SCRIPT, "install"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

/** Starts a PostgreSQL cluster of this test file's own. */
export async function startPostgres(): Promise<Postgres> {
  const dir = Deno.makeTempDirSync({ prefix: "postgres-test-" });
  Deno.removeSync(dir);
  const text = await script(["up", dir, "--owner-pid", String(Deno.pid)]);
  const url = /^POSTGRES_URL=(.*)$/m.exec(text)![1]!;
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  return {
    url,
    dir,
    sql,
    pause: async (options = {}) => {
      await script([options.crash ? "kill" : "stop", dir]);
    },
    resume: async () => {
      await script(["start", dir]);
    },
    stop: async () => {
      await sql.end({ timeout: 2 }).catch(() => {});
      await script(["down", dir]);
    },
  };
}

/** Every row of a spreads table by `partition/offset`, and how many rows it holds in all. */
export async function postgresSpreads(
  db: Postgres,
  table: string,
): Promise<{ rows: Map<string, StoredSpread>; count: number }> {
  const result = await db.sql.unsafe(
    `SELECT kafka_partition, kafka_offset, ts, symbol, spread::text AS spread FROM ${table}`,
  );
  const rows = new Map<string, StoredSpread>();
  for (const r of result) {
    rows.set(`${r.kafka_partition}/${r.kafka_offset}`, {
      timestamp: (r.ts as Date).toISOString(),
      symbol: String(r.symbol),
      spread: canonicalDecimal(String(r.spread)),
    });
  }
  return { rows, count: result.length };
}
