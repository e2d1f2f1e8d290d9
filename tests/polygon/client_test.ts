import assert from "node:assert/strict";
import { EXIT } from "../../lib/config/defaults.ts";
import { ProducerMetrics } from "../../lib/telemetry/metrics.ts";
import {
  AuthFailedError,
  MaxConnectionsError,
  NoQuotesError,
  PlanError,
  topicsFor,
} from "../../lib/polygon/protocol.ts";
import {
  backoffDelay,
  type Gap,
  PolygonClient,
  type PolygonClientOptions,
  type PolygonState,
  type Timers,
} from "../../lib/polygon/client.ts";
import { startFakePolygon } from "../../lib/polygon/fake.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "../helpers/capture.ts";
import { FakeTime } from "../helpers/fake_time.ts";

const KEY = "pk_live_9d8c7b6a5f4e";
const WRONG_KEY = "pk_revoked_0a1b2c3d";
const CONNECTED = '[{"ev":"status","status":"connected","message":"Connected Successfully"}]';
const AUTH_SUCCESS = '[{"ev":"status","status":"auth_success","message":"authenticated"}]';

function confirmation(topic: string): string {
  return `[{"ev":"status","status":"success","message":"subscribed to: ${topic}"}]`;
}

function quote(pair: string, t: number): string {
  return `[{"ev":"XQ","pair":"${pair}","bp":1.5,"bs":2,"ap":1.75,"as":3,"t":${t},"x":1,"r":${t}}]`;
}

function quotes(n: number, pairs = ["BTC-USD"]): string[] {
  return Array.from(
    { length: n },
    (_, i) => quote(pairs[i % pairs.length]!, 1_700_000_000_000 + i),
  );
}

function isStatus(frame: string): boolean {
  return frame.includes('"ev":"status"');
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets pending promise callbacks and zero-delay tasks run. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 5));
}

/** Real timers that wait `scale` times the requested delay. */
function scaledTimers(scale: number): Timers {
  return {
    setTimeout: (fn, ms) => setTimeout(fn, ms * scale),
    clearTimeout: (handle) => clearTimeout(handle as number),
  };
}

/** A scripted stand-in for a WebSocket, for state-machine tests without a network. */
class StubSocket extends EventTarget {
  readyState: number = WebSocket.OPEN;
  binaryType = "blob";
  readonly sent: string[] = [];
  onmessage: ((e: MessageEvent) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  onclose: ((e: CloseEvent) => void) | null = null;

  send(text: string): void {
    this.sent.push(text);
  }

  close(code = 1000): void {
    if (this.readyState === WebSocket.CLOSED) return;
    queueMicrotask(() => this.drop(code));
  }

  receive(text: string): void {
    this.onmessage?.(new MessageEvent("message", { data: text }));
  }

  drop(code = 1006): void {
    this.readyState = WebSocket.CLOSED;
    const event = new CloseEvent("close", { code });
    this.onclose?.(event);
    this.dispatchEvent(event);
  }
}

/** Everything a client reported, for assertions. */
class Capture {
  readonly frames: string[] = [];
  readonly receivedAt: number[] = [];
  readonly gaps: Gap[] = [];
  readonly states: PolygonState[] = [];
  readonly logs: string[] = [];
  readonly recorded: string[] = [];
  readonly metrics = new ProducerMetrics();

  options(url: string, extra: Partial<PolygonClientOptions> = {}): PolygonClientOptions {
    return {
      url,
      apiKey: KEY,
      pairs: ["BTC-USD"],
      onFrame: (text, at) => {
        this.frames.push(text);
        this.receivedAt.push(at);
      },
      onGap: (gap) => this.gaps.push(gap),
      onState: (state) => this.states.push(state),
      log: (line) => this.logs.push(line),
      recorder: { frame: (text) => this.recorded.push(text) },
      metrics: this.metrics,
      ...extra,
    };
  }

  data(): string[] {
    return this.frames.filter((f) => !isStatus(f));
  }

  backoffDelays(): number[] {
    return this.logs.flatMap((l) => {
      const m = /reconnecting in (\d+) ms/.exec(l);
      return m ? [Number(m[1])] : [];
    });
  }

  async reconnects(): Promise<Record<string, number>> {
    const values = (await this.metrics.reconnects.get()).values;
    return Object.fromEntries(
      values.filter((v) => v.value !== 0).map((v) => [String(v.labels.reason), v.value]),
    );
  }

