/**
 * The PostgreSQL adapter's own array texts, against a real PostgreSQL: what it sends is read back
 * as exactly the values it was built from.
 */
import { deepStrictEqual as deepEqual, equal } from "../helpers/assert.ts";
import { HAVE_POSTGRES, startPostgres } from "../helpers/postgres.ts";
import { arrayLiteral, PostgresStore } from "../../lib/store/postgres.ts";
import { tablesFor } from "../../lib/store/schema.ts";

const HOSTILE = ["BTC-USD", "NULL", "null", "", 'a"b', "c\\d", "{x,y}", " padded ", "é", "7"];

Deno.test("arrayLiteral quotes each value and escapes only quote and backslash", () => {
  equal(
    arrayLiteral(["NULL", 'a"b', "c\\d", "", 7, "-0.000029"]),
    '{"NULL","a\\"b","c\\\\d","","7","-0.000029"}',
  );
  equal(arrayLiteral([]), "{}");
});

Deno.test({
  name: "PostgreSQL reads the adapter's array texts back as exactly the values, NULL as text",
  ignore: !HAVE_POSTGRES,
  fn: async () => {
    const db = await startPostgres();
    const store = new PostgresStore({ url: db.url, tables: tablesFor("spreads_arrays") });
    try {
      const [row] = await db.sql.unsafe("SELECT $1::text[] AS a", [arrayLiteral(HOSTILE)]);
      deepEqual(row!.a, HOSTILE);
      await store.connect({ timeoutMs: 10_000 });
      await store.ensureSchema();
      await store.write({
        spreads: [
          { partition: 0, offset: "1", ts: 1690409119847, symbol: "NULL", spread: "-0.000029" },
          {
            partition: 5,
            offset: "9223372036854775807",
            ts: 253_402_300_799_999,
            symbol: "ETH-USD",
            spread: "99999999999999999999.999999999999999999",
          },
        ],
        gaps: [],
        dead: [],
      });
      const rows = await db.sql.unsafe(
        `SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts, symbol,
                spread::text AS spread, kafka_partition, kafka_offset::text AS kafka_offset
           FROM spreads_arrays ORDER BY kafka_partition`,
      );
      deepEqual(rows.map((r) => ({ ...r })), [
        {
          ts: "2023-07-26T22:05:19.847Z",
          symbol: "NULL",
          spread: "-0.000029000000000000",
          kafka_partition: 0,
          kafka_offset: "1",
        },
        {
          ts: "9999-12-31T23:59:59.999Z",
          symbol: "ETH-USD",
          spread: "99999999999999999999.999999999999999999",
          kafka_partition: 5,
          kafka_offset: "9223372036854775807",
        },
      ]);
    } finally {
      await store.close().catch(() => {});
      await db.stop();
    }
  },
});
