/**
 * A TCP proxy on loopback that injects network faults between a client and a server (a Kafka
 * producer and the broker's PROXIED listener, see {@linkcode KafkaBroker.proxy}), each bounded in
 * time:
 * - a black hole: every connection stays open and nothing is forwarded either way; bytes wait in
 *   the proxy and the kernel's buffers (as TCP retransmits across a partition), and flow again
 *   when it ends, unless a side gave up and closed meanwhile;
 * - connection drops every N ms: every open connection is closed on both sides;
 * - added latency: every chunk is forwarded `ms` after it arrived, in order.
 *
 * @example
 * ```ts
 * const proxy = startFaultProxy({ port: broker.proxy!.listenPort, target: broker.proxy!.target });
 * await proxy.blackHole(30_000);
 * await proxy.close();
 * ```
 */

/** Options for {@linkcode startFaultProxy}. */
export interface FaultProxyOptions {
  /** Port to listen on, on 127.0.0.1; default 0 (a free one, see {@linkcode FaultProxy.port}). */
  port?: number;
  /** "host:port" to forward to. */
  target: string;
}

/** What the proxy did, for the test's report. */
export interface FaultProxyStats {
  /** Connections accepted. */
  connections: number;
  /** Connections the proxy closed on purpose (drops). */
  dropped: number;
  /** Bytes forwarded client → server and server → client. */
  bytesUp: number;
  bytesDown: number;
}

/** A running fault proxy. */
export interface FaultProxy {
  readonly port: number;
  readonly stats: FaultProxyStats;
  /** Forwards nothing for `ms`, keeping every connection open; resolves when it ends. */
  blackHole(ms: number): Promise<void>;
  /** Closes every open connection every `everyMs` for `forMs`; resolves when it ends. */
  dropEvery(everyMs: number, forMs: number): Promise<void>;
  /** Delays every chunk by `ms` from now on (0: none). */
  setLatency(ms: number): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

interface Link {
  client: Deno.TcpConn;
  server?: Deno.TcpConn;
  closed: boolean;
}

/** Starts a {@linkcode FaultProxy}: forwarding, no fault, until told otherwise. */
export function startFaultProxy(options: FaultProxyOptions): FaultProxy {
  const colon = options.target.lastIndexOf(":");
  const target = {
    hostname: options.target.slice(0, colon),
    port: Number(options.target.slice(colon + 1)),
  };
  const listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
  const stats: FaultProxyStats = { connections: 0, dropped: 0, bytesUp: 0, bytesDown: 0 };
  const links = new Set<Link>();
  let latencyMs = 0;
  /** Resolves when the current black hole ends; undefined when none. */
  let hole: Promise<void> | undefined;
  let closing = false;

  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const shut = (link: Link) => {
    if (link.closed) return;
    link.closed = true;
    links.delete(link);
    for (const c of [link.client, link.server]) {
      try {
        c?.close();
      } catch { /* already closed */ }
    }
  };

  /** Copies `from` to `to` chunk by chunk, holding chunks during a black hole. */
  const pump = async (link: Link, from: Deno.TcpConn, to: Deno.TcpConn, up: boolean) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        while (hole) await hole;
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        if (latencyMs > 0) await sleep(latencyMs);
        while (hole) await hole;
        if (link.closed) break;
        for (let off = 0; off < chunk.length;) off += await to.write(chunk.subarray(off));
        if (up) stats.bytesUp += n;
        else stats.bytesDown += n;
      }
    } catch {
      // A side closed or reset: the link ends.
    }
    shut(link);
  };

  const serve = async (client: Deno.TcpConn) => {
    const link: Link = { client, closed: false };
    links.add(link);
    stats.connections++;
    // The server side is opened once no black hole holds it, as a SYN would wait.
    while (hole) await hole;
    if (link.closed) return;
    try {
      link.server = await Deno.connect(target);
    } catch {
      shut(link);
      return;
    }
    if (link.closed) {
      shut(link);
      return;
    }
    pump(link, client, link.server, true);
    pump(link, link.server, client, false);
  };

  (async () => {
    try {
      for await (const conn of listener) {
        if (closing) {
          conn.close();
          continue;
        }
        serve(conn);
      }
    } catch {
      // The listener closed.
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    stats,
    async blackHole(ms) {
      let end = () => {};
      hole = new Promise<void>((resolve) => end = resolve);
      await sleep(ms);
      hole = undefined;
      end();
    },
    async dropEvery(everyMs, forMs) {
      const until = Date.now() + forMs;
      while (Date.now() + everyMs <= until) {
        await sleep(everyMs);
        for (const link of [...links]) {
          stats.dropped++;
          shut(link);
        }
      }
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    close() {
      closing = true;
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const link of [...links]) shut(link);
      return Promise.resolve();
    },
  };
}

/**
 * Starts a {@linkcode FaultProxy} in front of a test broker's PROXIED listener
 * (`KafkaBroker.proxy`), on the port the broker advertises for it; throws for a broker without one
 * (an external broker).
 */
export function startBrokerProxy(
  broker: { proxy?: { listenPort: number; target: string } },
): FaultProxy {
  if (broker.proxy === undefined) {
    throw new Error("Cannot start a fault proxy: the broker has no PROXIED listener (external)");
  }
  return startFaultProxy({ port: broker.proxy.listenPort, target: broker.proxy.target });
}