  async value(name: "gaps" | "connectionState" | "gapSeconds" | "wsProbes"): Promise<number> {
    return (await this.metrics[name].get()).values[0]?.value ?? 0;
  }
}

Deno.test("backoffDelay is full jitter over an exponential ceiling with a cap", () => {
  const half = Array.from({ length: 9 }, (_, i) => backoffDelay(i, { random: () => 0.5 }));
  assert.deepEqual(half, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.equal(backoffDelay(0, { random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { random: () => 0.999 }), 3996);
  assert.equal(backoffDelay(10, { baseMs: 100, maxMs: 5000, random: () => 0.999 }), 4995);
  assert.equal(backoffDelay(2000, { random: () => 0.5 }), 15000);
});

Deno.test("topicsFor prefixes XQ and reduces any list holding * to XQ.*", () => {
  assert.deepEqual(topicsFor(["BTC-USD", "ETH-USD", "BTC-USD"]), ["XQ.BTC-USD", "XQ.ETH-USD"]);
  assert.deepEqual(topicsFor(["BTC-USD", "*"]), ["XQ.*"]);
});

Deno.test("client authenticates, confirms its topics and hands every later frame to onFrame", async () => {
  const frames = quotes(21, ["BTC-USD", "ETH-USD", "SOL-USD"]);
  const fake = startFakePolygon({ apiKey: KEY, frames });
  const capture = new Capture();
  const controller = new AbortController();
  const client = new PolygonClient(
    capture.options(fake.url, { pairs: ["BTC-USD", "ETH-USD"], clock: { now: () => 42 } }),
  );
  try {
    const running = client.run(controller.signal);
    await fake.done;
    await waitFor(() => capture.data().length === 14, "14 frames");
    assert.equal(client.state, "streaming");
    assert.equal(await capture.value("connectionState"), 4);
    controller.abort();
    await running;
    const wanted = frames.filter((f) => !f.includes("SOL-USD"));
    assert.deepEqual(capture.frames, [
      confirmation("XQ.BTC-USD"),
      confirmation("XQ.ETH-USD"),
      ...wanted,
    ]);
    assert.deepEqual(capture.recorded, [CONNECTED, AUTH_SUCCESS, ...capture.frames]);
    assert.deepEqual(new Set(capture.receivedAt), new Set([42]));
    assert.deepEqual(capture.states, [
      "connecting",
      "authenticating",
      "subscribing",
      "streaming",
      "disconnected",
      "stopped",
    ]);
    assert.equal(await capture.value("connectionState"), 0);
    assert.deepEqual(fake.stats.subscriptions, ["XQ.BTC-USD,XQ.ETH-USD"]);
    assert.equal(fake.stats.connections, 1);
    assert.deepEqual(capture.gaps, []);
    assert.deepEqual(capture.logs, [
      `polygon: streaming XQ.BTC-USD,XQ.ETH-USD from "${fake.url}"`,
      "polygon: stopped",
    ]);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client accepts the older success reply to auth", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(3), faults: [{ auth: "success" }] });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const running = new PolygonClient(capture.options(fake.url)).run(controller.signal);
    await waitFor(() => capture.data().length === 3, "3 frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), quotes(3));
    assert.equal(fake.stats.connections, 1);
  } finally {
    controller.abort();
    await fake.close();
  }
});

/**
 * A client over stub sockets (each connection's socket lands in `sockets`) on fake time, with
 * `capture` collecting what it reports.
 */
function stubbedClient(extra: Partial<PolygonClientOptions> = {}) {
  const sockets: StubSocket[] = [];
  const capture = new Capture();
  const time = new FakeTime(0);
  const client = new PolygonClient(capture.options("wss://example.invalid/crypto", {
    clock: time,
    timers: time,
    webSocketFactory: () => {
      sockets.push(new StubSocket());
      return sockets.at(-1) as unknown as WebSocket;
    },
    ...extra,
  }));
  return { sockets, capture, time, client };
}

Deno.test("client streams only once every topic is confirmed", async () => {
  const controller = new AbortController();
  const { sockets, capture, client } = stubbedClient({ pairs: ["BTC-USD", "ETH-USD"] });
  const running = client.run(controller.signal);
  const socket = sockets[0]!;
  assert.equal(client.state, "connecting");
  assert.deepEqual(socket.sent, []);
  socket.receive(CONNECTED);
  assert.equal(client.state, "authenticating");
  assert.deepEqual(socket.sent, [`{"action":"auth","params":"${KEY}"}`]);
  socket.receive(AUTH_SUCCESS);
  assert.equal(client.state, "subscribing");
  assert.equal(socket.sent[1], '{"action":"subscribe","params":"XQ.BTC-USD,XQ.ETH-USD"}');
  socket.receive(confirmation("XQ.BTC-USD"));
  socket.receive(quote("BTC-USD", 1));
  assert.equal(client.state, "subscribing");
  socket.receive(confirmation("XQ.ETH-USD"));
  assert.equal(client.state, "streaming");
  assert.deepEqual(capture.frames, [
    confirmation("XQ.BTC-USD"),
    quote("BTC-USD", 1),
    confirmation("XQ.ETH-USD"),
  ]);
  controller.abort();
  await running;
  assert.equal(sockets.length, 1);
  assert.equal(socket.readyState, WebSocket.CLOSED);
});

captureTest({
  name: "client subscribes to XQ.* for the pair * and receives every pair",
  async fn() {
    const lines = (await Deno.readTextFile(CAPTURE)).split("\n").slice(0, 500);
    const fake = startFakePolygon({ apiKey: KEY, frames: lines });
    const capture = new Capture();
    const controller = new AbortController();
    try {
      const running = new PolygonClient(capture.options(fake.url, { pairs: ["*"] }))
        .run(controller.signal);
      await fake.done;
      await waitFor(() => capture.data().length === 500, "500 frames");
      controller.abort();
      await running;
      assert.deepEqual(capture.data(), lines);
      assert.deepEqual(capture.frames[0], confirmation("XQ.*"));
      assert.deepEqual(fake.stats.subscriptions, ["XQ.*"]);
    } finally {
      controller.abort();
      await fake.close();
    }
  },
});

Deno.test("client rejects with AuthFailedError after exactly one attempt", async () => {
  const fake = startFakePolygon({ apiKey: "the-right-key" });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const client = new PolygonClient(capture.options(fake.url, { timers: scaledTimers(0) }));
    const error = await client.run(controller.signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof AuthFailedError);
    assert.equal(error.name, "AuthFailedError");
    assert.equal(error.exitCode, EXIT.AUTH_FAILED);
    assert.equal(
      error.message,
      `Cannot authenticate with Polygon at "${fake.url}": the server said ` +
        `"authentication failed" (status "auth_failed"); check POLYGON_API_KEY`,
    );
    await settle();
    assert.equal(fake.stats.connections, 1);
    assert.equal(fake.stats.auths, 1);
    assert.equal(client.state, "stopped");
    assert.deepEqual(await capture.reconnects(), {});
    assert.ok(!String(error.stack).includes(KEY));
    assert.ok(!capture.logs.join("\n").includes(KEY));
  } finally {
    await fake.close();
  }
});

Deno.test("client rejects with MaxConnectionsError at auth and does not reconnect", async () => {
  const fake = startFakePolygon({ apiKey: KEY, faults: [{ auth: "max_connections" }] });
  const capture = new Capture();
  try {
    const client = new PolygonClient(capture.options(fake.url, { timers: scaledTimers(0) }));
    const error = await client.run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof MaxConnectionsError);
    assert.equal(error.name, "MaxConnectionsError");
    assert.equal(error.exitCode, EXIT.MAX_CONNECTIONS);
    assert.equal(
      error.message,
      `Cannot stream from Polygon at "${fake.url}": another client of this account is ` +
        `connected (status "max_connections": "Maximum number of websocket connections ` +
        `exceeded. You have reached the connection limit for your account."); stop the other ` +
        `client: Massive allows one connection per cluster per account, whatever the key ` +
        `(several producers: --standby-group)`,
    );
    await settle();
    assert.equal(fake.stats.connections, 1);
  } finally {
    await fake.close();
  }
});

Deno.test("client evicted by a newer client with its key stops with MaxConnectionsError", async () => {
  const fake = startFakePolygon({ apiKey: KEY });
  const older = new Capture();
  const newer = new Capture();
  const controller = new AbortController();
  try {
    const first = new PolygonClient(older.options(fake.url)).run(controller.signal)
      .then(() => undefined, (e) => e);
    await waitFor(() => older.states.includes("streaming"), "the first client to stream");
    const second = new PolygonClient(newer.options(fake.url)).run(controller.signal);
    const error = await first;
    assert.ok(error instanceof MaxConnectionsError);
    await waitFor(() => newer.states.includes("streaming"), "the second client to stream");
    controller.abort();
    await second;
    assert.equal(fake.stats.connections, 2);
    assert.deepEqual(await older.reconnects(), {});
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client reconnects after a mid-stream drop and receives every frame exactly once", async () => {
  const frames = quotes(40, ["BTC-USD", "ETH-USD"]);
  const fake = startFakePolygon({ apiKey: KEY, frames, faults: [{ dropAfter: 15 }] });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      pairs: ["BTC-USD", "ETH-USD"],
      random: () => 1,
      timers: scaledTimers(0.01),
    })).run(controller.signal);
    await fake.done;
    await waitFor(() => capture.data().length === 40, "40 frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), frames);
    assert.equal(fake.stats.connections, 2);
    assert.equal(fake.stats.auths, 2);
    assert.deepEqual(fake.stats.subscriptions, [
      "XQ.BTC-USD,XQ.ETH-USD",
      "XQ.BTC-USD,XQ.ETH-USD",
    ]);
    assert.equal(capture.gaps.length, 1);
    const gap = capture.gaps[0]!;
    assert.equal(gap.reason, "closed");
    assert.ok(gap.from < gap.to, `gap from ${gap.from} to ${gap.to}`);
    assert.deepEqual(await capture.reconnects(), { closed: 1 });
    assert.equal(await capture.value("gaps"), 1);
    assert.equal(await capture.value("gapSeconds"), (gap.to - gap.from) / 1000);
    assert.match(
      capture.logs[1]!,
      /^polygon: connection lost \(closed: closed with code 1011 "fake drop"\); reconnecting in 500 ms \(attempt 1\); not listening for \d+ ms so far$/,
    );
    assert.match(
      capture.logs[2]!,
      /^polygon: streaming again from "ws:\/\/127\.0\.0\.1:\d+\/crypto" after a gap of \d+ ms \(reason "closed"\)$/,
    );
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client reconnects when a dropped socket answers no probe, timed by an injected clock", async () => {
  const frames = quotes(10);
  // vanishAfter: the connection is gone without a close frame; the fake answers nothing more.
  const fake = startFakePolygon({ apiKey: KEY, frames, faults: [{ vanishAfter: 4 }] });
  const capture = new Capture();
  const controller = new AbortController();
  const time = new FakeTime(1_000_000);
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      staleAfterMs: 30_000,
      random: () => 0.5,
      clock: time,
      timers: time,
    })).run(controller.signal);
    await waitFor(() => capture.data().length === 4, "4 frames");
    time.advance(15_000);
    await settle();
    assert.equal(await capture.value("wsProbes"), 1, "a probe at half of --stale-after");
    time.advance(14_999);
    await settle();
    assert.equal(fake.stats.connections, 1);
    assert.equal(capture.states.at(-1), "streaming");
    time.advance(1);
    await waitFor(() => capture.backoffDelays().length === 1, "the reconnect to be scheduled");
    assert.equal(fake.stats.connections, 1);
    time.advance(250);
    await fake.done;
    await waitFor(() => capture.data().length === 10, "10 frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), frames);
    assert.equal(fake.stats.connections, 2);
    assert.deepEqual(capture.gaps, [{ from: 1_000_000, to: 1_030_250, reason: "stale" }]);
    assert.deepEqual(await capture.reconnects(), { stale: 1 });
    assert.equal(
      capture.logs[1],
      'polygon: connection lost (stale: no frame for 30000 ms in state "streaming" ' +
        "(a liveness probe went unanswered)); reconnecting in 250 ms (attempt 1); " +
        "not listening for 30000 ms so far",
    );
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client keeps a quiet socket that answers its probes: 5 silent minutes, no reconnect", async () => {
  const frames = quotes(4);
  // silentAfter: a quiet market; the server still answers control messages.
  const fake = startFakePolygon({ apiKey: KEY, frames, faults: [{ silentAfter: 4 }] });
  const capture = new Capture();
  const controller = new AbortController();
  const time = new FakeTime(0);
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      staleAfterMs: 30_000,
      quietAfterMs: 600_000,
      clock: time,
      timers: time,
    })).run(controller.signal);
    await waitFor(() => capture.data().length === 4, "4 frames");
    for (let i = 1; i <= 20; i++) {
      time.advance(15_000);
      // The probe's answer is a real frame from the fake server.
      await waitFor(() => capture.frames.length === 1 + 4 + i, `the answer to probe ${i}`);
    }
    controller.abort();
    await running;
    assert.equal(fake.stats.connections, 1);
    assert.deepEqual(capture.gaps, []);
    assert.deepEqual(await capture.reconnects(), {});
    assert.equal(await capture.value("wsProbes"), 20);
    assert.deepEqual(fake.stats.subscriptions, Array(21).fill("XQ.BTC-USD"));
  } finally {
    controller.abort();
    await fake.close();
  }
});

