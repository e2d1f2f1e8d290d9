/**
 * The one place that picks the history store's database adapter: QuestDB (the default) or
 * PostgreSQL, loaded on demand so a process pays for one client only.
 */
import type { StoreConfig } from "../config/store.ts";
import type { HistoryStore } from "./types.ts";

/** The adapter `config.db` names, bound to its address and tables (not yet connected). */
export async function openStore(config: StoreConfig): Promise<HistoryStore> {
  if (config.db === "postgres") {
    const { PostgresStore } = await import("./postgres.ts");
    return new PostgresStore({
      url: config.postgresUrl!,
      tables: config.tables,
      ca: config.postgresCa,
    });
  }
  const { QuestDbStore } = await import("./questdb.ts");
  return new QuestDbStore({ url: config.questdbUrl, tables: config.tables });
}
