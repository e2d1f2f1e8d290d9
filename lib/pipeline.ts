/**
 * The pipeline: frames from the read path go into a bounded queue; one worker runs the transform
 * it was handed, builds batches (up to `batchMax` records or `lingerMs`), sends one batch at a
 * time to the sink it was handed and counts everything. It knows neither spreads nor Kafka: the
 * records are the transform's, their meaning is for the batch observer. The sink owns retries: a
 * send it rejects stops the pipeline.
 *
 * The read path only calls {@linkcode Pipeline.push}, which is synchronous and O(1).
 */
import { deadline, DeadlineError } from "./async.ts";
import { DEFAULTS, gapsTopicFor } from "./config/defaults.ts";
import { type Gap, gapRecord } from "./gap.ts";
import { type PipelineMetrics, RECEIVE_TO_ACK } from "./telemetry/metrics.ts";
import type { FrameTransform, OutRecord, RecordSink, TimestampPolicy } from "./sink.ts";

export type { Gap } from "./gap.ts";

/** What the queue does when it is full. */
export type QueuePolicy = "drop-oldest" | "drop-newest";

/** Sees every acknowledged batch, with each record's local receive time (for telemetry). */
export interface BatchObserver<R extends OutRecord> {
  /** Called once per acknowledged batch; `receivedAt[i]` is when `batch[i]`'s frame arrived. */
  observe(batch: readonly R[], receivedAt: readonly number[], ackedAt: number): void;
}

/** Options for {@linkcode Pipeline}. */
export interface PipelineOptions<R extends OutRecord> {
  /** Frame text → records, with its own skip counts. */
  transform: FrameTransform<R>;
  /** Topic for the records. */
  topic: string;
  /** Topic for gap records; default `<topic>.gaps`. */
  gapsTopic?: string;
  /** Most records per send; default {@linkcode DEFAULTS}.batchMax. */
  batchMax?: number;
  /** Longest wait for a batch to fill, ms; default 0 (in-flight sends batch the rest). */
  lingerMs?: number;
  /** Bound of the frame queue; default {@linkcode DEFAULTS}.queueMax. */
  queueMax?: number;
  /** Full-queue policy; default "drop-oldest". */
  queuePolicy?: QueuePolicy;
  /** Metrics to update; default none. */
  metrics?: PipelineMetrics;
  /** Sees each acknowledged batch (per-record telemetry of the transform's records). */
  observer?: BatchObserver<R>;
  /**
   * Which time becomes each record's Kafka timestamp; default "now": the clock (`now`) when
   * the batch is built, the same for every retry of that batch. "exchange" keeps the time the
   * transform set (the exchange time `t`).
   */
  timestamps?: TimestampPolicy;
  /** Clock in epoch ms; default `Date.now`. */
  now?: () => number;
  /** Log lines (to stderr by default). */
  log?: (line: string) => void;
  /**
   * Called with each gap the pipeline makes itself (frames dropped from a full queue), besides
   * its record on the gaps topic; default none.
   */
  onGap?: (gap: Gap) => void;
}

/** The reason of the gap that frames dropped from a full queue leave (issue 24, finding 11). */
export const QUEUE_FULL_GAP = "queue_full";

/** Counts that balance: events = records + skips; frames = transformed + dropped + queued. */
export interface PipelineCounts {
  framesIn: number;
  framesTransformed: number;
  framesDropped: number;
  events: number;
  records: number;
  acked: number;
  /** The transform's skip counts by reason (the same object, kept current). */
  skipped: Readonly<Record<string, number>>;
  sendErrors: number;
  gapsAcked: number;
  /** Records acknowledged per record key (the symbol, for spread records). */
  byKey: Map<string, number>;
}

/** All-zero counts around a transform's skip counts. */
function zeroCounts(skipped: Readonly<Record<string, number>>): PipelineCounts {
  return {
    framesIn: 0,
    framesTransformed: 0,
    framesDropped: 0,
    events: 0,
    records: 0,
    acked: 0,
    skipped,
    sendErrors: 0,
    gapsAcked: 0,
    byKey: new Map(),
  };
}

/** The counts of several pipelines (a producer's terms), added up. */
export function sumCounts(all: readonly PipelineCounts[]): PipelineCounts {
  const total = zeroCounts({});
  const skipped: Record<string, number> = {};
  for (const c of all) {
    total.framesIn += c.framesIn;
    total.framesTransformed += c.framesTransformed;
    total.framesDropped += c.framesDropped;
    total.events += c.events;
    total.records += c.records;
    total.acked += c.acked;
    total.sendErrors += c.sendErrors;
    total.gapsAcked += c.gapsAcked;
    for (const [k, v] of Object.entries(c.skipped)) skipped[k] = (skipped[k] ?? 0) + v;
    for (const [k, v] of c.byKey) total.byKey.set(k, (total.byKey.get(k) ?? 0) + v);
  }
  return { ...total, skipped };
}

