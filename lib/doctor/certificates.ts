/**
 * Certificate checks: the files Kafka's TLS needs are readable and parse, the client
 * certificate and key belong together and were issued by the CA, and how many days each
 * certificate has left (Aiven's last 820 days; a renewed pair must be downloaded and
 * acknowledged, docs/aiven.md). Key contents are never printed.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { fileErrorReason } from "../config/errors.ts";
import type { CheckResult } from "./verdict.ts";

/** Fewer days left than this is a warning. */
export const EXPIRY_WARNING_DAYS = 30;

/** The files to check, by their variables; a missing entry is not needed by the security mode. */
export interface CertificatePaths {
  /** KAFKA_SSL_CA: needed by `ssl` and `sasl_ssl`. */
  ca?: string;
  /** KAFKA_SSL_CERT: needed by `ssl` (client-certificate auth). */
  cert?: string;
  /** KAFKA_SSL_KEY: needed by `ssl`. */
  key?: string;
}

/** Options for {@linkcode checkCertificates}. */
export interface CertificateCheckOptions {
  /** Reads a file as text; default `Deno.readTextFileSync`. */
  readTextFile?: (path: string) => string;
  /** The clock, ms since the epoch; default `Date.now()`. */
  nowMs?: number;
}

const RENEW = "download the renewed files (Aiven: service → Access & Control → Users → the " +
  "user → Show access key / Show access cert, or avn service user-creds-download), then " +
  "acknowledge the renewal (… → Acknowledge certificate, or avn service user-creds-acknowledge)";

/** Checks the certificate files for one security mode; none for plaintext. */
export function checkCertificates(
  paths: CertificatePaths,
  options: CertificateCheckOptions = {},
): CheckResult[] {
  const read = options.readTextFile ?? ((p: string) => Deno.readTextFileSync(p));
  const now = options.nowMs ?? Date.now();
  const out: CheckResult[] = [];
  const result = (check: string, verdict: CheckResult["verdict"], message: string, fix?: string) =>
    out.push({ group: "certificates", check, verdict, message, ...(fix ? { fix } : {}) });

  const load = (path: string, variable: string): string | undefined => {
    try {
      return read(path);
    } catch (error) {
      result(
        variable,
        "fail",
        `Cannot read "${path}": ${fileErrorReason(error)}`,
        `put the file there or set ${variable} (Aiven: Overview → Connection information)`,
      );
      return undefined;
    }
  };
  const parseCert = (path: string, variable: string, text: string) => {
    try {
      return new X509Certificate(text);
    } catch (error) {
      result(
        variable,
        "fail",
        `"${path}" is not a PEM certificate (${error instanceof Error ? error.message : error})`,
        `download it again from the Aiven console and point ${variable} at it`,
      );
      return undefined;
    }
  };
  const expiry = (path: string, variable: string, cert: X509Certificate) => {
    const to = Date.parse(cert.validTo);
    const from = Date.parse(cert.validFrom);
    const days = Math.floor((to - now) / 86_400_000);
    const until = new Date(to).toISOString().slice(0, 10);
    if (now < from) {
      result(
        variable,
        "fail",
        `"${path}" is not valid before ${cert.validFrom}`,
        `check the clock`,
      );
    } else if (to <= now) {
      result(variable, "fail", `"${path}" expired on ${until}`, RENEW);
    } else if (days < EXPIRY_WARNING_DAYS) {
      result(variable, "warning", `"${path}" expires in ${days} days (${until})`, RENEW);
    } else {
      result(variable, "ok", `"${path}" parses; expires in ${days} days (${until})`);
    }
  };

  let ca: X509Certificate | undefined;
  if (paths.ca !== undefined) {
    const text = load(paths.ca, "KAFKA_SSL_CA");
    ca = text === undefined ? undefined : parseCert(paths.ca, "KAFKA_SSL_CA", text);
    if (ca) expiry(paths.ca, "KAFKA_SSL_CA", ca);
  }
  let cert: X509Certificate | undefined;
  if (paths.cert !== undefined) {
    const text = load(paths.cert, "KAFKA_SSL_CERT");
    cert = text === undefined ? undefined : parseCert(paths.cert, "KAFKA_SSL_CERT", text);
    if (cert) expiry(paths.cert, "KAFKA_SSL_CERT", cert);
  }
  let key: KeyObject | undefined;
  if (paths.key !== undefined) {
    const text = load(paths.key, "KAFKA_SSL_KEY");
    if (text !== undefined) {
      try {
        key = createPrivateKey(text);
        result("KAFKA_SSL_KEY", "ok", `"${paths.key}" is a ${key.asymmetricKeyType} private key`);
      } catch {
        // The parser's message may quote the file: say only that it did not parse.
        result(
          "KAFKA_SSL_KEY",
          "fail",
          `"${paths.key}" is not an unencrypted PEM private key`,
          `download service.key again from the Aiven console and point KAFKA_SSL_KEY at it`,
        );
      }
    }
  }
  if (cert && key && paths.cert && paths.key) {
    if (cert.checkPrivateKey(key)) {
      result("certificate and key", "ok", `"${paths.cert}" and "${paths.key}" belong together`);
    } else {
      result(
        "certificate and key",
        "fail",
        `"${paths.key}" is not the key of "${paths.cert}": the TLS handshake cannot succeed`,
        `download service.cert and service.key of the same user again (a renewal replaces both)`,
      );
    }
  }
  if (cert && ca && paths.cert && paths.ca) {
    if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) {
      result("certificate issuer", "ok", `"${paths.cert}" is signed by "${paths.ca}"`);
    } else {
      result(
        "certificate issuer",
        "warning",
        `"${paths.cert}" is not signed by "${paths.ca}" (issuer "${cert.issuer}"): a broker ` +
          `that trusts only this CA rejects it`,
        `download ca.pem and the client files of the same Aiven project`,
      );
    }
  }
  return out;
}
