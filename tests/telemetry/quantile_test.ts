import assert from "node:assert/strict";
import { bucketQuantile } from "../../lib/telemetry/quantile.ts";

const INF = Number.POSITIVE_INFINITY;
const b = (...pairs: [number, number][]) => pairs.map(([le, count]) => ({ le, count }));

Deno.test("bucketQuantile interpolates inside the bucket like PromQL's histogram_quantile", () => {
  // 10 observations: 4 in (0, 1], 4 in (1, 2], 2 above 2.
  const buckets = b([1, 4], [2, 8], [INF, 10]);
  assert.equal(bucketQuantile(0.5, buckets), 1.25); // rank 5: a quarter into (1, 2]
  assert.equal(bucketQuantile(0.2, buckets), 0.5); // rank 2: half of (0, 1], from 0
  assert.equal(bucketQuantile(0.4, buckets), 1); // rank 4: the top of the first bucket
  assert.equal(bucketQuantile(0.99, buckets), 2); // in +Inf: the highest finite bound
  assert.equal(bucketQuantile(1, buckets), 2);
  assert.equal(bucketQuantile(0, buckets), 0);
});

Deno.test("bucketQuantile gives nothing without observations, without +Inf or with one bucket", () => {
  assert.equal(bucketQuantile(0.5, b([1, 0], [INF, 0])), undefined);
  assert.equal(bucketQuantile(0.5, []), undefined);
  assert.equal(bucketQuantile(0.5, b([INF, 5])), undefined);
  assert.equal(bucketQuantile(0.5, b([1, 2], [2, 5])), undefined);
  assert.equal(bucketQuantile(0.5, b([1, NaN], [INF, NaN])), undefined);
});

Deno.test("bucketQuantile returns a first bound at or below zero as Prometheus does", () => {
  // promql: "if b == 0 && upperBound <= 0 return upperBound" (the old live-page copy interpolated
  // towards 0 here, the old InfluxDB copy clamped its lower bound).
  assert.equal(bucketQuantile(0.1, b([-1, 5], [1, 10], [INF, 10])), -1);
  assert.equal(bucketQuantile(0.1, b([0, 5], [1, 10], [INF, 10])), 0);
  assert.equal(bucketQuantile(0.75, b([-1, 5], [1, 10], [INF, 10])), 0);
});

Deno.test("bucketQuantile sorts buckets and skips empty ones before the rank", () => {
  assert.equal(bucketQuantile(0.5, b([INF, 10], [2, 8], [1, 4])), 1.25);
  // Nothing in (1, 2]: the rank 4 stops at the first bucket that reaches it.
  assert.equal(bucketQuantile(0.4, b([1, 4], [2, 4], [3, 10], [INF, 10])), 1);
  assert.equal(bucketQuantile(0.5, b([1, 4], [2, 4], [3, 10], [INF, 10])), 2 + 1 / 6);
});

Deno.test("bucketQuantile refuses a quantile outside 0 to 1", () => {
  assert.throws(() => bucketQuantile(1.5, b([1, 1], [INF, 1])), {
    name: "RangeError",
    message: "Cannot estimate quantile 1.5: it must be between 0 and 1",
  });
  assert.throws(() => bucketQuantile(NaN, b([1, 1], [INF, 1])), RangeError);
});