/** The sink rejected a send (it retries transient failures itself): the pipeline has stopped. */
export class SinkFailedError extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(`Cannot send to the sink: ${reason}`, options);
    this.name = "SinkFailedError";
  }
}

/** Thrown by {@linkcode Pipeline.close} when records could not be acknowledged in time. */
export class FlushTimeoutError extends Error {
  /** Records accepted but not acknowledged. */
  readonly unacked: number;
  constructor(unacked: number, timeoutMs: number) {
    super(
      `Cannot flush to the sink within ${timeoutMs} ms: ${unacked} accepted records or frames were not acknowledged`,
    );
    this.name = "FlushTimeoutError";
    this.unacked = unacked;
  }
}

/** Frame queue, then transform, batching and send. One instance per producer. */
export class Pipeline<R extends OutRecord = OutRecord> {
  readonly counts: PipelineCounts;
  #transform: FrameTransform<R>;
  #observer: BatchObserver<R> | undefined;
  #sink: RecordSink;
  #topic: string;
  #gapsTopic: string;
  #batchMax: number;
  #lingerMs: number;
  #queueMax: number;
  #policy: QueuePolicy;
  #metrics: PipelineMetrics | undefined;
  #now: () => number;
  #stampNow: boolean;
  #log: (line: string) => void;

  // Ring of frames: texts and local receive times.
  #texts: (string | undefined)[];
  #times: Float64Array;
  #head = 0;
  #size = 0;

  #pending: R[] = [];
  #pendingTimes: number[] = [];
  #inflight = 0;
  #gaps: Gap[] = [];
  #wake: (() => void) | undefined;
  #stopping = false;
  /** close() gave up waiting: the worker stops at its next step, whatever is left. */
  #abandoned = false;
  #done: Promise<void> | undefined;
  /** Receive times of the first and last frame of the drops in progress (a hole). */
  #dropRun: { from: number; to: number } | undefined;
  #onGap: ((gap: Gap) => void) | undefined;
  #lastDropLog = 0;
  #dropsSinceLog = 0;
  #lastQuoteAt: number | undefined;
  #lastAckAt: number | undefined;
  #skipsReported: Record<string, number>;

