/**
 * The resend loop both Kafka sinks share: a batch the client gave up on is sent again, with a
 * doubling pause (no jitter: one sink, one batch in flight), until it is acknowledged or the sink
 * is closed. Closing ends a pause in progress, so a `close()` leaves no send behind.
 */
import { retry } from "../async.ts";
import { SinkClosedError } from "./errors.ts";

/** Options for {@linkcode resendUntilClosed}. */
export interface ResendOptions {
  /** Aborted when the sink closes. */
  closed: AbortSignal;
  /** The first pause, ms; it doubles up to 5 s. */
  minTimeout: number;
  /** Called before each pause with the failure and its attempt (1 for the first). */
  onRetry: (error: unknown, attempt: number) => void;
  /** False for a failure that must not be retried (it rejects at once); default all are. */
  shouldRetry?: (error: unknown) => boolean;
}

/**
 * Calls `send` until it resolves. Rejects with {@linkcode SinkClosedError} once `closed` aborts:
 * before an attempt, during a pause, or when an attempt fails after it (`cause`: the failure).
 */
export async function resendUntilClosed(
  send: () => Promise<void>,
  options: ResendOptions,
): Promise<void> {
  const { closed } = options;
  const isClosed = () => new SinkClosedError("Cannot send to Kafka: the sink is closed");
  try {
    await retry(async () => {
      if (closed.aborted) throw isClosed();
      try {
        await send();
      } catch (error) {
        if (closed.aborted) {
          throw new SinkClosedError("Cannot send to Kafka: the sink was closed while retrying", {
            cause: error,
          });
        }
        throw error;
      }
    }, {
      maxAttempts: Infinity,
      minTimeout: options.minTimeout,
      maxTimeout: 5_000,
      jitter: 0,
      signal: closed,
      shouldRetry: (error) =>
        !(error instanceof SinkClosedError) && (options.shouldRetry?.(error) ?? true),
      onRetry: options.onRetry,
    });
  } catch (error) {
    if (closed.aborted && error === closed.reason) throw isClosed();
    throw error;
  }
}
