/** The store config builder: which database, where, the table names and the start-up time. */
import { ConfigError, fileErrorReason } from "./errors.ts";
import { type Settings } from "./settings.ts";
import { TABLE_NAME_RE, tablesFor } from "../store/schema.ts";
import type { StoreName, StoreTables } from "../store/types.ts";

/** Where and how the store writes. */
export interface StoreConfig {
  db: StoreName;
  /** QuestDB's HTTP base URL. */
  questdbUrl: string;
  /** PostgreSQL URL (set when `db` is postgres). */
  postgresUrl?: string;
  /** PEM text of the PostgreSQL CA, read once. */
  postgresCa?: string;
  tables: StoreTables;
  /** How long to try reaching the database at start-up, ms. */
  connectTimeoutMs: number;
}

/** Options for {@linkcode buildStoreConfig}. */
export interface BuildStoreOptions {
  /** Reads a file as text; default `Deno.readTextFileSync`. */
  readTextFile?: (path: string) => string;
}

/** Builds the store config from parsed settings; bad values are a {@linkcode ConfigError}. */
export function buildStoreConfig(settings: Settings, options: BuildStoreOptions = {}): StoreConfig {
  const read = options.readTextFile ?? ((p: string) => Deno.readTextFileSync(p));
  const db = settings.db ?? "questdb";
  const table = settings.table ?? "spreads";
  if (!TABLE_NAME_RE.test(table)) {
    throw new ConfigError(
      `STORE_TABLE (--table) must be letters, digits and _ (at most 63, not starting with a ` +
        `digit), got ${JSON.stringify(table)}`,
    );
  }
  const questdbUrl = settings.questdbUrl ?? "http://127.0.0.1:9000";
  let url: URL;
  try {
    url = new URL(questdbUrl);
  } catch {
    url = new URL("invalid:");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(
      `QUESTDB_URL (--questdb-url) must be an http:// or https:// URL, got ${
        JSON.stringify(questdbUrl)
      }`,
    );
  }
  const config: StoreConfig = {
    db,
    questdbUrl,
    tables: tablesFor(table),
    connectTimeoutMs: (settings.dbConnectTimeout ?? 15) * 1000,
  };
  if (db === "postgres") {
    const pg = settings.postgresUrl;
    if (!pg) {
      throw new ConfigError(
        `"POSTGRES_URL" environment variable must be set with STORE_DB=postgres, e.g. ` +
          `postgres://user:password@host:5432/db?sslmode=require`,
      );
    }
    if (!/^postgres(ql)?:\/\//.test(pg)) {
      throw new ConfigError(`"POSTGRES_URL" must start with postgres:// or postgresql://`);
    }
    config.postgresUrl = pg;
    if (settings.postgresCa) {
      try {
        config.postgresCa = read(settings.postgresCa);
      } catch (error) {
        throw new ConfigError(
          `Cannot read the PostgreSQL CA certificate "${settings.postgresCa}" (POSTGRES_SSL_CA): ` +
            `${fileErrorReason(error)}; put the file there or unset POSTGRES_SSL_CA`,
          { cause: error },
        );
      }
    }
  }
  return config;
}
