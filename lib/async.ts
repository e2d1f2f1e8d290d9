/**
 * Small async helpers in the manner of Deno's `@std/async` (which this project cannot install):
 * {@linkcode delay}, {@linkcode retry} with exponential backoff and full jitter, and
 * {@linkcode deadline}. Every wait takes an `AbortSignal`, so a shutdown interrupts it and leaves
 * no timer behind, and every helper takes injectable {@linkcode Timers} (and a random source), so
 * tests control time instead of sleeping.
 *
 * Differences from `@std/async`: the jitter draws `random()` upwards from the floor (std draws
 * `1 - random()`, the same distribution), delays are whole milliseconds, `retry` takes a signal,
 * an `onRetry` callback and `maxAttempts: Infinity`, and `deadline` rejects with
 * {@linkcode DeadlineError} rather than a `DOMException`.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * await delay(100, { signal: controller.signal }); // rejects with the reason on abort
 * const answer = await retry(() => fetchOnce(), { maxAttempts: 5, minTimeout: 100 });
 * const meta = await deadline(admin.metadata(), 5_000, { what: "Reading metadata" });
 * ```
 */

/** Timer functions, injectable so tests control time. */
export interface Timers {
  /** Calls `fn` once after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer made by `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/** The global `setTimeout` and `clearTimeout`. */
export const REAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/** Options for {@linkcode delay}. */
export interface DelayOptions {
  /** Aborting it ends the wait at once: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Timers; default {@linkcode REAL_TIMERS}. */
  timers?: Timers;
}

/**
 * Resolves after `ms` milliseconds (a negative or NaN `ms` is 0). When `signal` aborts first,
 * clears the timer and rejects with the signal's reason.
 */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal, timers = REAL_TIMERS } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const abort = () => {
      timers.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, Math.max(0, ms) || 0);
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/** Options for {@linkcode exponentialBackoff}. */
export interface BackoffOptions {
  /** The ceiling of attempt 0, ms. Default 1000. */
  minTimeout?: number;
  /** The cap of every ceiling, ms. Default 60000. */
  maxTimeout?: number;
  /** How much the ceiling grows per attempt. Default 2. */
  multiplier?: number;
  /**
   * 1 draws the pause uniformly below the ceiling (full jitter); 0 waits the ceiling. Default 1.
   */
  jitter?: number;
  /** Uniform random in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/**
 * The pause before retry `attempt` (0-based), in whole ms: the ceiling
 * `min(maxTimeout, minTimeout × multiplier^attempt)`, less a random part of `jitter` of it:
 * `floor(ceiling × (1 − jitter + jitter × random()))`. With full jitter (1) that is
 * `floor(random() × ceiling)`, so clients that failed together do not retry in step.
 */
export function exponentialBackoff(attempt: number, options: BackoffOptions = {}): number {
  const {
    minTimeout = 1_000,
    maxTimeout = 60_000,
    multiplier = 2,
    jitter = 1,
    random = Math.random,
  } = options;
  const ceiling = Math.min(maxTimeout, minTimeout * multiplier ** Math.max(0, attempt));
  return Math.floor(ceiling * (1 - jitter + jitter * random()));
}

/** {@linkcode retry} gave up: `maxAttempts` attempts failed. `cause` is the last failure. */
export class RetryError extends Error {
  /** How many attempts were made. */
  readonly attempts: number;
  constructor(cause: unknown, attempts: number) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `Cannot complete the operation: all ${attempts} attempts failed, the last with: ${reason}`,
      {
        cause,
      },
    );
    this.name = "RetryError";
    this.attempts = attempts;
  }
}

/** Options for {@linkcode retry}: the backoff's, plus when to stop. */
export interface RetryOptions extends BackoffOptions {
  /** Attempts in all, the first included; `Infinity` retries until aborted. Default 5. */
  maxAttempts?: number;
  /** Aborting it ends the wait between attempts: `retry` rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Whether a failure may be retried (`attempt` is 1 for the first); when it returns false the
   * failure is thrown as it is. Default: every failure.
   */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /** Called before each pause with the failure, its attempt (1 for the first) and the pause. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Timers for the pauses; default {@linkcode REAL_TIMERS}. */
  timers?: Timers;
}