/** A stub server that answers every subscribe with one confirmation per topic, at once. */
class AnsweringSocket extends StubSocket {
  override send(text: string): void {
    super.send(text);
    const message = JSON.parse(text) as { action: string; params: string };
    if (message.action === "subscribe") {
      for (const topic of message.params.split(",")) this.receive(confirmation(topic));
    }
  }
}

Deno.test("a quiet feed (one quote a minute for 10 minutes) makes no gap and no reconnect", async () => {
  for (const probing of [true, false]) {
    const sockets: StubSocket[] = [];
    const capture = new Capture();
    const controller = new AbortController();
    const time = new FakeTime(0);
    const running = new PolygonClient(capture.options("wss://example.invalid/crypto", {
      staleAfterMs: 30_000,
      random: () => 0,
      clock: time,
      timers: time,
      webSocketFactory: () => {
        sockets.push(probing ? new AnsweringSocket() : new StubSocket());
        return sockets.at(-1) as unknown as WebSocket;
      },
    })).run(controller.signal);
    let t = 0;
    const stream = () => {
      const socket = sockets.at(-1)!;
      socket.receive(CONNECTED);
      socket.receive(AUTH_SUCCESS);
      if (!probing) socket.receive(confirmation("XQ.BTC-USD"));
    };
    stream();
    for (let minute = 0; minute < 10; minute++) {
      for (let s = 0; s < 60; s++) {
        time.advance(1000);
        await settle();
        if (sockets.at(-1)!.readyState === WebSocket.CLOSED) {
          time.advance(0);
          await settle();
          stream();
        }
      }
      sockets.at(-1)!.receive(quote("BTC-USD", ++t));
    }
    controller.abort();
    await running;
    if (probing) {
      assert.equal(sockets.length, 1);
      assert.deepEqual(capture.gaps, []);
      assert.deepEqual(await capture.reconnects(), {});
      assert.equal(capture.data().length, 10);
      // Each answer is a frame: probes at 15, 30, 45 and 60 s of every quiet minute.
      assert.equal(await capture.value("wsProbes"), 40);
    } else {
      // A server that does not answer the probe: each quiet minute is stale twice.
      assert.equal(capture.gaps.length, 20);
      assert.deepEqual(await capture.reconnects(), { stale: 20 });
    }
  }
});

