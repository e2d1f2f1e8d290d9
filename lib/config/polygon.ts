/** The Polygon config builder: the key, the pairs, the host and the client's timings. */
import { ConfigError } from "./errors.ts";
import { requireString } from "./parse.ts";
import { type SettingsOf } from "./settings.ts";

/** Polygon connection and read-path settings. */
export interface PolygonConfig {
  url: string;
  apiKey: string;
  /** Upper-cased `BASE-QUOTE` pairs, or `["*"]`. */
  pairs: string[];
  staleAfterMs: number;
  quietAfterMs: number;
  backoffMaxMs: number;
  recordPath?: string;
  queueMax: number;
  queuePolicy: "drop-oldest" | "drop-newest";
}

/** Hosts documented to carry crypto quotes (XQ); the first is the default. */
export const XQ_HOSTS: readonly string[] = ["socket.massive.com", "socket.polygon.io"];

/** Whether a URL's hostname is this machine: `localhost`, `127.x.y.z` or `[::1]`. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Options for {@linkcode buildPolygonConfig}. */
export interface BuildPolygonOptions {
  /** Writes a warning; default `console.error`. */
  warn?: (message: string) => void;
}

/**
 * Checks and upper-cases the `--pairs` list: each pair is `BASE-QUOTE` as Polygon lists them
 * (`btc-usd` becomes `BTC-USD`), or `*` for every pair.
 */
export function normalizePairs(pairs: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of pairs) {
    const p = raw.toUpperCase();
    if (p === "*") return ["*"];
    if (/^X[QT]\./.test(p)) {
      throw new ConfigError(
        `--pairs must list pairs without the channel, got "${raw}"; use "${p.slice(3)}"`,
      );
    }
    if (!/^[A-Z0-9]+-[A-Z0-9]+$/.test(p)) {
      throw new ConfigError(
        `--pairs must list pairs as BASE-QUOTE, like BTC-USD, or *, got "${raw}"`,
      );
    }
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

/**
 * Builds the Polygon config from parsed settings; warns on a host not known to carry XQ and
 * refuses `ws://` to a host other than loopback (the key would travel in clear text).
 */
export function buildPolygonConfig(
  settings: SettingsOf<"producer">,
  options: BuildPolygonOptions = {},
): PolygonConfig {
  const warn = options.warn ?? ((m: string) => console.error(m));
  const apiKey = requireString(settings, "polygonApiKey");
  const url = requireString(settings, "polygonUrl");
  let parsedUrl: URL | undefined;
  try {
    parsedUrl = new URL(url);
  } catch {
    // Reported below.
  }
  if (!/^wss?:\/\//.test(url) || parsedUrl === undefined) {
    throw new ConfigError(`--url must be a ws:// or wss:// URL, got "${url}"`);
  }
  const host = parsedUrl.hostname;
  const loopback = isLoopbackHost(host);
  if (parsedUrl.protocol === "ws:" && !loopback) {
    // The auth message carries the API key: in clear text over ws://.
    throw new ConfigError(
      `--url (POLYGON_URL) must use wss:// for host "${host}", got "${url}": ws:// would send ` +
        `the API key unencrypted; use "wss://${url.slice("ws://".length)}" ` +
        `(ws:// is only for loopback, like the fake)`,
    );
  }
  if (!loopback && (!XQ_HOSTS.includes(host) || parsedUrl.pathname !== "/crypto")) {
    warn(
      `WARNING: --url "${url}" is not known to carry crypto quotes (XQ): they are documented ` +
        `on ${XQ_HOSTS.map((h) => `wss://${h}/crypto`).join(" and ")}; the delayed and ` +
        `business hosts do not carry XQ`,
    );
  }
  const pairs = normalizePairs(settings.pairs);
  const staleAfterMs = settings.staleAfter * 1000;
  if (staleAfterMs <= 0) throw new ConfigError(`--stale-after must be above 0, got "0"`);
  const quietAfterMs = settings.quietAfter * 1000;
  if (quietAfterMs < staleAfterMs) {
    throw new ConfigError(
      `--quiet-after must be at least --stale-after (${staleAfterMs / 1000}), got ` +
        `"${quietAfterMs / 1000}"`,
    );
  }
  const config: PolygonConfig = {
    url,
    apiKey,
    pairs,
    staleAfterMs,
    quietAfterMs,
    backoffMaxMs: settings.backoffMax * 1000,
    queueMax: settings.queueMax,
    queuePolicy: settings.queuePolicy,
  };
  if (settings.record !== undefined) config.recordPath = settings.record;
  return config;
}
