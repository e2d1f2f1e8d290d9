/**
 * A fake Polygon crypto WebSocket server for the demo, the tests and the benchmarks. It speaks
 * the real protocol (connected, auth, subscribe with one confirmation per topic, data frames that
 * are JSON arrays, one connection per key) on 127.0.0.1, port 0 by default, and replays frames
 * (for example the lines of a JSON Lines recording) verbatim, paced or as fast as possible.
 *
 * Replay has one cursor shared by every connection: after a reconnect, the next subscribed
 * connection continues where the previous one stopped, so no frame is sent twice and none is
 * skipped, unless a fault says otherwise. Faults are scripted per connection with
 * {@linkcode FakeConnectionScript}: refuse the upgrade, send the connect event as `success`,
 * answer auth with a chosen status and message, drop, go silent (a quiet market: control messages
 * are still answered), vanish (a connection dropped without a close frame: nothing sent or
 * answered any more), evict, send a status mid-stream (alone or in a data frame), send garbage,
 * burst. Server-wide, a plan can refuse topics (`notInPlan`) and a host can lack a channel
 * (`channels`: such topics get no answer at all). A topic whose pair never appears in the frames
 * is confirmed and stays silent, as Polygon does with a misspelt pair.
 *
 * @example
 * ```ts
 * const fake = startFakePolygon({ frames: lines, apiKey: "k", faults: [{ dropAfter: 100 }] });
 * try {
 *   // connect a client to fake.url …
 *   await fake.done; // every frame has been sent
 * } finally {
 *   await fake.close();
 * }
 * ```
 */

import { deadline, delay } from "../async.ts";

/** A status the fake can send in reply to an `auth` action. */
export type FakeAuthReply =
  /** The current reply: `auth_success`, message "authenticated" (wrong key: `auth_failed`). */
  | "auth_success"
  /** The older servers' reply: `success`, message "authenticated". */
  | "success"
  /** `auth_failed`, message "authentication failed", then close. */
  | "auth_failed"
  /** `auth_timeout`, then close. */
  | "auth_timeout"
  /** `max_connections`, then close. */
  | "max_connections"
  /** No reply at all; the socket stays open. */
  | "none";

/** Faults for one connection. Frame counts are data frames sent on that connection. */
export interface FakeConnectionScript {
  /** Answer the HTTP upgrade request with this status (e.g. 503) instead of accepting it. */
  refuse?: number;
  /** Do not send the `connected` status on open (the client then times out). Default false. */
  noConnected?: boolean;
  /** The connect event's status: `connected`, or `success` as one spec version shows. */
  connectEvent?: "connected" | "success";
  /** Reply to `auth` with this status whatever the key; default: check the key. */
  auth?: FakeAuthReply;
  /** The message of the auth reply, e.g. a plan without WebSocket access. Default per status. */
  authMessage?: string;
  /** Close the connection (code 1011) after sending this many data frames on it. */
  dropAfter?: number;
  /** Stop sending after this many data frames; the socket stays open, nothing more is sent. */
  silentAfter?: number;
  /**
   * After this many data frames the connection is dead without a close frame, as when a network
   * path drops: nothing more is sent, nothing is answered, the socket stays open.
   */
  vanishAfter?: number;
  /** Send status `max_connections` and close after this many data frames (eviction). */
  evictAfter?: number;
  /** Send a status mid-stream; see {@linkcode FakeStatusFault}. */
  status?: FakeStatusFault;
  /** Send these frames verbatim after `after` data frames (they do not advance the replay). */
  garbage?: { after: number; frames: readonly string[] };
  /** Send `count` frames unpaced, starting after `after` data frames, whatever the pace. */
  burst?: { after: number; count: number };
}

/** A status sent mid-stream, e.g. `force_disconnect`, `slow_consumer`, `error`, an unknown one. */
export interface FakeStatusFault {
  /** Send it after this many data frames on the connection. */
  after: number;
  /** The `status` field. */
  status: string;
  /** The `message` field. Default: the status. */
  message?: string;
  /** Put it first in the same frame as the next data frame. Default false (a frame of its own). */
  withData?: boolean;
  /** Close the connection (code 1008) after it. Default: for `force_disconnect`, `slow_consumer`. */
  close?: boolean;
}

