/**
 * End to end, the history store against a real broker, a real QuestDB and a real PostgreSQL:
 * the real capture (fixtures/btc.jsonl without it) through `replay.ts --to kafka` and `store.ts`
 * gives a table equal to the topic record for record, comparing exact decimal text, with either
 * adapter; a topic of hostile records is counted and kept among the dead letters, nothing is
 * injected and the store keeps running; a table of another shape and a database that does not
 * answer are refused at start-up with their exit codes. One QuestDB and one PostgreSQL serve the
 * whole file; the test that starts them stops them.
 */
import { deepStrictEqual as deepEqual, equal, ok } from "./helpers/assert.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { ensureTopic, kafka, KAFKA_TEST, produce, run } from "./helpers/e2e.ts";
import { startQuestDb } from "./helpers/questdb.ts";
import { HAVE_POSTGRES, startPostgres } from "./helpers/postgres.ts";
import {
  type Databases,
  diffTable,
  startStore,
  storeEnv,
  tableCount,
  tableSpreads,
  topicSpreads,
  waitFor,
} from "./helpers/store.ts";
import type { StoreName } from "../lib/store/types.ts";
import { freePort } from "./helpers/service_process.ts";

const CAPTURE = Deno.env.get("CAPTURE_FILE") ??
  new URL("../../shared/data/polygon-xq-capture-2023-07-26.jsonl", import.meta.url).pathname;
const FIXTURE = new URL("../fixtures/btc.jsonl", import.meta.url).pathname;
const RECORDING = (() => {
  try {
    return Deno.statSync(CAPTURE).isFile ? CAPTURE : FIXTURE;
  } catch {
    return FIXTURE;
  }
})();

const ADAPTERS: StoreName[] = HAVE_POSTGRES ? ["questdb", "postgres"] : ["questdb"];

/** Hostile values, each with the reason code it must be kept under (null: it is a valid row). */
const HOSTILE: [string, string | null][] = [
  ["not json {", "not_json"],
  ['{"a":"\\"\\\\\n', "not_json"],
  ["[1,2]", "not_object"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD"}', "missing_field"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":"0.01"}', "bad_type"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":123,"spread":0.01}', "bad_type"],
  ['{"timestamp":"yesterday","symbol":"BTC-USD","spread":0.01}', "bad_timestamp"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":1e40}', "out_of_range"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":1e-40}', "out_of_range"],
  ['{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":-1e40}', "out_of_range"],
  [
    '{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD","spread":0.1234567890123456789}',
    "out_of_range",
  ],
  [
    `{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"${"A".repeat(10_240)}","spread":0.01}`,
    "bad_symbol",
  ],
  [
    `{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC-USD'); DROP TABLE spreads; --","spread":0.01}`,
    "bad_symbol",
  ],
  [
    '{"timestamp":"2023-07-26T22:05:19.847Z","symbol":"BTC,x=1 y\\n","spread":0.01}',
    "bad_symbol",
  ],
  // A negative spread in range is a crossed quote: data, kept as a row.
  ['{"timestamp":"2023-07-26T22:05:19.848Z","symbol":"BTC-USD","spread":-0.5}', null],
  ['{"timestamp":"2023-07-26T22:05:19.849Z","symbol":"BTC-USD","spread":1e-8}', null],
];

