/** The Kafka boundary's defaults and the lease that fences a leader. */
import { DEFAULTS } from "../config/defaults.ts";

// The adapters' names and the default are declared with the settings (config.ts), once.
export { DEFAULT_KAFKA_CLIENT, KAFKA_CLIENTS } from "../config/defaults.ts";

/**
 * The default consumer session timeout: 6 s, the smallest a stock broker (and Aiven) accepts
 * (`group.min.session.timeout.ms`). A crashed consumer's partitions move after this long; a
 * consumer that cannot heartbeat for this long (a stalled process) loses them and its
 * uncommitted records are read again by the member that takes over.
 */
export const DEFAULT_SESSION_TIMEOUT_MS: number = DEFAULTS.sessionTimeoutMs;

/** The election's default heartbeat interval: a standby learns of a handover this fast. */
export const ELECTION_HEARTBEAT_MS = 500;

/**
 * A leader's lease, for fencing: the broker removes a member `sessionTimeoutMs` after the last
 * heartbeat it received, and it received the last acknowledged one no earlier than that
 * heartbeat was sent. So until `sent + sessionTimeoutMs - marginMs` no other member can hold the
 * partition. A paused process (GC, SIGSTOP) finds its lease expired the moment it runs again.
 */
export class Lease {
  #sessionTimeoutMs: number;
  #marginMs: number;
  #until = -Infinity;
  #now: () => number;
  constructor(sessionTimeoutMs: number, marginMs: number, now = () => performance.now()) {
    this.#sessionTimeoutMs = sessionTimeoutMs;
    this.#marginMs = marginMs;
    this.#now = now;
  }
  /** A heartbeat (or join) sent at `sentAt` (from `now`) was acknowledged. */
  renew(sentAt: number): void {
    this.#until = Math.max(this.#until, sentAt + this.#sessionTimeoutMs - this.#marginMs);
  }
  /** Ends the lease now. */
  end(): void {
    this.#until = -Infinity;
  }
  /** Whether the lease still runs. */
  valid(): boolean {
    return this.#now() < this.#until;
  }
  /** The current time on the lease's clock. */
  now(): number {
    return this.#now();
  }
}
