/**
 * A gap: a period the producer was not listening (a reconnect, a failover). Each is published as
 * one record on the gaps topic, so a consumer knows the stream has a hole and how long it is.
 */
import type { OutRecord } from "./sink.ts";

/** A period the producer was not listening. `R` narrows the reason where it is known. */
export interface Gap<R extends string = string> {
  /** When the stream was lost (for staleness: when its last frame arrived), epoch ms. */
  from: number;
  /** When it was listening again (every topic confirmed, or the client stopped), epoch ms. */
  to: number;
  /** Why the stream was lost. */
  reason: R;
}

/** The gap's record on the gaps topic: `{"from","to","reason","seconds"}`, key `gap`. */
export function gapRecord(gap: Gap): OutRecord {
  return {
    key: "gap",
    value: JSON.stringify({
      from: new Date(gap.from).toISOString(),
      to: new Date(gap.to).toISOString(),
      reason: gap.reason,
      seconds: (gap.to - gap.from) / 1000,
    }),
    timestamp: gap.to,
  };
}
