/**
 * Transform cost per event of each channel against the bare `JSON.parse` floor on the same
 * frames (the bench/transform_cost.ts pattern: CPU time, interleaved passes, fastest of three
 * per round): trades (XT) beside quotes (XQ, the spread transform), bars (XA), and the router
 * on mixed frames (route + every channel's transform).
 *
 *   deno run -A bench/channel_cost.ts [--rounds N] [--frames N]
 *
 * Prints one `BENCH_RESULT {...}` line. Permissions: none beyond reading the clock.
 */
import { parseArgs } from "node:util";
import { cpuUsage } from "node:process";
import { channelPlans } from "../lib/channels/registry.ts";
import { createFrameRouter } from "../lib/channels/router.ts";
import { generateFeed } from "../lib/polygon/feed.ts";
import type { FrameTransform, OutRecord } from "../lib/sink.ts";
import { emitResult, spreadOf } from "./common.ts";

const TOPICS = { topic: "t", gapsTopic: "t.gaps" };

function parsePass(frames: readonly string[]): number {
  let n = 0;
  for (const f of frames) n += (JSON.parse(f) as unknown[]).length;
  return n;
}

function cpuNsPerEvent(pass: () => number, events: number): number {
  const start = cpuUsage();
  const n = pass();
  const used = cpuUsage(start);
  if (n !== events) throw new Error(`Expected ${events} events, counted ${n}`);
  return ((used.user + used.system) * 1e3) / events;
}

/** One input's figures, as bench/transform_cost.ts reports them. */
export interface ChannelCost {
  frames: number;
  events: number;
  /** ns per event of each round. */
  parseNs: number[];
  transformNs: number[];
  /** transform / parse, per round. */
  ratios: number[];
}

/** The figures of every input. */
export interface ChannelCostResult {
  quotes: ChannelCost;
  trades: ChannelCost;
  bars: ChannelCost;
  mixedRouted: ChannelCost;
}

/** ns per event of `pass` and of JSON.parse on the same frames, and their ratio, per round. */
function measure(frames: readonly string[], pass: () => number, rounds: number): ChannelCost {
  const events = parsePass(frames);
  for (let i = 0; i < 2; i++) {
    parsePass(frames);
    pass();
  }
  const parseNs: number[] = [];
  const transformNs: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let p = Infinity;
    let t = Infinity;
    for (let k = 0; k < 3; k++) {
      for (const which of (r + k) % 2 === 0 ? ["p", "t"] : ["t", "p"]) {
        const ns = cpuNsPerEvent(which === "p" ? () => parsePass(frames) : pass, events);
        if (which === "p") p = Math.min(p, ns);
        else t = Math.min(t, ns);
      }
    }
    parseNs.push(p);
    transformNs.push(t);
    ratios.push(t / p);
  }
  return { frames: frames.length, events, parseNs, transformNs, ratios };
}

function transformPass(transform: FrameTransform, frames: readonly string[]): () => number {
  const records: OutRecord[] = [];
  return () => {
    let n = 0;
    for (const f of frames) {
      n += transform.frame(f, records);
      if (records.length > 4096) records.length = 0;
    }
    return n;
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "5" },
      frames: { type: "string", default: "4000" },
    },
  });
  const rounds = Number(values.rounds);
  const count = Number(values.frames);
  const base = { seed: 1, frames: count, barEvery: 0 };
  const quotes = generateFeed({ ...base, tradesPerFrame: 0 }).frames;
  const trades = generateFeed({ ...base, quotesPerFrame: 0 }).frames;
  const bars = generateFeed({ ...base, quotesPerFrame: 0, tradesPerFrame: 0, barEvery: 1 }).frames;
  const mixed = generateFeed({ seed: 1, frames: count }).frames;
  const [xq, xt, xa] = channelPlans(["XQ", "XT", "XA"], TOPICS).map((p) => p.transform);
  const plans = channelPlans(["XQ", "XT", "XA"], TOPICS);
  const router = createFrameRouter(plans);
  const sink: OutRecord[] = [];
  const routed = () => {
    let n = 0;
    for (const f of mixed) {
      router.route(f, (i, part) => n += plans[i]!.transform.frame(part, sink));
      if (sink.length > 4096) sink.length = 0;
    }
    return n;
  };
  const result: ChannelCostResult = {
    quotes: measure(quotes, transformPass(xq!, quotes), rounds),
    trades: measure(trades, transformPass(xt!, trades), rounds),
    bars: measure(bars, transformPass(xa!, bars), rounds),
    mixedRouted: measure(mixed, routed, rounds),
  };
  emitResult(result);
  for (const [name, r] of Object.entries(result)) {
    console.error(
      `${name}: ${r.events} events, transform ${
        JSON.stringify(spreadOf(r.transformNs))
      } ns/event, ` +
        `JSON.parse ${JSON.stringify(spreadOf(r.parseNs))} ns/event, ratio ${
          JSON.stringify(spreadOf(r.ratios))
        }`,
    );
  }
}
