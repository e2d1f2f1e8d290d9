/**
 * The Polygon crypto WebSocket client: a small explicit state machine over Deno's native
 * WebSocket that reconnects for as long as it runs.
 *
 * ```
 * disconnected ─▶ connecting ──open (or "connected"/"success")──▶ authenticating
 *   ──"auth_success"/"success"──▶ subscribing ──every topic answered──▶ streaming
 *        ▲                                                                   │
 *        └── backoff (exponential, full jitter) ◀── close, error, stale, quiet, force_disconnect,
 *                                                    slow_consumer, subscribe timeout
 * ```
 *
 * Final, never retried ({@linkcode PolygonClient.run} rejects): `auth_failed`
 * ({@linkcode AuthFailedError}, or {@linkcode PlanError} when the server names the plan),
 * `max_connections` ({@linkcode MaxConnectionsError}), every topic refused by the plan
 * ({@linkcode PlanError}) and `maxQuietSessions` subscribed sessions in a row without one quote
 * ({@linkcode NoQuotesError}). Every other loss reconnects, re-authenticates and resubscribes,
 * and the interval we were not listening is reported as a gap.
 *
 * Liveness: Polygon sends no heartbeat and Deno's WebSocket cannot send a ping, so an idle socket
 * (no frame for `probeAfterMs`) is probed in the protocol: the client subscribes again to a topic
 * it already has, which the server must answer with a confirmation. No frame at all for
 * `staleAfterMs` is a dead socket. A live socket without quotes is a quiet market, accepted up
 * to the longer `quietAfterMs`.
 *
 * Frames are handed to `onFrame` synchronously from the socket's message event: the read path
 * awaits nothing. The API key never appears in logs or errors.
 */
import type { Gap as GapOf } from "../gap.ts";
import { delay, exponentialBackoff, REAL_TIMERS, type Timers } from "../async.ts";
import { ConfigError } from "../config/errors.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { ProducerMetrics } from "../telemetry/metrics.ts";
import {
  AuthFailedError,
  MaxConnectionsError,
  NoQuotesError,
  PlanError,
  topicsFor,
} from "./protocol.ts";

/** The client's state; the `connectionState` gauge shows it as 0 to 4. */
export type PolygonState =
  /** No socket (before the first connect, or waiting out a backoff). */
  | "disconnected"
  /** Socket opening. */
  | "connecting"
  /** Auth sent, waiting for `auth_success` (or the older `success`). */
  | "authenticating"
  /** Subscribe sent, waiting for every topic's confirmation or refusal. */
  | "subscribing"
  /** Every topic answered (at least one confirmed), or the subscribe bound passed. */
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

/**
 * Why a connection was lost, with what each reason means; the `reason` label of the reconnects
 * counter. The reasons, their type and {@linkcode LOSS_REASON_LIST} all come from this one table.
 */
export const LOSS_REASONS = {
  closed: "the server closed the socket (or it dropped)",
  error: "the socket reported an error (refused, reset, TLS, …)",
  stale: "no frame for staleAfterMs, in any state (a probe went unanswered)",
  auth_timeout: "the server sent status auth_timeout",
  status: "the server sent status auth_required mid-stream",
  force_disconnect: "the server sent status force_disconnect",
  slow_consumer: "the server sent status slow_consumer: we read too slowly",
  quiet: "the socket answered, but no quote arrived for quietAfterMs",
  subscribe_timeout: "no topic was confirmed or refused within subscribeTimeoutMs",
} as const;

/** Why a connection was lost: a key of {@linkcode LOSS_REASONS}. */
export type LossReason = keyof typeof LOSS_REASONS;

/** Every {@linkcode LossReason}, in the table's order. */
export const LOSS_REASON_LIST: readonly LossReason[] = Object.keys(LOSS_REASONS) as LossReason[];

/** An interval during which we were not listening, lost for a {@linkcode LossReason}. */
export type Gap = GapOf<LossReason>;