Deno.test("a live socket without a quote for quietAfterMs reconnects; 3 such sessions end in NoQuotesError", async () => {
  const sockets: StubSocket[] = [];
  const capture = new Capture();
  const time = new FakeTime(0);
  const running = new PolygonClient(capture.options("wss://example.invalid/crypto", {
    pairs: ["DOGE-EUR"],
    staleAfterMs: 30_000,
    quietAfterMs: 120_000,
    random: () => 0,
    clock: time,
    timers: time,
    webSocketFactory: () => {
      sockets.push(new AnsweringSocket());
      return sockets.at(-1) as unknown as WebSocket;
    },
  })).run(new AbortController().signal).then(() => undefined, (e) => e);
  for (let session = 0; session < 3; session++) {
    sockets[session]!.receive(CONNECTED);
    sockets[session]!.receive(AUTH_SUCCESS);
    for (let s = 0; s < 120; s++) {
      time.advance(1000);
      await settle();
    }
    time.advance(0);
    await settle();
  }
  const error = await running;
  assert.ok(error instanceof NoQuotesError, String(error));
  assert.equal(error.exitCode, EXIT.USAGE);
  assert.equal(
    error.message,
    'Cannot get quotes from Polygon at "wss://example.invalid/crypto": 3 sessions in a row got ' +
      "no quote for XQ.DOGE-EUR (last: quiet: no quote for 120000 ms on XQ.DOGE-EUR, though the " +
      "socket answers); check --pairs (BASE-QUOTE as Polygon lists them, e.g. BTC-USD) and that " +
      "--url carries channel XQ",
  );
  assert.equal(sockets.length, 3);
  assert.deepEqual(await capture.reconnects(), { quiet: 2 });
  assert.equal(capture.states.at(-1), "stopped");
});

