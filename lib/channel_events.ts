/**
 * The frame-level half shared by the exact channel transforms (trades, bars): parse the frame
 * with every number kept as its text, count what is no event of the channel (invalid JSON, a
 * status, another channel, no pair), and hand each event of the channel on. Pure: no I/O.
 */
import { NumberText, parseKeepingNumbers } from "./json_text.ts";

/** The reasons every channel transform shares, in a stable order for reports. */
export const FRAME_SKIP_REASONS = [
  /** The frame text is not JSON. */
  "invalid_json",
  /** The frame is JSON but neither an array nor an object. */
  "not_a_frame",
  /** An element of the frame is itself an array. */
  "nested_array",
  /** An element of the frame is not an object. */
  "not_an_object",
  /** A status message (connected, auth_success, …). */
  "status",
  /** Another channel, or no `ev`. */
  "other_event",
  /** `pair` is missing, empty, not a string, or longer than 64 characters. */
  "bad_pair",
] as const;

/** A reason of {@linkcode FRAME_SKIP_REASONS}. */
export type FrameSkipReason = (typeof FRAME_SKIP_REASONS)[number];

const MAX_PAIR_LENGTH = 64;

/**
 * Reads the events of one frame: each event of `channel` with a good pair goes to `each`, every
 * other element is counted in `skipped`. Returns the number of events seen. Never throws on bad
 * input.
 */
export function readChannelFrame(
  text: string,
  channel: string,
  skipped: Record<FrameSkipReason, number>,
  each: (event: Record<string, unknown>, pair: string) => void,
): number {
  let parsed: unknown;
  try {
    parsed = parseKeepingNumbers(text);
  } catch {
    skipped.invalid_json++;
    return 1;
  }
  const events = Array.isArray(parsed) ? parsed : [parsed];
  if (
    !Array.isArray(parsed) &&
    (typeof parsed !== "object" || parsed === null || parsed instanceof NumberText)
  ) {
    skipped.not_a_frame++;
    return 1;
  }
  for (const ev of events) {
    if (typeof ev !== "object" || ev === null || ev instanceof NumberText) {
      skipped.not_an_object++;
      continue;
    }
    if (Array.isArray(ev)) {
      skipped.nested_array++;
      continue;
    }
    const e = ev as Record<string, unknown>;
    if (e.ev !== channel) {
      if (e.ev === "status") skipped.status++;
      else skipped.other_event++;
      continue;
    }
    const pair = e.pair;
    if (typeof pair !== "string" || pair.length === 0 || pair.length > MAX_PAIR_LENGTH) {
      skipped.bad_pair++;
      continue;
    }
    each(e, pair);
  }
  return events.length;
}
