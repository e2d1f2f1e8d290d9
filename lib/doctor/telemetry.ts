/**
 * Telemetry checks: the metrics port can be bound (then released at once), and InfluxDB, when
 * INFLUX_URL is set, answers `/ping` and accepts one point written the way the producer writes
 * (the same {@linkcode InfluxWriter}, the configured database or bucket). No credential is
 * printed: URLs are shown without their user info.
 */
import type { TelemetryConfig } from "../config/telemetry.ts";
import { InfluxWriter } from "../telemetry/influx.ts";
import type { CheckResult } from "./verdict.ts";

/** Options for {@linkcode checkTelemetry}. */
export interface TelemetryCheckOptions {
  /** HTTP client; default the global `fetch`. */
  fetch?: typeof fetch;
  /** Per-request timeout, ms; default 5,000. */
  timeoutMs?: number;
  /** The point's `service` tag; default "doctor". */
  service?: string;
}

/** The measurement of the one point the doctor writes. */
export const DOCTOR_MEASUREMENT = "crypto_doctor_check";

/** A URL without user info (InfluxDB v1 credentials may sit there). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.href.replace(/\/+$/, "");
  } catch {
    return "(an invalid URL)";
  }
}

/** Checks the metrics port and InfluxDB. */
export async function checkTelemetry(
  config: TelemetryConfig,
  options: TelemetryCheckOptions = {},
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 5_000;
  if (config.metricsPort !== undefined) {
    const where = `${config.metricsHost}:${config.metricsPort}`;
    try {
      const listener = Deno.listen({ hostname: config.metricsHost, port: config.metricsPort });
      listener.close();
      out.push({
        group: "telemetry",
        check: "metrics port",
        verdict: "ok",
        message: `${where} can be bound (/metrics, /healthz)`,
      });
    } catch (error) {
      out.push({
        group: "telemetry",
        check: "metrics port",
        verdict: "fail",
        message: `Cannot bind ${where}: ${error instanceof Error ? error.name : error}` +
          (error instanceof Deno.errors.AddrInUse ? " (another process listens there)" : ""),
        fix: `stop that process or set METRICS_PORT (--metrics-port) to a free port, 0 for any`,
      });
    }
  }
  const influx = config.influx;
  if (!influx) return out;
  const base = safeUrl(influx.url);
  const target = influx.api === "v2" ? `bucket "${influx.bucket}"` : `database "${influx.db}"`;
  try {
    const response = await doFetch(`${influx.url.replace(/\/\/[^/@]*@/, "//")}/ping`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    if (response.status !== 204 && !response.ok) throw new Error(`status ${response.status}`);
    out.push({
      group: "telemetry",
      check: "InfluxDB ping",
      verdict: "ok",
      message: `${base} answers (${
        response.headers.get("x-influxdb-version") ?? "version not said"
      })`,
    });
  } catch (error) {
    out.push({
      group: "telemetry",
      check: "InfluxDB ping",
      verdict: "fail",
      message: `Cannot reach InfluxDB at ${base}: ${
        error instanceof Error ? `${error.name}: ${error.message}` : error
      }`,
      fix: `start InfluxDB or fix INFLUX_URL (Aiven for InfluxDB ended on 2025-04-30: point it ` +
        `at your own InfluxDB 1.8+/2.x/3.x), or unset INFLUX_URL`,
    });
    return out;
  }
  let failure = "";
  const writer = new InfluxWriter({
    ...influx,
    timeoutMs,
    fetch: doFetch,
    log: (line) => failure = line,
  });
  writer.enqueue([{
    measurement: DOCTOR_MEASUREMENT,
    tags: { service: options.service ?? "doctor" },
    fields: { ok: 1 },
    timeMs: Date.now(),
  }]);
  await writer.flush();
  if (writer.written === 1) {
    out.push({
      group: "telemetry",
      check: "InfluxDB write",
      verdict: "ok",
      message: `wrote one "${DOCTOR_MEASUREMENT}" point to ${target}`,
    });
  } else {
    out.push({
      group: "telemetry",
      check: "InfluxDB write",
      verdict: "fail",
      message: failure || `InfluxDB at ${base} did not accept a point to ${target}`,
      fix: influx.api === "v2"
        ? `check INFLUX_ORG, INFLUX_BUCKET and INFLUX_TOKEN (the token needs write on the bucket)`
        : `create the database (CREATE DATABASE ${influx.db}) or fix INFLUX_DB, INFLUX_USER ` +
          `and INFLUX_PASSWORD`,
    });
  }
  return out;
}
