/**
 * Health: what `/healthz` and the live page say about the stream, decided from a small
 * {@linkcode HealthSource} (which the pipeline implements) and an injected time.
 */

/** What `/healthz` needs to know, read on each request. Times are ms since the epoch. */
export interface HealthSource {
  /** When the last quote arrived (local clock), or undefined if none yet. */
  lastQuoteAt(): number | undefined;
  /** When Kafka last acknowledged a batch, or undefined if never. */
  lastAckAt(): number | undefined;
  /** Records handed to Kafka and not yet acknowledged. */
  pendingRecords(): number;
  /** When the oldest unacknowledged record was handed to Kafka, or undefined if none. */
  oldestPendingAt(): number | undefined;
  /** The sink's name for people, as the messages say it; default "Kafka" (the demo: the in-memory broker). */
  sinkName?(): string;
  /** With `--standby-group`: "active" or "standby" (a standby is healthy and says so). */
  role?(): "active" | "standby";
  /** With `--standby-group`: the group, takeovers so far and the last one's time (epoch ms). */
  failover?(): { group: string; takeovers: number; lastTakeoverAt?: number };
}

/** Why the stream is not healthy. */
export type UnhealthyReason =
  /** No quote since start-up. */
  | "no_quotes_yet"
  /** The last quote is older than `staleAfterMs`. */
  | "quotes_stale"
  /** Records have waited longer than `staleAfterMs` for a Kafka ack. */
  | "acks_stalled";

/** The `/healthz` body. Ages are in ms; absent when unknown. */
export interface HealthReport {
  /** "standby": a standby producer, healthy, not connected to Polygon (HTTP 200). */
  status: "ok" | "unhealthy" | "standby";
  /** Every reason that applies, empty when ok. */
  reasons: UnhealthyReason[];
  /** One sentence for people. */
  message: string;
  staleAfterMs: number;
  lastQuoteAgeMs?: number;
  lastAckAgeMs?: number;
  pendingRecords: number;
  oldestPendingAgeMs?: number;
  /** With `--standby-group`: this producer's role. */
  role?: "active" | "standby";
  /** With `--standby-group`: the group, takeovers and the last one's time (ISO 8601). */
  failover?: { group: string; takeovers: number; lastTakeoverAt?: string };
}

/**
 * Decides health from `source` at time `now`: ok only while the last quote is at most
 * `staleAfterMs` old and no record has waited longer than that for its ack.
 */
export function checkHealth(source: HealthSource, now: number, staleAfterMs: number): HealthReport {
  const lastQuoteAt = source.lastQuoteAt();
  const lastAckAt = source.lastAckAt();
  const pendingRecords = source.pendingRecords();
  const oldestPendingAt = source.oldestPendingAt();
  const report: HealthReport = {
    status: "ok",
    reasons: [],
    message: "",
    staleAfterMs,
    pendingRecords,
  };
  const role = source.role?.();
  const failover = source.failover?.();
  if (role !== undefined) report.role = role;
  if (failover !== undefined) {
    report.failover = { group: failover.group, takeovers: failover.takeovers };
    if (failover.lastTakeoverAt !== undefined) {
      report.failover.lastTakeoverAt = new Date(failover.lastTakeoverAt).toISOString();
    }
  }
  if (role === "standby") {
    report.status = "standby";
    report.message = `Standby: another producer of group "${failover?.group ?? ""}" is active; ` +
      `this one takes over if it stops`;
    return report;
  }
  const sink = source.sinkName?.() ?? "Kafka";
  const problems: string[] = [];
  if (lastQuoteAt === undefined) {
    report.reasons.push("no_quotes_yet");
    problems.push("no quote has arrived since start-up");
  } else {
    report.lastQuoteAgeMs = now - lastQuoteAt;
    if (report.lastQuoteAgeMs > staleAfterMs) {
      report.reasons.push("quotes_stale");
      problems.push(`the last quote is ${report.lastQuoteAgeMs} ms old`);
    }
  }
  if (lastAckAt !== undefined) report.lastAckAgeMs = now - lastAckAt;
  if (pendingRecords > 0 && oldestPendingAt !== undefined) {
    report.oldestPendingAgeMs = now - oldestPendingAt;
    if (report.oldestPendingAgeMs > staleAfterMs) {
      report.reasons.push("acks_stalled");
      problems.push(
        `${pendingRecords} records are waiting for an ack from ${sink}, the oldest for ` +
          `${report.oldestPendingAgeMs} ms`,
      );
    }
  }
  if (problems.length > 0) {
    report.status = "unhealthy";
    report.message = `Unhealthy: ${problems.join("; ")} (limit ${staleAfterMs} ms)`;
  } else {
    report.message = `Quotes are fresh and acks from ${sink} are flowing`;
  }
  return report;
}
