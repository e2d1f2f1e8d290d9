import assert from "node:assert/strict";
import { adapterImports, checkImports, findCycles } from "../scripts/check_imports.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("the import gate finds every cycle, printed as a path back to its first file", () => {
  const edges = new Map<string, Set<string>>([
    ["a.ts", new Set(["b.ts"])],
    ["b.ts", new Set(["c.ts"])],
    ["c.ts", new Set(["a.ts", "d.ts"])],
    ["d.ts", new Set()],
    ["e.ts", new Set(["e.ts"])],
    ["f.ts", new Set(["d.ts"])],
  ]);
  assert.deepEqual(findCycles(edges), [["a.ts", "b.ts", "c.ts", "a.ts"], ["e.ts", "e.ts"]]);
  assert.deepEqual(findCycles(new Map([["x.ts", new Set(["y.ts"])]])), []);
});

Deno.test("the tree has no import cycle and no Kafka client import outside lib/kafka/", async () => {
  const report = await checkImports(ROOT);
  assert.ok(report.modules > 100, `only ${report.modules} modules in the graph`);
  assert.deepEqual(report.cycles, []);
  assert.deepEqual(report.misplaced, []);
  assert.deepEqual(report.adapterImports, []);
});

Deno.test("the import gate lets only lib/kafka/open.ts, the adapter itself, tests and benchmarks import an adapter, and nothing in lib/kafka/ import open.ts", () => {
  const edges = new Map<string, Set<string>>([
    ["lib/kafka/open.ts", new Set(["lib/kafka/platformatic/client.ts"])],
    ["lib/kafka/platformatic/client.ts", new Set(["lib/kafka/platformatic/sink.ts"])],
    ["lib/kafka/connect.ts", new Set(["lib/kafka/open.ts", "lib/kafka/types.ts"])],
    ["lib/standby.ts", new Set(["lib/kafka/kafkajs/sink.ts", "lib/kafka/types.ts"])],
    ["lib/kafka/kafkajs/sink.ts", new Set(["lib/kafka/platformatic/options.ts"])],
    ["tests/kafka/platformatic/sink_test.ts", new Set(["lib/kafka/platformatic/sink.ts"])],
    ["bench/store_bench.ts", new Set(["lib/kafka/kafkajs/client.ts"])],
  ]);
  assert.deepEqual(adapterImports(edges), [
    { file: "lib/kafka/connect.ts", imported: "lib/kafka/open.ts" },
    { file: "lib/kafka/kafkajs/sink.ts", imported: "lib/kafka/platformatic/options.ts" },
    { file: "lib/standby.ts", imported: "lib/kafka/kafkajs/sink.ts" },
  ]);
});

Deno.test("the import gate fails on a cycle made of static, dynamic and type imports, on a client import in lib/ and on an adapter import outside open.ts", async () => {
  // Files of a probe folder inside lib/, so that the project's import map applies; removed after.
  const dir = await Deno.makeTempDir({ dir: `${ROOT}/lib`, prefix: "_import_probe_" });
  const rel = dir.slice(ROOT.length + 1);
  try {
    await Deno.writeTextFile(
      `${dir}/a.ts`,
      `import type { B } from "./b.ts";\nexport type A = B;\n`,
    );
    await Deno.writeTextFile(
      `${dir}/b.ts`,
      `export type B = number;\nexport const load = () => import("./a.ts");\n`,
    );
    await Deno.writeTextFile(`${dir}/c.ts`, `export { Kafka } from "kafkajs";\n`);
    await Deno.writeTextFile(
      `${dir}/d.ts`,
      `export type { PlatformaticClient } from "../kafka/platformatic/client.ts";\n`,
    );
    const files = ["a.ts", "b.ts", "c.ts", "d.ts"].map((f) => `${rel}/${f}`);
    const report = await checkImports(ROOT, files);
    assert.deepEqual(report.cycles, [[`${rel}/a.ts`, `${rel}/b.ts`, `${rel}/a.ts`]]);
    assert.deepEqual(report.misplaced, [{ file: `${rel}/c.ts`, specifier: "kafkajs" }]);
    assert.deepEqual(report.adapterImports, [
      { file: `${rel}/d.ts`, imported: "lib/kafka/platformatic/client.ts" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