/** Options for {@linkcode startFakePolygon}. */
export interface FakePolygonOptions {
  /**
   * Frame texts to replay, verbatim, in order (e.g. the lines of a JSON Lines recording).
   * A `Uint8Array` is sent as a binary frame, verbatim and unfiltered (for hostile-input tests:
   * a text frame can only carry valid UTF-8). Default: none (the server speaks the protocol and
   * sends no data).
   */
  frames?: Iterable<FakeFrame> | AsyncIterable<FakeFrame>;
  /** Skip a first frame that is a recording header (`{"recording":…}`). Default true. */
  skipHeader?: boolean;
  /** Skip empty frames (e.g. the trailing line of a file). Default true. */
  skipEmpty?: boolean;
  /** The API key the server accepts; another key gets `auth_failed`. Default: any key. */
  apiKey?: string;
  /**
   * Topics the key's plan does not include (`"*"`: every topic). A subscribe to one is answered
   * `{"ev":"status","status":"error","message":"not authorized"}`, naming no topic. Default none.
   */
  notInPlan?: readonly string[];
  /** Channels this host carries (e.g. `["XQ"]`); topics of others get no answer. Default all. */
  channels?: readonly string[];
  /**
   * Pace by the events' exchange time `t`: 1 is real time, 10 ten times faster. Default 0, as
   * fast as the socket drains. The clock restarts at each (re)subscription.
   */
  speed?: number;
  /** Pace at this many frames per second instead (wins over `speed`). Default 0, unpaced. */
  rate?: number;
  /** Send `auth_timeout` and close when no auth arrives within this many ms. Default 10000. */
  authTimeoutMs?: number;
  /**
   * Faults by connection number (0 is the first upgrade request, refused ones included), as an
   * array or a function. Default: none.
   */
  faults?: readonly (FakeConnectionScript | undefined)[] | FakeScriptFn;
  /** A newer authenticated connection evicts an older one with the same key. Default true. */
  evict?: boolean;
  /**
   * A live feed, as Polygon is: frames go out at `rate` per second whether or not anyone is
   * subscribed, and those sent while no connection was subscribed are lost to the client
   * (counted in `framesMissed`, their replay positions in `missed`). Needs `rate`. Faults that
   * pace the replay (`burst`, garbage, statuses) are not applied. Default false.
   */
  live?: boolean;
  /** Wait while a socket holds more than this many unsent bytes. Default 1 MiB. */
  highWaterMark?: number;
  /** Interface to bind. Default "127.0.0.1". */
  hostname?: string;
  /** Port to bind. Default 0 (any free port). */
  port?: number;
}

/** A frame to replay: text (a text frame), or bytes (a binary frame). */
export type FakeFrame = string | Uint8Array;

/** Returns the faults of connection number `connection` (0-based). */
export type FakeScriptFn = (connection: number) => FakeConnectionScript | undefined;

/** Live counters of a {@linkcode FakePolygon}. */
export interface FakePolygonStats {
  /** HTTP upgrade requests received, refused ones included. */
  connections: number;
  /** Upgrade requests refused by a `refuse` fault. */
  refused: number;
  /** `auth` actions received. */
  auths: number;
  /** Successful authentications. */
  authSuccesses: number;
  /** `params` of every `subscribe` action received, in order. */
  subscriptions: string[];
  /** Data frames sent (replayed frames, garbage excluded). */
  framesSent: number;
  /** Replayed frames not sent because no event in them was subscribed. */
  framesFiltered: number;
  /** Garbage frames sent. */
  garbageSent: number;
  /** Subscriptions refused as not in the plan (`notInPlan`). */
  refusals: number;
  /** Topics left unanswered (a channel outside `channels`). */
  unanswered: number;
  /** Position of the replay: frames consumed (sent or filtered). */
  cursor: number;
  /** `live`: frames that went out while no connection was subscribed (lost to the client). */
  framesMissed: number;
  /** `live`: the replay positions (0-based, as `cursor` counts) of the missed frames. */
  missed: number[];
  /** Connections evicted by a newer one with the same key (`max_connections`). */
  evictions: number;
  /** Authenticated connections open now. */
  authenticatedNow: number;
  /**
   * Most authenticated connections open at once, measured after each new authentication has
   * evicted the older ones (so 1 while one-connection-per-key holds).
   */
  authenticatedMax: number;
}