Deno.test("client backs off exponentially while refused, then streams with no gap", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(5),
    faults: [{ refuse: 503 }, { refuse: 503 }, { refuse: 503 }],
  });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      random: () => 1,
      timers: scaledTimers(0.01),
    })).run(controller.signal);
    await waitFor(() => capture.data().length === 5, "5 frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.backoffDelays(), [500, 1000, 2000]);
    assert.match(capture.logs[0]!, /^polygon: connection lost \(error: ".*503.*"\); reconnecting/);
    assert.equal(fake.stats.connections, 4);
    assert.equal(fake.stats.refused, 3);
    assert.deepEqual(capture.gaps, []);
    assert.deepEqual(await capture.reconnects(), { error: 3 });
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client reconnects after auth_timeout but keeps streaming through an error status", async () => {
  const frames = quotes(6);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames,
    authTimeoutMs: 20,
    faults: [
      { auth: "auth_timeout" },
      // No connect event: the client authenticates on open anyway.
      { noConnected: true, status: { after: 2, status: "error", message: "internal error" } },
    ],
  });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      random: () => 0,
      timers: scaledTimers(0.01),
    })).run(controller.signal);
    await fake.done;
    await waitFor(() => capture.data().length === 6, "6 frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), frames);
    assert.deepEqual(await capture.reconnects(), { auth_timeout: 1 });
    assert.equal(fake.stats.connections, 2);
    assert.deepEqual(capture.gaps, []);
    assert.equal(
      capture.logs[0],
      'polygon: connection lost (auth_timeout: status "auth_timeout": ' +
        '"No authentication request received."); reconnecting in 0 ms (attempt 1)',
    );
    assert.ok(
      capture.logs.includes(
        'polygon: status "error": "internal error" in state "streaming"; staying connected',
      ),
      capture.logs.join("\n"),
    );
    const statuses = (await capture.metrics.wsStatuses.get()).values;
    assert.deepEqual(statuses.map((v) => [v.labels.status, v.value]), [["error", 1]]);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("force_disconnect and slow_consumer reconnect; an unknown status is only logged", async () => {
  const frames = quotes(12);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames,
    faults: [
      { status: { after: 2, status: "force_disconnect", message: "server restart" } },
      // In one frame with data, as the server may batch it: the quote still counts.
      { status: { after: 3, status: "slow_consumer", message: "too slow", withData: true } },
      { status: { after: 1, status: "brand_new_status", message: "hello", withData: true } },
    ],
  });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      random: () => 0,
      timers: scaledTimers(0.01),
    })).run(controller.signal);
    // The mixed frames reach the transform whole; their quotes are not lost.
    const quotesSeen = () =>
      capture.frames.flatMap((f) =>
        (JSON.parse(f) as { ev: string; t?: number }[]).filter((e) => e.ev === "XQ")
          .map((e) => e.t)
      );
    await fake.done;
    await waitFor(() => quotesSeen().length === 12, "12 quotes");
    controller.abort();
    await running;
    assert.deepEqual(quotesSeen(), frames.map((f) => JSON.parse(f)[0].t));
    assert.deepEqual(await capture.reconnects(), { force_disconnect: 1, slow_consumer: 1 });
    assert.deepEqual(capture.gaps.map((g) => g.reason), ["force_disconnect", "slow_consumer"]);
    assert.equal(fake.stats.connections, 3);
    const statuses = (await capture.metrics.wsStatuses.get()).values;
    assert.deepEqual(statuses.map((v) => [v.labels.status, v.value]), [["brand_new_status", 1]]);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client exits with PlanError when the plan refuses every topic, after one connection", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(5), notInPlan: ["*"] });
  const capture = new Capture();
  try {
    const client = new PolygonClient(
      capture.options(fake.url, { pairs: ["BTC-USD", "ETH-USD"], timers: scaledTimers(0) }),
    );
    const error = await client.run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof PlanError, String(error));
    assert.equal(error.exitCode, EXIT.NOT_IN_PLAN);
    assert.equal(
      error.message,
      `Cannot subscribe to XQ.BTC-USD,XQ.ETH-USD on Polygon at "${fake.url}": your Polygon ` +
        `plan does not include XQ crypto quotes (status "error": "not authorized"); upgrade ` +
        `the plan or use a key whose plan includes them`,
    );
    await settle();
    assert.equal(fake.stats.connections, 1);
    assert.equal(fake.stats.refusals, 2);
    assert.deepEqual(await capture.reconnects(), {});
    assert.deepEqual(capture.data(), []);
  } finally {
    await fake.close();
  }
});

