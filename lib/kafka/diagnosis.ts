/**
 * What a failed Kafka connection means and how the adapters tell it: the messages of an error
 * chain, an explanation a user can act on (TLS or SASL refused us, or the port expects TLS), a
 * TLS probe for clients that only say "Connection closed", and log lines with every secret of the
 * config removed and repeats counted instead of printed.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { deadline } from "../async.ts";
import type { KafkaConfig } from "../config/kafka.ts";

/** Removes every secret of `config` (SASL password, client key) from a line of text. */
export function redact(text: string, config: KafkaConfig): string {
  let out = text.replace(
    /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
    "(private key hidden)",
  );
  const password = config.sasl?.password;
  if (password) out = out.split(password).join("(hidden)");
  return out;
}

/** Repeats of one log line within this window are counted, not printed. */
export const LOG_REPEAT_WINDOW_MS = 10_000;

/**
 * A writer of client log lines: redacted, and during an outage (when a client logs the same
 * failure on every retry) a line seen within the last 10 s is counted instead of printed; the
 * count is added to the next line printed for it. `key` groups lines that repeat.
 */
export function throttledLog(
  config: KafkaConfig,
  write: (line: string) => void,
  now: () => number = Date.now,
): (key: string, line: string) => void {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return (key, line) => {
    const last = seen.get(key);
    const t = now();
    if (last && t - last.at < LOG_REPEAT_WINDOW_MS) {
      last.suppressed++;
      return;
    }
    if (seen.size > 1000) seen.clear();
    seen.set(key, { at: t, suppressed: 0 });
    const repeats = last?.suppressed ? ` (${last.suppressed} more like it not shown)` : "";
    write(redact(line + repeats, config));
  };
}

const TLS_SERVER_UNTRUSTED = [
  "self-signed certificate",
  "self signed certificate",
  "unable to verify",
  "unable to get local issuer",
  "UnknownIssuer",
  "certificate signature failure",
];
const TLS_CLIENT_REJECTED = [
  "CertificateUnknown",
  "BadCertificate",
  "UnknownCA",
  "CertificateRequired",
  "certificate unknown",
  "bad certificate",
  "unknown ca",
  "certificate required",
  "AccessDenied",
];
const TLS_OTHER = [
  "certificate has expired",
  "CERT_HAS_EXPIRED",
  "does not match certificate",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "NotValidForName",
  "fatal alert",
  "HandshakeFailure",
];

/** The messages of an error and of everything it wraps (`cause`, `errors`, `originalError`). */
export function errorChain(error: unknown, depth = 0): string[] {
  if (depth > 6 || error === null || error === undefined) return [];
  if (typeof error !== "object") return [String(error)];
  const e = error as {
    message?: string;
    cause?: unknown;
    errors?: unknown[];
    originalError?: unknown;
  };
  const out = e.message ? [e.message] : [];
  for (const inner of e.errors ?? []) out.push(...errorChain(inner, depth + 1));
  out.push(...errorChain(e.cause, depth + 1), ...errorChain(e.originalError, depth + 1));
  return out;
}

/** The innermost message of an error chain (the cause a user can act on). */
export function rootMessage(error: unknown): string {
  const chain = errorChain(error);
  return chain[chain.length - 1] ?? String(error);
}

/**
 * Explains a failed connection attempt; `fatal` when retrying cannot help. `saslFailure` is
 * the adapter's reading of a SASL authentication error in the chain, if there is one.
 */