async function summaryOf(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

Deno.test({
  name: "the store writes the capture's topic into QuestDB and PostgreSQL, equal record for record",
  ...KAFKA_TEST,
  fn: async (t) => {
    const broker = await kafka();
    const dbs: Databases = {};
    try {
      [dbs.questdb, dbs.postgres] = await Promise.all([
        startQuestDb(),
        HAVE_POSTGRES ? startPostgres() : Promise.resolve(undefined),
      ]);
      const topic = uniqueTopic("store-capture");
      const config = brokerConfig(broker, "plaintext", { topic });
      await ensureTopic(config, topic, 6);
      const replay = await run("replay.ts", [RECORDING, "--to", "kafka", "--topic", topic], {
        KAFKA_BROKERS: broker.plaintext,
      });
      equal(replay.code, EXIT.OK, replay.stderr);
      const lines = Deno.readTextFileSync(RECORDING).split("\n").filter((l) => l !== "");
      ok(lines.length > 100, "the recording has frames");
      const count = Number(/(\d+) records/.exec(replay.stderr)?.[1]);
      const expected = await topicSpreads(config, topic, count);
      equal(expected.size, count);

      for (const db of ADAPTERS) {
        await t.step(
          `${db}: a table equal to the topic, exact decimals, each record once`,
          async () => {
            const summary = await Deno.makeTempFile({ suffix: ".json" });
            const store = startStore(
              ["--topic", topic, "--group", `store-${db}`, "--summary", summary],
              storeEnv(broker, dbs, db),
            );
            await waitFor(
              `${count} rows in ${db}`,
              async () => (await tableCount(dbs, db, "spreads")) >= count,
            );
            store.kill("SIGTERM");
            const exit = await store.finished;
            equal(exit.code, EXIT.OK, exit.stderr);
            const diff = diffTable(expected, await tableSpreads(dbs, db, "spreads"));
            deepEqual(diff, {
              expected: count,
              rows: count,
              missing: 0,
              duplicated: 0,
              extra: 0,
              differing: [],
            });
            const s = await summaryOf(summary);
            deepEqual(s.rows, { spreads: count, gaps: 0, dead: 0 });
            equal(s.exitCode, 0);
          },
        );
      }

      for (const db of ADAPTERS) {
        await t.step(
          `${db}: hostile records are counted and kept as dead letters, never injected`,
          async () => {
            const hostile = uniqueTopic("store-hostile");
            const hostileConfig = brokerConfig(broker, "plaintext", { topic: hostile });
            await ensureTopic(hostileConfig, hostile, 1);
            await produce(
              hostileConfig,
              hostile,
              HOSTILE.map(([value], i) => ({ key: `k${i}`, value, timestamp: 1690409119847 + i })),
              1,
            );
            const table = `hostile_${db}`;
            const summary = await Deno.makeTempFile({ suffix: ".json" });
            const store = startStore(
              [
                "--topic",
                hostile,
                "--group",
                `hostile-${db}`,
                "--table",
                table,
                "--summary",
                summary,
              ],
              storeEnv(broker, dbs, db),
            );
            const dead = HOSTILE.filter(([, code]) => code !== null).length;
            await waitFor(
              "every hostile record stored or kept",
              async () =>
                (await tableCount(dbs, db, `${table}_dead_letters`)) >= dead &&
                (await tableCount(dbs, db, table)) >= HOSTILE.length - dead,
            );
            store.kill("SIGTERM");
            const exit = await store.finished;
            equal(exit.code, EXIT.OK, exit.stderr);
            const byCode: Record<string, number> = {};
            for (const [, code] of HOSTILE) if (code) byCode[code] = (byCode[code] ?? 0) + 1;
            const s = await summaryOf(summary);
            deepEqual(s.deadLetters, byCode);
            deepEqual(s.rows, { spreads: HOSTILE.length - dead, gaps: 0, dead });
            // Each dead letter holds its record verbatim, under its code.
            const letters = await deadLetters(dbs, db, `${table}_dead_letters`);
            deepEqual(
              letters,
              HOSTILE.map(([value, code], i) => ({ offset: String(i), code, value }))
                .filter((l) => l.code !== null),
            );
            const rows = await tableSpreads(dbs, db, table);
            deepEqual([...rows.rows.values()].map((r) => `${r.symbol} ${r.spread}`).sort(), [
              "BTC-USD -0.5",
              "BTC-USD 0.00000001",
            ]);
            // The capture's table is still there, whole: the SQL in a symbol did nothing.
            equal(await tableCount(dbs, db, "spreads"), expected.size);
          },
        );
      }

      await t.step(
        "a table of another shape is refused at start-up, naming the column",
        async () => {
          await dbs.questdb!.exec(
            "CREATE TABLE wrong (ts TIMESTAMP, symbol SYMBOL, spread DOUBLE, kafka_partition INT, " +
              "kafka_offset LONG) TIMESTAMP(ts) PARTITION BY DAY WAL " +
              "DEDUP UPSERT KEYS(ts, kafka_partition, kafka_offset)",
          );
          const r = await startStore(
            ["--topic", topic, "--table", "wrong"],
            storeEnv(broker, dbs, "questdb"),
          )
            .finished;
          equal(r.code, EXIT.USAGE, r.stderr);
          ok(
            r.stderr.includes(
              'column "spread" of table "wrong" is DOUBLE, expected DECIMAL(38,18)',
            ),
            r.stderr,
          );
          if (dbs.postgres) {
            await dbs.postgres.sql.unsafe(
              "CREATE TABLE wrong (ts timestamptz, symbol text, spread double precision, " +
                "kafka_partition integer, kafka_offset bigint, PRIMARY KEY (ts, kafka_partition, kafka_offset))",
            );
            const p = await startStore(
              ["--topic", topic, "--table", "wrong"],
              storeEnv(broker, dbs, "postgres"),
            )
              .finished;
            equal(p.code, EXIT.USAGE, p.stderr);
            ok(
              p.stderr.includes(
                'column "spread" of table "wrong" is double precision, expected numeric(38,18)',
              ),
              p.stderr,
            );
          }
        },
      );

      await t.step(
        "a database that does not answer at start-up is exit code 7, with its address",
        async () => {
          const port = freePort();
          const q = await startStore(["--topic", topic, "--db-connect-timeout", "1"], {
            ...storeEnv(broker, dbs, "questdb"),
            QUESTDB_URL: `http://127.0.0.1:${port}`,
          }).finished;
          equal(q.code, EXIT.STORE_UNREACHABLE, q.stderr);
          ok(q.stderr.includes(`QuestDB at "http://127.0.0.1:${port}"`), q.stderr);
          if (dbs.postgres) {
            const p = await startStore(["--topic", topic, "--db-connect-timeout", "1"], {
              ...storeEnv(broker, dbs, "postgres"),
              POSTGRES_URL: `postgres://u:secret-pw@127.0.0.1:${port}/db`,
            }).finished;
            equal(p.code, EXIT.STORE_UNREACHABLE, p.stderr);
            ok(p.stderr.includes(`PostgreSQL at "127.0.0.1:${port}/db"`), p.stderr);
            ok(!p.stderr.includes("secret-pw"), "the password is never printed");
          }
        },
      );
    } finally {
      await dbs.questdb?.stop();
      await dbs.postgres?.stop();
    }
  },
});

/** The dead letters of a table, by offset: offset, code, value. */
async function deadLetters(
  dbs: Databases,
  db: StoreName,
  table: string,
): Promise<{ offset: string; code: string | null; value: string | null }[]> {
  if (db === "questdb") {
    await dbs.questdb!.applied();
    const r = await dbs.questdb!.exec(
      `SELECT kafka_offset, code, value FROM ${table} ORDER BY kafka_offset`,
    );
    return r.dataset.map(([o, c, v]) => ({
      offset: String(o),
      code: c as string,
      value: v as string,
    }));
  }
  const r = await dbs.postgres!.sql.unsafe(
    `SELECT kafka_offset::text AS o, code, value FROM ${table} ORDER BY kafka_offset`,
  );
  return r.map((x) => ({
    offset: x.o as string,
    code: x.code as string,
    value: x.value as string,
  }));
}
