import assert from "node:assert/strict";
import { type FakePolygon, selectEvents, startFakePolygon } from "../../lib/polygon/fake.ts";
import { CAPTURE_PATH as CAPTURE, captureTest } from "../helpers/capture.ts";

const KEY = "fake-test-key-7f3a";

function quote(pair: string, t: number): string {
  return `[{"ev":"XQ","pair":"${pair}","bp":1.5,"bs":2,"ap":1.75,"as":3,"t":${t},"x":1,"r":${t}}]`;
}

function quotes(n: number, pairs = ["BTC-USD"]): string[] {
  return Array.from(
    { length: n },
    (_, i) => quote(pairs[i % pairs.length]!, 1_700_000_000_000 + i),
  );
}

async function readCapture(): Promise<string[]> {
  return (await Deno.readTextFile(CAPTURE)).split("\n").filter((l) => l !== "");
}

/** A raw WebSocket client that queues the frames it receives. */
class RawClient {
  readonly socket: WebSocket;
  readonly frames: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  #read = 0;

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.onmessage = (e) => this.frames.push(String(e.data));
    this.opened = new Promise((resolve, reject) => {
      this.socket.onopen = () => resolve();
      this.socket.onerror = (e) => reject(new Error((e as ErrorEvent).message));
    });
    this.closed = new Promise((resolve) => this.socket.addEventListener("close", resolve));
  }

  /** The next unread frame, waiting up to 2 s. */
  async next(): Promise<string> {
    await waitFor(() => this.frames.length > this.#read, "a frame");
    return this.frames[this.#read++]!;
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  /** Frames received that are not status frames. */
  data(): string[] {
    return this.frames.filter((f) => !f.includes('"ev":"status"'));
  }

  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close();
    await this.closed;
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Connects, authenticates and subscribes; returns the client after the confirmations. */
async function handshake(fake: FakePolygon, params: string, key = KEY): Promise<RawClient> {
  const client = new RawClient(fake.url);
  assert.equal(
    await client.next(),
    '[{"ev":"status","status":"connected","message":"Connected Successfully"}]',
  );
  client.send({ action: "auth", params: key });
  assert.equal(
    await client.next(),
    '[{"ev":"status","status":"auth_success","message":"authenticated"}]',
  );
  client.send({ action: "subscribe", params });
  for (const topic of params.split(",")) {
    assert.equal(
      await client.next(),
      `[{"ev":"status","status":"success","message":"subscribed to: ${topic}"}]`,
    );
  }
  return client;
}

Deno.test("fake speaks the handshake and confirms every topic of a subscription", async () => {
  const fake = startFakePolygon({ apiKey: KEY });
  try {
    assert.match(fake.url, /^ws:\/\/127\.0\.0\.1:\d+\/crypto$/);
    const client = await handshake(fake, "XQ.BTC-USD,XQ.ETH-USD,XQ.SOL-USD");
    await client.close();
    assert.equal(fake.stats.connections, 1);
    assert.equal(fake.stats.auths, 1);
    assert.equal(fake.stats.authSuccesses, 1);
    assert.deepEqual(fake.stats.subscriptions, ["XQ.BTC-USD,XQ.ETH-USD,XQ.SOL-USD"]);
  } finally {
    await fake.close();
  }
});

Deno.test("fake answers a wrong key with auth_failed and closes the socket", async () => {
  const fake = startFakePolygon({ apiKey: KEY });
  try {
    const client = new RawClient(fake.url);
    await client.next();
    client.send({ action: "auth", params: "wrong-key" });
    assert.equal(
      await client.next(),
      '[{"ev":"status","status":"auth_failed","message":"authentication failed"}]',
    );
    assert.equal((await client.closed).code, 1008);
    assert.equal(fake.stats.authSuccesses, 0);
  } finally {
    await fake.close();
  }
});

Deno.test("fake refuses a subscription before authentication", async () => {
  const fake = startFakePolygon({ apiKey: KEY });
  try {
    const client = new RawClient(fake.url);
    await client.next();
    client.send({ action: "subscribe", params: "XQ.*" });
    assert.equal(
      await client.next(),
      '[{"ev":"status","status":"error","message":"not authorized"}]',
    );
    assert.deepEqual(fake.stats.subscriptions, []);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake sends auth_timeout and closes when no auth arrives in time", async () => {
  const fake = startFakePolygon({ apiKey: KEY, authTimeoutMs: 30 });
  try {
    const client = new RawClient(fake.url);
    await client.next();
    assert.equal(
      await client.next(),
      '[{"ev":"status","status":"auth_timeout","message":"No authentication request received."}]',
    );
    assert.equal((await client.closed).code, 1008);
  } finally {
    await fake.close();
  }
});

Deno.test("fake answers auth with the scripted status whatever the key", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    faults: [{ auth: "success" }, { auth: "max_connections" }, { auth: "auth_timeout" }],
  });
  try {
    const expected = [
      '[{"ev":"status","status":"success","message":"authenticated"}]',
      '[{"ev":"status","status":"max_connections","message":"Maximum number of websocket ' +
      'connections exceeded. You have reached the connection limit for your account."}]',
      '[{"ev":"status","status":"auth_timeout","message":"No authentication request received."}]',
    ];
    for (const reply of expected) {
      const client = new RawClient(fake.url);
      await client.next();
      client.send({ action: "auth", params: KEY });
      assert.equal(await client.next(), reply);
      await client.close();
    }
    assert.equal(fake.stats.authSuccesses, 1);
  } finally {
    await fake.close();
  }
});

Deno.test("fake replays a recording verbatim, skipping its header, and resolves done", async () => {
  const frames = quotes(50);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: ['{"recording":1,"source":"wss://socket.polygon.io/crypto"}', ...frames, ""],
  });
  try {
    const client = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => client.data().length === 50, "50 frames");
    assert.deepEqual(client.data(), frames);
    assert.equal(fake.stats.framesSent, 50);
    assert.equal(fake.stats.cursor, 50);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake replays frames from an async iterable", async () => {
  const frames = quotes(20);
  async function* source() {
    for (const f of frames) {
      await new Promise((r) => setTimeout(r, 0));
      yield f;
    }
  }
  const fake = startFakePolygon({ apiKey: KEY, frames: source() });
  try {
    const client = await handshake(fake, "XQ.BTC-USD");
    await fake.done;
    await waitFor(() => client.data().length === 20, "20 frames");
    assert.deepEqual(client.data(), frames);
    await client.close();
  } finally {
    await fake.close();
  }
});

