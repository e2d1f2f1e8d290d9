/**
 * Wiring used by entry scripts: the telemetry config to a running server (the live page at `/`,
 * `/metrics`, `/healthz`) and an InfluxDB push loop, each only when configured.
 */
import type { Registry } from "prom-client";
import type { TelemetryConfig } from "../config/telemetry.ts";
import { type HealthSource } from "./health.ts";
import { serveTelemetry, type TelemetryServer } from "./server.ts";
import { type CounterLike, type InfluxPush, startInfluxPush } from "./influx.ts";
import { type GapLog, LiveFeed } from "./live.ts";

/** The telemetry counters every metrics class has. */
interface TelemetryCounters {
  telemetryPointsWritten: CounterLike;
  telemetryPointsDropped: CounterLike;
  telemetryWriteErrors: CounterLike;
}

/** Environment lookups {@linkcode defaultInstance} uses; tests pass fakes. */
export interface InstanceSources {
  /** The host name, or undefined when it cannot be read; default `Deno.hostname()` when the
   * `sys` permission for it is granted (never prompting), else the first line of `/etc/hostname`. */
  hostname?: () => string | undefined;
  /** The process id; default `Deno.pid`. */
  pid?: number;
}

function readHostname(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      return Deno.hostname();
    }
  } catch {
    // Fall through to the file.
  }
  try {
    return Deno.readTextFileSync("/etc/hostname").split("\n")[0]?.trim();
  } catch {
    return undefined;
  }
}

/**
 * The `instance` tag used when `--instance` is unset: `<hostname>:<pid>`, so that two producers
 * on one host, or one on each of two hosts, write separate InfluxDB series.
 * @example
 * ```ts
 * defaultInstance({ hostname: () => "quotes-1", pid: 4242 }); // "quotes-1:4242"
 * ```
 */
export function defaultInstance(sources: InstanceSources = {}): string {
  const raw = (sources.hostname ?? readHostname)() ?? "";
  const host = raw.replace(/[^A-Za-z0-9._-]/g, "") || "localhost";
  return `${host}:${sources.pid ?? Deno.pid}`;
}

/** Options for {@linkcode startTelemetry}. */
export interface StartTelemetryOptions {
  registry: Registry;
  metrics: TelemetryCounters;
  /** Health inputs for `/healthz`; default none (then it only says the process is up). */
  health?: HealthSource;
  /** Freshness limit for `/healthz`, ms. */
  staleAfterMs: number;
  /** Recent gaps for the live page; default none. */
  gaps?: GapLog;
  /** `service` tag on InfluxDB points, e.g. "producer"; the `instance` tag comes from the config. */
  service: string;
  log: (line: string) => void;
}

/** Running telemetry; `stop` flushes InfluxDB once more and closes the server. */
export interface RunningTelemetry {
  server?: TelemetryServer;
  influx?: InfluxPush;
  stop(): Promise<void>;
}

/** Starts what the config asks for: nothing, a metrics server, an InfluxDB push, or both. */
export function startTelemetry(
  config: TelemetryConfig,
  options: StartTelemetryOptions,
): Promise<RunningTelemetry> {
  let server: TelemetryServer | undefined;
  let influx: InfluxPush | undefined;
  if (config.metricsPort !== undefined) {
    const live = new LiveFeed({
      registry: options.registry,
      health: options.health,
      staleAfterMs: options.staleAfterMs,
      gaps: options.gaps,
      log: options.log,
    });
    server = serveTelemetry({
      registry: options.registry,
      health: options.health,
      staleAfterMs: options.staleAfterMs,
      live,
      hostname: config.metricsHost,
      port: config.metricsPort,
      onListen: (addr) =>
        options.log(
          `telemetry: live page at http://${addr.hostname}:${addr.port}/, ` +
            `with /metrics and /healthz`,
        ),
    });
  }
  if (config.influx) {
    const i = config.influx;
    const instance = config.instance ?? defaultInstance();
    influx = startInfluxPush(options.registry, {
      // TelemetryConfig["influx"] uses the writer's own option names.
      ...i,
      tags: { service: options.service, instance },
      counters: {
        written: options.metrics.telemetryPointsWritten,
        dropped: options.metrics.telemetryPointsDropped,
        errors: options.metrics.telemetryWriteErrors,
      },
      log: options.log,
    });
    options.log(
      `telemetry: pushing to InfluxDB ${i.api} every ${i.intervalMs / 1000} s ` +
        `as service="${options.service}" instance="${instance}"`,
    );
  }
  return Promise.resolve({
    server,
    influx,
    stop: async () => {
      await influx?.stop();
      await server?.shutdown();
    },
  });
}
