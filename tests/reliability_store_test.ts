/**
 * Reliability of the history store: exactly once into the table, whatever is killed when. The
 * real capture (fixtures/btc.jsonl without it) is replayed into Kafka at 8× its pace while
 * `store.ts` writes it into QuestDB or PostgreSQL, and
 * - the store is SIGKILLed at random moments and started again;
 * - the database is stopped mid-stream and started again 5 s later;
 * - two stores share the group and one is SIGKILLed and started again (two rebalances).
 * Each time the table must equal the topic record for record: 0 missing, 0 duplicated, 0 that
 * differ. One QuestDB and one PostgreSQL serve the file; the test that starts them stops them.
 * Each scenario prints a `[reliability]` line; `RELIABILITY_SUITE=store
 * scripts/reliability_repeat.sh N` runs the file N times.
 */
import { deepStrictEqual as deepEqual, equal } from "./helpers/assert.ts";
import { EXIT } from "../lib/config/defaults.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { ensureTopic, kafka, KAFKA_TEST, ScriptProcess } from "./helpers/e2e.ts";
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
import type { KafkaBroker } from "./helpers/kafka_broker.ts";

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
/** Replay pace: the capture's 112 s in 14 s, so the faults land mid-stream. */
const SPEED = "8";

/** The adapters tested: both (PostgreSQL when installed), or those `STORE_ADAPTERS` lists. */
const ADAPTERS: StoreName[] =
  (Deno.env.get("STORE_ADAPTERS")?.split(",") as StoreName[] | undefined) ??
    (HAVE_POSTGRES ? ["questdb", "postgres"] : ["questdb"]);
/** The scenarios run: all, or those `STORE_SCENARIOS` lists (kill, restart, pair). */
const SCENARIOS = Deno.env.get("STORE_SCENARIOS")?.split(",") ?? ["kill", "restart", "pair"];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A topic being filled by a paced replay, and how to get its records once it is done. */
async function pacedTopic(broker: KafkaBroker, prefix: string) {
  const topic = uniqueTopic(prefix);
  const config = brokerConfig(broker, "plaintext", { topic });
  await ensureTopic(config, topic, 6);
  const replay = new ScriptProcess(
    "replay.ts",
    [RECORDING, "--to", "kafka", "--topic", topic, "--speed", SPEED],
    { KAFKA_BROKERS: broker.plaintext },
  );
  const reference = async () => {
    const r = await replay.finished;
    equal(r.code, EXIT.OK, r.stderr);
    const count = Number(/(\d+) records/.exec(r.stderr)?.[1]);
    return await topicSpreads(config, topic, count);
  };
  return { topic, replay, reference };
}

/** Waits for the table to hold every record, stops the stores, and compares. */
async function finish(
  dbs: Databases,
  db: StoreName,
  stores: ScriptProcess[],
  expected: Awaited<ReturnType<Awaited<ReturnType<typeof pacedTopic>>["reference"]>>,
  label: string,
) {
  await waitFor(
    `${expected.size} rows in ${db}`,
    async () => (await tableCount(dbs, db, "spreads_" + label)) >= expected.size,
    180_000,
  ).catch(async (error) => {
    const have = await tableCount(dbs, db, "spreads_" + label);
    throw new Error(
      `${error.message} (the table holds ${have})\n` +
        stores.map((s) => s.stderr.slice(-4000)).join("\n----\n"),
    );
  });
  // Anything redelivered after this point would be a duplicate: let it come, then look.
  await sleep(1_000);
  for (const s of stores) s.kill("SIGTERM");
  for (const s of stores) {
    const exit = await s.finished;
    equal(exit.code, EXIT.OK, exit.stderr.slice(-3000));
  }
  const diff = diffTable(expected, await tableSpreads(dbs, db, "spreads_" + label));
  return diff;
}