captureTest({
  name: "fake sends only the subscribed pairs of the real capture, events verbatim",
  async fn() {
    const lines = await readCapture();
    const fake = startFakePolygon({ apiKey: KEY, frames: lines });
    try {
      const client = await handshake(fake, "XQ.SOL-USD,XQ.MKR-USD");
      await fake.done;
      await waitFor(() => fake.stats.framesSent === client.data().length, "every frame");
      const events = client.data().flatMap((f) => JSON.parse(f) as { pair: string }[]);
      assert.equal(events.filter((e) => e.pair === "SOL-USD").length, 1072);
      assert.equal(events.filter((e) => e.pair === "MKR-USD").length, 1589);
      assert.equal(events.length, 1072 + 1589);
      assert.equal(fake.stats.framesSent + fake.stats.framesFiltered, 9857);
      await client.close();
    } finally {
      await fake.close();
    }
  },
});

Deno.test("selectEvents keeps the subscribed events of a mixed frame as their exact text", () => {
  const frame = '[{"ev":"XQ","pair":"A-USD","bp":7e-06,"ap":1.10},' +
    ' {"ev":"XQ","pair":"B-USD","bp":1,"ap":2}, {"ev":"XQ","pair":"C-USD","s":"a,]}"}]';
  assert.equal(
    selectEvents(frame, new Set(["XQ.A-USD", "XQ.C-USD"])),
    '[{"ev":"XQ","pair":"A-USD","bp":7e-06,"ap":1.10},{"ev":"XQ","pair":"C-USD","s":"a,]}"}]',
  );
  assert.equal(selectEvents(frame, new Set(["XQ.*"])), frame);
  assert.equal(selectEvents(frame, new Set(["XQ.D-USD"])), null);
  assert.equal(selectEvents("not json", new Set(["XQ.D-USD"])), "not json");
  assert.equal(
    selectEvents('[{"ev":"status","status":"connected"}]', new Set(["XQ.*"])),
    null,
  );
});

