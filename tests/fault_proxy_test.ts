import { equal, ok } from "./helpers/assert.ts";
import { startFaultProxy } from "./helpers/fault_proxy.ts";

/** An echo server on a free port; close it with the returned function. */
function echoServer(): { target: string; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    try {
      for await (const conn of listener) {
        (async () => {
          const buffer = new Uint8Array(1024);
          try {
            for (;;) {
              const n = await conn.read(buffer);
              if (n === null) break;
              await conn.write(buffer.subarray(0, n));
            }
          } catch { /* closed */ }
          try {
            conn.close();
          } catch { /* closed */ }
        })();
      }
    } catch { /* closed */ }
  })();
  return {
    target: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: () => listener.close(),
  };
}

/** Sends `text` and resolves with the echo, or null when the connection closes first. */
async function roundTrip(conn: Deno.Conn, text: string): Promise<string | null> {
  await conn.write(new TextEncoder().encode(text));
  const buffer = new Uint8Array(1024);
  const n = await conn.read(buffer).catch(() => null);
  return n === null ? null : new TextDecoder().decode(buffer.subarray(0, n));
}

Deno.test("fault proxy forwards, holds everything during a black hole, delivers it after, and drops connections", async () => {
  const echo = echoServer();
  const proxy = startFaultProxy({ target: echo.target });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    equal(await roundTrip(conn, "one"), "one");
    // A black hole of 300 ms: the echo comes only once it ends.
    const hole = proxy.blackHole(300);
    const sentAt = performance.now();
    const echoed = roundTrip(conn, "two");
    equal(await echoed, "two");
    const waited = performance.now() - sentAt;
    ok(waited >= 250, `echo after ${waited} ms, inside the black hole`);
    await hole;
    // Added latency: about 100 ms each way.
    proxy.setLatency(100);
    const t0 = performance.now();
    equal(await roundTrip(conn, "three"), "three");
    ok(performance.now() - t0 >= 180, "latency added both ways");
    proxy.setLatency(0);
    // Drops: the open connection is closed by the proxy; a new one works.
    await proxy.dropEvery(100, 150);
    equal(await roundTrip(conn, "four"), null);
    conn.close();
    const again = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    equal(await roundTrip(again, "five"), "five");
    again.close();
    equal(proxy.stats.connections, 2);
    equal(proxy.stats.dropped, 1);
  } finally {
    await proxy.close();
    echo.close();
  }
});
