/**
 * A real QuestDB for tests, run by `scripts/questdb_local.sh` (the 9.2.2 jar from Maven Central)
 * in a folder of its own on free ports. One per test file: the file that starts it stops it
 * (`stop()` in a `finally`, and a watchdog on this process as the backstop). It starts in ~8 s.
 */
import { canonicalDecimal } from "../../lib/store/decimal_column.ts";

const SCRIPT = new URL("../../scripts/questdb_local.sh", import.meta.url).pathname;

/** What `/exec` answers. */
export interface ExecResult {
  columns: { name: string; type: string }[];
  dataset: unknown[][];
  count: number;
}

/** A running QuestDB. */
export interface QuestDb {
  /** HTTP base URL (SQL at /exec, ILP at /write). */
  url: string;
  /** PostgreSQL wire address, "127.0.0.1:port" (user admin, password quest, database qdb). */
  pg: string;
  dir: string;
  /** Runs one SQL statement; throws with QuestDB's error. */
  exec(sql: string): Promise<ExecResult>;
  /** Resolves once every WAL table has applied what it was sent (rows visible to SELECT). */
  applied(timeoutMs?: number): Promise<void>;
  /** Stops the server, keeping its data (SIGTERM; `crash` sends SIGKILL). */
  pause(options?: { crash?: boolean }): Promise<void>;
  /** Starts it again on the same ports with the same data. */
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
      `Cannot run "questdb_local.sh ${args.join(" ")}": exit code ${out.code}\n` +
        new TextDecoder().decode(out.stderr),
    );
  }
  return new TextDecoder().decode(out.stdout);
}

function envOf(text: string): Record<string, string> {
  return Object.fromEntries(
    text.split("\n").filter((l) => l.includes("=")).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** Starts a QuestDB of this test file's own. */
export async function startQuestDb(): Promise<QuestDb> {
  const dir = Deno.makeTempDirSync({ prefix: "questdb-test-" });
  Deno.removeSync(dir);
  const env = envOf(await script(["up", dir, "--owner-pid", String(Deno.pid)]));
  const url = env.QUESTDB_URL!;
  const exec = async (sql: string): Promise<ExecResult> => {
    const response = await fetch(`${url}/exec?query=${encodeURIComponent(sql)}`);
    const body = await response.json();
    if (!response.ok || body.error) throw new Error(`QuestDB refused "${sql}": ${body.error}`);
    return body as ExecResult;
  };
  return {
    url,
    pg: env.QUESTDB_PG!,
    dir,
    exec,
    applied: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await exec("SELECT name, writerTxn, sequencerTxn, suspended FROM wal_tables()");
        if (r.dataset.every((row) => row[1] === row[2] && row[3] === false)) return;
        if (Date.now() > deadline) {
          throw new Error(
            `QuestDB WAL not applied after ${timeoutMs} ms: ${JSON.stringify(r.dataset)}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    pause: async (options = {}) => {
      await script([options.crash ? "kill" : "stop", dir]);
    },
    resume: async () => {
      await script(["start", dir]);
    },
    stop: async () => {
      await script(["down", dir]);
    },
  };
}

/** One stored spread row as the tests compare it: exact decimal text, ms ISO time. */
export interface StoredSpread {
  timestamp: string;
  symbol: string;
  spread: string;
}

/** Every row of a spreads table by `partition/offset`, and how many rows it holds in all. */
export async function questDbSpreads(
  db: QuestDb,
  table: string,
): Promise<{ rows: Map<string, StoredSpread>; count: number }> {
  await db.applied();
  const r = await db.exec(`SELECT kafka_partition, kafka_offset, ts, symbol, spread FROM ${table}`);
  const rows = new Map<string, StoredSpread>();
  for (const [p, o, ts, symbol, spread] of r.dataset) {
    rows.set(`${p}/${o}`, {
      timestamp: new Date(Date.parse(String(ts))).toISOString(),
      symbol: String(symbol),
      spread: canonicalDecimal(String(spread)),
    });
  }
  return { rows, count: r.dataset.length };
}
