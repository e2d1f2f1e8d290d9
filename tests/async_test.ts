import assert from "node:assert/strict";
import {
  deadline,
  DeadlineError,
  delay,
  exponentialBackoff,
  retry,
  RetryError,
} from "../lib/async.ts";
import { FakeTime, flush } from "./helpers/fake_time.ts";

/** A random source that returns `values` in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

/** The state of a promise without waiting for it. */
async function stateOf(promise: Promise<unknown>): Promise<"pending" | "resolved" | "rejected"> {
  let state: "pending" | "resolved" | "rejected" = "pending";
  promise.then(() => state = "resolved", () => state = "rejected");
  await flush();
  return state;
}

Deno.test("delay resolves when its timer fires and not before", async () => {
  const timers = new FakeTime();
  const waiting = delay(250, { timers });
  assert.deepEqual(timers.requested, [250]);
  await timers.advanceAsync(249);
  assert.equal(await stateOf(waiting), "pending");
  await timers.advanceAsync(1);
  assert.equal(await stateOf(waiting), "resolved");
  assert.equal(timers.pending, 0);
});

Deno.test("delay rejects with the signal's reason on abort and clears its timer", async () => {
  const timers = new FakeTime();
  const controller = new AbortController();
  const reason = new Error("shutting down");
  const waiting = delay(10_000, { signal: controller.signal, timers });
  assert.equal(timers.pending, 1);
  controller.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
  assert.equal(timers.pending, 0);
});

Deno.test("delay with an aborted signal rejects at once without a timer", async () => {
  const timers = new FakeTime();
  const reason = new Error("already stopped");
  await assert.rejects(
    delay(5, { signal: AbortSignal.abort(reason), timers }),
    (error) => error === reason,
  );
  assert.deepEqual(timers.requested, []);
});

Deno.test("delay treats a negative or NaN time as zero", async () => {
  const timers = new FakeTime();
  const a = delay(-5, { timers });
  const b = delay(Number.NaN, { timers });
  assert.deepEqual(timers.requested, [0, 0]);
  await timers.advanceAsync(0);
  assert.equal(await stateOf(a), "resolved");
  assert.equal(await stateOf(b), "resolved");
});

Deno.test("delay on real timers resolves", async () => {
  await delay(1);
});