/** A source of the current time in epoch ms. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export type { Timers } from "../async.ts";

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
  /** The channel subscribed for each pair: the transform's (`XQ` for spreads). Default `XQ`. */
  channel?: string;
  /**
   * Several channels on this one connection (e.g. `["XQ","XT","XA"]`): every pair on each, in
   * one subscribe message. Wins over `channel`. Default: `[channel]`.
   */
  channels?: readonly string[];
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
  /** Called for every lost connection, before its backoff: why, which attempt, how long. */
  onReconnect?: (reconnect: { reason: LossReason; attempt: number; delayMs: number }) => void;
  /** Log sink, one line per call; lines never hold the key. Default: none. */
  log?: (line: string) => void;
  /** Connection metrics: `connectionState`, `reconnects`, `gaps`, `gapSeconds`. Default none. */
  metrics?: ProducerMetrics;
  /** Receives every frame verbatim, before any handling (`--record`). Default none. */
  recorder?: FrameRecorder;
  /** Reconnect when no frame arrived for this long, in any state. Default 30000 ms. */
  staleAfterMs?: number;
  /** Probe an idle streaming socket after this long without a frame. Default `staleAfterMs / 2`. */
  probeAfterMs?: number;
  /** Reconnect a live socket when no quote arrived for this long. Default 300000 ms. */
  quietAfterMs?: number;
  /** Bound for the answers to a subscribe. Default the lesser of 10000 ms and `staleAfterMs`. */
  subscribeTimeoutMs?: number;
  /** Subscribed sessions in a row without a quote before {@linkcode NoQuotesError}. Default 3. */
  maxQuietSessions?: number;
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
  return exponentialBackoff(attempt, {
    minTimeout: options.baseMs ?? 500,
    maxTimeout: options.maxMs ?? DEFAULTS.backoffMaxMs,
    random: options.random,
  });
}

interface Loss {
  reason: LossReason;
  /** For the log: what happened, with values quoted. */
  detail: string;
  /** When the connection was lost, for the gap. */
  at: number;
  /** How long frames flowed after subscribing, or undefined if never subscribed. */
  streamedMs: number | undefined;
  /** Whether the session got its subscription answered (or its bound passed). */
  subscribed: boolean;
  /** Whether the session received at least one quote (a non-status event). */
  quoted: boolean;
}

interface Session {
  /** Resolves on loss, with undefined on abort; rejects on a final status. */
  ended: Promise<Loss | undefined>;
}

/** One connection's state, from socket creation to its loss. */
interface Connection {
  socket: WebSocket;
  signal: AbortSignal;
  /** Called on each `streaming` entry, for the gap and the log. */
  onStreaming: (at: number) => void;
  resolve: (loss: Loss | undefined) => void;
  reject: (error: unknown) => void;
  onAbort: () => void;
  /** The topics asked for on this connection. */
  topics: string[];
  /** Topics asked for and not yet confirmed. */
  pending: Set<string>;
  confirmed: Set<string>;
  /** The plan's refusals, in the server's words (they name no topic). */
  refusals: string[];
  /**
   * `status: "error"` replies during the subscribe that are not plan refusals (e.g. "internal
   * error, please retry"): they answer no topic, so while there is one no topic is dropped.
   */
  transient: number;
  /** The session has ended: every handler ignores what comes after. */
  settled: boolean;
  /** The subscription was answered (or its bound passed). */
  subscribed: boolean;
  /** At least one quote (a non-status event) arrived. */
  quoted: boolean;
  lastFrameAt: number;
  lastQuoteAt: number;
  /** When the subscribe bound passes, epoch ms. */
  subscribeBy: number;
  /** A liveness probe was sent and no frame has arrived since. */
  probed: boolean;
  /** When the session reached `streaming`, epoch ms. */
  streamingSince: number | undefined;
  /** The handle of the one timer, see `#check`. */
  timer: unknown;
}

const decoder = new TextDecoder();

