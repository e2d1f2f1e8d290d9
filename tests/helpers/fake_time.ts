/**
 * A clock and timers that move only when a test advances them, so backoff, staleness and
 * deadline tests do not sleep. It is a `Clock` (`now()`) and the `Timers` of `lib/async.ts`.
 */
import type { Timers } from "../../lib/async.ts";

/** A clock and timers under the test's control. */
export class FakeTime implements Timers {
  /** Every `ms` passed to `setTimeout`, in order. */
  readonly requested: number[] = [];
  #now: number;
  #next = 1;
  #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 0) {
    this.#now = start;
  }

  /** The current time, ms. */
  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.requested.push(ms);
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (let due = this.#due(end); due; due = this.#due(end)) due();
    this.#now = end;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting promise callbacks run
   * after each, so that timers set by the code a timer woke are fired too.
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (let due = this.#due(end); due; due = this.#due(end)) {
      due();
      await flush();
    }
    this.#now = end;
    await flush();
  }

  /** Takes the first timer due by `end` and moves the clock to it. */
  #due(end: number): (() => void) | undefined {
    let first: [number, { at: number; fn: () => void }] | undefined;
    for (const entry of this.#timers) {
      if (entry[1].at <= end && (first === undefined || entry[1].at < first[1].at)) first = entry;
    }
    if (first === undefined) return undefined;
    this.#timers.delete(first[0]);
    this.#now = first[1].at;
    return first[1].fn;
  }
}

/** Lets every queued promise callback run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
