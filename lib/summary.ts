/**
 * The machine-readable run summaries of the producer and of replay (`--summary FILE`): one JSON
 * object written when the run ends, with the same counts as the human summary line and the facts
 * a caller would otherwise have to read out of the log (reconnects and their backoffs, the
 * topics streamed, the error that ended the run, the exit code). Tests and scripts read this,
 * never log wording.
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
  /** Records the broker refuses for good, kept aside in the dead-letter file. */
  deadLettered: number;
  /** The same, the non-zero reasons only. */
  deadLetteredByReason: Record<string, number>;
  /** Frames written to `--record`; null without a recording. */
  framesRecorded: number | null;
  /** Every reconnect, in order. */
  reconnects: ReconnectRecord[];
  /** The topics streamed at the end (topics the plan refused are left out). */
  topics: string[];
  /** Subscription topics the plan refused while another was confirmed (not streamed). */
  refused: string[];
  /**
   * Each channel's counts (events = records + skipped, per channel), by channel (`XQ`, `XT`,
   * `XA`); the top-level counts are their sums.
   */
  channels: Record<string, ChannelSummary>;
  /** With `--standby-group`: terms this producer took over from another; else null. */
  takeovers: number | null;
  /** With `--standby-group`: records refused unsent after leadership was lost; else null. */
  fencedRecords: number | null;
  /** The error that ended the run, or null. */
  error: { name: string; message: string } | null;
  /** The exit code the producer exits with. */
  exitCode: number;
}

/** One channel's part of a summary. */
export interface ChannelSummary {
  /** The Kafka topic of its records. */
  topic: string;
  frames: number;
  events: number;
  records: number;
  acked: number | null;
  skipped: number;
  skippedByReason: Record<string, number>;
  /** Gap records acknowledged on its gaps topic. */
  gaps: number;
}

/** Each channel's counts and topic, by channel. */
export type ChannelSummaryParts = Record<string, { topic: string; counts: PipelineCounts }>;

/** The channels' part of a summary, from their counts. */
export function channelSummaries(
  parts: ChannelSummaryParts,
  options: { acked?: boolean } = {},
): Record<string, ChannelSummary> {
  const out: Record<string, ChannelSummary> = {};
  for (const [channel, { topic, counts: c }] of Object.entries(parts)) {
    out[channel] = {
      topic,
      frames: c.framesIn,
      events: c.events,
      records: c.records,
      acked: options.acked === false ? null : c.acked,
      ...skips(c.skipped),
      gaps: c.gapsAcked,
    };
  }
  return out;
}

/** What {@linkcode producerSummary} is built from. */
export interface ProducerSummaryParts {
  counts: PipelineCounts;
  sinkStats: SummarySinkStats;
  framesRecorded?: number;
  reconnects: readonly ReconnectRecord[];
  topics: readonly string[];
  /** Topics the plan refused; default none. */
  refused?: readonly string[];
  /** Each channel's counts; default none. */
  channels?: ChannelSummaryParts;
  takeovers?: number;
  fencedRecords?: number;
  error?: unknown;
  exitCode: number;
}

/** Builds the summary from the pipeline's counts and the other parts of a run. */
export function producerSummary(parts: ProducerSummaryParts): ProducerSummary {
  const c = parts.counts;
  return {
    summary: SUMMARY_VERSION,
    frames: c.framesIn,
    events: c.events,
    records: c.records,
    acked: c.acked,
    ...skips(c.skipped),
    framesDropped: c.framesDropped,
    gaps: c.gapsAcked,
    sendErrors: c.sendErrors,
    produceRetries: parts.sinkStats.retries,
    producerResets: parts.sinkStats.producerResets,
    ...deadLetters(parts.sinkStats.deadLettered ?? {}),
    framesRecorded: parts.framesRecorded ?? null,
    reconnects: [...parts.reconnects],
    topics: [...parts.topics],
    refused: [...(parts.refused ?? [])],
    channels: channelSummaries(parts.channels ?? {}),
    takeovers: parts.takeovers ?? null,
    fencedRecords: parts.fencedRecords ?? null,
    error: errorOf(parts.error),
    exitCode: parts.exitCode,
  };
}

