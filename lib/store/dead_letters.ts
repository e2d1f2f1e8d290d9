/**
 * Dead letters: records that are not ours (not JSON, a missing or mistyped field, a value that
 * does not fit its column, a symbol that is not a pair), kept verbatim in the dead letters table
 * with why, and counted by reason code. Never fatal, never dropped silently.
 */
import type { DeadLetter } from "./types.ts";
import type { InRecord } from "../sink.ts";

/** Why a record was refused, as counted in `crypto_store_dead_letters_total{reason}`. */
export const DEAD_LETTER_CODES = [
  "tombstone",
  "not_json",
  "not_object",
  "missing_field",
  "bad_type",
  "bad_timestamp",
  "bad_symbol",
  "out_of_range",
  "refused_by_database",
] as const;

/** A dead letter's reason code. */
export type DeadLetterCode = (typeof DEAD_LETTER_CODES)[number];

/** Latest time a row may carry: 9999-12-31T23:59:59.999Z. */
export const MAX_TIME_MS = 253_402_300_799_999;

/** A refused record: the code and a sentence for the dead letters table. */
export interface Refusal {
  code: DeadLetterCode;
  reason: string;
}

/** The dead letter of a record, with its Kafka timestamp clamped into 1970 … 9999 (the row's time). */
export function deadLetter(record: InRecord, refusal: Refusal): DeadLetter {
  const t = Number.isFinite(record.timestamp) ? Math.trunc(record.timestamp) : 0;
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    ts: Math.min(Math.max(t, 0), MAX_TIME_MS),
    code: refusal.code,
    reason: refusal.reason,
    value: record.value,
  };
}

/**
 * The same dead letter without its value, for when the database refuses to hold the value itself
 * (PostgreSQL text cannot hold a NUL character); the reason says so.
 */
export function withoutValue(letter: DeadLetter, why: string): DeadLetter {
  return {
    ...letter,
    value: null,
    reason: `${letter.reason}; the value itself was not kept: ${why}`,
  };
}