Deno.test("fake resumes the replay on the next connection after a drop, no frame twice", async () => {
  const frames = quotes(30);
  const fake = startFakePolygon({ apiKey: KEY, frames, faults: [{ dropAfter: 12 }] });
  try {
    const first = await handshake(fake, "XQ.*");
    assert.equal((await first.closed).code, 1011);
    const second = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => second.data().length === 18, "18 frames");
    assert.deepEqual(first.data(), frames.slice(0, 12));
    assert.deepEqual(second.data(), frames.slice(12));
    assert.equal(fake.stats.framesSent, 30);
    await second.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake goes silent with the socket open, then serves the next connection", async () => {
  const frames = quotes(10);
  const fake = startFakePolygon({ apiKey: KEY, frames, faults: [{ silentAfter: 4 }] });
  try {
    const first = await handshake(fake, "XQ.*");
    await waitFor(() => first.data().length === 4, "4 frames");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(first.data().length, 4);
    assert.equal(first.socket.readyState, WebSocket.OPEN);
    await first.close();
    const second = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => second.data().length === 6, "6 frames");
    assert.deepEqual(second.data(), frames.slice(4));
    await second.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake evicts the older connection of a key with max_connections", async () => {
  const fake = startFakePolygon({ apiKey: KEY });
  try {
    const older = await handshake(fake, "XQ.*");
    const newer = await handshake(fake, "XQ.*");
    assert.equal(
      await older.next(),
      '[{"ev":"status","status":"max_connections","message":"Maximum number of websocket ' +
        'connections exceeded. You have reached the connection limit for your account."}]',
    );
    assert.equal((await older.closed).code, 1008);
    assert.equal(newer.socket.readyState, WebSocket.OPEN);
    assert.equal(fake.stats.evictions, 1);
    assert.equal(fake.stats.authenticatedNow, 1);
    assert.equal(fake.stats.authenticatedMax, 1, "never two authenticated connections at once");
    await newer.close();
    await waitFor(() => fake.stats.authenticatedNow === 0, "the close to be seen");
  } finally {
    await fake.close();
  }
});

Deno.test("a live fake sends on while nobody is subscribed and counts those frames as missed", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(1_000), rate: 200, live: true });
  try {
    const first = await handshake(fake, "XQ.*");
    await waitFor(() => first.data().length >= 5, "5 frames");
    await first.close();
    const missedFrom = fake.stats.cursor;
    await waitFor(() => fake.stats.framesMissed >= 10, "10 missed frames");
    const second = await handshake(fake, "XQ.*");
    await waitFor(() => second.data().length >= 5, "5 frames on the second connection");
    await second.close();
    // Every frame went either to a connection or to nobody, in order, none twice.
    const sent = [...first.data(), ...second.data()].map((f) => Number(/"t":(\d+)/.exec(f)![1]));
    const missed = fake.stats.missed;
    assert.ok(missed[0]! >= missedFrom - 1, "missing starts after the first connection closed");
    assert.deepEqual(missed, Array.from({ length: missed.length }, (_, i) => missed[0]! + i));
    const all = [...sent, ...missed.map((i) => Number(/"t":(\d+)/.exec(quotes(1_000)[i]!)![1]))]
      .sort((a, b) => a - b);
    assert.equal(new Set(all).size, all.length, "no frame both sent and missed");
  } finally {
    await fake.close();
  }
});

Deno.test("fake evicts mid-stream after the scripted number of frames", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(10), faults: [{ evictAfter: 3 }] });
  try {
    const client = await handshake(fake, "XQ.*");
    assert.equal((await client.closed).code, 1008);
    assert.equal(client.data().length, 3);
    assert.match(client.frames.at(-1)!, /"status":"max_connections"/);
  } finally {
    await fake.close();
  }
});

Deno.test("fake refuses the first connections with HTTP 503", async () => {
  const fake = startFakePolygon({ apiKey: KEY, faults: [{ refuse: 503 }, { refuse: 503 }] });
  try {
    for (let i = 0; i < 2; i++) {
      const response = await fetch(fake.url.replace("ws:", "http:"));
      assert.equal(response.status, 503);
      assert.equal(await response.text(), "refused by fake\n");
    }
    const client = await handshake(fake, "XQ.*");
    await client.close();
    assert.equal(fake.stats.connections, 3);
    assert.equal(fake.stats.refused, 2);
  } finally {
    await fake.close();
  }
});