interface Connection {
  readonly id: number;
  readonly socket: WebSocket;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  readonly script: FakeConnectionScript;
  key: string | undefined;
  authed: boolean;
  readonly topics: Set<string>;
  sent: number;
  garbageDone: boolean;
  statusDone: boolean;
  silent: boolean;
  vanished: boolean;
  open: boolean;
  authTimer: Timer | undefined;
}

type Timer = ReturnType<typeof setTimeout>;

const STATUS_CONNECTED =
  '[{"ev":"status","status":"connected","message":"Connected Successfully"}]';
const SUCCESS_CONNECTED = '[{"ev":"status","status":"success","message":"Connected Successfully"}]';
const NOT_AUTHORIZED = '[{"ev":"status","status":"error","message":"not authorized"}]';
const STATUS_MESSAGES: Record<string, string> = {
  auth_success: "authenticated",
  success: "authenticated",
  auth_failed: "authentication failed",
  auth_timeout: "No authentication request received.",
  max_connections: "Maximum number of websocket connections exceeded. You have reached the " +
    "connection limit for your account.",
};
/** Matches an `ev` other than XQ: such frames need a look before they are sent. */
const NON_XQ_EV_RE = /"ev"\s*:\s*"(?!XQ")/;
/** Unpaced, let the event loop run after this many frames. */
const YIELD_EVERY = 256;
const T_RE = /"t"\s*:\s*(\d+)/;

/** A running fake Polygon server; see {@linkcode startFakePolygon}. */
export class FakePolygon {
  /** The WebSocket URL to connect to, e.g. `ws://127.0.0.1:40123/crypto`. */
  readonly url: string;
  /** Live counters. */
  readonly stats: FakePolygonStats = {
    connections: 0,
    refused: 0,
    auths: 0,
    authSuccesses: 0,
    subscriptions: [],
    framesSent: 0,
    framesFiltered: 0,
    garbageSent: 0,
    refusals: 0,
    unanswered: 0,
    cursor: 0,
    framesMissed: 0,
    missed: [],
    evictions: 0,
    authenticatedNow: 0,
    authenticatedMax: 0,
  };
  /** Resolves once every frame has been sent (or filtered out). */
  readonly done: Promise<void>;

  #server: Deno.HttpServer<Deno.NetAddr>;
  #options: FakePolygonOptions;
  #connections = new Set<Connection>();
  #active: Connection | undefined;
  #pumping = false;
  #closed = false;
  #iterator: Iterator<FakeFrame> | AsyncIterator<FakeFrame> | undefined;
  #pending: FakeFrame | undefined;
  #exhausted = false;
  #first = true;
  #resolveDone!: () => void;
  #timers = new Set<Timer>();
  /** Aborted by `close`: ends every wait of the pump. */
  #closing = new AbortController();

