import { deepStrictEqual as deepEqual, equal, throws } from "../helpers/assert.ts";
import { buildStoreConfig } from "../../lib/config/store.ts";
import { parseSettings } from "../../lib/config/parse.ts";
import { ConfigError } from "../../lib/config/errors.ts";

Deno.test("the store defaults to QuestDB on 127.0.0.1:9000, table spreads, group crypto-store", () => {
  const { settings } = parseSettings("store", []);
  equal(settings.groupId, "crypto-store");
  equal(settings.from, "earliest");
  deepEqual(buildStoreConfig(settings), {
    db: "questdb",
    questdbUrl: "http://127.0.0.1:9000",
    tables: { spreads: "spreads", gaps: "spreads_gaps", dead: "spreads_dead_letters" },
    connectTimeoutMs: 15_000,
  });
});

Deno.test("the store refuses a table name that is not an identifier and postgres without POSTGRES_URL", () => {
  throws(
    () => buildStoreConfig(parseSettings("store", ["--table", "x; drop"]).settings),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message ===
        "STORE_TABLE (--table) must be letters, digits and _ (at most 63, not starting " +
          'with a digit), got "x; drop"',
  );
  throws(
    () => buildStoreConfig(parseSettings("store", ["--db", "postgres"]).settings),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message.startsWith('"POSTGRES_URL" environment variable must be set'),
  );
  const env = (name: string) => ({ POSTGRES_URL: "postgres://u:p@h:5432/d?sslmode=require" })[name];
  equal(
    buildStoreConfig(parseSettings("store", ["--db", "postgres"], { env }).settings).postgresUrl,
    "postgres://u:p@h:5432/d?sslmode=require",
  );
});