Deno.test("fake inserts garbage frames without advancing the replay", async () => {
  const frames = quotes(5);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames,
    faults: [{ garbage: { after: 2, frames: ["{not json", "[1,2"] } }],
  });
  try {
    const client = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => client.data().length === 7, "7 frames");
    assert.deepEqual(client.data(), [
      ...frames.slice(0, 2),
      "{not json",
      "[1,2",
      ...frames.slice(2),
    ]);
    assert.equal(fake.stats.garbageSent, 2);
    assert.equal(fake.stats.framesSent, 5);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake paces frames at the given rate", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(11), rate: 100 });
  try {
    const client = await handshake(fake, "XQ.*");
    const start = performance.now();
    await fake.done;
    const elapsed = performance.now() - start;
    // Frame i is due at i × 10 ms: the last one at 100 ms.
    assert.ok(elapsed >= 80 && elapsed < 400, `elapsed ${elapsed} ms`);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake starts the exchange-time clock at the first frame that has a time", async () => {
  // Status frames first, as in a recording: they have no t. Then 100 ms of exchange time.
  const frames = [
    '[{"ev":"status","status":"connected","message":"Connected Successfully"}]',
    '[{"ev":"status","status":"auth_success","message":"authenticated"}]',
    quote("BTC-USD", 1_626_828_416_000),
    quote("BTC-USD", 1_626_828_416_050),
    quote("BTC-USD", 1_626_828_416_100),
  ];
  const fake = startFakePolygon({ apiKey: KEY, frames, speed: 1 });
  try {
    const client = await handshake(fake, "XQ.*");
    const start = performance.now();
    // Before the fix the wait after the untimed frames was about 1.6e12 ms: give up after 5 s.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finished = await Promise.race([
      fake.done.then(() => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5_000)),
    ]);
    clearTimeout(timer);
    const elapsed = performance.now() - start;
    assert.ok(finished, "the fake never finished its replay");
    assert.ok(elapsed >= 80 && elapsed < 2_000, `elapsed ${elapsed} ms`);
    await waitFor(() => client.data().length === 3, "the 3 quote frames");
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake paces by exchange time at the given speed, bursts excepted", async () => {
  // t advances 20 ms per frame: 10 frames span 180 ms of exchange time, 90 ms at speed 2.
  const frames = Array.from({ length: 10 }, (_, i) => quote("BTC-USD", 1_000 + i * 20));
  const paced = startFakePolygon({ apiKey: KEY, frames, speed: 2 });
  const burst = startFakePolygon({
    apiKey: KEY,
    frames,
    speed: 2,
    faults: [{ burst: { after: 0, count: 10 } }],
  });
  try {
    for (const [fake, min, max] of [[paced, 70, 400], [burst, 0, 40]] as const) {
      const client = await handshake(fake, "XQ.*");
      const start = performance.now();
      await fake.done;
      const elapsed = performance.now() - start;
      assert.ok(elapsed >= min && elapsed < max, `elapsed ${elapsed} ms`);
      await client.close();
    }
  } finally {
    await paced.close();
    await burst.close();
  }
});

Deno.test("fake paces by exchange time from the first frame that has one, not from a status frame before it", async () => {
  // A recording opens with status frames that carry no t (fixtures/btc.jsonl does): they must
  // not start the clock at t = 0, which would put the first quote decades away.
  const status = '[{"ev":"status","status":"connected","message":"Connected Successfully"}]';
  const frames = [status, ...Array.from({ length: 5 }, (_, i) => quote("BTC-USD", 1e12 + i * 20))];
  const fake = startFakePolygon({ apiKey: KEY, frames, speed: 1 });
  try {
    const client = await handshake(fake, "XQ.*");
    const start = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => timer = setTimeout(resolve, 3000));
    await Promise.race([fake.done, late]);
    clearTimeout(timer);
    const elapsed = performance.now() - start;
    // 80 ms of exchange time at speed 1.
    assert.ok(elapsed >= 60 && elapsed < 2000, `elapsed ${elapsed} ms`);
    await client.close();
  } finally {
    await fake.close();
  }
});

