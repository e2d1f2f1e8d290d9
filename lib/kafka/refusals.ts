/**
 * Records the broker refuses for good, whatever the client does: too large for the topic, a
 * timestamp outside the topic's window, a record the broker finds invalid, a policy, or an ACL.
 * Resending them can only fail again, so the sinks keep them aside as dead letters
 * ({@linkcode DeadLetter}) and write the records around them once. Pure: both adapters share it.
 *
 * Most refusals are seen before the send, from the topic's own settings
 * ({@linkcode TopicLimits}); the broker's answer covers the rest.
 */
import type { OutRecord } from "../sink.ts";

/** Why a record was kept aside; the `reason` label of the dead-letter counter. */
export const REFUSAL_REASONS = [
  "too_large",
  "invalid_timestamp",
  "invalid_record",
  "policy_violation",
  "not_authorized",
] as const;

/** One of {@linkcode REFUSAL_REASONS}. */
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Broker error names that refuse a record for good, and the reason each one means. */
const BROKER_REFUSALS: Readonly<Record<string, RefusalReason>> = {
  MESSAGE_TOO_LARGE: "too_large",
  RECORD_LIST_TOO_LARGE: "too_large",
  INVALID_TIMESTAMP: "invalid_timestamp",
  INVALID_RECORD: "invalid_record",
  CORRUPT_MESSAGE: "invalid_record",
  POLICY_VIOLATION: "policy_violation",
  TOPIC_AUTHORIZATION_FAILED: "not_authorized",
  CLUSTER_AUTHORIZATION_FAILED: "not_authorized",
};

/** The same by the protocol's numeric error code. */
const BROKER_REFUSAL_CODES: Readonly<Record<number, string>> = {
  2: "CORRUPT_MESSAGE",
  10: "MESSAGE_TOO_LARGE",
  18: "RECORD_LIST_TOO_LARGE",
  29: "TOPIC_AUTHORIZATION_FAILED",
  31: "CLUSTER_AUTHORIZATION_FAILED",
  32: "INVALID_TIMESTAMP",
  44: "POLICY_VIOLATION",
  87: "INVALID_RECORD",
};

/** The refusal reason of a broker error name (`INVALID_TIMESTAMP`), or undefined if none. */
export function refusalOf(errorName: string | undefined): RefusalReason | undefined {
  return errorName === undefined ? undefined : BROKER_REFUSALS[errorName];
}

/** The broker error name of a refusing protocol error code, or undefined. */
export function refusalName(code: number): string | undefined {
  return BROKER_REFUSAL_CODES[code];
}

/** A record kept aside, with why. */
export interface DeadLetter {
  /** The topic it was for. */
  topic: string;
  record: OutRecord;
  reason: RefusalReason;
  /** One sentence: what was refused and by what rule (the broker's words when it answered). */
  detail: string;
}

/** Keeps a dead letter (a file, a log); resolves once it is kept. */
export type DeadLetterSink = (letter: DeadLetter) => Promise<void> | void;

/**
 * What a topic accepts, from its settings (`describeConfigs`); a field is undefined when the
 * setting could not be read, and nothing is then checked against it.
 */
export interface TopicLimits {
  /** `max.message.bytes`: the largest record batch the broker appends. */
  maxMessageBytes?: number;
  /** `message.timestamp.after.max.ms`: how far ahead of the broker's clock a record may be. */
  timestampAfterMaxMs?: number;
  /** `message.timestamp.before.max.ms`: how far behind it. */
  timestampBeforeMaxMs?: number;
  /** `message.timestamp.type` is LogAppendTime: the broker stamps records, checks none. */
  logAppendTime?: boolean;
}

/** Reads {@linkcode TopicLimits} from a topic's settings (name → value text). */
export function limitsFromConfig(
  config: ReadonlyMap<string, string | null | undefined>,
): TopicLimits {
  const int = (name: string): number | undefined => {
    const text = config.get(name);
    if (text === undefined || text === null || !/^-?\d+$/.test(text)) return undefined;
    const n = Number(text);
    // Long.MAX_VALUE (unlimited) and the like: no check.
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  };
  return {
    maxMessageBytes: int("max.message.bytes"),
    timestampAfterMaxMs: int("message.timestamp.after.max.ms"),
    timestampBeforeMaxMs: int("message.timestamp.before.max.ms"),
    logAppendTime: config.get("message.timestamp.type") === "LogAppendTime",
  };
}

/** The topic settings {@linkcode limitsFromConfig} reads. */
export const LIMIT_CONFIGS = [
  "max.message.bytes",
  "message.timestamp.after.max.ms",
  "message.timestamp.before.max.ms",
  "message.timestamp.type",
] as const;

const encoder = new TextEncoder();

function utf8Length(text: string): number {
  // ASCII (the usual case) is one byte a character; count exactly otherwise.
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return encoder.encode(text).length;
  }
  return text.length;
}

/**
 * The size of a record batch holding only `record`, uncompressed, in bytes: the 61-byte batch
 * header plus the record with its varints counted at their widest (5 bytes), so at most ~30
 * bytes over the broker's count. The broker compares it with `max.message.bytes`.
 */
export function singleRecordBatchBytes(record: OutRecord): number {
  let bytes = 61 + 5 + 1 + 1 + 1 + 5 + utf8Length(record.key) + 5 + utf8Length(record.value) + 5;
  for (const [k, v] of Object.entries(record.headers ?? {})) {
    bytes += 5 + utf8Length(k) + 5 + utf8Length(v);
  }
  return bytes;
}

/** Options for {@linkcode precheck}. */
export interface PrecheckOptions {
  /** The local clock now, epoch ms. */
  now: number;
  /** Batches are compressed: a large record may fit once compressed, so size is not checked. */
  compressed: boolean;
}

/**
 * Why the broker would refuse `record` on a topic with `limits`, or undefined when it would
 * take it: the same rules the broker applies (Kafka's `LogValidator`), against our clock.
 */
export function precheck(
  record: OutRecord,
  limits: TopicLimits,
  options: PrecheckOptions,
): { reason: RefusalReason; detail: string } | undefined {
  const max = limits.maxMessageBytes;
  if (max !== undefined && !options.compressed) {
    const bytes = singleRecordBatchBytes(record);
    if (bytes > max) {
      return {
        reason: "too_large",
        detail: `the record needs ${bytes} bytes, over the topic's max.message.bytes (${max})`,
      };
    }
  }
  if (!limits.logAppendTime) {
    const ahead = record.timestamp - options.now;
    const after = limits.timestampAfterMaxMs;
    if (after !== undefined && ahead > after) {
      return {
        reason: "invalid_timestamp",
        detail: `the record's timestamp ${record.timestamp} is ${ahead} ms ahead of the clock, ` +
          `over the topic's message.timestamp.after.max.ms (${after})`,
      };
    }
    const before = limits.timestampBeforeMaxMs;
    if (before !== undefined && -ahead > before) {
      return {
        reason: "invalid_timestamp",
        detail: `the record's timestamp ${record.timestamp} is ${-ahead} ms behind the clock, ` +
          `over the topic's message.timestamp.before.max.ms (${before})`,
      };
    }
  }
  return undefined;
}

/** Zero dead letters for every reason. */
export function zeroDeadLetters(): Record<RefusalReason, number> {
  return Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
}

/** A refusal that ends the producer: the topic refuses every record (an ACL), not one. */
export class KafkaRefusedError extends Error {
  /** The broker's error name, e.g. `TOPIC_AUTHORIZATION_FAILED`. */
  readonly brokerError: string;
  constructor(message: string, brokerError: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaRefusedError";
    this.brokerError = brokerError;
  }
}
