/**
 * Shared pieces of the benchmarks: statistics, the host clock, peak RSS, the cached generated
 * recording, and the one-line JSON protocol between `bench/run.ts` and its child processes.
 */
import { generateFrames } from "../fixtures/generate.ts";
import type { KafkaConfig } from "../lib/config/kafka.ts";

/** The real capture (never copied into the repo). */
export const CAPTURE_PATH = new URL(
  "../../shared/data/polygon-xq-capture-2023-07-26.jsonl",
  import.meta.url,
).pathname;

/** Folder for generated recordings and run artefacts (git-ignored). */
export const CACHE_DIR = new URL("../.cache/bench/", import.meta.url).pathname;

/** Milliseconds on the host's wall clock, sub-millisecond resolution, comparable across processes. */
export function hostNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Median, min and max of a list of numbers. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median (mean of the middle two for an even count), min and max. */
export function spreadOf(values: readonly number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n };
  const median = n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0]!, max: s[n - 1]!, n };
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/** Peak resident set size of this process so far, bytes (Linux `VmHWM`). */
export function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Options for {@linkcode ensureRecording}. */
export interface EnsureRecordingOptions {
  /** Pairs in the recording; default 24. */
  symbols?: number;
  /** Seed; default 42. */
  seed?: number;
}

/**
 * Path of a clean generated recording of `quotes` quotes in the cache folder, writing it on
 * first use (seeded, so every run and every machine gets the same frames).
 */
export async function ensureRecording(
  quotes: number,
  options: EnsureRecordingOptions = {},
): Promise<string> {
  const symbols = options.symbols ?? 24;
  const seed = options.seed ?? 42;
  const path = `${CACHE_DIR}quotes-${quotes}-s${symbols}-seed${seed}.jsonl`;
  try {
    if ((await Deno.stat(path)).size > 0) return path;
  } catch {
    // not there yet
  }
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  let buffer: string[] = [];
  for (const line of generateFrames({ quotes, symbols, seed, clean: true })) {
    buffer.push(line);
    if (buffer.length >= 8192) {
      await writeAll(file, encoder.encode(buffer.join("\n") + "\n"));
      buffer = [];
    }
  }
  if (buffer.length > 0) await writeAll(file, encoder.encode(buffer.join("\n") + "\n"));
  file.close();
  await Deno.rename(tmp, path);
  return path;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

/** Prefix of the one line a child process prints with its result. */
export const RESULT_PREFIX = "BENCH_RESULT ";

/** Prints a child's result for `bench/run.ts`. */
export function emitResult(result: unknown): void {
  console.log(RESULT_PREFIX + JSON.stringify(result));
}

/** A plaintext {@linkcode KafkaConfig} for the local bench broker, as `buildKafkaConfig` makes it. */
export function benchKafkaConfig(
  brokers: string,
  topic: string,
  overrides: Partial<KafkaConfig> = {},
): KafkaConfig {
  return {
    brokers: brokers.split(","),
    topic,
    gapsTopic: `${topic}.gaps`,
    security: "plaintext",
    partitions: 6,
    replicationFactor: -1,
    batchMax: 1000,
    lingerMs: 0,
    compression: "none",
    timestamp: "now",
    connectTimeoutMs: 15_000,
    shutdownTimeoutMs: 10_000,
    client: "platformatic",
    ...overrides,
  };
}

/** Samples this process's RSS every `everyMs`; `stop()` returns the samples, bytes. */
export function sampleRss(everyMs = 250): { stop(): number[] } {
  const samples: number[] = [Deno.memoryUsage().rss];
  const id = setInterval(() => samples.push(Deno.memoryUsage().rss), everyMs);
  Deno.unrefTimer(id);
  return {
    stop() {
      clearInterval(id);
      samples.push(Deno.memoryUsage().rss);
      return samples;
    },
  };
}

/** Exchange time of the first end-to-end quote; quote n has `t` = E2E_T0 + n. */
export const E2E_T0: number = Date.UTC(2024, 0, 1);

/** API key the end-to-end fake server accepts. */
export const E2E_API_KEY = "bench-key";

/** Writes host times (ms) indexed by quote sequence number; NaN where none. */
export async function writeTimes(path: string, times: Float64Array): Promise<void> {
  await Deno.writeFile(path, new Uint8Array(times.buffer, times.byteOffset, times.byteLength));
}

/** Reads what {@linkcode writeTimes} wrote. */
export async function readTimes(path: string): Promise<Float64Array> {
  const bytes = await Deno.readFile(path);
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
}

/**
 * The sequence number of a spread record (`t` − E2E_T0) from its value, whose exchange time is
 * `{"timestamp":"<24-character ISO time>"…`. The Kafka timestamp is the send time, not `t`.
 */
export function recordSeq(value: string | null): number {
  return value === null ? -1 : Date.parse(value.slice(14, 38)) - E2E_T0;
}

/** The sequence number of the first quote in a frame (`t` − E2E_T0), or -1. */
export function sequenceOf(text: string): number {
  const k = text.indexOf('"t":');
  if (k === -1) return -1;
  let t = 0;
  for (let i = k + 4; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    t = t * 10 + (c - 48);
  }
  return t - E2E_T0;
}
