import assert from "node:assert/strict";
import { checkImports, findCycles } from "../scripts/check_imports.ts";

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
});

Deno.test("the import gate fails on a cycle made of static, dynamic and type imports and on a client import in lib/", async () => {
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
    const files = ["a.ts", "b.ts", "c.ts"].map((f) => `${rel}/${f}`);
    const report = await checkImports(ROOT, files);
    assert.deepEqual(report.cycles, [[`${rel}/a.ts`, `${rel}/b.ts`, `${rel}/a.ts`]]);
    assert.deepEqual(report.misplaced, [{ file: `${rel}/c.ts`, specifier: "kafkajs" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
