/** The telemetry config builder: the metrics port and the InfluxDB push. */
import { ConfigError } from "./errors.ts";
import { requireString } from "./parse.ts";
import { type SettingsOf } from "./settings.ts";

/** Telemetry exposure settings. */
export interface TelemetryConfig {
  metricsPort?: number;
  metricsHost: string;
  /** `instance` tag on InfluxDB points; unset means `<hostname>:<pid>`, chosen at start-up. */
  instance?: string;
  influx?: {
    url: string;
    api: "v1" | "v2";
    db: string;
    rp?: string;
    user?: string;
    password?: string;
    token?: string;
    org?: string;
    bucket?: string;
    intervalMs: number;
    batchSize: number;
    bufferMax: number;
  };
}

/** Builds the telemetry config from parsed settings. */
export function buildTelemetryConfig(
  settings: Pick<
    SettingsOf<"producer">,
    keyof SettingsOf<"producer"> & keyof SettingsOf<"consumer">
  >,
): TelemetryConfig {
  const config: TelemetryConfig = { metricsHost: settings.metricsHost };
  if (settings.metricsPort !== undefined) config.metricsPort = settings.metricsPort;
  const instance = settings.instance;
  if (instance !== undefined && instance !== "") {
    if (!/^[A-Za-z0-9._:@\/-]{1,128}$/.test(instance)) {
      throw new ConfigError(
        `--instance must be 1 to 128 letters, digits or . _ : @ / -, got "${instance}"`,
      );
    }
    config.instance = instance;
  }
  const url = settings.influxUrl;
  if (url) {
    if (!/^https?:\/\//.test(url)) {
      throw new ConfigError(`"INFLUX_URL" must be an http:// or https:// URL, got "${url}"`);
    }
    const api = settings.influxApi;
    if (api === "v2") {
      requireString(settings, "influxOrg");
      requireString(settings, "influxBucket");
      requireString(settings, "influxToken");
    }
    config.influx = {
      url: url.replace(/\/+$/, ""),
      api,
      db: String(settings.influxDb),
      intervalMs: settings.influxInterval * 1000,
      batchSize: settings.influxBatch,
      bufferMax: settings.influxBufferMax,
    };
    const optional = {
      rp: settings.influxRp,
      user: settings.influxUser,
      password: settings.influxPassword,
      token: settings.influxToken,
      org: settings.influxOrg,
      bucket: settings.influxBucket,
    };
    for (const [k, v] of Object.entries(optional)) {
      if (v) config.influx[k as keyof typeof optional] = v;
    }
  }
  return config;
}
