/**
 * Telemetry exposure: an HTTP server with `/metrics` (Prometheus text format, from a prom-client
 * registry), `/healthz` (200 only while data is fresh: quotes arrived within `staleAfterMs`
 * and the sink's acks are flowing; otherwise 503 with a JSON reason) and, when given a `LiveFeed`
 * (`live.ts`), the live page at `/`.
 *
 * Health inputs come through the small {@linkcode HealthSource} interface, which the pipeline
 * implements; the clock is injected. The InfluxDB push lives in `influx.ts`.
 *
 * Every request must name this server in its `Host` header (`127.0.0.1:port`, `localhost:port`,
 * `[::1]:port` or the configured host with the port), else it gets 421: a web page that
 * rebinds its own DNS name to 127.0.0.1 cannot read `/metrics` or `/events`. A server bound to
 * every interface (`0.0.0.0`, `::`) is reachable under names it cannot know and checks nothing.
 *
 * @example
 * ```ts
 * const server = serveTelemetry({
 *   registry: metrics.registry,
 *   hostname: config.metricsHost,
 *   port: config.metricsPort,
 *   health: pipeline.health,
 *   staleAfterMs: polygon.staleAfterMs,
 * });
 * // on shutdown:
 * await server.shutdown();
 * ```
 */
import type { Registry } from "prom-client";
import type { LiveFeed } from "./live.ts";
import { checkHealth, type HealthSource } from "./health.ts";
import { DEFAULTS } from "../config/defaults.ts";

/** Options for {@linkcode telemetryHandler} and {@linkcode serveTelemetry}. */
export interface TelemetryOptions {
  /** The registry served as `/metrics`. */
  registry: Registry;
  /** Health inputs; without them `/healthz` only says the process is up (200). */
  health?: HealthSource;
  /** Freshness limit for quotes and acks, in ms; default 30,000 (the `--stale-after` default). */
  staleAfterMs?: number;
  /** Clock in ms since the epoch; default `Date.now`. */
  now?: () => number;
  /** The live page (`/`, `/events`); default none (then `/` is 404). */
  live?: LiveFeed;
  /**
   * The `Host` header values accepted (see {@linkcode allowedHosts}); others get 421.
   * Default: any (`serveTelemetry` always passes the bound address's).
   */
  allowedHosts?: ReadonlySet<string>;
}

/**
 * The `Host` values that name a server bound to `hostname` on `port`: loopback by every name,
 * and the configured host; undefined (any) for a bind to every interface.
 * @example
 * ```ts
 * allowedHosts("127.0.0.1", 9464); // Set {"127.0.0.1:9464", "localhost:9464", "[::1]:9464"}
 * ```
 */
export function allowedHosts(hostname: string, port: number): Set<string> | undefined {
  if (hostname === "0.0.0.0" || hostname === "::" || hostname === "[::]") return undefined;
  const configured = hostname.includes(":") && !hostname.startsWith("[")
    ? `[${hostname}]`
    : hostname;
  const names = ["127.0.0.1", "localhost", "[::1]", configured.toLowerCase()];
  const hosts = new Set(names.map((n) => `${n}:${port}`));
  if (port === 80) { for (const n of names) hosts.add(n); }
  return hosts;
}

/** Options for {@linkcode serveTelemetry}. */
export interface ServeTelemetryOptions extends TelemetryOptions {
  /** Address to bind; default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one; default 9464. */
  port?: number;
  /** Called once listening; default silent. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/** A running telemetry server. */
export interface TelemetryServer {
  /** Bound address (the real port when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** Base URL, e.g. `http://127.0.0.1:9464`. */
  readonly url: string;
  /** Stops accepting, finishes open requests and closes. */
  shutdown(): Promise<void>;
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/**
 * The request handler behind {@linkcode serveTelemetry}: `/metrics`, `/healthz`, and the live
 * page's paths when `live` is given.
 */
export function telemetryHandler(
  options: TelemetryOptions,
): (request: Request) => Promise<Response> {
  const { registry, health } = options;
  const staleAfterMs = options.staleAfterMs ?? DEFAULTS.staleAfterMs;
  const now = options.now ?? Date.now;
  const hosts = options.allowedHosts;
  return async (request) => {
    if (hosts !== undefined) {
      // Deno.serve builds the URL from the Host header; a Request made in code may have none.
      const host = (request.headers.get("host") ?? new URL(request.url).host).toLowerCase();
      if (!hosts.has(host)) {
        const expected = [...hosts][0]!;
        return new Response(
          `Misdirected request: Host "${host.slice(0, 100)}" is not this server; use ` +
            `http://${expected}\n`,
          { status: 421, headers: { "cache-control": "no-store" } },
        );
      }
    }
    const page = options.live?.handle(request);
    if (page) return page;
    const { pathname } = new URL(request.url);
    if (pathname !== "/metrics" && pathname !== "/healthz") {
      const paths = options.live ? "/, /metrics or /healthz" : "/metrics or /healthz";
      return new Response(`Not found: try ${paths}\n`, { status: 404 });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    if (pathname === "/metrics") {
      try {
        const text = await registry.metrics();
        return new Response(text, {
          headers: { "content-type": registry.contentType, "cache-control": "no-store" },
        });
      } catch (error) {
        return new Response(`Cannot render metrics: ${error}\n`, { status: 500 });
      }
    }
    if (!health) {
      return json({ status: "ok", reasons: [], message: "Process is up (no health inputs)" }, 200);
    }
    const report = checkHealth(health, now(), staleAfterMs);
    return json(report, report.status === "unhealthy" ? 503 : 200);
  };
}

/**
 * Serves `/metrics`, `/healthz` (and the live page, when `live` is given) with `Deno.serve` on
 * `hostname:port`.
 */
export function serveTelemetry(options: ServeTelemetryOptions): TelemetryServer {
  const hostname = options.hostname ?? "127.0.0.1";
  // Known once bound (port 0 picks one); no request is served before.
  let handler: (request: Request) => Promise<Response> = () =>
    Promise.resolve(new Response("Starting\n", { status: 503 }));
  const server = Deno.serve({
    hostname,
    port: options.port ?? 9464,
    onListen: (addr) => options.onListen?.(addr),
  }, (request) => handler(request));
  const addr = server.addr;
  handler = telemetryHandler({ ...options, allowedHosts: allowedHosts(hostname, addr.port) });
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    addr,
    url: `http://${host}:${addr.port}`,
    shutdown: () => {
      // Event streams never end by themselves: end them, or shutdown would wait forever.
      options.live?.close();
      return server.shutdown();
    },
  };
}
