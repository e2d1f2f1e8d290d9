/**
 * Benchmarks 3 and 4, the Polygon side, in its own process so it never shares an event loop with
 * the producer: the fake Polygon server replaying `--quotes` single-quote XQ frames at `--rate`
 * frames per second. Each quote's exchange time `t` is {@linkcode E2E_T0} plus its sequence
 * number, so the producer and the consumer can match it on one host clock.
 *
 *   deno run -A bench/e2e_fake.ts --rate N --quotes N
 *
 * Prints `BENCH_READY <url>`, then one `BENCH_RESULT {...}` line once every frame is sent.
 * Permissions: --allow-net (127.0.0.1).
 */
import { parseArgs } from "node:util";
import { generateFrames } from "../fixtures/generate.ts";
import { startFakePolygon } from "../lib/polygon/fake.ts";
import { E2E_API_KEY, E2E_T0, emitResult } from "./common.ts";

/** `quotes` frames of one realistic XQ quote each, with `t` = E2E_T0 + sequence number. */
export function e2eFrames(quotes: number): string[] {
  const out: string[] = [];
  for (const line of generateFrames({ quotes, symbols: 24, clean: true })) {
    const parsed = JSON.parse(line);
    if (!Array.isArray(parsed)) continue; // the header
    for (const e of parsed as Record<string, unknown>[]) {
      const t = E2E_T0 + out.length;
      out.push("[" + JSON.stringify({ ...e, t, r: t + 5 }) + "]");
    }
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rate: { type: "string" }, quotes: { type: "string" } },
  });
  const frames = e2eFrames(Number(values.quotes));
  const fake = startFakePolygon({ frames, apiKey: E2E_API_KEY, rate: Number(values.rate) });
  console.log(`BENCH_READY ${fake.url}`);
  await fake.done;
  emitResult({ sent: fake.stats.framesSent });
  // Stay up (the producer would reconnect otherwise) until the runner ends this process.
  await new Promise(() => {});
}