Deno.test("a partly refused subscription streams the confirmed topics and drops the refused ones", async () => {
  const frames = quotes(8, ["BTC-USD", "ETH-USD"]);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames,
    notInPlan: ["XQ.ETH-USD"],
    faults: [{ dropAfter: 2 }],
  });
  const capture = new Capture();
  const controller = new AbortController();
  try {
    const client = new PolygonClient(capture.options(fake.url, {
      pairs: ["ETH-USD", "BTC-USD"],
      random: () => 0,
      timers: scaledTimers(0.01),
    }));
    const running = client.run(controller.signal);
    await fake.done;
    await waitFor(() => capture.data().length === 4, "the 4 BTC-USD frames");
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), frames.filter((f) => f.includes("BTC-USD")));
    assert.deepEqual(client.topics, ["XQ.BTC-USD"]);
    // The refused topic is not asked for again after the reconnect.
    assert.deepEqual(fake.stats.subscriptions, ["XQ.ETH-USD,XQ.BTC-USD", "XQ.BTC-USD"]);
    assert.equal(
      capture.logs[0],
      'polygon: configuration: your Polygon plan does not include XQ.ETH-USD (status "error": ' +
        '"not authorized"); streaming XQ.BTC-USD only',
    );
    assert.deepEqual(capture.gaps.map((g) => g.reason), ["closed"]);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("a subscribe nobody answers is an error naming the topic; 3 in a row end in NoQuotesError", async () => {
  // The host does not carry XQ: it answers nothing to the subscribe.
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(3), channels: ["XT"] });
  const capture = new Capture();
  try {
    const error = await new PolygonClient(capture.options(fake.url, {
      subscribeTimeoutMs: 50,
      random: () => 0,
    })).run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof NoQuotesError, String(error));
    assert.equal(error.exitCode, EXIT.USAGE);
    assert.match(
      error.message,
      /^Cannot get quotes from Polygon at "ws:\/\/127\.0\.0\.1:\d+\/crypto": 3 sessions in a row got no quote for XQ\.BTC-USD \(last: subscribe_timeout: no answer to subscribing XQ\.BTC-USD within 50 ms\)/,
    );
    assert.equal(fake.stats.unanswered, 3);
    assert.equal(fake.stats.connections, 3);
    // The subscribe bound, not staleness, ends each session, even when they are equal.
    const equalBounds = await new PolygonClient(new Capture().options(fake.url, {
      staleAfterMs: 500, // Also bounds the handshake: generous for a loaded machine.
      random: () => 0,
    })).run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(equalBounds instanceof NoQuotesError, String(equalBounds));
    assert.match(
      equalBounds.message,
      /subscribe_timeout: no answer to subscribing XQ\.BTC-USD within 500 ms/,
    );
    assert.equal(fake.stats.connections, 6);
    assert.deepEqual(await capture.reconnects(), { subscribe_timeout: 2 });
    assert.deepEqual(capture.gaps, []);
  } finally {
    await fake.close();
  }
});

Deno.test("a confirmed pair that never quotes ends in NoQuotesError after 3 quiet sessions", async () => {
  // Polygon confirms a pair it does not list (here one absent from the frames) and sends nothing.
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(50), rate: 200 });
  const capture = new Capture();
  try {
    const error = await new PolygonClient(capture.options(fake.url, {
      pairs: ["BTC-USDX"],
      // Real timers: the probe's answer must come within staleAfterMs / 2 even on a loaded
      // machine (at 300 ms a late answer was once a stale reconnect instead of a quiet one).
      staleAfterMs: 2_000,
      quietAfterMs: 1_200,
      random: () => 0,
    })).run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof NoQuotesError, String(error));
    assert.match(error.message, /3 sessions in a row got no quote for XQ\.BTC-USDX \(last: quiet:/);
    assert.equal(fake.stats.connections, 3);
    assert.deepEqual(await capture.reconnects(), { quiet: 2 });
    // Two reconnects, then the interval from the last loss to the exit.
    assert.deepEqual(capture.gaps.map((g) => g.reason), ["quiet", "quiet", "quiet"]);
  } finally {
    await fake.close();
  }
});

Deno.test("client authenticates on open and accepts the connect event as success", async () => {
  const socket = new StubSocket();
  const capture = new Capture();
  const controller = new AbortController();
  const time = new FakeTime(0);
  const client = new PolygonClient(capture.options("wss://example.invalid/crypto", {
    webSocketFactory: () => socket as unknown as WebSocket,
    timers: time,
    clock: time,
  }));
  const running = client.run(controller.signal);
  (socket as unknown as { onopen: () => void }).onopen();
  assert.deepEqual(socket.sent, [`{"action":"auth","params":"${KEY}"}`]);
  assert.equal(client.state, "authenticating");
  // The connect event arrives after our auth, as "success" in one spec version: not an auth reply.
  socket.receive('[{"ev":"status","status":"success","message":"Connected Successfully"}]');
  socket.receive(CONNECTED);
  assert.equal(client.state, "authenticating");
  assert.equal(socket.sent.length, 1);
  socket.receive(AUTH_SUCCESS);
  assert.equal(client.state, "subscribing");
  controller.abort();
  await running;

  // Without an open event (the stub), the "success" connect event starts the auth.
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(3),
    faults: [{ connectEvent: "success", auth: "success" }],
  });
  const real = new Capture();
  const stop = new AbortController();
  try {
    const streaming = new PolygonClient(real.options(fake.url)).run(stop.signal);
    await waitFor(() => real.data().length === 3, "3 frames");
    stop.abort();
    await streaming;
    assert.equal(fake.stats.connections, 1);
    assert.deepEqual(real.recorded.slice(0, 2), [
      '[{"ev":"status","status":"success","message":"Connected Successfully"}]',
      '[{"ev":"status","status":"success","message":"authenticated"}]',
    ]);
  } finally {
    stop.abort();
    await fake.close();
  }
});