/** The channels of some topics, for a message: `XQ crypto quotes`, or `XT, XA`. */
function channelsOf(topics: readonly string[]): string {
  const channels = [...new Set(topics.map((t) => t.split(".")[0]!))];
  return channels.length === 1 && channels[0] === "XQ" ? "XQ crypto quotes" : channels.join(", ");
}

/** The text of a frame (Polygon sends text; binary is decoded as UTF-8). */
function frameText(event: MessageEvent): string {
  const data = event.data;
  return typeof data === "string" ? data : decoder.decode(data as ArrayBuffer);
}

const DEFAULT_CLOCK: Clock = { now: () => Date.now() };
const SUBSCRIBED_PREFIX = "subscribed to: ";
/** A `success` status that is the connect event (one spec version), not an auth reply. */
const CONNECT_MESSAGE_RE = /^connected/i;
/** An `auth_failed` message about the plan rather than the key. */
const PLAN_MESSAGE_RE = /\bplan\b/i;
/**
 * A subscribe's `error` reply that refuses a topic for good: Polygon's "not authorized", or a
 * message naming the plan. Any other error text is transient and the topics are asked for again.
 */
const REFUSAL_MESSAGE_RE = /\bnot authori[sz]ed\b|\bplan\b/i;
/** How often one connection asks again for its unconfirmed topics after transient errors. */
const MAX_RESUBSCRIBES = 3;

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
  #probeAfterMs: number;
  #quietAfterMs: number;
  #subscribeTimeoutMs: number;
  #onFrame: (text: string, receivedAtMs: number) => void;
  #recorder: FrameRecorder | undefined;
  #quietSessions = 0;
  #state: PolygonState = "disconnected";
  #running = false;
  #closing = new Set<Promise<void>>();

  constructor(options: PolygonClientOptions) {
    if (options.pairs.length === 0) {
      throw new ConfigError("Cannot subscribe to Polygon: no pairs given (use --pairs)");
    }
    this.#options = options;
    this.#clock = options.clock ?? DEFAULT_CLOCK;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#topics = (options.channels ?? [options.channel ?? "XQ"]).flatMap((c) =>
      topicsFor(options.pairs, c)
    );
    this.#staleAfterMs = options.staleAfterMs ?? DEFAULTS.staleAfterMs;
    this.#probeAfterMs = options.probeAfterMs ?? this.#staleAfterMs / 2;
    this.#quietAfterMs = options.quietAfterMs ?? DEFAULTS.quietAfterMs;
    this.#subscribeTimeoutMs = options.subscribeTimeoutMs ?? Math.min(10_000, this.#staleAfterMs);
    this.#onFrame = options.onFrame;
    this.#recorder = options.recorder;
    // Every reason starts at 0: a series that exists reads as "none yet", not "no data".
    for (const reason of LOSS_REASON_LIST) options.metrics?.reconnects.inc({ reason }, 0);
  }

  /** Topics the plan refused while another was confirmed (they are not streamed). */
  get refused(): readonly string[] {
    return this.#refused;
  }
  #refused: string[] = [];

  /** The current state. */
  get state(): PolygonState {
    return this.#state;
  }

  /**
   * The topics subscribed on every connection, e.g. `["XQ.BTC-USD"]`; topics the plan refused
   * are dropped once another topic was confirmed.
   */
  get topics(): readonly string[] {
    return this.#topics;
  }

  /**
   * Connects and streams, reconnecting on every loss, until `signal` aborts; then closes the
   * socket and resolves. Rejects with {@linkcode AuthFailedError},
   * {@linkcode MaxConnectionsError}, {@linkcode PlanError} or {@linkcode NoQuotesError}, which
   * are never retried.
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
        if (loss.subscribed) {
          this.#quietSessions = loss.quoted ? 0 : this.#quietSessions + 1;
          const max = this.#options.maxQuietSessions ?? 3;
          if (this.#quietSessions >= max) {
            throw new NoQuotesError(
              `Cannot get quotes from Polygon at "${url}": ${this.#quietSessions} sessions in a ` +
                `row got no quote for ${this.#topics.join(",")} (last: ${loss.reason}: ` +
                `${this.#redact(loss.detail)}); check --pairs (BASE-QUOTE as Polygon lists ` +
                `them, e.g. BTC-USD) and that --url carries channel XQ`,
            );
          }
        }
        metrics?.reconnects.inc({ reason: loss.reason });
        const wait = backoffDelay(attempt, {
          baseMs: this.#options.backoffBaseMs,
          maxMs: this.#options.backoffMaxMs,
          random: this.#options.random,
        });
        attempt++;
        this.#options.onReconnect?.({ reason: loss.reason, attempt, delayMs: wait });
        const gapSoFar = lost === undefined
          ? ""
          : `; not listening for ${this.#clock.now() - lost.at} ms so far`;
        this.#log(
          `polygon: connection lost (${loss.reason}: ${this.#redact(loss.detail)}); ` +
            `reconnecting in ${wait} ms (attempt ${attempt})${gapSoFar}`,
        );
        await delay(wait, { signal, timers: this.#timers }).catch(() => {});
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

  /** `connecting`: makes the socket and wires its events; the session ends on its loss. */
  #connect(signal: AbortSignal, onStreaming: (at: number) => void): Session {
    const options = this.#options;
    const ended = Promise.withResolvers<Loss | undefined>();
    this.#setState("connecting");
    let socket: WebSocket;
    try {
      socket = (options.webSocketFactory ?? ((u: string) => new WebSocket(u)))(options.url);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      ended.reject(
        new ConfigError(
          `Cannot connect to Polygon at "${this.#redact(options.url)}": ${this.#redact(message)}`,
          { cause: error },
        ),
      );
      return { ended: ended.promise };
    }
    socket.binaryType = "arraybuffer";
    const now = this.#clock.now();
    const conn: Connection = {
      socket,
      signal,
      onStreaming,
      resolve: ended.resolve,
      reject: ended.reject,
      onAbort: () => this.#finish(conn, undefined),
      topics: [...this.#topics],
      pending: new Set(this.#topics),
      confirmed: new Set(),
      refusals: [],
      transient: 0,
      settled: false,
      subscribed: false,
      quoted: false,
      lastFrameAt: now,
      lastQuoteAt: now,
      subscribeBy: Number.POSITIVE_INFINITY,
      probed: false,
      streamingSince: undefined,
      timer: undefined,
    };
    socket.onopen = () => this.#authenticate(conn);
    socket.onmessage = (event: MessageEvent) => this.#onMessage(conn, event);
    socket.onerror = (event: Event) => {
      const message = event instanceof ErrorEvent ? event.message : "socket error";
      this.#lose(conn, "error", `"${message}"`);
    };
    socket.onclose = (event: CloseEvent) => {
      const reason = event.reason ? ` "${event.reason}"` : "";
      this.#lose(conn, "closed", `closed with code ${event.code}${reason}`);
    };
    signal.addEventListener("abort", conn.onAbort, { once: true });
    if (signal.aborted) this.#finish(conn, undefined);
    else conn.timer = this.#timers.setTimeout(() => this.#check(conn), this.#staleAfterMs);
    return { ended: ended.promise };
  }

  /** `connecting` → `authenticating`: the socket opened, or the server said it is connected. */
  #authenticate(conn: Connection): void {
    if (this.#state !== "connecting") return;
    this.#setState("authenticating");
    this.#send(conn, JSON.stringify({ action: "auth", params: this.#options.apiKey }));
  }

  /** `authenticating` → `subscribing`: the key was accepted; ask for every topic. */
  #subscribe(conn: Connection, at: number): void {
    this.#setState("subscribing");
    conn.subscribeBy = at + this.#subscribeTimeoutMs;
    this.#send(conn, JSON.stringify({ action: "subscribe", params: conn.topics.join(",") }));
    this.#reschedule(conn);
  }

  /**
   * Settles the subscription once every topic was confirmed or refused. After a transient error
   * refusals can no longer be matched to topics, so only every topic confirmed settles early.
   */
  #answered(conn: Connection, at: number): void {
    if (this.#state !== "subscribing") return;
    const answered = conn.transient > 0
      ? conn.confirmed.size
      : conn.confirmed.size + conn.refusals.length;
    if (answered >= conn.topics.length) this.#settle(conn, at);
  }

  /**
   * A transient `error` while subscribing: counted and logged; the topics not yet confirmed are
   * asked for again, at most {@linkcode MAX_RESUBSCRIBES} times a connection (then the subscribe
   * bound settles, and the next connection asks for them again).
   */
  #resubscribe(conn: Connection, quoted: string): void {
    conn.transient++;
    this.#options.metrics?.wsStatuses.inc({ status: "error" });
    const pending = conn.topics.filter((t) => !conn.confirmed.has(t));
    const again = conn.transient <= MAX_RESUBSCRIBES && pending.length > 0;
    this.#log(
      `polygon: status "error": "${quoted}" while subscribing; ` +
        (again
          ? `asking again for ${pending.join(",")}`
          : `not asking again on this connection (${MAX_RESUBSCRIBES} times already)`),
    );
    if (again) this.#send(conn, JSON.stringify({ action: "subscribe", params: pending.join(",") }));
  }

  /**
   * `subscribing` → `streaming`: every topic answered, or the bound passed. Ends the session
   * instead when the plan refused every topic (final) or nothing answered (a loss).
   */
  #settle(conn: Connection, at: number): void {
    if (this.#state !== "subscribing" || conn.settled) return;
    const { topics, confirmed, refusals } = conn;
    const subscribeTimeoutMs = this.#subscribeTimeoutMs;
    const unanswered = topics.filter((t) => !confirmed.has(t));
    const said = refusals.length > 0 ? ` (status "error": "${refusals[0]}")` : "";
    if (refusals.length > 0 && confirmed.size === 0) {
      return this.#finish(
        conn,
        undefined,
        new PlanError(
          `Cannot subscribe to ${topics.join(",")} on Polygon at ` +
            `"${this.#redact(this.#options.url)}": your Polygon plan does not include ` +
            `${channelsOf(topics)}${said}; upgrade the plan or use a key whose plan includes them`,
        ),
      );
    }
    conn.subscribed = true;
    if (confirmed.size === 0) {
      return this.#lose(
        conn,
        "subscribe_timeout",
        `no answer to subscribing ${unanswered.join(",")} within ${subscribeTimeoutMs} ms`,
        at,
      );
    }
    if (refusals.length > 0 && conn.transient === 0) {
      // The refusal names no topic: the refused ones are those never confirmed.
      this.#topics = topics.filter((t) => confirmed.has(t));
      this.#refused = unanswered;
      this.#log(
        `polygon: configuration: your Polygon plan does not include ${unanswered.join(",")}` +
          `${said}; streaming ${this.#topics.join(",")} only`,
      );
    } else if (unanswered.length > 0) {
      // Kept in the topics: the next connection asks for them again.
      this.#log(
        `polygon: no answer to subscribing ${unanswered.join(",")} within ` +
          `${subscribeTimeoutMs} ms${conn.transient > 0 ? ` (after status "error")` : ""}; ` +
          `streaming ${[...confirmed].join(",")}`,
      );
    }
    this.#setState("streaming");
    conn.streamingSince = at;
    conn.lastQuoteAt = at;
    conn.onStreaming(at);
    this.#reschedule(conn);
  }

  /**
   * Every frame, in any state: notes its time, hands it over (from `subscribing` on), then acts
   * on the status events in it. The read path awaits nothing.
   */
  #onMessage(conn: Connection, event: MessageEvent): void {
    if (conn.settled) return;
    const at = this.#clock.now();
    conn.lastFrameAt = at;
    conn.probed = false;
    const text = frameText(event);
    const state = this.#state;
    try {
      this.#recorder?.frame(text);
      if (state === "streaming" || state === "subscribing") this.#onFrame(text, at);
    } catch (error) {
      this.#finish(conn, undefined, error);
      return;
    }
    const hasData = !text.includes('"ev":"status"') || this.#onStatus(conn, text, at);
    if (hasData && (state === "streaming" || state === "subscribing")) {
      conn.quoted = true;
      conn.lastQuoteAt = at;
    }
  }

  /** Handles the status events of a frame; returns whether it also held another event. */
  #onStatus(conn: Connection, text: string, at: number): boolean {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return true; // Not JSON: the transform counts it.
    }
    const events = Array.isArray(parsed) ? parsed : [parsed];
    let other = false;
    for (const ev of events) {
      if (conn.settled) break;
      if (typeof ev !== "object" || ev === null || (ev as { ev?: unknown }).ev !== "status") {
        other = true;
        continue;
      }
      const e = ev as { status?: unknown; message?: unknown };
      const message = typeof e.message === "string" ? e.message : "";
      this.#onStatusEvent(conn, String(e.status), message, at);
    }
    return other;
  }

  /** One status event: moves the state machine on, ends the session, or is logged. */
  #onStatusEvent(conn: Connection, status: string, message: string, at: number): void {
    switch (status) {
      case "connected":
        return this.#authenticate(conn);
      case "auth_success":
      case "success":
        if (message.startsWith(SUBSCRIBED_PREFIX)) {
          const topic = message.slice(SUBSCRIBED_PREFIX.length).trim();
          if (conn.pending.delete(topic)) conn.confirmed.add(topic);
          return this.#answered(conn, at);
        }
        if (this.#state === "connecting") {
          // The connect event, in the spec version that says "success".
          return this.#authenticate(conn);
        }
        if (this.#state === "authenticating" && !CONNECT_MESSAGE_RE.test(message)) {
          return this.#subscribe(conn, at);
        }
        return;
      case "auth_failed":
      case "max_connections":
        return this.#finish(conn, undefined, this.#refusal(status, message));
      case "auth_timeout":
        return this.#lose(conn, "auth_timeout", `status "auth_timeout": "${message}"`, at);
      case "force_disconnect":
      case "slow_consumer":
        return this.#lose(conn, status, `status "${status}": "${message}"`, at);
      case "auth_required":
        return this.#lose(conn, "status", `status "${status}": "${message}"`, at);
    }
    const quoted = this.#redact(message);
    if (status === "error" && this.#state === "subscribing") {
      if (!REFUSAL_MESSAGE_RE.test(message)) return this.#resubscribe(conn, quoted);
      conn.refusals.push(quoted); // A refused topic; the reply names none.
      return this.#answered(conn, at);
    }
    // Elsewhere `error` and unknown statuses are logged and counted; the stream stays.
    this.#options.metrics?.wsStatuses.inc({ status: status.slice(0, 40) });
    this.#log(
      `polygon: status "${status}": "${quoted}" in state "${this.#state}"; staying connected`,
    );
  }

  /** The final error of an `auth_failed` or `max_connections` status. */
  #refusal(status: "auth_failed" | "max_connections", message: string): Error {
    const url = this.#redact(this.#options.url);
    const quoted = this.#redact(message);
    if (status === "max_connections") {
      return new MaxConnectionsError(
        `Cannot stream from Polygon at "${url}": another client of this account is connected ` +
          `(status "max_connections": "${quoted}"); stop the other client: Massive allows one ` +
          `connection per cluster per account, whatever the key (several producers: ` +
          `--standby-group)`,
      );
    }
    if (PLAN_MESSAGE_RE.test(message)) {
      return new PlanError(
        `Cannot stream from Polygon at "${url}": the server refused the key with ` +
          `"${quoted}" (status "auth_failed"); your Polygon plan does not ` +
          `include WebSocket access: upgrade the plan or use another key`,
      );
    }
    return new AuthFailedError(
      `Cannot authenticate with Polygon at "${url}": the server said ` +
        `"${quoted}" (status "auth_failed"); check POLYGON_API_KEY`,
    );
  }

  /** The one timer of a connection, for every deadline: stale, probe, quiet, subscribe. */
  #check(conn: Connection): void {
    if (conn.settled) return;
    const now = this.#clock.now();
    const idle = now - conn.lastFrameAt;
    const state = this.#state;
    // While subscribing, the subscribe bound replaces staleness: its end is counted as a
    // session without quotes, so a host that never answers cannot loop forever.
    if (state === "subscribing") {
      if (now >= conn.subscribeBy) return this.#settle(conn, now);
    } else if (idle >= this.#staleAfterMs) {
      const probe = conn.probed ? " (a liveness probe went unanswered)" : "";
      return this.#lose(
        conn,
        "stale",
        `no frame for ${idle} ms in state "${state}"${probe}`,
        conn.lastFrameAt,
      );
    }
    if (state === "streaming") {
      if (now - conn.lastQuoteAt >= this.#quietAfterMs) {
        return this.#lose(
          conn,
          "quiet",
          `no quote for ${now - conn.lastQuoteAt} ms on ${conn.topics.join(",")}, though the ` +
            `socket answers`,
          now,
        );
      }
      if (!conn.probed && idle >= this.#probeAfterMs) {
        conn.probed = true;
        this.#options.metrics?.wsProbes.inc();
        // Subscribing again to a confirmed topic is harmless and must be answered.
        const topic = [...conn.confirmed][0] ?? conn.topics[0]!;
        this.#send(conn, JSON.stringify({ action: "subscribe", params: topic }));
      }
    }
    let next = state === "subscribing" ? conn.subscribeBy : conn.lastFrameAt + this.#staleAfterMs;
    if (state === "streaming") {
      next = Math.min(next, conn.lastQuoteAt + this.#quietAfterMs);
      if (!conn.probed) next = Math.min(next, conn.lastFrameAt + this.#probeAfterMs);
    }
    conn.timer = this.#timers.setTimeout(() => this.#check(conn), Math.max(0, next - now));
  }

  #reschedule(conn: Connection): void {
    this.#timers.clearTimeout(conn.timer);
    this.#check(conn);
  }

  #send(conn: Connection, text: string): void {
    try {
      conn.socket.send(text);
    } catch {
      // Closing: the close event reports the loss.
    }
  }

  /** Ends the session on a loss. */
  #lose(conn: Connection, reason: LossReason, detail: string, at = this.#clock.now()): void {
    const streamedMs = conn.streamingSince === undefined
      ? undefined
      : Math.max(0, conn.lastFrameAt - conn.streamingSince);
    this.#finish(conn, {
      reason,
      detail,
      at,
      streamedMs,
      subscribed: conn.subscribed,
      quoted: conn.quoted,
    });
  }

  /** Ends the session: with a loss, with undefined on abort, or with a final error. */
  #finish(conn: Connection, loss: Loss | undefined, error?: unknown): void {
    if (conn.settled) return;
    conn.settled = true;
    this.#timers.clearTimeout(conn.timer);
    conn.signal.removeEventListener("abort", conn.onAbort);
    // Frames already in flight when we chose to close are data: hand them over, unless the
    // end is final (auth_failed, max_connections, a refused plan, a throwing onFrame).
    const passing = this.#state === "subscribing" || this.#state === "streaming";
    const drain = error !== undefined ? undefined : (event: MessageEvent) => {
      const text = frameText(event);
      try {
        this.#recorder?.frame(text);
        if (passing) this.#onFrame(text, this.#clock.now());
      } catch (e) {
        this.#log(`polygon: a frame handler failed while closing: ${String(e)}`);
      }
    };
    this.#release(conn.socket, loss === undefined && error === undefined ? 1000 : 4000, drain);
    this.#setState("disconnected");
    if (error !== undefined) conn.reject(error);
    else conn.resolve(loss);
  }

  /**
   * Closes a socket we are done with, tracking the close so `run` can wait for it; `drain`
   * receives the frames that arrive until it is closed.
   */
  #release(socket: WebSocket, code: number, drain?: (event: MessageEvent) => void): void {
    socket.onmessage = drain ?? null;
    socket.onopen = null;
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
