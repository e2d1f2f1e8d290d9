/**
 * Grafana's own dashboard types (`@grafana/schema`, pinned in deno.json), in the form a JSON file
 * can satisfy, for `tests/dashboards_schema_test.ts`. A generated module writes a dashboard's
 * JSON text as `const d = <json> satisfies DashboardJson;` and `deno check` judges it: unknown
 * keys, missing required keys (such as a legend's `calcs`) and wrong values are type errors.
 */
import type { Dashboard, FieldConfig, FieldConfigSource, Panel } from "@grafana/schema";
import type {
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
} from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

/**
 * A schema type as JSON holds it: a string enum becomes the union of its values (JSON has the
 * text "list", never `LegendDisplayMode.List`); everything else keeps its shape.
 */
export type Json<T> = T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends readonly (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

/** A time series panel: the dashboard schema's panel with the time series plugin's options. */
export type TimeSeriesPanelJson =
  & Omit<Json<Panel>, "type" | "options" | "fieldConfig">
  & {
    type: "timeseries";
    options: Json<TimeSeriesOptions>;
    fieldConfig:
      & Omit<Json<FieldConfigSource>, "defaults">
      & { defaults: Omit<Json<FieldConfig>, "custom"> & { custom: Json<TimeSeriesFieldConfig> } };
  };

/** A dashboard whose panels are all time series panels. */
export type DashboardJson = Omit<Json<Dashboard>, "panels"> & { panels: TimeSeriesPanelJson[] };
