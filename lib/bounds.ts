/**
 * Bounds every channel transform applies to what Polygon sends, so that no record the broker
 * must refuse (too large, stamped too far ahead) and no value our own consumer cannot read (a
 * year past 9999) is ever made. Pure: the clock is passed in.
 */

/**
 * The longest number text accepted for a price or size: 64 characters. Real prices have at
 * most about 20; a longer text is counted as a skip rather than written (a 1.5 million digit
 * bid once made a record over the broker's size limit).
 */
export const MAX_NUMBER_TEXT = 64;

/**
 * The last millisecond whose ISO 8601 form has a four-digit year, 9999-12-31T23:59:59.999Z.
 * A later `t` would be written as `+010000-…`, which consumers reject.
 */
export const MAX_TIME_MS = 253_402_300_799_999;

/**
 * How far ahead of the local clock a live `t` may be by default: 5 minutes. More is a wrong
 * exchange clock or a wrong local one; both are counted, not written.
 */
export const DEFAULT_MAX_AHEAD_MS = 5 * 60_000;

/** A source of the current time, ms since the epoch (`{ now: Date.now }` in entry scripts). */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Options for {@linkcode TimeBounds}: the bounds of a live `t` around the local clock. */
export interface TimeWindowOptions {
  /** The local clock; without one the window is unbounded (replay of old recordings). */
  clock?: Clock;
  /** How far after the clock a `t` may be. Default {@linkcode DEFAULT_MAX_AHEAD_MS}. */
  maxAheadMs?: number;
  /** How far before the clock a `t` may be. Default unbounded. */
  maxBehindMs?: number;
}

/** Why a time produced no record: not a time we can write, or too far from the clock. */
export type TimeSkipReason = "bad_time" | "time_out_of_range";

/**
 * Whether `t` is a time a record may carry: a whole number of ms from the epoch to
 * {@linkcode MAX_TIME_MS}, whose ISO 8601 form has a four-digit year. Otherwise `bad_time`.
 */
export function isTime(t: number): boolean {
  return Number.isInteger(t) && t >= 0 && t <= MAX_TIME_MS;
}

/** Frames between two readings of the clock at most (about 0.1 s of a busy feed). */
export const CLOCK_FRAMES = 256;

/**
 * The time bounds of one channel transform: a `t` must be a whole number of ms in
 * `[0, MAX_TIME_MS]` (else `bad_time`) and, with a clock, within
 * `[now − maxBehindMs, now + maxAheadMs]` (else `time_out_of_range`).
 *
 * The clock is read lazily, because reading it per frame cost about a tenth of the transform:
 * for the first `t` checked, then at most every {@linkcode CLOCK_FRAMES} frames (the transform
 * calls {@linkcode TimeBounds.frame} once per frame), and again before any `t` is skipped as out
 * of range, so the ahead bound is exact and the behind bound at most 256 frames late.
 * @example
 * ```ts
 * const bounds = new TimeBounds({ clock: { now: () => 1_000_000 } });
 * bounds.frame();
 * bounds.check(1_300_000); // undefined: a record
 * bounds.check(1_300_001); // "time_out_of_range"
 * bounds.check(1.5); // "bad_time"
 * ```
 */
export class TimeBounds {
  readonly #clock: Clock | undefined;
  readonly #maxAheadMs: number;
  readonly #maxBehindMs: number;
  /** The accepted `t` from the last clock reading; empty until the clock is read. */
  #min = Number.NEGATIVE_INFINITY;
  #max = Number.POSITIVE_INFINITY;
  /** Frames since the window was last emptied. */
  #frames = 0;

  /** Bounds with `options`' clock; without one, only the fixed bounds apply. */
  constructor(options: TimeWindowOptions = {}) {
    this.#clock = options.clock;
    this.#maxAheadMs = options.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS;
    this.#maxBehindMs = options.maxBehindMs ?? Number.POSITIVE_INFINITY;
    if (this.#clock !== undefined) this.#empty();
  }

  /** Called once per frame: every {@linkcode CLOCK_FRAMES} frames the next `t` reads the clock. */
  frame(): void {
    if (this.#clock !== undefined && ++this.#frames >= CLOCK_FRAMES) {
      this.#frames = 0;
      this.#empty();
    }
  }

  /**
   * Whether a `t` that passed {@linkcode isTime} is within the clock's window (always, without a
   * clock). For transforms that check the fixed bounds themselves.
   */
  inWindow(t: number): boolean {
    return (t >= this.#min && t <= this.#max) || !this.#outside(t);
  }

  /** Why `t` (ms) must be skipped, or undefined when it may be written. */
  check(t: number): TimeSkipReason | undefined {
    if (!isTime(t)) return "bad_time";
    return this.inWindow(t) ? undefined : "time_out_of_range";
  }

  /** Empties the window, so that the next `t` checked reads the clock. */
  #empty(): void {
    this.#min = Number.POSITIVE_INFINITY;
    this.#max = Number.NEGATIVE_INFINITY;
  }

  /** Whether `t`, outside the window of the last reading, is outside the window of the clock now. */
  #outside(t: number): boolean {
    const clock = this.#clock;
    if (clock === undefined) return true;
    const now = clock.now();
    this.#min = now - this.#maxBehindMs;
    this.#max = now + this.#maxAheadMs;
    return t < this.#min || t > this.#max;
  }
}