Deno.test("exponentialBackoff with full jitter is floor(random × the capped exponential ceiling)", () => {
  const half = Array.from(
    { length: 9 },
    (_, i) => exponentialBackoff(i, { minTimeout: 500, maxTimeout: 30_000, random: () => 0.5 }),
  );
  assert.deepEqual(half, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.equal(exponentialBackoff(0, { random: () => 0 }), 0);
  assert.equal(exponentialBackoff(3, { minTimeout: 500, random: () => 0.999 }), 3996);
  assert.equal(exponentialBackoff(2000, { maxTimeout: 5000, random: () => 0.999 }), 4995);
  assert.equal(exponentialBackoff(-3, { minTimeout: 100, random: () => 0.5 }), 50);
});

Deno.test("exponentialBackoff without jitter waits the ceiling; half jitter keeps the upper half", () => {
  const none = Array.from(
    { length: 6 },
    (_, i) => exponentialBackoff(i, { minTimeout: 250, maxTimeout: 2000, jitter: 0 }),
  );
  assert.deepEqual(none, [250, 500, 1000, 2000, 2000, 2000]);
  assert.equal(exponentialBackoff(2, { minTimeout: 100, jitter: 0.5, random: () => 0 }), 200);
  assert.equal(exponentialBackoff(2, { minTimeout: 100, jitter: 0.5, random: () => 0.5 }), 300);
  assert.equal(exponentialBackoff(1, { minTimeout: 100, multiplier: 3, jitter: 0 }), 300);
});

Deno.test("retry returns the first success after backing off between failures", async () => {
  const timers = new FakeTime();
  const failures: [string, number, number][] = [];
  let calls = 0;
  const result = retry(() => {
    calls++;
    if (calls < 4) throw new Error(`fail ${calls}`);
    return "ok";
  }, {
    minTimeout: 100,
    maxTimeout: 300,
    random: sequence(0.5, 0.25, 0.999),
    timers,
    onRetry: (error, attempt, ms) => failures.push([(error as Error).message, attempt, ms]),
  });
  await timers.advanceAsync(10_000);
  assert.equal(await result, "ok");
  assert.equal(calls, 4);
  assert.deepEqual(timers.requested, [50, 50, 299]);
  assert.deepEqual(failures, [["fail 1", 1, 50], ["fail 2", 2, 50], ["fail 3", 3, 299]]);
});

Deno.test("retry throws RetryError with the last failure as cause when the attempts run out", async () => {
  const timers = new FakeTime();
  let calls = 0;
  const last = new Error("broker down");
  const result = retry(() => {
    calls++;
    throw calls === 3 ? last : new Error("earlier");
  }, { maxAttempts: 3, minTimeout: 10, jitter: 0, timers });
  const checked = assert.rejects(result, (error) => {
    assert.ok(error instanceof RetryError);
    assert.equal(error.name, "RetryError");
    assert.equal(error.attempts, 3);
    assert.equal(error.cause, last);
    assert.equal(
      error.message,
      "Cannot complete the operation: all 3 attempts failed, the last with: broker down",
    );
    return true;
  });
  await timers.advanceAsync(1_000);
  await checked;
  assert.equal(calls, 3);
  assert.deepEqual(timers.requested, [10, 20]);
});

Deno.test("retry throws a failure shouldRetry declines as it is, without waiting", async () => {
  const timers = new FakeTime();
  const fatal = new TypeError("bad certificate");
  const seen: number[] = [];
  await assert.rejects(
    retry(() => Promise.reject(fatal), {
      timers,
      shouldRetry: (error, attempt) => {
        seen.push(attempt);
        return !(error instanceof TypeError);
      },
    }),
    (error) => error === fatal,
  );
  assert.deepEqual(seen, [1]);
  assert.deepEqual(timers.requested, []);
});

Deno.test("retry without limit stops on abort with the signal's reason and leaves no timer", async () => {
  const timers = new FakeTime();
  const controller = new AbortController();
  const reason = new Error("sink closed");
  let calls = 0;
  const result = retry(() => {
    calls++;
    throw new Error("not yet");
  }, { maxAttempts: Infinity, minTimeout: 100, jitter: 0, signal: controller.signal, timers });
  const checked = assert.rejects(result, (error) => error === reason);
  await timers.advanceAsync(100 + 200 + 50);
  assert.equal(calls, 3);
  assert.equal(timers.pending, 1);
  controller.abort(reason);
  await checked;
  assert.equal(timers.pending, 0);
  assert.equal(calls, 3);
});

Deno.test("retry refuses options outside their range", async () => {
  const cases: [Parameters<typeof retry>[1], string][] = [
    [{ maxAttempts: 0 }, "Cannot retry: maxAttempts must be a whole number ≥ 1, not 0"],
    [{ maxAttempts: 1.5 }, "Cannot retry: maxAttempts must be a whole number ≥ 1, not 1.5"],
    [{ multiplier: 0.5 }, "Cannot retry: multiplier must be a finite number ≥ 1, not 0.5"],
    [
      { minTimeout: 10, maxTimeout: 5 },
      "Cannot retry: need 0 ≤ minTimeout ≤ maxTimeout, not 10 and 5",
    ],
    [{ jitter: 2 }, "Cannot retry: jitter must be between 0 and 1, not 2"],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(retry(() => 1, options), { name: "RangeError", message });
  }
});

Deno.test("deadline resolves with the promise's value and clears its timer", async () => {
  const timers = new FakeTime();
  const { promise, resolve } = Promise.withResolvers<number>();
  const bounded = deadline(promise, 1_000, { timers });
  await timers.advanceAsync(999);
  resolve(42);
  assert.equal(await bounded, 42);
  assert.equal(timers.pending, 0);
});

Deno.test("deadline passes the promise's rejection through", async () => {
  const timers = new FakeTime();
  const failure = new Error("refused");
  await assert.rejects(deadline(Promise.reject(failure), 50, { timers }), (e) => e === failure);
  assert.equal(timers.pending, 0);
});

Deno.test("deadline rejects with DeadlineError naming what timed out", async () => {
  const timers = new FakeTime();
  const bounded = deadline(new Promise(() => {}), 2_000, { what: "Connecting", timers });
  const checked = assert.rejects(bounded, (error) => {
    assert.ok(error instanceof DeadlineError);
    assert.equal(error.name, "DeadlineError");
    assert.equal(error.ms, 2_000);
    assert.equal(error.message, "Connecting timed out after 2000 ms");
    return true;
  });
  await timers.advanceAsync(1_999);
  assert.equal(await stateOf(bounded), "pending");
  await timers.advanceAsync(1);
  await checked;
  assert.equal(timers.pending, 0);
});

Deno.test("deadline rejects with the signal's reason on abort and clears its timer", async () => {
  const timers = new FakeTime();
  const controller = new AbortController();
  const reason = new Error("stopping");
  const bounded = deadline(new Promise(() => {}), 2_000, { signal: controller.signal, timers });
  controller.abort(reason);
  await assert.rejects(bounded, (error) => error === reason);
  assert.equal(timers.pending, 0);
  await assert.rejects(
    deadline(Promise.resolve(1), 10, { signal: controller.signal, timers }),
    (error) => error === reason,
  );
});
