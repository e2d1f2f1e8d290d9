/**
 * The Polygon (Massive) check: one connection with the producer's own client, subscribed to what
 * produce subscribes to (every pair on every channel of `--channels`), released as soon as the
 * subscription is confirmed (or refused). It reports the key's authentication, the plan's answer
 * in the server's words (a plan that refuses one channel fails: produce would stream without it,
 * or exit with code 6 when it refuses them all), and warns that the account's one
 * connection per cluster is now taken: a producer of the same account that is streaming was
 * just evicted (`max_connections`), and one started while the check runs evicts it.
 */
import type { PolygonConfig } from "../config/polygon.ts";
import { PolygonClient } from "../polygon/client.ts";
import { AuthFailedError, MaxConnectionsError, PlanError } from "../polygon/protocol.ts";
import { channelOfTopic } from "../channels/registry.ts";
import type { CheckResult } from "./verdict.ts";

/** Options for {@linkcode checkPolygon}. */
export interface PolygonCheckOptions {
  /** Longest wait for the subscription to be answered, ms; default 15,000. */
  timeoutMs?: number;
  /** WebSocket factory; default the global `WebSocket`. */
  webSocketFactory?: (url: string) => WebSocket;
  /**
   * The channels produce carries (`--channels`, checked by `parseChannels`); every pair is
   * subscribed on each, as produce does. Default `["XQ"]`.
   */
  channels?: readonly string[];
}

/**
 * Connects once, authenticates, subscribes to every topic produce subscribes to, and
 * disconnects at once.
 */
export async function checkPolygon(
  config: Pick<PolygonConfig, "url" | "apiKey" | "pairs">,
  options: PolygonCheckOptions = {},
): Promise<CheckResult[]> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const channels = options.channels ?? ["XQ"];
  const host = safeHost(config.url);
  const stop = new AbortController();
  const lines: string[] = [];
  let streaming = false;
  let authenticated = false;
  const client = new PolygonClient({
    url: config.url,
    apiKey: config.apiKey,
    pairs: config.pairs,
    channels,
    onFrame: () => {},
    onState: (state) => {
      if (state === "subscribing") authenticated = true;
      if (state === "streaming") {
        streaming = true;
        stop.abort(); // Confirmed: release the connection at once.
      }
    },
    log: (line) => lines.push(line),
    subscribeTimeoutMs: Math.min(10_000, timeoutMs),
    webSocketFactory: options.webSocketFactory,
  });
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  const out: CheckResult[] = [];
  const result = (check: string, verdict: CheckResult["verdict"], message: string, fix?: string) =>
    out.push({ group: "polygon", check, verdict, message, ...(fix ? { fix } : {}) });
  try {
    await client.run(stop.signal);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof PlanError) {
      if (authenticated) result("API key", "ok", `the key authenticates at ${host}`);
      result(
        "plan",
        "fail",
        message,
        `the channels of --channels (${channels.join(",")}) over WebSocket need a Massive plan ` +
          `that includes them (the free plan does not; massive.com/pricing), or leave out the ` +
          `ones it lacks (POLYGON_CHANNELS); produce would exit with code 6`,
      );
    } else if (error instanceof AuthFailedError) {
      result(
        "API key",
        "fail",
        message,
        `set POLYGON_API_KEY to the key shown on massive.com ` +
          `(Dashboard → API Keys); produce would exit with code 3`,
      );
    } else if (error instanceof MaxConnectionsError) {
      result(
        "API key",
        "fail",
        message,
        `another process of this account holds its one connection to this cluster: stop it, ` +
          `or ask Massive support for more connections; produce would exit with code 4`,
      );
    } else {
      result("connection", "fail", message, "check POLYGON_URL and the network");
    }
    return out;
  } finally {
    clearTimeout(timer);
  }
  if (!streaming) {
    const last = lines.filter((l) => !/: stopped$/.test(l)).at(-1);
    result(
      "connection",
      "fail",
      `No confirmed subscription from Polygon at ${host} within ${timeoutMs / 1000} s` +
        (last ? ` (last: ${last})` : ""),
      "check POLYGON_URL, the network and status.massive.com",
    );
    return out;
  }
  result("API key", "ok", `the key authenticates at ${host}`);
  const refused = client.refused;
  if (refused.length > 0) {
    const lacking = [...new Set(refused.map(channelOfTopic))];
    result(
      "plan",
      "fail",
      `your Polygon plan does not include ${refused.join(",")} (subscription to ` +
        `${client.topics.join(",")} confirmed): produce would stream without ${lacking.join(",")}`,
      `use a Massive plan that includes ${lacking.join(",")} (massive.com/pricing), or leave ` +
        `${lacking.join(",")} out of --channels (POLYGON_CHANNELS)`,
    );
  } else {
    result("plan", "ok", `subscription to ${client.topics.join(",")} confirmed`);
  }
  result(
    "one connection",
    "warning",
    `this check used the account's one connection to ${host} and released it: a producer ` +
      `of the same account (any key) that was streaming has just been evicted with ` +
      `max_connections, and two producers of one account evict each other`,
    `run the doctor before starting the producer, and one producer per account and cluster ` +
      `(or --standby-group for failover, docs/failover.md)`,
  );
  return out;
}

/** The URL's scheme, host and path (the key is never in it, but be safe). */
function safeHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(an invalid URL)";
  }
}
