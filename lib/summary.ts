/**
 * The producer's machine-readable run summary (`--summary FILE`): one JSON object written when
 * the run ends, with the same counts as the human `final:` line and the facts a caller would
 * otherwise have to read out of the log (reconnects and their backoffs, the topics streamed,
 * the error that ended the run, the exit code). Tests and scripts read this, never log wording.
 */
import type { PipelineCounts } from "./pipeline.ts";

/** Version of the summary's shape, in its `summary` field. */
export const SUMMARY_VERSION = 1;

/** One reconnect of the WebSocket client: why, which attempt, and the backoff before it. */
export interface ReconnectRecord {
  /** Why the connection was lost (the `reason` label of `crypto_ws_reconnects_total`). */
  reason: string;
  /** Attempt number since the last healthy stream, from 1. */
  attempt: number;
  /** The backoff waited before connecting again, ms. */
  delayMs: number;
}

/** The summary `producer.ts --summary FILE` writes when it ends. */
export interface ProducerSummary {
  /** {@linkcode SUMMARY_VERSION}. */
  summary: number;
  /** Frames received from the WebSocket (subscription confirmations included). */
  frames: number;
  events: number;
  records: number;
  acked: number;
  /** Events skipped, all reasons. */
  skipped: number;
  /** Events skipped, the non-zero reasons only. */
  skippedByReason: Record<string, number>;
  framesDropped: number;
  /** Gap records acknowledged. */
  gaps: number;
  sendErrors: number;
  /** Produce requests the Kafka client retried with the same sequence numbers. */
  produceRetries: number;
  /** Times the producer started again under a new producer id (duplicates possible). */
  producerResets: number;
  /** Frames written to `--record`; null without a recording. */
  framesRecorded: number | null;
  /** Every reconnect, in order. */
  reconnects: ReconnectRecord[];
  /** The topics streamed at the end (topics the plan refused are left out). */
  topics: string[];
  /** The error that ended the run, or null. */
  error: { name: string; message: string } | null;
  /** The exit code the producer exits with. */
  exitCode: number;
}

/** What {@linkcode producerSummary} is built from. */
export interface ProducerSummaryParts {
  counts: PipelineCounts;
  sinkStats: { retries: number; producerResets: number };
  framesRecorded?: number;
  reconnects: readonly ReconnectRecord[];
  topics: readonly string[];
  error?: unknown;
  exitCode: number;
}

/** Builds the summary from the pipeline's counts and the other parts of a run. */
export function producerSummary(parts: ProducerSummaryParts): ProducerSummary {
  const c = parts.counts;
  const skippedByReason = Object.fromEntries(
    Object.entries(c.skipped).filter(([, n]) => n > 0),
  );
  const error = parts.error === undefined ? null : {
    name: parts.error instanceof Error ? parts.error.name : "Error",
    message: parts.error instanceof Error ? parts.error.message : String(parts.error),
  };
  return {
    summary: SUMMARY_VERSION,
    frames: c.framesIn,
    events: c.events,
    records: c.records,
    acked: c.acked,
    skipped: Object.values(c.skipped).reduce((a, b) => a + b, 0),
    skippedByReason,
    framesDropped: c.framesDropped,
    gaps: c.gapsAcked,
    sendErrors: c.sendErrors,
    produceRetries: parts.sinkStats.retries,
    producerResets: parts.sinkStats.producerResets,
    framesRecorded: parts.framesRecorded ?? null,
    reconnects: [...parts.reconnects],
    topics: [...parts.topics],
    error,
    exitCode: parts.exitCode,
  };
}

/**
 * Writes `summary` to `path` as one JSON line, whole or not at all: a temporary file beside it is
 * renamed over it, so a reader never sees half a summary.
 */
export async function writeSummary(path: string, summary: ProducerSummary): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(summary) + "\n");
  await Deno.rename(tmp, path);
}
