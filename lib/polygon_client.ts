/**
 * The Polygon crypto WebSocket client: a small explicit state machine over Deno's native
 * WebSocket that reconnects for as long as it runs.
 *
 * ```
 * disconnected ─▶ connecting ──"connected"──▶ authenticating ──"auth_success"/"success"──▶
 *   subscribing ──every topic confirmed──▶ streaming
 *        ▲                                                                   │
 *        └──── backoff (exponential, full jitter) ◀── close, error, stale, error status
 * ```
 *
 * `auth_failed` and `max_connections` are final: {@linkcode PolygonClient.run} rejects with
 * {@linkcode AuthFailedError} or {@linkcode MaxConnectionsError} and never retries. Every other
 * loss reconnects, re-authenticates and resubscribes, and the interval we were not listening is
 * reported as a gap. Frames are handed to `onFrame` synchronously from the socket's message
 * event: the read path awaits nothing. The API key never appears in logs or errors.
 */
import { ConfigError, EXIT } from "./config.ts";
import type { ProducerMetrics } from "./metrics.ts";

/** The client's state; the `connectionState` gauge shows it as 0 to 4. */
export type PolygonState =
  /** No socket (before the first connect, or waiting out a backoff). */
  | "disconnected"
  /** Socket opening, waiting for the `connected` status. */
  | "connecting"
  /** Auth sent, waiting for `auth_success` (or the older `success`). */
  | "authenticating"
  /** Subscribe sent, waiting for every topic's confirmation. */
  | "subscribing"
  /** Every topic confirmed. */
  | "streaming"
  /** `run` has returned or thrown. */
  | "stopped";

const STATE_GAUGE: Record<PolygonState, number> = {
  disconnected: 0,
  connecting: 1,
  authenticating: 2,
  subscribing: 3,
  streaming: 4,
  stopped: 0,
};

/** Why a connection was lost; the `reason` label of the reconnects counter. */
export type LossReason =
  /** The server closed the socket (or it dropped). */
  | "closed"
  /** The socket reported an error (refused, reset, TLS, …). */
  | "error"
  /** No frame for `staleAfterMs`, in any state. */
  | "stale"
  /** The server sent status `auth_timeout`. */
  | "auth_timeout"
  /** The server sent another error status. */
  | "status";

/** An interval during which we were not listening. */
export interface Gap {
  /** When the connection was lost (for staleness: when its last frame arrived), epoch ms. */
  from: number;
  /** When every topic was confirmed again (or the client stopped), epoch ms. */
  to: number;
  /** Why the connection that opened the gap was lost. */
  reason: LossReason;
}

/** A source of the current time in epoch ms. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** Timer functions, injectable so tests control time. */
export interface Timers {
  /** Calls `fn` once after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer made by `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/** Receives every frame verbatim, e.g. a JSON Lines recording writer (`--record`). */
export interface FrameRecorder {
  /** Called synchronously with the text of every frame received. */
  frame(text: string): void;
}

/** Options for {@linkcode PolygonClient}. */
export interface PolygonClientOptions {
  /** The crypto WebSocket URL, e.g. `wss://socket.polygon.io/crypto`. Required. */
  url: string;
  /** The API key, sent in the auth action only. Required. */
  apiKey: string;
  /** Pairs to subscribe to on channel XQ (e.g. `["BTC-USD"]`); `"*"` means all. Required. */
  pairs: readonly string[];
  /**
   * Called synchronously for every frame received after authentication (subscription
   * confirmations and data; the transform counts status events as skips), with the local
   * receive time. It must not block: push into a bounded queue. Required.
   */
  onFrame: (text: string, receivedAtMs: number) => void;
  /** Called for every interval we were not listening, the first connect excluded. */
  onGap?: (gap: Gap) => void;
  /** Called on every state change. */
  onState?: (state: PolygonState) => void;
  /** Log sink, one line per call; lines never hold the key. Default: none. */
  log?: (line: string) => void;
  /** Connection metrics: `connectionState`, `reconnects`, `gaps`, `gapSeconds`. Default none. */
  metrics?: ProducerMetrics;
  /** Receives every frame verbatim, before any handling (`--record`). Default none. */
  recorder?: FrameRecorder;
  /** Reconnect when no frame arrived for this long, in any state. Default 30000 ms. */
  staleAfterMs?: number;
  /** Backoff ceiling of the first retry; doubles per failed attempt. Default 500 ms. */
  backoffBaseMs?: number;
  /** Cap of the backoff. Default 30000 ms. */
  backoffMaxMs?: number;
  /** Frames flowing this long after subscribing resets the backoff. Default 60000 ms. */
  healthyAfterMs?: number;
  /** How long to wait for a socket to finish closing. Default 1000 ms (real time). */
  closeTimeoutMs?: number;
  /** Clock for staleness, gaps and health. Default `Date`. */
  clock?: Clock;
  /** Timers for staleness checks and backoff. Default the global ones. */
  timers?: Timers;
  /** Uniform random in [0, 1) for jitter. Default `Math.random`. */
  random?: () => number;
  /** Makes the socket. Default `(url) => new WebSocket(url)`. */
  webSocketFactory?: (url: string) => WebSocket;
}

/** Polygon rejected the API key (`auth_failed`). Exit code 3; never retried. */
export class AuthFailedError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.AUTH_FAILED;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AuthFailedError";
  }
}

