/**
 * A fence at the wire for @platformatic/kafka producers: the last check before a produce request
 * is written to the socket. A producer that passed every earlier check and was then paused (a
 * long GC pause, SIGSTOP, a frozen VM) resumes with that request still inside the client, which
 * would write it as soon as it runs again, after another producer has taken over. Here the
 * client's own `connections:api` trace, published synchronously right before each socket write,
 * asks the producer's fence; when the fence says no, the connection is destroyed before the
 * write, so the request never reaches the broker (its callers see a closed connection).
 *
 * A connection carries its producer's fence in its `context` (the client's `context` option),
 * so only producers created with a fence are checked.
 */
import { tracingChannel } from "node:diagnostics_channel";

/** What a fenced producer's connections carry as their `context`. */
export interface WireFenceContext {
  /** True while this producer may write; asked before every produce request goes out. */
  readonly mayWrite: () => boolean;
  /** Called once per produce request stopped at the wire. */
  readonly stopped?: () => void;
}

/** Kafka's API key of Produce. */
const PRODUCE_API_KEY = 0;

/** The client's tracing channel of every request a connection writes. */
const CHANNEL = "plt:kafka:connections:api";

/** The part of the client's diagnostic context this fence reads. */
interface ApiTrace {
  operation?: string;
  apiKey?: number;
  connection?: { context?: unknown; socket?: { destroy(): void } };
}

function isFenceContext(value: unknown): value is WireFenceContext {
  return typeof (value as Partial<WireFenceContext> | undefined)?.mayWrite === "function";
}

/** Checks one request about to be written; exported for tests. */
export function checkAtWire(trace: ApiTrace): boolean {
  if (trace.operation !== "send" || trace.apiKey !== PRODUCE_API_KEY) return true;
  const context = trace.connection?.context;
  if (!isFenceContext(context) || context.mayWrite()) return true;
  // Destroyed without an error: the client sees the connection close (its requests fail with
  // "Connection closed") and writes nothing more on it.
  trace.connection?.socket?.destroy();
  context.stopped?.();
  return false;
}

let installed = false;

/** Subscribes the fence to the client's trace, once per process. */
export function installWireFence(): void {
  if (installed) return;
  installed = true;
  tracingChannel(CHANNEL).subscribe({
    start: (message) => void checkAtWire(message as ApiTrace),
    end: () => {},
    asyncStart: () => {},
    asyncEnd: () => {},
    error: () => {},
  });
}
