/**
 * The Polygon crypto WebSocket protocol, as the client and its users see it: the topics of a
 * subscription and the typed errors for the statuses that end a run (never retried).
 */
import { EXIT } from "../config/defaults.ts";

/** Polygon rejected the API key (`auth_failed`). Exit code 3; never retried. */
export class AuthFailedError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.AUTH_FAILED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AuthFailedError";
  }
}

/** Another client of the account is connected (`max_connections`). Exit code 4; never retried. */
export class MaxConnectionsError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.MAX_CONNECTIONS;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MaxConnectionsError";
  }
}

/**
 * The Polygon plan does not include what we asked for: every topic of the subscription was
 * refused, or `auth_failed` named the plan. Exit code 6; never retried.
 */
export class PlanError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.NOT_IN_PLAN;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PlanError";
  }
}

/**
 * `maxQuietSessions` subscribed sessions in a row got no quote at all: a pair Polygon does not
 * list, or a host without the channel. A configuration error: exit code 2.
 */
export class NoQuotesError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.USAGE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NoQuotesError";
  }
}

/**
 * The topics of `channel` (default `XQ`) for `pairs`: `XQ.<pair>` each, or only `XQ.*` when
 * `"*"` is among them.
 */
export function topicsFor(pairs: readonly string[], channel = "XQ"): string[] {
  if (pairs.includes("*")) return [`${channel}.*`];
  return [...new Set(pairs.map((p) => `${channel}.${p}`))];
}
