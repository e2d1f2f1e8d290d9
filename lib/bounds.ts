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

/** Options for {@linkcode timeWindow}. */
export interface TimeWindowOptions {
  /** The local clock; without one the window is unbounded (replay of old recordings). */
  clock?: Clock;
  /** How far after the clock a `t` may be. Default {@linkcode DEFAULT_MAX_AHEAD_MS}. */
  maxAheadMs?: number;
  /** How far before the clock a `t` may be. Default unbounded. */
  maxBehindMs?: number;
}

/** The window `[min, max]` of accepted times, ms; both infinite without a clock. */
export interface TimeWindow {
  min: number;
  max: number;
}

/**
 * The window of accepted `t` now: `[now − maxBehindMs, now + maxAheadMs]`, or unbounded when no
 * clock is given. A transform takes it once per frame.
 * @example
 * ```ts
 * const w = timeWindow({ clock: { now: () => 1_000_000 } });
 * w.max; // 1_300_000
 * ```
 */
export function timeWindow(options: TimeWindowOptions): TimeWindow {
  const clock = options.clock;
  if (clock === undefined) {
    return { min: Number.NEGATIVE_INFINITY, max: Number.POSITIVE_INFINITY };
  }
  const now = clock.now();
  return {
    min: now - (options.maxBehindMs ?? Number.POSITIVE_INFINITY),
    max: now + (options.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS),
  };
}
