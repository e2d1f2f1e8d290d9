/**
 * A bound on a consumer that reads nothing (issue 21): once no record has arrived for `afterMs`
 * while nothing was being handled, it asks how many records are waiting for this consumer (its
 * group's lag on the partitions it holds). Records waiting and none arriving means the client is
 * stuck, and {@linkcode StallWatchOptions.onStall} is called once with the facts, so the caller can
 * end with a clear error instead of hanging silently. Nothing waiting is a quiet topic: the idle
 * time starts again. A consumer that never got an assignment within `afterMs` is stuck too
 * (joining the group never finished). Pure: the clock, the timers and the lag reader are passed
 * in.
 *
 * @example
 * ```ts
 * const watch = new StallWatch({
 *   afterMs: 120_000,
 *   waiting: async (partitions) => sumOfLag(partitions),
 *   onStall: (stall) => abort(stall),
 * });
 * watch.start();
 * // on assignment: watch.assigned(partitions); around each batch: watch.busy(true|false)
 * ```
 */
import { deadline, REAL_TIMERS, type Timers } from "./async.ts";

/** What {@linkcode StallWatch} found when it gave up waiting. */
export interface Stall {
  /** Time without a record, ms. */
  idleMs: number;
  /** Records waiting on the partitions this consumer holds (0 when it never joined). */
  waiting: number;
  /** The partitions this consumer held; undefined when it never got an assignment. */
  partitions: readonly number[] | undefined;
}

/** Options for {@linkcode StallWatch}. */
export interface StallWatchOptions {
  /** Time without a record, ms, after which the watch looks at the lag; 0 turns it off. */
  afterMs: number;
  /**
   * Records waiting for this consumer on `partitions`; a failure, or no answer within a quarter
   * of `afterMs`, counts as none known.
   */
  waiting: (partitions: readonly number[]) => Promise<number>;
  /** Called once when the consumer is stuck. */
  onStall: (stall: Stall) => void;
  /** Clock in ms; default `performance.now`. */
  now?: () => number;
  /** Timers; default the global ones. */
  timers?: Timers;
}

/** See the module doc. */
export class StallWatch {
  #options: StallWatchOptions;
  #now: () => number;
  #timers: Timers;
  #last: number;
  #busy = false;
  #partitions: readonly number[] | undefined;
  #timer: unknown;
  #stopped = true;

  constructor(options: StallWatchOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#last = this.#now();
  }

  /** Starts watching; the idle time starts now. */
  start(): void {
    if (this.#options.afterMs <= 0) return;
    this.#stopped = false;
    this.#last = this.#now();
    this.#schedule();
  }

  /** Stops watching. */
  stop(): void {
    this.#stopped = true;
    this.#timers.clearTimeout(this.#timer);
  }

  /** The partitions this consumer holds now (after each assignment). */
  assigned(partitions: readonly number[]): void {
    this.#partitions = [...partitions];
    this.#last = this.#now();
  }

  /** Records arrived (`true`, while they are handled) or were handled (`false`). */
  busy(busy: boolean): void {
    this.#busy = busy;
    this.#last = this.#now();
  }

  #schedule(): void {
    if (this.#stopped) return;
    // Looked at four times per bound, so a stall is seen at most a quarter bound late.
    this.#timer = this.#timers.setTimeout(() => void this.#check(), this.#options.afterMs / 4);
  }

  async #check(): Promise<void> {
    const idleMs = this.#now() - this.#last;
    if (this.#busy || idleMs < this.#options.afterMs) return this.#schedule();
    const partitions = this.#partitions;
    if (partitions === undefined) return this.#stall({ idleMs, waiting: 0, partitions });
    let waiting = 0;
    try {
      // Bounded: a broker that does not answer is an outage the client rides out, not a stall.
      waiting = partitions.length === 0 ? 0 : await deadline(
        this.#options.waiting(partitions),
        this.#options.afterMs / 4,
        { what: "Reading the lag", timers: this.#timers },
      );
    } catch {
      waiting = 0;
    }
    if (this.#stopped) return;
    // A record may have arrived while the lag was read.
    if (this.#busy || this.#now() - this.#last < this.#options.afterMs) return this.#schedule();
    if (waiting > 0) return this.#stall({ idleMs, waiting, partitions });
    // Nothing to read: a quiet topic, not a stuck client.
    this.#last = this.#now();
    this.#schedule();
  }

  #stall(stall: Stall): void {
    this.stop();
    this.#options.onStall(stall);
  }
}