captureTest({
  name: "fake replays the whole capture unpaced while a client reads",
  async fn() {
    const lines = await readCapture();
    const fake = startFakePolygon({ apiKey: KEY, frames: lines });
    try {
      const client = await handshake(fake, "XQ.*");
      await fake.done;
      await waitFor(() => client.data().length === 9857, "9857 frames");
      assert.deepEqual(client.data(), lines);
      await client.close();
    } finally {
      await fake.close();
    }
  },
});

const NOT_AUTHORIZED = '[{"ev":"status","status":"error","message":"not authorized"}]';

Deno.test("fake refuses topics outside the plan with the real message, naming no topic", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    frames: quotes(6, ["BTC-USD", "ETH-USD"]),
    notInPlan: ["XQ.ETH-USD"],
  });
  try {
    const client = await handshake(fake, "XQ.BTC-USD");
    client.send({ action: "subscribe", params: "XQ.ETH-USD" });
    await fake.done;
    await waitFor(() => client.frames.length === 2 + 1 + 1 + 3, "3 BTC-USD frames");
    assert.ok(client.frames.includes(NOT_AUTHORIZED));
    assert.deepEqual(client.data(), quotes(6, ["BTC-USD", "ETH-USD"]).filter((f) => /BTC/.test(f)));
    assert.equal(fake.stats.refusals, 1);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake confirms a pair it never sends, and leaves a channel it lacks unanswered", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(3), channels: ["XQ"] });
  try {
    // A misspelt pair: confirmed, then silence.
    const client = await handshake(fake, "XQ.BTC-USDX");
    client.send({ action: "subscribe", params: "XT.BTC-USD" });
    await fake.done;
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(client.data(), []);
    assert.equal(client.frames.length, 3, "no answer for XT");
    assert.equal(fake.stats.framesFiltered, 3);
    assert.equal(fake.stats.unanswered, 1);
    await client.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake sends the connect event as success and the auth reply with a chosen message", async () => {
  const fake = startFakePolygon({
    apiKey: KEY,
    faults: [{ connectEvent: "success", auth: "auth_failed", authMessage: "Your plan lacks it" }],
  });
  try {
    const client = new RawClient(fake.url);
    assert.equal(
      await client.next(),
      '[{"ev":"status","status":"success","message":"Connected Successfully"}]',
    );
    client.send({ action: "auth", params: KEY });
    assert.equal(
      await client.next(),
      '[{"ev":"status","status":"auth_failed","message":"Your plan lacks it"}]',
    );
    assert.equal((await client.closed).code, 1008);
  } finally {
    await fake.close();
  }
});

Deno.test("fake vanishes: no frame, no answer, no close after the scripted frames", async () => {
  const fake = startFakePolygon({ apiKey: KEY, frames: quotes(10), faults: [{ vanishAfter: 3 }] });
  try {
    const client = await handshake(fake, "XQ.*");
    await waitFor(() => client.data().length === 3, "3 frames");
    client.send({ action: "subscribe", params: "XQ.*" });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(client.frames.length, 3 + 3, "the subscribe got no answer");
    assert.equal(client.socket.readyState, WebSocket.OPEN);
    await client.close();
    // The next connection resumes the replay.
    const second = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => second.data().length === 7, "7 frames");
    await second.close();
  } finally {
    await fake.close();
  }
});

Deno.test("fake sends statuses mid-stream, alone or in a data frame, and closes on force_disconnect", async () => {
  const frames = quotes(6);
  const fake = startFakePolygon({
    apiKey: KEY,
    frames,
    faults: [
      { status: { after: 2, status: "force_disconnect", message: "bye" } },
      { status: { after: 1, status: "error", message: "oops", withData: true } },
    ],
  });
  try {
    const first = await handshake(fake, "XQ.*");
    assert.equal((await first.closed).code, 1008);
    assert.equal(
      first.frames.at(-1),
      '[{"ev":"status","status":"force_disconnect","message":"bye"}]',
    );
    assert.equal(first.data().length, 2);
    const second = await handshake(fake, "XQ.*");
    await fake.done;
    await waitFor(() => second.frames.length === 2 + 1 + 4, "4 frames");
    assert.equal(
      second.frames[4],
      '[{"ev":"status","status":"error","message":"oops"},' + frames[3]!.slice(1),
    );
    assert.equal(second.socket.readyState, WebSocket.OPEN);
    await second.close();
  } finally {
    await fake.close();
  }
});
