/**
 * Runs a real InfluxDB 1.x (`influxd`, Debian package `influxdb`) for tests: a temporary
 * directory, free loopback ports, reporting and self-monitoring off. Stop it in `finally`.
 *
 * @example
 * ```ts
 * const influx = await startInfluxDb();
 * try {
 *   await influx.query("CREATE DATABASE crypto");
 * } finally {
 *   await influx.close();
 * }
 * ```
 */
import { freePort, ServiceProcess, ServiceStartError, waitForHttp } from "./service_process.ts";

/** Options for {@linkcode startInfluxDb}. */
export interface StartInfluxDbOptions {
  /** The influxd binary; default `influxd` on the PATH. */
  binary?: string;
  /** Readiness timeout in ms; default 30,000. */
  timeoutMs?: number;
}

/** One InfluxQL statement's series, as `/query` returns them. */
export interface InfluxSeries {
  name: string;
  tags?: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

/** The result of one statement of a `/query` call. */
export interface InfluxStatementResult {
  statement_id: number;
  series?: InfluxSeries[];
  error?: string;
}

/** A running influxd that can be stopped and started again on the same ports and data. */
export class InfluxDbServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** How long the last start took, in ms. */
  startMs = 0;
  readonly #dir: string;
  readonly #config: string;
  readonly #binary: string;
  readonly #timeoutMs: number;
  #process: ServiceProcess | undefined;

  constructor(dir: string, port: number, config: string, binary: string, timeoutMs: number) {
    this.#dir = dir;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.#config = config;
    this.#binary = binary;
    this.#timeoutMs = timeoutMs;
  }

  /** Whether influxd is running. */
  get running(): boolean {
    return this.#process !== undefined;
  }

  /** Starts influxd (again) and waits for `/ping`. */
  async start(): Promise<void> {
    if (this.#process) return;
    const process = new ServiceProcess("influxd", this.#binary, ["run", "-config", this.#config]);
    this.#process = process;
    try {
      this.startMs = await waitForHttp(`${this.url}/ping`, process, {
        timeoutMs: this.#timeoutMs,
      });
    } catch (error) {
      await process.stop();
      this.#process = undefined;
      throw error;
    }
  }

  /** Stops influxd, keeping its data for a later {@linkcode start}. */
  async stop(): Promise<void> {
    const process = this.#process;
    this.#process = undefined;
    await process?.stop();
  }

  /** Stops influxd and removes its directory. */
  async close(): Promise<void> {
    await this.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Runs InfluxQL (POST /query, epoch ms) and returns each statement's result; throws on errors. */
  async query(q: string, db?: string): Promise<InfluxStatementResult[]> {
    const params = new URLSearchParams({ q, epoch: "ms" });
    if (db) params.set("db", db);
    const response = await fetch(`${this.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: params,
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`InfluxQL "${q}" failed: status ${response.status}: ${text}`);
    }
    const body = JSON.parse(text) as { results?: InfluxStatementResult[]; error?: string };
    if (body.error) throw new Error(`InfluxQL "${q}" failed: ${body.error}`);
    const results = body.results ?? [];
    for (const r of results) {
      if (r.error) throw new Error(`InfluxQL "${q}" failed: ${r.error}`);
    }
    return results;
  }
}

/** Starts a real influxd on free loopback ports in a temporary directory. */
export async function startInfluxDb(options: StartInfluxDbOptions = {}): Promise<InfluxDbServer> {
  const binary = options.binary ?? "influxd";
  const dir = await Deno.makeTempDir({ prefix: "influxdb_test_" });
  const httpPort = freePort();
  const rpcPort = freePort();
  const config = `${dir}/influxdb.conf`;
  await Deno.writeTextFile(
    config,
    [
      "reporting-disabled = true",
      `bind-address = "127.0.0.1:${rpcPort}"`,
      "[meta]",
      `  dir = "${dir}/meta"`,
      "  logging-enabled = false",
      "[data]",
      `  dir = "${dir}/data"`,
      `  wal-dir = "${dir}/wal"`,
      "  query-log-enabled = false",
      "[monitor]",
      "  store-enabled = false",
      "[continuous_queries]",
      "  enabled = false",
      "[subscriber]",
      "  enabled = false",
      "[http]",
      `  bind-address = "127.0.0.1:${httpPort}"`,
      "  log-enabled = false",
      "  suppress-write-log = true",
      "  pprof-enabled = false",
      "[logging]",
      '  level = "warn"',
      "  suppress-logo = true",
      "",
    ].join("\n"),
  );
  const server = new InfluxDbServer(dir, httpPort, config, binary, options.timeoutMs ?? 30_000);
  try {
    await server.start();
  } catch (error) {
    await server.close();
    if (error instanceof ServiceStartError) throw error;
    throw new ServiceStartError(`Cannot start influxd: ${error}`, { cause: error });
  }
  return server;
}
