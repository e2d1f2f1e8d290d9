/**
 * ACL operations as the Kafka protocol numbers them (KIP-430's authorized-operations bit field),
 * and which of them each script needs. Pure.
 */

/** Kafka's `AclOperation` codes, by bit position. */
const OPERATIONS = [
  "UNKNOWN",
  "ANY",
  "ALL",
  "READ",
  "WRITE",
  "CREATE",
  "DELETE",
  "ALTER",
  "DESCRIBE",
  "CLUSTER_ACTION",
  "DESCRIBE_CONFIGS",
  "ALTER_CONFIGS",
  "IDEMPOTENT_WRITE",
  "CREATE_TOKENS",
  "DESCRIBE_TOKENS",
  "TWO_PHASE_COMMIT",
] as const;

/** The operation names set in a KIP-430 bit field; none when it was not asked for (-2^31). */
export function aclOperations(bits: number): string[] {
  if (bits === -2147483648 || bits <= 0) return [];
  return OPERATIONS.filter((_, i) => (bits & (1 << i)) !== 0);
}

/** What the produce and consume scripts need on a topic. */
export const NEEDED_OPERATIONS = {
  /** The producer writes records and gaps (idempotent writes come with WRITE, KIP-679). */
  produce: ["WRITE", "DESCRIBE"],
  /** The consumer reads (and its group commits, which needs READ on the group). */
  consume: ["READ", "DESCRIBE"],
} as const;

/** The operations of `needed` missing from `granted` (ALL grants everything). */
export function missingOperations(granted: readonly string[], needed: readonly string[]): string[] {
  if (granted.includes("ALL")) return [];
  // READ, WRITE, DELETE and ALTER imply DESCRIBE (Kafka's AclAuthorizer rule).
  const implied = new Set(granted);
  if (["READ", "WRITE", "DELETE", "ALTER"].some((op) => implied.has(op))) implied.add("DESCRIBE");
  return needed.filter((op) => !implied.has(op));
}

/** The Kafka protocol error names in an error chain (`TOPIC_AUTHORIZATION_FAILED`, …). */
export function protocolErrorIds(error: unknown, depth = 0): string[] {
  if (!error || typeof error !== "object" || depth > 8) return [];
  const e = error as { apiId?: unknown; type?: unknown; errors?: unknown[]; cause?: unknown };
  const out: string[] = [];
  for (const id of [e.apiId, e.type]) {
    if (typeof id === "string" && /^[A-Z_]+$/.test(id)) out.push(id);
  }
  for (const inner of e.errors ?? []) out.push(...protocolErrorIds(inner, depth + 1));
  out.push(...protocolErrorIds(e.cause, depth + 1));
  return out;
}

/** Whether an error chain holds an authorization refusal (topic, group or cluster). */
export function isAuthorizationError(error: unknown): boolean {
  return protocolErrorIds(error).some((id) => id.endsWith("_AUTHORIZATION_FAILED"));
}
