/**
 * The history dashboard: spread history from the store's QuestDB tables, through Grafana's
 * built-in PostgreSQL data source pointed at QuestDB's PostgreSQL wire port (8812; user admin,
 * password quest, database qdb by default). Every query is QuestDB SQL (`SAMPLE BY`, `LATEST ON`),
 * run against a real QuestDB holding the capture by tests/store/history_sql_test.ts.
 *
 *   deno run --allow-write dashboards/build_history_dashboard.ts   rewrite crypto_history_questdb.json
 */

/** One panel of the history dashboard. */
export interface HistoryPanel {
  title: string;
  description: string;
  unit: string;
  /** QuestDB SQL with Grafana's macros: `$__timeFilter(ts)`, `${__interval_ms}`, `$symbol`. */
  sql: string;
  /** `time_series` (columns time, metric, value) or `table`. */
  format: "time_series" | "table";
}

/** The symbols picked, and the panels' time range and bucket: what each query filters on. */
const WHERE = "$__timeFilter(ts) AND symbol IN ($symbol)";

/** The panels, in order. */
export const HISTORY_PANELS: readonly HistoryPanel[] = [
  {
    title: "Spread per symbol (last in each interval)",
    description: "The last stored spread of each interval, per symbol (DECIMAL(38,18) in the " +
      "table; cast to double for the chart only).",
    unit: "none",
    format: "time_series",
    sql: "SELECT ts AS time, symbol AS metric, cast(last(spread) AS double) AS spread\n" +
      `FROM spreads WHERE ${WHERE}\n` +
      "SAMPLE BY ${__interval_ms}T ORDER BY time",
  },
  {
    title: "Spread p50 and p99 per minute",
    description: "approx_percentile with 5 significant digits (QuestDB's percentiles take " +
      "doubles, and no negative values: crossed quotes are left out, see the crossed share " +
      "panel); min and max in docs/history.md are exact.",
    unit: "none",
    format: "time_series",
    sql: "SELECT ts AS time, symbol AS metric,\n" +
      "  approx_percentile(cast(spread AS double), 0.5, 5) AS p50,\n" +
      "  approx_percentile(cast(spread AS double), 0.99, 5) AS p99\n" +
      `FROM spreads WHERE ${WHERE} AND spread >= 0\n` +
      "SAMPLE BY 1m ORDER BY time",
  },
  {
    title: "Quotes per interval",
    description: "Rows stored per interval and symbol. No rows and no gap: the market was quiet.",
    unit: "short",
    format: "time_series",
    sql: "SELECT ts AS time, symbol AS metric, count() AS quotes\n" +
      `FROM spreads WHERE ${WHERE}\n` +
      "SAMPLE BY ${__interval_ms}T ORDER BY time",
  },
  {
    title: "Crossed share per hour",
    description: "Share of quotes with a negative spread (bid above ask), per hour and symbol.",
    unit: "percentunit",
    format: "time_series",
    sql: "SELECT ts AS time, symbol AS metric,\n" +
      "  sum(CASE WHEN spread < 0 THEN 1 ELSE 0 END) / cast(count() AS double) AS crossed\n" +
      `FROM spreads WHERE ${WHERE}\n` +
      "SAMPLE BY 1h ORDER BY time",
  },
  {
    title: "Seconds not listening",
    description:
      "Gaps from <topic>.gaps (reconnects, failovers): seconds per interval by reason. " +
      "Here, and not in the quotes panel, is where 'not listening' shows.",
    unit: "s",
    format: "time_series",
    sql: "SELECT ts AS time, reason AS metric, cast(sum(seconds) AS double) AS seconds\n" +
      "FROM spreads_gaps WHERE $__timeFilter(ts)\n" +
      "SAMPLE BY ${__interval_ms}T ORDER BY time",
  },
  {
    title: "Latest spread per symbol",
    description: "LATEST ON: the newest stored row of each symbol, exact.",
    unit: "none",
    format: "table",
    sql: "SELECT symbol, ts, cast(spread AS string) AS spread\n" +
      "FROM spreads WHERE symbol IN ($symbol)\n" +
      "LATEST ON ts PARTITION BY symbol",
  },
  {
    title: "Dead letters per interval",
    description: "Records the store refused and kept in spreads_dead_letters, by reason code.",
    unit: "short",
    format: "time_series",
    sql: "SELECT ts AS time, code AS metric, count() AS letters\n" +
      "FROM spreads_dead_letters WHERE $__timeFilter(ts)\n" +
      "SAMPLE BY ${__interval_ms}T ORDER BY time",
  },
];

const DATASOURCE = { type: "grafana-postgresql-datasource", uid: "${datasource}" };

function panelJson(p: HistoryPanel, i: number): Record<string, unknown> {
  const base = {
    id: i + 1,
    title: p.title,
    description: p.description,
    datasource: DATASOURCE,
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    targets: [{
      datasource: DATASOURCE,
      refId: "A",
      editorMode: "code",
      format: p.format,
      rawQuery: true,
      rawSql: p.sql,
    }],
  };
  if (p.format === "table") {
    return {
      ...base,
      type: "table",
      fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
      options: { showHeader: true, cellHeight: "sm" },
    };
  }
  return {
    ...base,
    type: "timeseries",
    fieldConfig: {
      defaults: { unit: p.unit, custom: { drawStyle: "line", lineWidth: 1, spanNulls: false } },
      overrides: [],
    },
    options: {
      legend: { calcs: [], displayMode: "list", placement: "bottom", showLegend: true },
      tooltip: { mode: "multi", sort: "desc" },
    },
  };
}

/** Builds the dashboard as a JSON-ready object. */
export function buildHistoryDashboard(): Record<string, unknown> {
  return {
    uid: "crypto-quotes-history-questdb",
    title: "Crypto spread history (QuestDB)",
    description: "The store's tables in QuestDB (deno task store), through Grafana's PostgreSQL " +
      "data source on QuestDB's PostgreSQL wire port: spread history, percentiles, crossed share, " +
      "gaps and dead letters.",
    tags: ["crypto", "questdb", "history"],
    timezone: "utc",
    editable: true,
    graphTooltip: 1,
    refresh: "30s",
    schemaVersion: 39,
    version: 1,
    time: { from: "now-24h", to: "now" },
    templating: {
      list: [
        {
          name: "datasource",
          label: "Data source",
          type: "datasource",
          query: "grafana-postgresql-datasource",
          hide: 0,
          refresh: 1,
          regex: "",
          options: [],
        },
        {
          name: "symbol",
          label: "Symbol",
          type: "query",
          datasource: DATASOURCE,
          query: "SELECT DISTINCT symbol FROM spreads ORDER BY symbol",
          multi: true,
          includeAll: true,
          current: { selected: true, text: ["All"], value: ["$__all"] },
          refresh: 2,
          sort: 1,
          regex: "",
          hide: 0,
          options: [],
        },
      ],
    },
    annotations: { list: [] },
    panels: HISTORY_PANELS.map(panelJson),
  };
}

/** The JSON text of the dashboard file, as committed. */
export function historyDashboardText(): string {
  return JSON.stringify(buildHistoryDashboard(), null, 2) + "\n";
}

if (import.meta.main) {
  const file = new URL("crypto_history_questdb.json", import.meta.url);
  await Deno.writeTextFile(file, historyDashboardText());
  console.log(`wrote ${file.pathname}`);
}