  constructor(sink: RecordSink, options: PipelineOptions<R>) {
    this.#sink = sink;
    this.#transform = options.transform;
    this.#observer = options.observer;
    this.counts = zeroCounts(options.transform.skipped);
    this.#skipsReported = { ...options.transform.skipped };
    this.#topic = options.topic;
    this.#gapsTopic = options.gapsTopic ?? gapsTopicFor(options.topic);
    this.#batchMax = options.batchMax ?? DEFAULTS.batchMax;
    this.#lingerMs = options.lingerMs ?? 0;
    this.#queueMax = options.queueMax ?? DEFAULTS.queueMax;
    this.#policy = options.queuePolicy ?? "drop-oldest";
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
    this.#stampNow = (options.timestamps ?? "now") === "now";
    this.#log = options.log ?? ((line) => console.error(line));
    this.#onGap = options.onGap;
    this.#texts = new Array(this.#queueMax);
    this.#times = new Float64Array(this.#queueMax);
    // Known skip reasons start at 0: a series that exists reads as "none yet", not "no data".
    for (const reason of Object.keys(this.#skipsReported)) this.#metrics?.skips.inc({ reason }, 0);
  }

  /** Frames waiting in the queue. */
  get queued(): number {
    return this.#size;
  }

  /** Records accepted but not yet acknowledged (queued frames not included). */
  get unacked(): number {
    return this.#pending.length + this.#inflight;
  }

  /** Local receive time of the last frame, ms (a quote subscription's frames are quotes). */
  lastQuoteAt(): number | undefined {
    return this.#lastQuoteAt;
  }

  /** Local time of the last acknowledgement, ms. */
  lastAckAt(): number | undefined {
    return this.#lastAckAt;
  }

  /** Records and queued frames not yet acknowledged. */
  pendingRecords(): number {
    return this.unacked + this.#size;
  }

  /** Local receive time of the oldest unacknowledged frame or record, ms. */
  oldestPendingAt(): number | undefined {
    if (this.#pendingTimes.length > 0 || this.#inflight > 0) {
      return this.#oldestInflightAt ?? this.#pendingTimes[0];
    }
    return this.#size > 0 ? this.#times[this.#head] : undefined;
  }
  #oldestInflightAt: number | undefined;

  /**
   * Accepts one frame from the read path. Synchronous and O(1). When the queue is full the
   * policy applies and the drop is counted.
   */
  push(text: string, receivedAt: number = this.#now()): void {
    this.counts.framesIn++;
    this.#lastQuoteAt = receivedAt;
    if (this.#size === this.#queueMax) {
      this.counts.framesDropped++;
      this.#metrics?.queueDrops.inc();
      this.#noteDrop();
      // The hole runs from the first dropped frame to the last, by local receive time.
      const droppedAt = this.#policy === "drop-newest" ? receivedAt : this.#times[this.#head]!;
      if (this.#dropRun === undefined) this.#dropRun = { from: droppedAt, to: droppedAt };
      else this.#dropRun.to = Math.max(this.#dropRun.to, droppedAt);
      if (this.#policy === "drop-newest") return;
      this.#texts[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#queueMax;
      this.#size--;
    } else if (this.#dropRun !== undefined) {
      // Room again: the drops are over, and the hole they left is published.
      this.#endDropRun();
    }
    const i = (this.#head + this.#size) % this.#queueMax;
    this.#texts[i] = text;
    this.#times[i] = receivedAt;
    this.#size++;
    const wake = this.#wake;
    if (wake) {
      this.#wake = undefined;
      wake();
    }
  }

  /** Waits until the queue has room (for sources that can wait, like a recording). */
  async offer(text: string, receivedAt: number = this.#now()): Promise<void> {
    while (this.#size >= this.#queueMax && !this.#stopping) {
      await new Promise<void>((resolve) => this.#room = resolve);
    }
    this.push(text, receivedAt);
  }
  /** Wakes an {@linkcode offer} waiting for room (the worker took frames, or close began). */
  #room: (() => void) | undefined;
  #roomMade(): void {
    const room = this.#room;
    this.#room = undefined;
    room?.();
  }

  /** Publishes the hole left by the drops in progress, if any, as a `queue_full` gap. */
  #endDropRun(): void {
    const run = this.#dropRun;
    if (run === undefined) return;
    this.#dropRun = undefined;
    const gap: Gap = { from: run.from, to: run.to, reason: QUEUE_FULL_GAP };
    this.gap(gap);
    this.#onGap?.(gap);
  }

  /** Queues a gap record for the gaps topic. */
  gap(gap: Gap): void {
    this.#gaps.push(gap);
    this.#wake?.();
  }

  #noteDrop(): void {
    this.#dropsSinceLog++;
    const now = this.#now();
    if (now - this.#lastDropLog >= 5000) {
      this.#log(
        `Queue full (${this.#queueMax} frames): dropped ${this.#dropsSinceLog} frames ` +
          `(${this.#policy}); ${this.counts.framesDropped} dropped in all`,
      );
      this.#lastDropLog = now;
      this.#dropsSinceLog = 0;
    }
  }

  /** Starts the worker. Resolves when {@linkcode close} has drained everything. */
  start(): Promise<void> {
    if (this.#done === undefined) {
      // While a send is stuck (a Kafka outage) the worker does not reach #fill: refresh the
      // read-path gauges on a timer too, so the queue depth and frames received stay live.
      const ticker = this.#metrics ? setInterval(() => this.#report(), 1000) : undefined;
      if (ticker !== undefined) Deno.unrefTimer(ticker);
      this.#done = this.#work().finally(() => clearInterval(ticker));
      // Marked handled here; close() (and any caller of start()) still sees the rejection.
      this.#done.catch(() => {});
    }
    return this.#done;
  }

  /** Waits `ms`, or until woken (a frame, a gap, close); with no `ms`, only until woken. */
  #sleep(ms?: number): Promise<void> {
    if (ms === undefined) {
      // No timer: push(), gap() and close() all wake the worker. A timer per wait would be
      // set and cleared for every frame when frames arrive one at a time.
      return new Promise((resolve) => this.#wake = resolve);
    }
    return new Promise((resolve) => {
      const id = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(id);
        resolve();
      };
    });
  }

  #fill(): void {
    const records = this.#pending;
    while (this.#size > 0 && records.length < this.#batchMax) {
      const text = this.#texts[this.#head]!;
      const at = this.#times[this.#head]!;
      this.#texts[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#queueMax;
      this.#size--;
      const before = records.length;
      this.counts.events += this.#transform.frame(text, records);
      this.counts.framesTransformed++;
      for (let i = before; i < records.length; i++) this.#pendingTimes.push(at);
    }
    this.#roomMade();
    this.#report();
  }

