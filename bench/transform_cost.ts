/**
 * Benchmark 1, child process: transform cost per event against the bare `JSON.parse` floor on
 * the same frames, interleaved round by round so both see the same machine load.
 *
 *   deno run -A bench/transform_cost.ts FILE [--rounds N] [--max-frames N]
 *
 * Prints one `BENCH_RESULT {...}` line. Permissions: --allow-read (the recording).
 */
import { parseArgs } from "node:util";
import { cpuUsage } from "node:process";
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";
import { readAllFrames } from "../lib/recording.ts";
import { emitResult, spreadOf } from "./common.ts";

/** One file's figures. */
export interface TransformCostResult {
  file: string;
  frames: number;
  events: number;
  rounds: number;
  /** ns per event of each round. */
  parseNs: number[];
  transformNs: number[];
  /** transform / parse, per round. */
  ratios: number[];
}

function parsePass(frames: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < frames.length; i++) {
    const v = JSON.parse(frames[i]!);
    n += Array.isArray(v) ? v.length : 1;
  }
  return n;
}

const records: SpreadRecord[] = [];
const spreads = createSpreadTransform();

function transformPass(frames: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < frames.length; i++) {
    n += spreads.frame(frames[i]!, records);
    if (records.length > 4096) records.length = 0;
  }
  return n;
}

/** Measures `rounds` interleaved rounds (after a warm-up) on the frames. */
export function measure(
  frames: readonly string[],
  rounds: number,
): Omit<TransformCostResult, "file"> {
  const events = parsePass(frames);
  // Warm-up: let both paths reach the optimizing tier.
  for (let i = 0; i < 2; i++) {
    parsePass(frames);
    transformPass(frames);
  }
  const parseNs: number[] = [];
  const transformNs: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // A round is three alternating pairs of passes, timed in CPU time of this process (not
    // wall time, which counts the moments another process had the core); each side keeps its
    // fastest pass. The order alternates so neither
    // side always runs first (GC debt, frequency scaling).
    let p = Infinity;
    let t = Infinity;
    for (let k = 0; k < 3; k++) {
      for (const which of (r + k) % 2 === 0 ? ["p", "t"] : ["t", "p"]) {
        const start = cpuUsage();
        const n = which === "p" ? parsePass(frames) : transformPass(frames);
        const used = cpuUsage(start);
        const ns = ((used.user + used.system) * 1e3) / events;
        if (n !== events) throw new Error(`Expected ${events} events, counted ${n}`);
        if (which === "p") p = Math.min(p, ns);
        else t = Math.min(t, ns);
      }
    }
    parseNs.push(p);
    transformNs.push(t);
    ratios.push(t / p);
  }
  return { frames: frames.length, events, rounds, parseNs, transformNs, ratios };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      rounds: { type: "string", default: "9" },
      "max-frames": { type: "string" },
      verbose: { type: "boolean", default: false },
    },
  });
  const file = positionals[0];
  if (!file) throw new Error("Expected a recording FILE");
  let frames = await readAllFrames(file);
  if (values["max-frames"]) frames = frames.slice(0, Number(values["max-frames"]));
  // Frames as a WebSocket delivers them: each its own flat string decoded from bytes, not a
  // slice of one big file string (which costs every character access an indirection).
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  frames = frames.map((f) => decoder.decode(encoder.encode(f)));
  const result: TransformCostResult = { file, ...measure(frames, Number(values.rounds)) };
  emitResult(result);
  if (values.verbose) {
    console.error(
      `ratio ${JSON.stringify(spreadOf(result.ratios))} parse ${
        JSON.stringify(spreadOf(result.parseNs))
      } transform ${JSON.stringify(spreadOf(result.transformNs))}`,
    );
  }
}