export function explainFailure(
  error: unknown,
  config: KafkaConfig,
  saslFailure: string | undefined,
): { fatal: boolean; text: string } {
  if (saslFailure !== undefined) {
    const user = config.sasl?.username ?? "";
    const mech = config.sasl?.mechanism.toUpperCase() ?? "SASL";
    return {
      fatal: true,
      text: `${mech} authentication failed for user "${user}": ${saslFailure}; check ` +
        `KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM`,
    };
  }
  if (config.security === "ssl" && keyMismatch(config)) {
    return {
      fatal: true,
      text: `TLS cannot start: the client key (KAFKA_SSL_KEY) is not the key of the client ` +
        `certificate (KAFKA_SSL_CERT); download service.cert and service.key of the same user`,
    };
  }
  const chain = errorChain(error);
  const cause = rootMessage(error);
  const has = (words: string[]) => chain.some((m) => words.some((w) => m.includes(w)));
  const which = (words: string[]) => chain.find((m) => words.some((w) => m.includes(w))) ?? cause;
  if (config.security !== "plaintext") {
    if (has(TLS_SERVER_UNTRUSTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${which(TLS_SERVER_UNTRUSTED)}; the broker's certificate ` +
          `is not signed by the CA in KAFKA_SSL_CA`,
      };
    }
    if (has(TLS_CLIENT_REJECTED)) {
      return {
        fatal: true,
        text: `TLS handshake failed: ${which(TLS_CLIENT_REJECTED)}; the broker rejected the ` +
          `client certificate (KAFKA_SSL_CERT, KAFKA_SSL_KEY): is it signed by the CA the ` +
          `broker trusts?`,
      };
    }
    if (has(TLS_OTHER)) {
      return { fatal: true, text: `TLS handshake failed: ${which(TLS_OTHER)}` };
    }
  }
  if (config.security === "plaintext" && chain.some((m) => /closed connection|closed/i.test(m))) {
    return {
      fatal: false,
      text: `${cause}; if this port expects TLS, set KAFKA_SECURITY to ssl or sasl_ssl`,
    };
  }
  return { fatal: false, text: cause };
}

/** True when the config's client certificate and key are both set, parse, and do not match. */
export function keyMismatch(config: KafkaConfig): boolean {
  const { cert, key } = config.ssl ?? {};
  if (!cert || !key) return false;
  try {
    return !new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch {
    return false; // Unparsable files are reported by the TLS layer itself.
  }
}

/** "Kafka at "host:port" (security)", as start-up errors name the brokers. */
export function brokersText(config: KafkaConfig): string {
  return `Kafka at "${config.brokers.join(",")}" (${config.security})`;
}

/**
 * Opens one TLS connection to the first broker with the config's certificates and sends a Kafka
 * ApiVersions request, to learn why a TLS connection was closed: with TLS 1.3 a broker rejects a
 * client certificate only after the handshake, and some clients report just "Connection
 * closed". Resolves with the TLS error's message, or undefined when the broker answered (or
 * nothing was learnt within `timeoutMs`).
 */
export async function probeTls(
  config: KafkaConfig,
  timeoutMs = 3_000,
): Promise<string | undefined> {
  const broker = config.brokers[0];
  if (!broker || !config.ssl) return undefined;
  const i = broker.lastIndexOf(":");
  const host = broker.slice(0, i);
  const port = Number(broker.slice(i + 1));
  const { ca, cert, key, rejectUnauthorized } = config.ssl;
  const result = Promise.withResolvers<string | undefined>();
  const socket = tls.connect({
    host,
    port,
    ca: [ca],
    rejectUnauthorized,
    ...(config.security === "ssl" && cert && key ? { cert, key } : {}),
    ...(net.isIP(host) ? {} : { servername: host }),
  }, () => socket.write(apiVersionsRequest()));
  socket.on("data", () => result.resolve(undefined));
  socket.on("error", (error: Error) => result.resolve(error.message));
  socket.on("close", () => result.resolve(undefined));
  try {
    return await deadline(result.promise, timeoutMs, { what: "Probing TLS" });
  } catch {
    return undefined; // Nothing learnt in time.
  } finally {
    socket.destroy();
  }
}

/** A Kafka ApiVersions v0 request: size, api key 18, version 0, correlation 1, client "probe". */
function apiVersionsRequest(): Uint8Array {
  const clientId = new TextEncoder().encode("probe");
  const body = new Uint8Array(2 + 2 + 4 + 2 + clientId.length);
  const view = new DataView(body.buffer);
  view.setInt16(0, 18);
  view.setInt16(2, 0);
  view.setInt32(4, 1);
  view.setInt16(8, clientId.length);
  body.set(clientId, 10);
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setInt32(0, body.length);
  frame.set(body, 4);
  return frame;
}