  /** Brings the queue depth and the frame and event counters up to date. */
  #report(): void {
    const m = this.#metrics;
    if (m) {
      m.queueDepth.set(this.#size);
      m.framesReceived.inc(this.counts.framesIn - this.#framesReported);
      m.eventsReceived.inc(this.counts.events - this.#eventsReported);
      this.#framesReported = this.counts.framesIn;
      this.#eventsReported = this.counts.events;
    }
  }
  #framesReported = 0;
  #eventsReported = 0;

  async #work(): Promise<void> {
    let firstPendingAt = 0;
    for (;;) {
      if (this.#abandoned) return;
      if (this.#gaps.length > 0) await this.#sendGaps();
      const hadPending = this.#pending.length > 0;
      this.#fill();
      if (!hadPending && this.#pending.length > 0) firstPendingAt = this.#now();
      if (this.#pending.length === 0) {
        if (this.#stopping) {
          // #fill took every queued frame; new gaps go out at the top of the loop.
          if (this.#size === 0 && this.#gaps.length === 0) return;
          continue;
        }
        await this.#sleep();
        continue;
      }
      const full = this.#pending.length >= this.#batchMax;
      const waited = this.#now() - firstPendingAt;
      if (!full && !this.#stopping && waited < this.#lingerMs) {
        await this.#sleep(this.#lingerMs - waited);
        continue;
      }
      const batch = this.#pending.splice(0, this.#batchMax);
      const times = this.#pendingTimes.splice(0, batch.length);
      if (this.#pending.length > 0) firstPendingAt = this.#now();
      const sending = this.#sendBatch(batch, times);
      // Transform the next batch while this one is on the wire: the wait for the broker's ack
      // is otherwise idle time on this thread.
      this.#fill();
      await sending;
    }
  }

  async #sendBatch(batch: R[], times: number[]): Promise<void> {
    const m = this.#metrics;
    this.counts.records += batch.length;
    this.#inflight = batch.length;
    this.#oldestInflightAt = times[0];
    m?.recordsProduced.inc(batch.length);
    const sentAt = this.#now();
    if (this.#stampNow) { for (const r of batch) r.timestamp = sentAt; }
    m?.recordsSent.inc(batch.length);
    try {
      // The sink owns retries (the Kafka adapters retry inside the client with the same
      // sequence numbers): a rejection is final, and resending here under new sequence
      // numbers could write the batch twice.
      await this.#sink.send(this.#topic, batch);
    } catch (error) {
      this.#failed(error, batch.length);
    } finally {
      m?.ackLatency.observe((this.#now() - sentAt) / 1000);
    }
    const ackedAt = this.#now();
    this.#inflight = 0;
    this.#oldestInflightAt = undefined;
    this.#lastAckAt = ackedAt;
    this.counts.acked += batch.length;
    const byKey = this.counts.byKey;
    for (const r of batch) byKey.set(r.key, (byKey.get(r.key) ?? 0) + 1);
    if (m) this.#observe(m, batch, times, ackedAt);
    this.#observer?.observe(batch, times, ackedAt);
  }

  #observe(m: PipelineMetrics, batch: R[], times: number[], ackedAt: number): void {
    m.recordsAcked.inc(batch.length);
    m.batchSize.observe(batch.length);
    const skipped = this.counts.skipped;
    for (const reason in skipped) {
      const delta = skipped[reason]! - (this.#skipsReported[reason] ?? 0);
      if (delta > 0) {
        m.skips.inc({ reason }, delta);
        this.#skipsReported[reason] = skipped[reason]!;
      }
    }
    const hop = m.hopLatency.labels(RECEIVE_TO_ACK);
    for (let i = 0; i < times.length; i++) hop.observe((ackedAt - times[i]!) / 1000);
  }

  async #sendGaps(): Promise<void> {
    const records = this.#gaps.splice(0).map(gapRecord);
    if (this.#stampNow) {
      const at = this.#now();
      for (const r of records) r.timestamp = at;
    }
    try {
      await this.#sink.send(this.#gapsTopic, records);
    } catch (error) {
      this.#failed(error, records.length);
    }
    this.counts.gapsAcked += records.length;
  }

  /** A send the sink gave up on: counted, logged, and the end of the pipeline. */
  #failed(error: unknown, records: number): never {
    this.counts.sendErrors++;
    this.#metrics?.sendErrors.inc();
    const reason = error instanceof Error ? error.message : String(error);
    this.#log(`Sink send of ${records} records failed: ${reason}; the pipeline stops`);
    throw new SinkFailedError(reason, { cause: error });
  }

  /**
   * Stops accepting work once the queue is drained: transforms what is queued, sends every
   * record, waits for the acks. Rejects with {@linkcode FlushTimeoutError} after `timeoutMs`.
   */
  async close(timeoutMs: number = DEFAULTS.shutdownTimeoutMs): Promise<void> {
    // Drops still in progress leave a hole too: publish it with the rest.
    this.#endDropRun();
    this.#stopping = true;
    this.#wake?.();
    this.#roomMade();
    try {
      await deadline(this.start(), timeoutMs, { what: "The flush" });
    } catch (error) {
      if (!(error instanceof DeadlineError)) throw error;
      // Leave no worker behind: it stops once its send in flight (if any) settles.
      this.#abandoned = true;
      this.#wake?.();
      throw new FlushTimeoutError(this.pendingRecords(), timeoutMs);
    }
  }
}
