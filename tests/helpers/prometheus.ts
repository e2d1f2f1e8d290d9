/**
 * Runs a real Prometheus (Debian package `prometheus`) for tests: a temporary directory, a free
 * loopback port, and a config that scrapes the given `127.0.0.1:<port>/metrics` targets every
 * second. Stop it in `finally`.
 */
import { freePort, ServiceProcess, ServiceStartError, waitForHttp } from "./service_process.ts";

/** One scrape target: a job name and a loopback port serving `/metrics`. */
export interface ScrapeTarget {
  job: string;
  port: number;
}

/** Options for {@linkcode startPrometheus}. */
export interface StartPrometheusOptions {
  /** The prometheus binary; default `prometheus` on the PATH. */
  binary?: string;
  /** Scrape interval; default "1s". */
  scrapeInterval?: string;
  /** Readiness timeout in ms; default 30,000. */
  timeoutMs?: number;
}

/** The data part of a Prometheus query answer. */
export interface PromQueryData {
  resultType: "vector" | "matrix" | "scalar" | "string";
  result: unknown;
}

/** A running Prometheus. */
export class PrometheusServer {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** How long the start took, in ms. */
  readonly startMs: number;
  readonly #dir: string;
  readonly #process: ServiceProcess;

  constructor(url: string, dir: string, process: ServiceProcess, startMs: number) {
    this.url = url;
    this.#dir = dir;
    this.#process = process;
    this.startMs = startMs;
  }

  /** Stops Prometheus and removes its directory. */
  async close(): Promise<void> {
    await this.#process.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** GETs an API path (`/api/v1/...`) with parameters; returns `data` or throws with the error. */
  async api<T = PromQueryData>(path: string, params: Record<string, string>): Promise<T> {
    const response = await fetch(`${this.url}${path}?${new URLSearchParams(params)}`);
    const text = await response.text();
    let body: { status?: string; data?: T; error?: string };
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(
        `Prometheus ${path} ${JSON.stringify(params)}: status ${response.status}: ${text}`,
      );
    }
    if (body.status !== "success") {
      throw new Error(`Prometheus ${path} ${JSON.stringify(params)} failed: ${body.error ?? text}`);
    }
    return body.data as T;
  }

  /** The targets' health, as `/api/v1/targets` reports it. */
  async targets(): Promise<{ job: string; health: string; lastError: string }[]> {
    const response = await fetch(`${this.url}/api/v1/targets`);
    const body = await response.json() as {
      data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] };
    };
    return body.data.activeTargets.map((t) => ({
      job: t.labels.job,
      health: t.health,
      lastError: t.lastError,
    }));
  }
}

/** Starts a real Prometheus scraping `targets` on loopback. */
export async function startPrometheus(
  targets: readonly ScrapeTarget[],
  options: StartPrometheusOptions = {},
): Promise<PrometheusServer> {
  const dir = await Deno.makeTempDir({ prefix: "prometheus_test_" });
  const port = freePort();
  const interval = options.scrapeInterval ?? "1s";
  const lines = [
    "global:",
    `  scrape_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
    "scrape_configs:",
  ];
  for (const t of targets) {
    lines.push(
      `  - job_name: ${JSON.stringify(t.job)}`,
      "    metrics_path: /metrics",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${t.port}"]`,
    );
  }
  await Deno.writeTextFile(`${dir}/prometheus.yml`, lines.join("\n") + "\n");
  const url = `http://127.0.0.1:${port}`;
  const process = new ServiceProcess("prometheus", options.binary ?? "prometheus", [
    `--config.file=${dir}/prometheus.yml`,
    `--storage.tsdb.path=${dir}/data`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--log.level=warn",
  ], dir);
  try {
    const startMs = await waitForHttp(`${url}/-/ready`, process, {
      timeoutMs: options.timeoutMs ?? 30_000,
    });
    return new PrometheusServer(url, dir, process, startMs);
  } catch (error) {
    await process.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (error instanceof ServiceStartError) throw error;
    throw new ServiceStartError(`Cannot start prometheus: ${error}`, { cause: error });
  }
}