Deno.test("auth_required mid-stream reconnects; an error status while streaming does not", async () => {
  const controller = new AbortController();
  const { sockets, capture, time, client } = stubbedClient({ random: () => 0 });
  const running = client.run(controller.signal);
  const stream = (socket: StubSocket) => {
    socket.receive(CONNECTED);
    socket.receive(AUTH_SUCCESS);
    socket.receive(confirmation("XQ.BTC-USD"));
  };
  stream(sockets[0]!);
  sockets[0]!.receive('[{"ev":"status","status":"error","message":"not authorized"}]');
  sockets[0]!.receive(quote("BTC-USD", 1));
  time.advance(1000);
  sockets[0]!.receive('[{"ev":"status","status":"auth_required","message":"please auth"}]');
  await settle();
  time.advance(0);
  await settle();
  stream(sockets[1]!);
  controller.abort();
  await running;
  assert.equal(sockets.length, 2);
  assert.deepEqual(await capture.reconnects(), { status: 1 });
  assert.deepEqual(capture.gaps, [{ from: 1000, to: 1000, reason: "status" }]);
  assert.deepEqual(capture.data(), [quote("BTC-USD", 1)]);
});

Deno.test("an auth_failed that names the plan is a PlanError carrying the server's words", async () => {
  const message = "Your plan doesn't include websocket access. Visit https://polygon.io/pricing " +
    "to upgrade.";
  const fake = startFakePolygon({
    apiKey: KEY,
    faults: [{ auth: "auth_failed", authMessage: message }],
  });
  const capture = new Capture();
  try {
    const error = await new PolygonClient(capture.options(fake.url))
      .run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof PlanError, String(error));
    assert.equal(error.exitCode, EXIT.NOT_IN_PLAN);
    assert.equal(
      error.message,
      `Cannot stream from Polygon at "${fake.url}": the server refused the key with ` +
        `"${message}" (status "auth_failed"); your Polygon plan does not include WebSocket ` +
        `access: upgrade the plan or use another key`,
    );
    assert.equal(fake.stats.connections, 1);
  } finally {
    await fake.close();
  }
});

Deno.test("backoff resets only after a healthy minute of streaming", async () => {
  const controller = new AbortController();
  const { sockets, capture, time, client } = stubbedClient({ random: () => 1 });
  const running = client.run(controller.signal);
  const stream = (socket: StubSocket) => {
    socket.receive(CONNECTED);
    socket.receive(AUTH_SUCCESS);
    socket.receive(confirmation("XQ.BTC-USD"));
  };
  sockets[0]!.drop(); // never streamed: attempt 1
  await settle();
  time.advance(500);
  await settle();
  sockets[1]!.drop(); // attempt 2
  await settle();
  time.advance(1000);
  await settle();
  stream(sockets[2]!); // streams at 1500
  for (let i = 0; i < 3; i++) {
    time.advance(20_000);
    sockets[2]!.receive(quote("BTC-USD", i));
  }
  sockets[2]!.drop(); // frames flowed for 60 s: healthy, reset
  await settle();
  time.advance(500);
  await settle();
  stream(sockets[3]!); // streams at 62000
  time.advance(20_000);
  sockets[3]!.receive(quote("BTC-USD", 9));
  sockets[3]!.drop(); // 20 s only: not healthy
  await settle();
  controller.abort();
  await running;
  assert.deepEqual(capture.backoffDelays(), [500, 1000, 500, 1000]);
  assert.deepEqual(capture.gaps, [
    { from: 61_500, to: 62_000, reason: "closed" },
    { from: 82_000, to: 82_000, reason: "closed" },
  ]);
  assert.equal(sockets.length, 4);
});

Deno.test("client reports the open gap when stopped while reconnecting", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(3),
    faults: (n) => n === 0 ? { dropAfter: 3 } : { refuse: 503 },
  });
  const capture = new Capture();
  const controller = new AbortController();
  const time = new FakeTime(5_000);
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      random: () => 1,
      clock: time,
      timers: time,
    })).run(controller.signal);
    await waitFor(() => capture.backoffDelays().length === 1, "the first reconnect");
    time.advance(500);
    await waitFor(() => capture.backoffDelays().length === 2, "the second reconnect");
    time.advance(100);
    controller.abort();
    await running;
    assert.deepEqual(capture.data(), quotes(3));
    assert.deepEqual(capture.gaps, [{ from: 5_000, to: 5_600, reason: "closed" }]);
    assert.deepEqual(await capture.reconnects(), { closed: 1, error: 1 });
    assert.equal(capture.logs.at(-1), "polygon: stopped");
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client reports the open gap when max_connections ends a reconnect", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(2),
    faults: [{ dropAfter: 2 }, { auth: "max_connections" }],
  });
  const capture = new Capture();
  const time = new FakeTime(5_000);
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      random: () => 1,
      clock: time,
      timers: time,
    })).run(new AbortController().signal).then(() => undefined, (e) => e);
    await waitFor(() => capture.backoffDelays().length === 1, "the reconnect");
    time.advance(500);
    const error = await running;
    assert.ok(error instanceof MaxConnectionsError);
    assert.deepEqual(capture.data(), quotes(2));
    assert.deepEqual(capture.gaps, [{ from: 5_000, to: 5_500, reason: "closed" }]);
    assert.equal(fake.stats.connections, 2);
  } finally {
    await fake.close();
  }
});

