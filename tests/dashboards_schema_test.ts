/**
 * The committed dashboard JSON type-checks against Grafana's own schema (`@grafana/schema`, the
 * version pinned in deno.json): the dashboard, its variables, and each panel with the time series
 * plugin's options and field config. Each file's text becomes a module
 * `export const dashboard = <json> satisfies DashboardJson;` that `deno check` judges, so unknown
 * keys, missing required keys and wrong values all fail. Three broken copies show the check bites.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const SCHEMA = new URL("./helpers/grafana_schema.ts", import.meta.url);
const KINDS = ["prometheus", "influxdb", "broker"] as const;

/** Writes `json` as a module that must satisfy the schema; returns its path. */
async function moduleFor(dir: string, name: string, json: string): Promise<string> {
  const path = `${dir}/${name}.ts`;
  await Deno.writeTextFile(
    path,
    `import type { DashboardJson } from "${SCHEMA.href}";\n` +
      `export const dashboard = ${json.trim()} satisfies DashboardJson;\n`,
  );
  return path;
}

/** Runs `deno check` with the project's config and lock (never changing the lock). */
async function check(paths: string[]): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--frozen", "--config", new URL("deno.json", ROOT).pathname, ...paths],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

Deno.test("every dashboard type-checks against @grafana/schema, and a broken copy does not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dashboards_schema_" });
  try {
    const texts = await Promise.all(
      KINDS.map((k) => Deno.readTextFile(new URL(`dashboards/crypto_${k}.json`, ROOT))),
    );
    const good = await Promise.all(KINDS.map((k, i) => moduleFor(dir, k, texts[i]!)));
    const ok = await check(good);
    assert.equal(ok.code, 0, ok.output);

    const original = JSON.parse(texts[0]!);
    const broken = (edit: (d: typeof original) => void) => {
      const copy = structuredClone(original);
      edit(copy);
      return JSON.stringify(copy, null, 2);
    };
    const cases = [
      {
        name: "no_calcs",
        json: broken((d) => delete d.panels[0].options.legend.calcs),
        expect: /calcs/,
      },
      { name: "unknown_key", json: broken((d) => d.refesh = "10s"), expect: /refesh/ },
      {
        name: "bad_enum",
        json: broken((d) => d.panels[1].options.tooltip.mode = "every"),
        expect: /"every"/,
      },
    ];
    const bad = await Promise.all(cases.map((c) => moduleFor(dir, c.name, c.json)));
    const failed = await check(bad);
    assert.notEqual(failed.code, 0, failed.output);
    for (const c of cases) {
      const errors = failed.output.split(/\n(?=TS\d+ )/).filter((e) => e.includes(`${c.name}.ts`));
      assert.ok(errors.some((e) => c.expect.test(e)), `${c.name}: ${failed.output}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
