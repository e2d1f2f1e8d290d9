/**
 * Several channels on one connection: one {@linkcode Pipeline} per channel (its own transform,
 * topic, gaps topic, queue and counts) behind one router. The read path calls
 * {@linkcode ChannelPipelines.push} with each frame, which the router hands to the pipelines of
 * its channels. A gap belongs to the connection, so it goes to every channel's gaps topic.
 * Counts balance per channel (events = records + skips) and in all.
 */
import { createFrameRouter, type FrameRouter, type RoutedChannel } from "./router.ts";
import {
  type BatchObserver,
  Pipeline,
  type PipelineCounts,
  type PipelineOptions,
  sumCounts,
} from "../pipeline.ts";
import type { Gap } from "../gap.ts";
import type { FrameTransform, OutRecord, RecordSink } from "../sink.ts";
import type { HealthSource } from "../telemetry/health.ts";
import type { PipelineMetrics } from "../telemetry/metrics.ts";

/** One channel of a {@linkcode ChannelPipelines}. */
export interface ChannelPlan extends RoutedChannel {
  /** Its transform (one per pipeline). */
  transform: FrameTransform;
  /** Topic for its records. */
  topic: string;
  /** Topic for its gap records. */
  gapsTopic: string;
  /** Sees its acknowledged batches (telemetry of its records). */
  observer?: BatchObserver<OutRecord>;
}

/** Options shared by every channel's pipeline. */
export type SharedPipelineOptions = Omit<
  PipelineOptions<OutRecord>,
  "transform" | "topic" | "gapsTopic" | "observer"
>;

/** The pipelines of several channels behind one router; see the module doc. */
export class ChannelPipelines implements HealthSource {
  /** The channels, in order (the first is the primary one). */
  readonly channels: readonly string[];
  /** One pipeline per channel, in the same order. */
  readonly pipelines: readonly Pipeline[];
  readonly #router: FrameRouter;
  readonly #plans: readonly ChannelPlan[];
  /** Set with several channels: frames are counted here once, not by each pipeline. */
  readonly #framesMetric: PipelineMetrics["framesReceived"] | undefined;

  constructor(sink: RecordSink, plans: readonly ChannelPlan[], options: SharedPipelineOptions) {
    this.#plans = plans;
    this.channels = plans.map((p) => p.channel);
    this.#router = createFrameRouter(plans);
    this.#framesMetric = plans.length > 1 ? options.metrics?.framesReceived : undefined;
    // The queue depth gauge is one series: with several queues it shows their sum.
    const depths = plans.map(() => 0);
    const metricsOf = (i: number): PipelineMetrics | undefined => {
      const m = options.metrics;
      if (m === undefined || plans.length === 1) return m;
      const queueDepth = {
        set(value: number) {
          depths[i] = value;
          m.queueDepth.set(depths.reduce((a, b) => a + b, 0));
        },
      } as unknown as PipelineMetrics["queueDepth"];
      // Frames are counted once, here, before routing (each pipeline sees parts of them).
      const framesReceived = { inc() {} } as unknown as PipelineMetrics["framesReceived"];
      return { ...m, queueDepth, framesReceived } as PipelineMetrics;
    };
    this.pipelines = plans.map((p, i) =>
      new Pipeline(sink, {
        ...options,
        metrics: metricsOf(i),
        transform: p.transform,
        topic: p.topic,
        gapsTopic: p.gapsTopic,
        observer: p.observer,
      })
    );
  }

  /** Frames received (before routing: a frame cut for three channels counts once). */
  framesIn = 0;

  /** Accepts one frame from the read path: synchronous, each part O(1) into its queue. */
  push(text: string, receivedAt?: number): void {
    this.framesIn++;
    this.#framesMetric?.inc();
    const at = receivedAt ?? Date.now();
    this.#router.route(text, (i, part) => this.pipelines[i]!.push(part, at));
  }

  /** Waits for room in every queue the frame goes to (a recording can wait). */
  async offer(text: string, receivedAt?: number): Promise<void> {
    this.framesIn++;
    this.#framesMetric?.inc();
    const at = receivedAt ?? Date.now();
    const parts: [number, string][] = [];
    this.#router.route(text, (i, part) => parts.push([i, part]));
    for (const [i, part] of parts) await this.pipelines[i]!.offer(part, at);
  }

  /** A gap of the connection: queued for every channel's gaps topic. */
  gap(gap: Gap): void {
    for (const p of this.pipelines) p.gap(gap);
  }

  /** Starts every pipeline; rejects as soon as one stops on a failed send. */
  start(): Promise<void> {
    return Promise.all(this.pipelines.map((p) => p.start())).then(() => {});
  }

  /** Flushes every pipeline; rejects with the first failure once all have settled. */
  async close(timeoutMs?: number): Promise<void> {
    const results = await Promise.allSettled(this.pipelines.map((p) => p.close(timeoutMs)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /**
   * Every channel's counts added up, but `framesIn`: the frames received (each channel's own
   * `framesIn` counts the parts it was handed).
   */
  get counts(): PipelineCounts {
    return { ...sumCounts(this.pipelines.map((p) => p.counts)), framesIn: this.framesIn };
  }

  /** The counts of each channel, by channel name. */
  countsByChannel(): Map<string, PipelineCounts> {
    return new Map(this.#plans.map((p, i) => [p.channel, this.pipelines[i]!.counts]));
  }

  /** The topic of each channel's records. */
  topics(): Map<string, string> {
    return new Map(this.#plans.map((p) => [p.channel, p.topic]));
  }

  /** The latest frame of any channel. */
  lastQuoteAt(): number | undefined {
    return latest(this.pipelines.map((p) => p.lastQuoteAt()));
  }

  /** The latest acknowledgement of any channel. */
  lastAckAt(): number | undefined {
    return latest(this.pipelines.map((p) => p.lastAckAt()));
  }

  /** Records and queued frames not yet acknowledged, every channel. */
  pendingRecords(): number {
    return this.pipelines.reduce((n, p) => n + p.pendingRecords(), 0);
  }

  /** The oldest unacknowledged frame or record of any channel. */
  oldestPendingAt(): number | undefined {
    let oldest: number | undefined;
    for (const p of this.pipelines) {
      const at = p.oldestPendingAt();
      if (at !== undefined && (oldest === undefined || at < oldest)) oldest = at;
    }
    return oldest;
  }
}

function latest(values: (number | undefined)[]): number | undefined {
  let out: number | undefined;
  for (const v of values) if (v !== undefined && (out === undefined || v > out)) out = v;
  return out;
}