Deno.test("the API key never appears in logs, errors, recordings or gaps", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(10),
    faults: [{ dropAfter: 5 }, {}, {}],
  });
  const capture = new Capture();
  const controller = new AbortController();
  // The key in the URL too: some users paste it there.
  const url = `${fake.url}?apiKey=${KEY}`;
  try {
    const running = new PolygonClient(capture.options(url, { timers: scaledTimers(0.01) }))
      .run(controller.signal);
    await waitFor(() => capture.data().length === 10, "10 frames");
    controller.abort();
    await running;
    const wrong = new Capture();
    const error = await new PolygonClient(
      wrong.options(`${fake.url}?apiKey=${WRONG_KEY}`, { apiKey: WRONG_KEY }),
    ).run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.ok(error instanceof AuthFailedError);
    const everything = [
      ...capture.logs,
      ...capture.recorded,
      ...capture.frames,
      JSON.stringify(capture.gaps),
      ...wrong.logs,
      error.message,
      String(error.stack),
    ].join("\n");
    assert.ok(everything.includes("?apiKey=***"), "the URL is shown redacted");
    assert.equal(everything.indexOf(KEY), -1);
    assert.equal(everything.indexOf(WRONG_KEY), -1);
    assert.equal(capture.gaps.length, 1);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client hands frames over synchronously even to a slow onFrame", async () => {
  const frames = quotes(100);
  const fake = startFakePolygon({ apiKey: KEY, frames });
  const capture = new Capture();
  const controller = new AbortController();
  const received: string[] = [];
  try {
    const running = new PolygonClient(capture.options(fake.url, {
      onFrame: (text) => {
        const until = performance.now() + 1;
        while (performance.now() < until) { /* a slow consumer */ }
        received.push(text);
      },
    })).run(controller.signal);
    await fake.done;
    await waitFor(() => received.filter((f) => !isStatus(f)).length === 100, "100 frames");
    controller.abort();
    await running;
    assert.deepEqual(received.filter((f) => !isStatus(f)), frames);
    assert.equal(fake.stats.connections, 1);
  } finally {
    controller.abort();
    await fake.close();
  }
});

Deno.test("client stops run with the error when onFrame throws", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(3) });
  const capture = new Capture();
  const boom = new Error("queue is broken");
  try {
    const error = await new PolygonClient(capture.options(fake.url, {
      onFrame: (text) => {
        if (!isStatus(text)) throw boom;
      },
    })).run(new AbortController().signal).then(() => undefined, (e) => e);
    assert.equal(error, boom);
    assert.equal(fake.stats.connections, 1);
  } finally {
    await fake.close();
  }
});

Deno.test("finding 5: a transient error while subscribing drops no pair; the unconfirmed ones are asked for again", async () => {
  const controller = new AbortController();
  const { sockets, capture, time, client } = stubbedClient({
    pairs: ["BTC-USD", "ETH-USD", "SOL-USD"],
    random: () => 0,
  });
  const running = client.run(controller.signal);
  const socket = sockets[0]!;
  socket.receive(CONNECTED);
  socket.receive(AUTH_SUCCESS);
  socket.receive(confirmation("XQ.BTC-USD"));
  socket.receive('[{"ev":"status","status":"error","message":"internal error, please retry"}]');
  // Asked again for the two not yet confirmed, and still subscribing.
  assert.equal(
    socket.sent.at(-1),
    '{"action":"subscribe","params":"XQ.ETH-USD,XQ.SOL-USD"}',
  );
  assert.equal(client.state, "subscribing");
  socket.receive(confirmation("XQ.ETH-USD"));
  assert.equal(client.state, "subscribing");
  socket.receive(confirmation("XQ.SOL-USD"));
  assert.equal(client.state, "streaming");
  assert.deepEqual(client.topics, ["XQ.BTC-USD", "XQ.ETH-USD", "XQ.SOL-USD"]);
  const statuses = (await capture.metrics.wsStatuses.get()).values;
  assert.deepEqual(statuses.map((v) => [v.labels.status, v.value]), [["error", 1]]);

  // A topic never confirmed after transient errors is kept for the next connection, not dropped.
  socket.drop();
  await settle();
  time.advance(0);
  await settle();
  const second = sockets[1]!;
  second.receive(CONNECTED);
  second.receive(AUTH_SUCCESS);
  assert.equal(
    second.sent.at(-1),
    '{"action":"subscribe","params":"XQ.BTC-USD,XQ.ETH-USD,XQ.SOL-USD"}',
  );
  second.receive(confirmation("XQ.BTC-USD"));
  for (let i = 0; i < 4; i++) {
    second.receive('[{"ev":"status","status":"error","message":"internal error, please retry"}]');
  }
  // Three times asked again, the fourth error only logged.
  assert.equal(second.sent.filter((s) => s.includes('"subscribe"')).length, 4);
  second.receive(confirmation("XQ.ETH-USD"));
  time.advance(10_000); // The subscribe bound.
  await settle();
  assert.equal(client.state, "streaming");
  assert.deepEqual(client.topics, ["XQ.BTC-USD", "XQ.ETH-USD", "XQ.SOL-USD"]);
  controller.abort();
  await running;
});

Deno.test("finding 5: a not-authorized reply still drops the refused pair", async () => {
  const controller = new AbortController();
  const { sockets, client } = stubbedClient({ pairs: ["BTC-USD", "ETH-USD"] });
  const running = client.run(controller.signal);
  const socket = sockets[0]!;
  socket.receive(CONNECTED);
  socket.receive(AUTH_SUCCESS);
  socket.receive(confirmation("XQ.BTC-USD"));
  socket.receive('[{"ev":"status","status":"error","message":"not authorized"}]');
  assert.equal(client.state, "streaming");
  assert.deepEqual(client.topics, ["XQ.BTC-USD"]);
  assert.equal(socket.sent.filter((s) => s.includes('"subscribe"')).length, 1);
  controller.abort();
  await running;
});