Deno.test({
  name:
    "the store writes every record exactly once through kills, database restarts and rebalances",
  ...KAFKA_TEST,
  fn: async (t) => {
    const broker = await kafka();
    const dbs: Databases = {};
    try {
      [dbs.questdb, dbs.postgres] = await Promise.all([
        startQuestDb(),
        HAVE_POSTGRES ? startPostgres() : Promise.resolve(undefined),
      ]);

      for (const db of SCENARIOS.includes("kill") ? ADAPTERS : []) {
        await t.step(
          `${db}: the store SIGKILLed at random moments: 0 missing, 0 duplicated`,
          async () => {
            const label = `${db}_kill`;
            const { topic, reference } = await pacedTopic(broker, "store-kill");
            const args = ["--topic", topic, "--group", `kill-${db}`, "--table", `spreads_${label}`];
            const env = storeEnv(broker, dbs, db);
            let store = startStore(args, env);
            const moments: number[] = [];
            for (let i = 0; i < 3; i++) {
              const ms = 1_000 + Math.floor(Math.random() * 3_000);
              moments.push(ms);
              await sleep(ms);
              store.kill("SIGKILL");
              await store.finished;
              store = startStore(args, env);
            }
            const expected = await reference();
            const diff = await finish(dbs, db, [store], expected, label);
            console.log(
              `[reliability] store ${db} sigkill at +${
                moments.join(",+")
              } ms: expected ${diff.expected}, ` +
                `rows ${diff.rows}, missing ${diff.missing}, duplicated ${diff.duplicated}, ` +
                `differing ${diff.differing.length}`,
            );
            deepEqual(diff, {
              expected: expected.size,
              rows: expected.size,
              missing: 0,
              duplicated: 0,
              extra: 0,
              differing: [],
            });
          },
        );
      }

      for (const db of SCENARIOS.includes("restart") ? ADAPTERS : []) {
        await t.step(
          `${db}: the database stopped mid-stream for 5 s: 0 missing, 0 duplicated`,
          async () => {
            const label = `${db}_restart`;
            const { topic, reference } = await pacedTopic(broker, "store-dbdown");
            const store = startStore(
              ["--topic", topic, "--group", `dbdown-${db}`, "--table", `spreads_${label}`],
              storeEnv(broker, dbs, db),
            );
            await waitFor(
              "the first rows",
              async () => (await tableCount(dbs, db, `spreads_${label}`)) > 0,
            );
            await sleep(1_500);
            if (db === "questdb") {
              await dbs.questdb!.pause();
            } else await dbs.postgres!.pause();
            await sleep(5_000);
            if (db === "questdb") await dbs.questdb!.resume();
            else await dbs.postgres!.resume();
            const expected = await reference();
            const diff = await finish(dbs, db, [store], expected, label);
            console.log(
              `[reliability] store ${db} database restart: expected ${diff.expected}, rows ${diff.rows}, ` +
                `missing ${diff.missing}, duplicated ${diff.duplicated}, differing ${diff.differing.length}`,
            );
            deepEqual(diff, {
              expected: expected.size,
              rows: expected.size,
              missing: 0,
              duplicated: 0,
              extra: 0,
              differing: [],
            });
          },
        );
      }

      for (const db of SCENARIOS.includes("pair") ? ADAPTERS : []) {
        await t.step(
          `${db}: two stores in one group, one SIGKILLed and restarted: 0 missing, 0 duplicated`,
          async () => {
            const label = `${db}_pair`;
            const { topic, reference } = await pacedTopic(broker, "store-pair");
            const args = ["--topic", topic, "--group", `pair-${db}`, "--table", `spreads_${label}`];
            const env = storeEnv(broker, dbs, db);
            const b = startStore(args, env);
            let a = startStore(args, env);
            const joined = (p: ScriptProcess) => p.stderr.includes(`joined group "pair-${db}": `);
            await waitFor(
              "both stores in the group",
              () => Promise.resolve(joined(a) && joined(b)),
              60_000,
            )
              .catch((error) => {
                throw new Error(`${error.message}\nA:\n${a.stderr}\nB:\n${b.stderr}`);
              });
            const ms = 1_000 + Math.floor(Math.random() * 3_000);
            await sleep(ms);
            a.kill("SIGKILL");
            await a.finished;
            await sleep(2_000);
            a = startStore(args, env);
            const expected = await reference();
            const diff = await finish(dbs, db, [a, b], expected, label);
            console.log(
              `[reliability] store ${db} two stores, one killed at +${ms} ms: expected ${diff.expected}, ` +
                `rows ${diff.rows}, missing ${diff.missing}, duplicated ${diff.duplicated}, ` +
                `differing ${diff.differing.length}`,
            );
            deepEqual(diff, {
              expected: expected.size,
              rows: expected.size,
              missing: 0,
              duplicated: 0,
              extra: 0,
              differing: [],
            });
          },
        );
      }
    } finally {
      await dbs.questdb?.stop();
      await dbs.postgres?.stop();
    }
  },
});