/** Another client is using the API key (`max_connections`). Exit code 4; never retried. */
export class MaxConnectionsError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.MAX_CONNECTIONS;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MaxConnectionsError";
  }
}

/** Options for {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** Ceiling of attempt 0. Default 500 ms. */
  baseMs?: number;
  /** Cap of every ceiling. Default 30000 ms. */
  maxMs?: number;
  /** Uniform random in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter,
 * `floor(random() × min(maxMs, baseMs × 2^attempt))`.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

/** The XQ topics for `pairs`: `XQ.<pair>` each, or only `XQ.*` when `"*"` is among them. */
export function topicsFor(pairs: readonly string[]): string[] {
  if (pairs.includes("*")) return ["XQ.*"];
  return [...new Set(pairs.map((p) => `XQ.${p}`))];
}

interface Loss {
  reason: LossReason;
  /** For the log: what happened, with values quoted. */
  detail: string;
  /** When the connection was lost, for the gap. */
  at: number;
  /** How long frames flowed after subscribing, or undefined if never subscribed. */
  streamedMs: number | undefined;
}

interface Session {
  /** Resolves on loss, with undefined on abort; rejects on a final status. */
  ended: Promise<Loss | undefined>;
}

const DEFAULT_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};
const DEFAULT_CLOCK: Clock = { now: () => Date.now() };
const SUBSCRIBED_PREFIX = "subscribed to: ";

/**
 * A Polygon crypto WebSocket client that reconnects until aborted.
 * @example
 * ```ts
 * const client = new PolygonClient({
 *   url: "wss://socket.polygon.io/crypto",
 *   apiKey,
 *   pairs: ["BTC-USD"],
 *   onFrame: (text, at) => queue.push(text, at),
 *   onGap: (gap) => gaps.push(gap),
 * });
 * await client.run(controller.signal); // resolves on abort; rejects on auth_failed / max_connections
 * ```
 */
export class PolygonClient {
  #options: PolygonClientOptions;
  #clock: Clock;
  #timers: Timers;
  #topics: string[];
  #staleAfterMs: number;
  #state: PolygonState = "disconnected";
  #running = false;
  #closing = new Set<Promise<void>>();

  constructor(options: PolygonClientOptions) {
    if (options.pairs.length === 0) {
      throw new ConfigError("Cannot subscribe to Polygon: no pairs given (use --pairs)");
    }
    this.#options = options;
    this.#clock = options.clock ?? DEFAULT_CLOCK;
    this.#timers = options.timers ?? DEFAULT_TIMERS;
    this.#topics = topicsFor(options.pairs);
    this.#staleAfterMs = options.staleAfterMs ?? 30_000;
  }

  /** The current state. */
  get state(): PolygonState {
    return this.#state;
  }

  /** The topics subscribed on every connection, e.g. `["XQ.BTC-USD"]`. */
  get topics(): readonly string[] {
    return this.#topics;
  }

