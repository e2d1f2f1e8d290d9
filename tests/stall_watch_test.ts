/**
 * The bound on a consumer that reads nothing (lib/stall_watch.ts, issue 21), on fake time: it
 * gives up only when records wait and none arrive, never on a quiet topic or a slow reader.
 */
import { deepStrictEqual, equal } from "./helpers/assert.ts";
import { FakeTime } from "./helpers/fake_time.ts";
import { type Stall, StallWatch } from "../lib/stall_watch.ts";

const AFTER = 120_000;

function watchWith(waiting: number[]) {
  const time = new FakeTime(1_000);
  const stalls: Stall[] = [];
  const asked: (readonly number[])[] = [];
  let reads = 0;
  const watch = new StallWatch({
    afterMs: AFTER,
    waiting: (partitions) => {
      asked.push(partitions);
      return Promise.resolve(waiting[Math.min(reads++, waiting.length - 1)]!);
    },
    onStall: (stall) => stalls.push(stall),
    now: () => time.now(),
    timers: time,
  });
  return { time, watch, stalls, asked };
}

Deno.test("a consumer holding partitions with records waiting and none arriving stalls once, with the facts", async () => {
  const { time, watch, stalls, asked } = watchWith([250]);
  watch.start();
  watch.assigned([4, 1]);
  await time.advanceAsync(AFTER - 1);
  deepStrictEqual(stalls, []);
  await time.advanceAsync(AFTER);
  deepStrictEqual(stalls, [{ idleMs: AFTER, waiting: 250, partitions: [4, 1] }]);
  deepStrictEqual(asked, [[4, 1]]);
  // Once: the watch stopped itself.
  await time.advanceAsync(10 * AFTER);
  equal(stalls.length, 1);
  equal(time.pending, 0);
});

Deno.test("a quiet topic (nothing waiting) never stalls, and records waiting later do", async () => {
  const { time, watch, stalls, asked } = watchWith([0, 0, 0, 7]);
  watch.start();
  watch.assigned([0]);
  // Three looks find nothing waiting; each starts the idle time again.
  await time.advanceAsync(3 * AFTER + 3 * AFTER / 4);
  equal(stalls.length, 0);
  equal(asked.length, 3);
  await time.advanceAsync(AFTER);
  equal(stalls.length, 1);
  equal(stalls[0]!.waiting, 7);
});

Deno.test("a batch handled for longer than the bound (a slow reader) is no stall", async () => {
  const { time, watch, stalls, asked } = watchWith([1_000]);
  watch.start();
  watch.assigned([0, 1]);
  watch.busy(true);
  await time.advanceAsync(5 * AFTER);
  deepStrictEqual(stalls, []);
  deepStrictEqual(asked, []);
  watch.busy(false);
  await time.advanceAsync(AFTER / 2);
  deepStrictEqual(stalls, []);
  await time.advanceAsync(AFTER);
  equal(stalls.length, 1);
});

Deno.test("records arriving keep the watch quiet; a consumer with no partitions never stalls", async () => {
  const { time, watch, stalls, asked } = watchWith([99]);
  watch.start();
  watch.assigned([2]);
  for (let i = 0; i < 20; i++) {
    await time.advanceAsync(AFTER / 2);
    watch.busy(true);
    watch.busy(false);
  }
  deepStrictEqual(stalls, []);
  deepStrictEqual(asked, []);
  // More members than partitions: an empty assignment reads nothing, rightly.
  watch.assigned([]);
  await time.advanceAsync(5 * AFTER);
  deepStrictEqual(stalls, []);
  deepStrictEqual(asked, []);
});

Deno.test("a consumer that never got an assignment stalls without reading the lag", async () => {
  const { time, watch, stalls, asked } = watchWith([5]);
  watch.start();
  await time.advanceAsync(AFTER + AFTER / 4);
  deepStrictEqual(stalls, [{ idleMs: AFTER, waiting: 0, partitions: undefined }]);
  deepStrictEqual(asked, []);
});

Deno.test("a bound of 0 turns the watch off", async () => {
  const time = new FakeTime(0);
  const stalls: Stall[] = [];
  const watch = new StallWatch({
    afterMs: 0,
    waiting: () => Promise.resolve(10),
    onStall: (stall) => stalls.push(stall),
    now: () => time.now(),
    timers: time,
  });
  watch.start();
  equal(time.pending, 0);
  await time.advanceAsync(10 * AFTER);
  deepStrictEqual(stalls, []);
});

Deno.test("a lag read that never answers (the broker is down) is no stall, and the watch goes on", async () => {
  const time = new FakeTime(0);
  const stalls: Stall[] = [];
  let reads = 0;
  const watch = new StallWatch({
    afterMs: AFTER,
    waiting: () => {
      reads++;
      return reads === 1 ? new Promise<number>(() => {}) : Promise.resolve(3);
    },
    onStall: (stall) => stalls.push(stall),
    now: () => time.now(),
    timers: time,
  });
  watch.start();
  watch.assigned([0]);
  await time.advanceAsync(AFTER + AFTER / 4);
  equal(reads, 1);
  deepStrictEqual(stalls, []);
  await time.advanceAsync(AFTER + AFTER / 4);
  equal(reads, 2);
  equal(stalls.length, 1);
  watch.stop();
});
