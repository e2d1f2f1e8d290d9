/**
 * The SQL of docs/history.md and every panel query of the history dashboard, run against a real
 * QuestDB holding the real capture (written by the QuestDB adapter in-process), plus one crossed
 * quote, one gap and one dead letter. The doc's queries go through `/exec` exactly as written;
 * the dashboard's go through QuestDB's PostgreSQL wire port, as Grafana's PostgreSQL data source
 * sends them, with Grafana's macros expanded. One QuestDB for the file, stopped by the test.
 */
import postgres from "postgres";
import { deepStrictEqual as deepEqual, equal, ok } from "../helpers/assert.ts";
import { CAPTURE_PATH, captureTest } from "../helpers/capture.ts";
import { startQuestDb } from "../helpers/questdb.ts";
import { QuestDbStore } from "../../lib/store/questdb.ts";
import { tablesFor } from "../../lib/store/schema.ts";
import { toBatch } from "../../lib/store/rows.ts";
import { type SpreadRecord, SpreadTransform } from "../../transform.ts";
import type { InRecord } from "../../lib/sink.ts";
import { HISTORY_PANELS, historyDashboardText } from "../../dashboards/build_history_dashboard.ts";

const DOC = new URL("../../docs/history.md", import.meta.url);
const DASHBOARD = new URL("../../dashboards/crypto_history_questdb.json", import.meta.url);

/** The ```sql blocks of the doc, verbatim, without the final semicolon. */
function docQueries(text: string): string[] {
  return [...text.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim().replace(/;$/, ""));
}

/** A panel's SQL with Grafana's macros as the PostgreSQL data source expands them. */
function expand(sql: string): string {
  return sql
    .replaceAll(
      /\$__timeFilter\((\w+)\)/g,
      "$1 BETWEEN '2023-07-26T00:00:00Z' AND '2023-07-27T00:00:00Z'",
    )
    .replaceAll("${__interval_ms}", "1000")
    .replaceAll("$symbol", "'CHZ-USD','KNC-USD'");
}

function captureRecords(): InRecord[] {
  const t = new SpreadTransform();
  const out: SpreadRecord[] = [];
  for (const line of Deno.readTextFileSync(CAPTURE_PATH).split("\n")) if (line) t.frame(line, out);
  return out.map((r, i) => ({
    topic: "spreads-topic",
    partition: i % 3,
    offset: String(Math.floor(i / 3)),
    key: r.key,
    value: r.value,
    timestamp: r.timestamp,
    headers: {},
  }));
}

Deno.test("the committed history dashboard is what build_history_dashboard.ts writes", async () => {
  equal(await Deno.readTextFile(DASHBOARD), historyDashboardText());
});

captureTest({
  name:
    "every query of docs/history.md and of the history dashboard runs on QuestDB holding the capture",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await startQuestDb();
    const pg = postgres(`postgres://admin:quest@${db.pg}/qdb`, {
      fetch_types: false,
      max: 1,
      onnotice: () => {},
    });
    try {
      const store = new QuestDbStore({ url: db.url, tables: tablesFor("spreads") });
      await store.connect({ timeoutMs: 10_000 });
      await store.ensureSchema();
      const records = captureRecords();
      const crossed: InRecord = {
        ...records[0]!,
        partition: 5,
        offset: "0",
        value: '{"timestamp":"2023-07-26T22:06:00.000Z","symbol":"CHZ-USD","spread":-0.0001}',
      };
      const batch = toBatch(
        [...records, crossed, { ...crossed, offset: "1", value: "junk" }],
        "spreads",
      );
      const gap: InRecord = {
        ...crossed,
        topic: "spreads-topic.gaps",
        partition: 0,
        value: '{"from":"2023-07-26T22:06:10.000Z","to":"2023-07-26T22:06:22.500Z",' +
          '"reason":"reconnect","seconds":12.5}',
      };
      batch.gaps = toBatch([gap], "gaps").gaps;
      equal(batch.dead.length, 1);
      await store.write(batch);
      await db.applied();
      const symbols = new Set(records.map((r) => r.key)).size;

      const results: unknown[][][] = [];
      for (const sql of docQueries(await Deno.readTextFile(DOC))) {
        const r = await db.exec(sql);
        ok(r.dataset.length > 0, `no rows from: ${sql}`);
        results.push(r.dataset);
      }
      equal(results.length, 6);
      const [latest, percentiles, crossedShare, asof, gaps, letters] = results as [
        unknown[][],
        unknown[][],
        unknown[][],
        unknown[][],
        unknown[][],
        unknown[][],
      ];
      equal(latest.length, symbols);
      const chz = crossedShare.find((row) => row[1] === "CHZ-USD")!;
      const chzQuotes = records.filter((r) => r.key === "CHZ-USD").length + 1;
      deepEqual(chz.slice(2), [1 / chzQuotes, chzQuotes]);
      equal(asof.length, chzQuotes);
      ok(percentiles.every((row) => row[1] === "KNC-USD"));
      deepEqual(gaps, [[
        "2023-07-26T22:06:10.000000Z",
        "2023-07-26T22:06:22.500000Z",
        "reconnect",
        "12.500",
      ]]);
      deepEqual(letters.map((row) => row.slice(0, 2)), [["not_json", 1]]);

      for (const panel of HISTORY_PANELS) {
        const rows = await pg.unsafe(expand(panel.sql));
        ok(rows.length > 0, `no rows for panel "${panel.title}"`);
        if (panel.format === "time_series") {
          ok(
            rows.every((r) => r.time instanceof Date && typeof r.metric === "string"),
            panel.title,
          );
        }
      }
      const variable = await pg.unsafe("SELECT DISTINCT symbol FROM spreads ORDER BY symbol");
      equal(variable.length, symbols);
    } finally {
      await pg.end({ timeout: 2 }).catch(() => {});
      await db.stop();
    }
  },
});