  /**
   * Connects and streams, reconnecting on every loss, until `signal` aborts; then closes the
   * socket and resolves. Rejects with {@linkcode AuthFailedError} or
   * {@linkcode MaxConnectionsError}, which are never retried.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new Error("Cannot run the Polygon client: it is already running");
    this.#running = true;
    const metrics = this.#options.metrics;
    const url = this.#redact(this.#options.url);
    let attempt = 0;
    let everStreamed = false;
    let lost: Loss | undefined;
    const onStreaming = (at: number) => {
      if (lost !== undefined) {
        const gap = lost;
        lost = undefined;
        this.#log(
          `polygon: streaming again from "${url}" after a gap of ${at - gap.at} ms ` +
            `(reason "${gap.reason}")`,
        );
        this.#reportGap({ from: gap.at, to: at, reason: gap.reason });
      } else if (!everStreamed) {
        this.#log(`polygon: streaming ${this.#topics.join(",")} from "${url}"`);
      }
      everStreamed = true;
    };
    try {
      while (!signal.aborted) {
        const loss = await this.#connect(signal, onStreaming).ended;
        if (loss === undefined) break;
        if (
          loss.streamedMs !== undefined &&
          loss.streamedMs >= (this.#options.healthyAfterMs ?? 60_000)
        ) {
          attempt = 0;
        }
        if (everStreamed && lost === undefined) lost = loss;
        metrics?.reconnects.inc({ reason: loss.reason });
        const delay = backoffDelay(attempt, {
          baseMs: this.#options.backoffBaseMs,
          maxMs: this.#options.backoffMaxMs,
          random: this.#options.random,
        });
        attempt++;
        const gapSoFar = lost === undefined
          ? ""
          : `; not listening for ${this.#clock.now() - lost.at} ms so far`;
        this.#log(
          `polygon: connection lost (${loss.reason}: ${this.#redact(loss.detail)}); ` +
            `reconnecting in ${delay} ms (attempt ${attempt})${gapSoFar}`,
        );
        await this.#sleep(delay, signal);
      }
      this.#log("polygon: stopped");
    } finally {
      // Stopped (or failed) while not listening: that interval is a gap too.
      if (lost !== undefined) {
        this.#reportGap({ from: lost.at, to: this.#clock.now(), reason: lost.reason });
      }
      this.#setState("stopped");
      await Promise.all(this.#closing);
      this.#running = false;
    }
  }

  #reportGap(gap: Gap): void {
    const metrics = this.#options.metrics;
    metrics?.gaps.inc();
    metrics?.gapSeconds.inc(Math.max(0, gap.to - gap.from) / 1000);
    this.#options.onGap?.(gap);
  }

  /** One connection, from socket creation to its loss. */
  #connect(signal: AbortSignal, onStreaming: (at: number) => void): Session {
    const options = this.#options;
    const clock = this.#clock;
    const timers = this.#timers;
    const staleAfterMs = this.#staleAfterMs;
    const onFrame = options.onFrame;
    const recorder = options.recorder;
    const url = this.#redact(options.url);
    let resolve!: (loss: Loss | undefined) => void;
    let reject!: (error: unknown) => void;
    const ended = new Promise<Loss | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#setState("connecting");
    let socket: WebSocket;
    try {
      socket = (options.webSocketFactory ?? ((u: string) => new WebSocket(u)))(options.url);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      reject(
        new ConfigError(`Cannot connect to Polygon at "${url}": ${this.#redact(message)}`, {
          cause: error,
        }),
      );
      return { ended };
    }
    socket.binaryType = "arraybuffer";
    const pending = new Set(this.#topics);
    const subscribe = JSON.stringify({ action: "subscribe", params: this.#topics.join(",") });
    let settled = false;
    let lastFrameAt = clock.now();
    let streamingSince: number | undefined;
    let staleTimer: unknown;
    const decoder = new TextDecoder();

    const finish = (loss: Loss | undefined, error?: unknown) => {
      if (settled) return;
      settled = true;
      timers.clearTimeout(staleTimer);
      signal.removeEventListener("abort", onAbort);
      // Frames already in flight when we chose to close are data: hand them over, unless the
      // end is final (auth_failed, max_connections, a throwing onFrame).
      const passing = this.#state === "subscribing" || this.#state === "streaming";
      const drain = error !== undefined ? undefined : (event: MessageEvent) => {
        const data = event.data;
        const text = typeof data === "string" ? data : decoder.decode(data as ArrayBuffer);
        try {
          recorder?.frame(text);
          if (passing) onFrame(text, clock.now());
        } catch (e) {
          this.#log(`polygon: a frame handler failed while closing: ${String(e)}`);
        }
      };
      this.#release(socket, loss === undefined && error === undefined ? 1000 : 4000, drain);
      this.#setState("disconnected");
      if (error !== undefined) reject(error);
      else resolve(loss);
    };
    const lose = (reason: LossReason, detail: string, at = clock.now()) => {
      const streamedMs = streamingSince === undefined
        ? undefined
        : Math.max(0, lastFrameAt - streamingSince);
      finish({ reason, detail, at, streamedMs });
    };
    const onAbort = () => finish(undefined);
    const checkStale = () => {
      if (settled) return;
      const idle = clock.now() - lastFrameAt;
      if (idle >= staleAfterMs) {
        lose("stale", `no frame for ${idle} ms in state "${this.#state}"`, lastFrameAt);
      } else {
        staleTimer = timers.setTimeout(checkStale, staleAfterMs - idle);
      }
    };

    const onStatus = (text: string, at: number) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return; // Not JSON: the transform counts it.
      }
      const events = Array.isArray(parsed) ? parsed : [parsed];
      for (const ev of events) {
        if (settled) return;
        if (typeof ev !== "object" || ev === null || (ev as { ev?: unknown }).ev !== "status") {
          continue;
        }
        const e = ev as { status?: unknown; message?: unknown };
        const status = String(e.status);
        const message = typeof e.message === "string" ? e.message : "";
        switch (status) {
          case "connected":
            if (this.#state === "connecting") {
              this.#setState("authenticating");
              socket.send(JSON.stringify({ action: "auth", params: options.apiKey }));
            }
            break;
          case "auth_success":
          case "success":
            if (message.startsWith(SUBSCRIBED_PREFIX)) {
              pending.delete(message.slice(SUBSCRIBED_PREFIX.length).trim());
              if (this.#state === "subscribing" && pending.size === 0) {
                this.#setState("streaming");
                streamingSince = at;
                onStreaming(at);
              }
            } else if (this.#state === "authenticating") {
              this.#setState("subscribing");
              socket.send(subscribe);
            }
            break;
          case "auth_failed":
            finish(
              undefined,
              new AuthFailedError(
                `Cannot authenticate with Polygon at "${url}": the API key was rejected ` +
                  `(status "auth_failed": "${this.#redact(message)}"); check POLYGON_API_KEY`,
              ),
            );
            break;
          case "max_connections":
            finish(
              undefined,
              new MaxConnectionsError(
                `Cannot stream from Polygon at "${url}": another client is using this API key ` +
                  `(status "max_connections": "${this.#redact(message)}"); stop the other ` +
                  `client or use another key`,
              ),
            );
            break;
          case "auth_timeout":
            lose("auth_timeout", `status "auth_timeout": "${message}"`, at);
            break;
          default:
            lose("status", `status "${status}": "${message}"`, at);
        }
      }
    };

    socket.onmessage = (event: MessageEvent) => {
      if (settled) return;
      const at = clock.now();
      lastFrameAt = at;
      const data = event.data;
      const text = typeof data === "string" ? data : decoder.decode(data as ArrayBuffer);
      const state = this.#state;
      try {
        recorder?.frame(text);
        if (state === "streaming" || state === "subscribing") onFrame(text, at);
      } catch (error) {
        finish(undefined, error);
        return;
      }
      if (text.includes('"ev":"status"')) onStatus(text, at);
    };
    socket.onerror = (event: Event) => {
      const message = event instanceof ErrorEvent ? event.message : "socket error";
      lose("error", `"${message}"`);
    };
    socket.onclose = (event: CloseEvent) => {
      const reason = event.reason ? ` "${event.reason}"` : "";
      lose("closed", `closed with code ${event.code}${reason}`);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) finish(undefined);
    else staleTimer = timers.setTimeout(checkStale, staleAfterMs);
    return { ended };
  }

  /**
   * Closes a socket we are done with, tracking the close so `run` can wait for it; `drain`
   * receives the frames that arrive until it is closed.
   */
  #release(socket: WebSocket, code: number, drain?: (event: MessageEvent) => void): void {
    socket.onmessage = drain ?? null;
    socket.onerror = null;
    socket.onclose = null;
    if (socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#options.closeTimeoutMs ?? 1000);
      function done() {
        clearTimeout(timer);
        socket.removeEventListener("close", done);
        resolve();
      }
      socket.addEventListener("close", done);
    });
    const tracked = closed.finally(() => this.#closing.delete(tracked));
    this.#closing.add(tracked);
    try {
      socket.close(code);
    } catch {
      // Already closing.
    }
  }

  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        this.#timers.clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = this.#timers.setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #setState(state: PolygonState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#options.metrics?.connectionState.set(STATE_GAUGE[state]);
    this.#options.onState?.(state);
  }

  #log(line: string): void {
    this.#options.log?.(this.#redact(line));
  }

  #redact(text: string): string {
    const key = this.#options.apiKey;
    return key === "" ? text : text.split(key).join("***");
  }
}
