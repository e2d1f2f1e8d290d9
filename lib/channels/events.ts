/**
 * The frame-level half shared by the exact channel transforms (trades, bars): parse the frame
 * with every number kept as its text, count what is no event of the channel (invalid JSON, a
 * status, another channel, no pair), and hand each event of the channel on. Pure: no I/O.
 */
import type { TimeWindowOptions } from "../bounds.ts";
import { NumberText, parseKeepingNumbers, scanFlatEvents } from "../json_text.ts";

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

/**
 * Options of the channel transforms' factories. The time bounds are the spread transform's
 * (lib/bounds.ts): `clock` (live; replay passes none), `maxAheadMs` (default 5 minutes) and
 * `maxBehindMs` (default unbounded); the clock is read lazily ({@linkcode TimeWindowOptions}).
 */
export interface ChannelTransformOptions extends TimeWindowOptions {
  /**
   * Whether frames of the common shape are read by a validating scan instead of `JSON.parse`
   * with a reviver; both make the same records and skips. `false` exists for tests that compare
   * them. Default true.
   */
  scan?: boolean;
}

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
  options: { scan?: boolean } = {},
): number {
  // The common shape is read by a validating scan (no reviver call per value); anything else,
  // and invalid JSON, by the general path. Both make the same events.
  const scanned = options.scan === false ? undefined : scanFlatEvents(text);
  if (scanned !== undefined) {
    for (const e of scanned) event(e, channel, skipped, each);
    return scanned.length;
  }
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
    event(ev as Record<string, unknown>, channel, skipped, each);
  }
  return events.length;
}

/** One object event: counted, or handed to `each` when it is the channel's with a good pair. */
function event(
  e: Record<string, unknown>,
  channel: string,
  skipped: Record<FrameSkipReason, number>,
  each: (event: Record<string, unknown>, pair: string) => void,
): void {
  if (e.ev !== channel) {
    if (e.ev === "status") skipped.status++;
    else skipped.other_event++;
    return;
  }
  const pair = e.pair;
  if (typeof pair !== "string" || pair.length === 0 || pair.length > MAX_PAIR_LENGTH) {
    skipped.bad_pair++;
    return;
  }
  each(e, pair);
}
