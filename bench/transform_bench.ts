/**
 * Transform cost against the JSON.parse floor, per event, on the real capture in ../shared/data.
 * `deno bench bench/transform_bench.ts` (part of `deno task bench`).
 */
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";
import { readAllFrames } from "../lib/recording.ts";

const frames = await readAllFrames(
  new URL("../../shared/data/polygon-xq-capture-2023-07-26.jsonl", import.meta.url),
);
let events = 0;
for (const f of frames) events += (JSON.parse(f) as unknown[]).length;

Deno.bench(`JSON.parse floor (${frames.length} frames, ${events} events)`, {
  group: "capture",
  baseline: true,
}, () => {
  let n = 0;
  for (const f of frames) n += (JSON.parse(f) as unknown[]).length;
  if (n !== events) throw new Error("count mismatch");
});

Deno.bench(`transform (${frames.length} frames, ${events} events)`, { group: "capture" }, () => {
  const records: SpreadRecord[] = [];
  const spreads = createSpreadTransform();
  for (const f of frames) {
    spreads.frame(f, records);
    if (records.length > 4096) records.length = 0;
  }
});