/**
 * Calls `fn` until it resolves, at most `maxAttempts` times, pausing
 * {@linkcode exponentialBackoff} between attempts. Throws {@linkcode RetryError} (cause: the last
 * failure) when the attempts run out, the failure itself when `shouldRetry` declines it, and the
 * signal's reason when `signal` aborts.
 * @example
 * ```ts
 * await retry(() => sendOnce(), { maxAttempts: Infinity, minTimeout: 100, signal });
 * ```
 */
export async function retry<T>(
  fn: () => Promise<T> | T,
  options: RetryOptions = {},
): Promise<T> {
  const {
    maxAttempts = 5,
    minTimeout = 1_000,
    maxTimeout = 60_000,
    multiplier = 2,
    jitter = 1,
    signal,
    shouldRetry = () => true,
    onRetry,
    timers,
  } = options;
  if (!(maxAttempts >= 1) || (Number.isFinite(maxAttempts) && !Number.isInteger(maxAttempts))) {
    throw new RangeError(
      `Cannot retry: maxAttempts must be a whole number ≥ 1, not ${maxAttempts}`,
    );
  }
  if (!(multiplier >= 1) || !Number.isFinite(multiplier)) {
    throw new RangeError(`Cannot retry: multiplier must be a finite number ≥ 1, not ${multiplier}`);
  }
  if (!(minTimeout >= 0) || !(maxTimeout >= minTimeout)) {
    throw new RangeError(
      `Cannot retry: need 0 ≤ minTimeout ≤ maxTimeout, not ${minTimeout} and ${maxTimeout}`,
    );
  }
  if (!(jitter >= 0 && jitter <= 1)) {
    throw new RangeError(`Cannot retry: jitter must be between 0 and 1, not ${jitter}`);
  }
  for (let attempt = 1;; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn();
    } catch (error) {
      if (!shouldRetry(error, attempt)) throw error;
      if (attempt >= maxAttempts) throw new RetryError(error, attempt);
      const ms = exponentialBackoff(attempt - 1, {
        minTimeout,
        maxTimeout,
        multiplier,
        jitter,
        random: options.random,
      });
      onRetry?.(error, attempt, ms);
      await delay(ms, { signal, timers });
    }
  }
}

/** {@linkcode deadline} passed before the promise settled. */
export class DeadlineError extends Error {
  /** The bound that passed, ms. */
  readonly ms: number;
  constructor(what: string, ms: number) {
    super(`${what} timed out after ${ms} ms`);
    this.name = "DeadlineError";
    this.ms = ms;
  }
}

/** Options for {@linkcode deadline}. */
export interface DeadlineOptions {
  /** Aborting it rejects at once with the signal's reason. */
  signal?: AbortSignal;
  /** What is being waited for, for the error message. Default "The operation". */
  what?: string;
  /** Timers; default {@linkcode REAL_TIMERS}. */
  timers?: Timers;
}

/**
 * Settles as `promise` does, or rejects with {@linkcode DeadlineError} after `ms` (or with the
 * signal's reason when `signal` aborts first); clears its timer either way. The promise itself is
 * not cancelled: give its work a signal of its own to stop it.
 */
export function deadline<T>(
  promise: Promise<T>,
  ms: number,
  options: DeadlineOptions = {},
): Promise<T> {
  const { signal, what = "The operation", timers = REAL_TIMERS } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const finish = () => {
      timers.clearTimeout(handle);
      signal?.removeEventListener("abort", abort);
    };
    const abort = () => {
      finish();
      reject(signal?.reason);
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      reject(new DeadlineError(what, ms));
    }, Math.max(0, ms) || 0);
    signal?.addEventListener("abort", abort, { once: true });
    promise.then(
      (value) => {
        finish();
        resolve(value);
      },
      (error) => {
        finish();
        reject(error);
      },
    );
  });
}