/** The summary `replay.ts --summary FILE` writes when it ends. */
export interface ReplaySummary {
  /** {@linkcode SUMMARY_VERSION}. */
  summary: number;
  /** Lines of the recording read as frames. */
  frames: number;
  events: number;
  records: number;
  /** Records the sink acknowledged; null when the records went to stdout. */
  acked: number | null;
  /** Events skipped, all reasons. */
  skipped: number;
  /** Events skipped, the non-zero reasons only. */
  skippedByReason: Record<string, number>;
  /** Produce requests the Kafka client retried; null without Kafka. */
  produceRetries: number | null;
  /** Times the Kafka producer started again under a new producer id; null without Kafka. */
  producerResets: number | null;
  /** Records the broker refuses for good, kept aside in the dead-letter file; null without Kafka. */
  deadLettered: number | null;
  /** The same, the non-zero reasons only; null without Kafka. */
  deadLetteredByReason: Record<string, number> | null;
  /** The error that ended the run, or null. */
  error: { name: string; message: string } | null;
  /** The exit code replay exits with. */
  exitCode: number;
  /** Each channel's counts, by channel (`--channels`). */
  channels: Record<string, ChannelSummary>;
}

/** What {@linkcode replaySummary} is built from. */
export interface ReplaySummaryParts {
  frames: number;
  events: number;
  records: number;
  acked?: number;
  skipped: Readonly<Record<string, number>>;
  sinkStats?: SummarySinkStats;
  error?: unknown;
  exitCode: number;
  /** Each channel's counts; default none. */
  channels?: ChannelSummaryParts;
}

/** Builds replay's summary. */
export function replaySummary(parts: ReplaySummaryParts): ReplaySummary {
  return {
    summary: SUMMARY_VERSION,
    frames: parts.frames,
    events: parts.events,
    records: parts.records,
    acked: parts.acked ?? null,
    ...skips(parts.skipped),
    produceRetries: parts.sinkStats?.retries ?? null,
    producerResets: parts.sinkStats?.producerResets ?? null,
    ...(parts.sinkStats
      ? deadLetters(parts.sinkStats.deadLettered ?? {})
      : { deadLettered: null, deadLetteredByReason: null }),
    error: errorOf(parts.error),
    exitCode: parts.exitCode,
    channels: channelSummaries(parts.channels ?? {}, { acked: parts.acked !== undefined }),
  };
}

/** The sink counts a summary reports. */
export interface SummarySinkStats {
  retries: number;
  producerResets: number;
  /** Dead letters by reason; default none. */
  deadLettered?: Readonly<Record<string, number>>;
}

function deadLetters(
  counts: Readonly<Record<string, number>>,
): { deadLettered: number; deadLetteredByReason: Record<string, number> } {
  return {
    deadLettered: Object.values(counts).reduce((a, b) => a + b, 0),
    deadLetteredByReason: Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0)),
  };
}

function skips(
  counts: Readonly<Record<string, number>>,
): { skipped: number; skippedByReason: Record<string, number> } {
  const skippedByReason = Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
  return {
    skipped: Object.values(counts).reduce((a, b) => a + b, 0),
    skippedByReason,
  };
}

function errorOf(error: unknown): { name: string; message: string } | null {
  if (error === undefined) return null;
  return {
    name: error instanceof Error ? error.name : "Error",
    message: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Writes `summary` to `path` as one JSON line, whole or not at all: a temporary file beside it is
 * renamed over it, so a reader never sees half a summary.
 */
export async function writeSummary(
  path: string,
  summary: ProducerSummary | ReplaySummary,
): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(summary) + "\n");
  await Deno.rename(tmp, path);
}