  constructor(options: FakePolygonOptions = {}) {
    this.#options = options;
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    const frames = options.frames ?? [];
    this.#iterator = Symbol.asyncIterator in frames
      ? (frames as AsyncIterable<FakeFrame>)[Symbol.asyncIterator]()
      : (frames as Iterable<FakeFrame>)[Symbol.iterator]();
    this.#server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      onListen() {},
    }, (request) => this.#handle(request));
    this.url = `ws://${this.#server.addr.hostname}:${this.#server.addr.port}/crypto`;
  }

  /** Closes every connection and stops the server. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#closing.abort();
    // Close our sockets first, so that what was sent is delivered before the server stops.
    const closing = [...this.#connections].map((conn) => conn.closed);
    for (const conn of this.#connections) this.#closeConnection(conn, 1001, "server closing");
    await deadline(Promise.all(closing), 1000).catch(() => {});
    await this.#server.shutdown();
    const iterator = this.#iterator;
    if (iterator && !this.#exhausted && iterator.return) await iterator.return();
  }

  #handle(request: Request): Response {
    const id = this.stats.connections++;
    const script = this.#scriptFor(id);
    if (script.refuse !== undefined) {
      this.stats.refused++;
      return new Response("refused by fake\n", { status: script.refuse });
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket upgrade\n", { status: 426 });
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    const conn: Connection = {
      id,
      socket,
      closed: new Promise((resolve) => socket.addEventListener("close", () => resolve())),
      script,
      key: undefined,
      authed: false,
      topics: new Set(),
      sent: 0,
      garbageDone: false,
      statusDone: false,
      silent: false,
      vanished: false,
      open: false,
      authTimer: undefined,
    };
    this.#connections.add(conn);
    socket.onopen = () => {
      if (this.#closed) return this.#closeConnection(conn, 1001, "server closing");
      conn.open = true;
      if (!script.noConnected) {
        socket.send(script.connectEvent === "success" ? SUCCESS_CONNECTED : STATUS_CONNECTED);
      }
      conn.authTimer = this.#setTimer(() => {
        conn.authTimer = undefined;
        if (!conn.authed && conn.open) {
          this.#sendStatus(conn, "auth_timeout");
          this.#closeConnection(conn, 1008, "auth timeout");
        }
      }, this.#options.authTimeoutMs ?? 10_000);
    };
    socket.onmessage = (event) => this.#onMessage(conn, event.data);
    socket.onclose = () => this.#forget(conn);
    socket.onerror = () => this.#forget(conn);
    return response;
  }

  #scriptFor(id: number): FakeConnectionScript {
    const faults = this.#options.faults;
    if (faults === undefined) return {};
    const script = typeof faults === "function" ? faults(id) : faults[id];
    return script ?? {};
  }

  #onMessage(conn: Connection, data: unknown): void {
    if (!conn.open || conn.vanished || typeof data !== "string") return;
    let message: { action?: unknown; params?: unknown };
    try {
      message = JSON.parse(data);
    } catch {
      this.#send(conn, '[{"ev":"status","status":"error","message":"invalid message"}]');
      return;
    }
    const params = typeof message.params === "string" ? message.params : "";
    switch (message.action) {
      case "auth":
        this.#onAuth(conn, params);
        return;
      case "subscribe":
      case "unsubscribe":
        if (!conn.authed) {
          this.#send(conn, NOT_AUTHORIZED);
          return;
        }
        this.#onSubscribe(conn, message.action, params);
        return;
      default:
        this.#send(conn, '[{"ev":"status","status":"error","message":"unknown action"}]');
    }
  }

  #onAuth(conn: Connection, key: string): void {
    this.stats.auths++;
    if (conn.authed) {
      this.#send(conn, '[{"ev":"status","status":"error","message":"already authenticated"}]');
      return;
    }
    if (conn.authTimer !== undefined) this.#clearTimer(conn.authTimer);
    conn.authTimer = undefined;
    const expected = this.#options.apiKey;
    const reply: FakeAuthReply = conn.script.auth ??
      (expected === undefined || key === expected ? "auth_success" : "auth_failed");
    if (reply === "none") return;
    const message = conn.script.authMessage;
    if (reply === "auth_success" || reply === "success") {
      conn.authed = true;
      conn.key = key;
      this.stats.authSuccesses++;
      this.#sendStatus(conn, reply, message);
      if (this.#options.evict ?? true) {
        for (const other of this.#connections) {
          if (other !== conn && other.authed && other.key === key && other.open) {
            this.stats.evictions++;
            this.#sendStatus(other, "max_connections");
            this.#closeConnection(other, 1008, "max connections");
          }
        }
      }
      this.#countAuthenticated();
      return;
    }
    this.#sendStatus(conn, reply, message);
    this.#closeConnection(conn, 1008, reply);
  }

  #countAuthenticated(): void {
    let n = 0;
    for (const c of this.#connections) if (c.open && c.authed) n++;
    this.stats.authenticatedNow = n;
    if (n > this.stats.authenticatedMax) this.stats.authenticatedMax = n;
  }

  #onSubscribe(conn: Connection, action: "subscribe" | "unsubscribe", params: string): void {
    if (action === "subscribe") this.stats.subscriptions.push(params);
    const topics = params.split(",").map((t) => t.trim()).filter((t) => t !== "");
    const channels = this.#options.channels;
    const notInPlan = this.#options.notInPlan ?? [];
    for (const topic of topics) {
      if (channels !== undefined && !channels.includes(topic.split(".")[0]!)) {
        this.stats.unanswered++;
        continue; // A channel this host does not carry: no answer at all.
      }
      if (action === "subscribe" && (notInPlan.includes(topic) || notInPlan.includes("*"))) {
        this.stats.refusals++;
        this.#send(conn, NOT_AUTHORIZED);
        continue;
      }
      if (action === "subscribe") conn.topics.add(topic);
      else conn.topics.delete(topic);
      const verb = action === "subscribe" ? "subscribed to" : "unsubscribed to";
      this.#send(
        conn,
        JSON.stringify([{ ev: "status", status: "success", message: `${verb}: ${topic}` }]),
      );
    }
    if (action === "subscribe" && conn.topics.size > 0) {
      this.#active = conn;
      this.#startPump();
    }
  }

  #sendStatus(conn: Connection, status: string, text?: string): void {
    const message = text ?? STATUS_MESSAGES[status] ?? status;
    this.#send(conn, JSON.stringify([{ ev: "status", status, message }]));
  }

  #send(conn: Connection, text: string): void {
    if (conn.open && conn.socket.readyState === WebSocket.OPEN) conn.socket.send(text);
  }

  #closeConnection(conn: Connection, code: number, reason: string): void {
    const wasOpen = conn.open;
    conn.open = false;
    this.#countAuthenticated();
    if (conn.authTimer !== undefined) this.#clearTimer(conn.authTimer);
    conn.authTimer = undefined;
    if (this.#active === conn) this.#active = undefined;
    const state = conn.socket.readyState;
    if (wasOpen || state === WebSocket.OPEN || state === WebSocket.CONNECTING) {
      try {
        conn.socket.close(code, reason);
      } catch {
        // Already closing.
      }
    }
  }

  #forget(conn: Connection): void {
    conn.open = false;
    this.#connections.delete(conn);
    this.#countAuthenticated();
    if (conn.authTimer !== undefined) this.#clearTimer(conn.authTimer);
    conn.authTimer = undefined;
    if (this.#active === conn) this.#active = undefined;
  }

  #startPump(): void {
    if (this.#pumping || this.#closed) return;
    if (this.#options.live) {
      this.#pumping = true;
      this.#livePump().finally(() => this.#pumping = false);
      return;
    }
    this.#pumping = true;
    this.#pump().finally(() => {
      this.#pumping = false;
      // A connection may have subscribed while the pump was finishing.
      const next = this.#active;
      if (next && next.open && !next.silent && !this.#closed && !this.#exhausted) {
        this.#startPump();
      }
    });
  }

  /** Sends frames to the active connection until it goes, the frames end, or a fault. */
  async #pump(): Promise<void> {
    const rate = this.#options.rate ?? 0;
    const speed = this.#options.speed ?? 0;
    const highWaterMark = this.#options.highWaterMark ?? 1 << 20;
    let conn = this.#active;
    let startWall = performance.now();
    let startT = Number.NaN;
    let lastT = Number.NaN;
    let paced = 0;
    let sinceYield = 0;
    while (!this.#closed) {
      if (this.#active !== conn || conn === undefined) {
        // The active connection changed (reconnect): restart the pacing clock.
        conn = this.#active;
        if (conn === undefined) return;
        startWall = performance.now();
        startT = Number.NaN;
        lastT = Number.NaN;
        paced = 0;
      }
      if (!conn.open || conn.silent) return;
      const script = conn.script;
      if (script.garbage && !conn.garbageDone && conn.sent >= script.garbage.after) {
        conn.garbageDone = true;
        for (const g of script.garbage.frames) {
          conn.socket.send(g);
          this.stats.garbageSent++;
        }
      }
      if (script.dropAfter !== undefined && conn.sent >= script.dropAfter) {
        this.#closeConnection(conn, 1011, "fake drop");
        continue;
      }
      if (script.evictAfter !== undefined && conn.sent >= script.evictAfter) {
        this.#sendStatus(conn, "max_connections");
        this.#closeConnection(conn, 1008, "max connections");
        continue;
      }
      if (script.silentAfter !== undefined && conn.sent >= script.silentAfter) {
        conn.silent = true;
        return;
      }
      if (script.vanishAfter !== undefined && conn.sent >= script.vanishAfter) {
        conn.silent = true;
        conn.vanished = true;
        if (conn.authTimer !== undefined) this.#clearTimer(conn.authTimer);
        conn.authTimer = undefined;
        return;
      }
      const fault = script.status;
      let statusText: string | undefined;
      if (fault !== undefined && !conn.statusDone && conn.sent >= fault.after) {
        statusText = JSON.stringify({
          ev: "status",
          status: fault.status,
          message: fault.message ?? fault.status,
        });
        if (!fault.withData) {
          conn.statusDone = true;
          conn.socket.send(`[${statusText}]`);
          if (this.#statusCloses(fault)) {
            this.#closeConnection(conn, 1008, fault.status);
          }
          continue;
        }
      }
      const frame = await this.#peek();
      if (frame === undefined) {
        this.#resolveDone();
        return;
      }
      if (this.#active !== conn || !conn.open) continue;
      const bursting = script.burst !== undefined && conn.sent >= script.burst.after &&
        conn.sent < script.burst.after + script.burst.count;
      if (!bursting && (rate > 0 || speed > 0)) {
        let due: number;
        if (rate > 0) {
          due = startWall + (paced * 1000) / rate;
        } else {
          const m = typeof frame === "string" ? T_RE.exec(frame) : null;
          const t = m ? Number(m[1]) : Number.NaN;
          // The clock starts at the first frame with a time; frames before it go at once.
          if (Number.isNaN(startT) && !Number.isNaN(t)) {
            startT = lastT = t;
            startWall = performance.now();
          }
          if (t > lastT) lastT = t;
          due = Number.isNaN(startT) ? 0 : startWall + (lastT - startT) / speed;
        }
        const wait = due - performance.now();
        if (wait >= 1) {
          await this.#sleep(wait);
          continue; // Re-check the connection and faults after the wait.
        }
      }
      while (conn.open && conn.socket.bufferedAmount > highWaterMark && !this.#closed) {
        await this.#sleep(1);
      }
      if (this.#active !== conn || !conn.open) continue;
      const out = typeof frame === "string" ? selectEvents(frame, conn.topics) : frame;
      this.#advance();
      paced++;
      if (out === null) {
        this.stats.framesFiltered++;
      } else if (statusText !== undefined && typeof out === "string" && out.startsWith("[")) {
        conn.statusDone = true;
        conn.socket.send(`[${statusText},${out.slice(1)}`);
        conn.sent++;
        this.stats.framesSent++;
        if (this.#statusCloses(script.status!)) this.#closeConnection(conn, 1008, "status");
      } else {
        conn.socket.send(out);
        conn.sent++;
        this.stats.framesSent++;
      }
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await this.#sleep(0); // Stay responsive: let the event loop run.
      }
    }
  }

  /**
   * `live`: one frame every `1000 / rate` ms from the first subscription on, to the subscribed
   * connection if there is one, else counted as missed.
   */
  async #livePump(): Promise<void> {
    const rate = this.#options.rate ?? 0;
    if (!(rate > 0)) throw new TypeError("A live fake Polygon server needs a rate above 0");
    const start = performance.now();
    let n = 0;
    while (!this.#closed) {
      const wait = start + (n * 1000) / rate - performance.now();
      if (wait >= 1) await this.#sleep(wait);
      if (this.#closed) return;
      const frame = await this.#peek();
      if (frame === undefined) {
        this.#resolveDone();
        return;
      }
      const position = this.stats.cursor;
      this.#advance();
      n++;
      const conn = this.#active;
      if (conn === undefined || !conn.open || conn.silent || conn.topics.size === 0) {
        this.stats.framesMissed++;
        this.stats.missed.push(position);
        continue;
      }
      const out = typeof frame === "string" ? selectEvents(frame, conn.topics) : frame;
      if (out === null) {
        this.stats.framesFiltered++;
        continue;
      }
      conn.socket.send(out);
      conn.sent++;
      this.stats.framesSent++;
    }
  }

  #statusCloses(fault: FakeStatusFault): boolean {
    return fault.close ?? (fault.status === "force_disconnect" || fault.status === "slow_consumer");
  }

  /** The next frame without consuming it; undefined when the frames are exhausted. */
  async #peek(): Promise<FakeFrame | undefined> {
    while (this.#pending === undefined && !this.#exhausted) {
      const iterator = this.#iterator!;
      const result = await iterator.next();
      if (result.done) {
        this.#exhausted = true;
        break;
      }
      const text = result.value;
      const first = this.#first;
      this.#first = false;
      if (typeof text === "string") {
        if ((this.#options.skipEmpty ?? true) && text.trim() === "") continue;
        if (first && (this.#options.skipHeader ?? true) && isHeader(text)) continue;
      }
      this.#pending = text;
    }
    return this.#pending;
  }

  #advance(): void {
    this.#pending = undefined;
    this.stats.cursor++;
  }

  /** Waits `ms`, or until the server closes. */
  #sleep(ms: number): Promise<void> {
    return delay(ms, { signal: this.#closing.signal }).catch(() => {});
  }

  #setTimer(fn: () => void, ms: number): Timer {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  #clearTimer(timer: Timer): void {
    clearTimeout(timer);
    this.#timers.delete(timer);
  }
}

/**
 * Starts a fake Polygon crypto WebSocket server; close it with {@linkcode FakePolygon.close}.
 * @example
 * ```ts
 * const fake = startFakePolygon({ frames: ['[{"ev":"XQ","pair":"BTC-USD","bp":1,"ap":2,"t":1}]'] });
 * const ws = new WebSocket(fake.url); // connected → auth → subscribe "XQ.*" → data
 * ```
 */
export function startFakePolygon(options: FakePolygonOptions = {}): FakePolygon {
  return new FakePolygon(options);
}

function isHeader(text: string): boolean {
  const trimmed = text.trimStart();
  if (!trimmed.startsWith("{") || !trimmed.includes('"recording"')) return false;
  try {
    const value = JSON.parse(trimmed);
    return typeof value === "object" && value !== null && !Array.isArray(value) &&
      "recording" in value;
  } catch {
    return false;
  }
}

/** Whether `topic` (e.g. "XQ.BTC-USD") is covered by the subscribed topics. */
function subscribed(topics: ReadonlySet<string>, ev: string, pair: string): boolean {
  return topics.has(`${ev}.*`) || topics.has(`${ev}.${pair}`);
}

/**
 * The part of a frame the subscription covers: the frame itself when every event is subscribed,
 * null when none is, else a frame of the subscribed events with their texts kept verbatim.
 * Frames that are not JSON arrays are sent as they are (garbage is the test's business);
 * events without a pair pass; `status` events of a recording are protocol, never replayed.
 */
export function selectEvents(frame: string, topics: ReadonlySet<string>): string | null {
  if (topics.has("XQ.*") && !NON_XQ_EV_RE.test(frame)) return frame;
  let parsed: unknown;
  try {
    parsed = JSON.parse(frame);
  } catch {
    return frame;
  }
  if (!Array.isArray(parsed)) return frame;
  const keep: boolean[] = [];
  let kept = 0;
  for (const ev of parsed) {
    let ok = true;
    if (typeof ev === "object" && ev !== null && !Array.isArray(ev)) {
      const e = ev as Record<string, unknown>;
      if (e.ev === "status") ok = false;
      else if (typeof e.ev === "string" && typeof e.pair === "string") {
        ok = subscribed(topics, e.ev, e.pair);
      }
    }
    keep.push(ok);
    if (ok) kept++;
  }
  if (kept === parsed.length) return frame;
  if (kept === 0) return null;
  const parts = splitArray(frame);
  if (parts.length !== parsed.length) return frame;
  return "[" + parts.filter((_, i) => keep[i]).join(",") + "]";
}

/** The verbatim texts of the elements of a JSON array text. */
function splitArray(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      if (depth === 1 && start < 0) start = i;
    } else if (c === 0x5b || c === 0x7b) { // [ {
      if (depth === 1 && start < 0) start = i;
      depth++;
    } else if (c === 0x5d || c === 0x7d) { // ] }
      depth--;
      if (depth === 0) {
        if (start >= 0) parts.push(text.slice(start, i).trim());
        break;
      }
    } else if (c === 0x2c && depth === 1) { // ,
      parts.push(text.slice(start, i).trim());
      start = -1;
    } else if (depth === 1 && start < 0 && c > 0x20) {
      start = i;
    }
  }
  return parts;
}
