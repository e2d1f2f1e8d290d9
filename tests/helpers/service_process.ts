/**
 * Shared plumbing for the helpers that run real services in tests: a free loopback port, a
 * child process whose output is kept for error messages, and a readiness poll.
 */

/** A service that did not start, or did not become ready, in time. */
export class ServiceStartError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ServiceStartError";
  }
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A child process with its combined output captured, for error messages. */
export class ServiceProcess {
  readonly name: string;
  #child: Deno.ChildProcess;
  #output: string[] = [];
  #done: Promise<Deno.CommandStatus>;

  constructor(name: string, command: string, args: string[], cwd?: string) {
    this.name = name;
    this.#child = new Deno.Command(command, {
      args,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pump(this.#child.stdout);
    this.#pump(this.#child.stderr);
    this.#done = this.#child.status;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this.#output.push(decoder.decode(chunk, { stream: true }));
        if (this.#output.length > 400) this.#output.splice(0, 100);
      }
    } catch {
      // The process ended; nothing more to read.
    }
  }

  /** The last lines the process printed. */
  tail(lines = 30): string {
    return this.#output.join("").split("\n").slice(-lines).join("\n");
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Resolves when the process exits. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#done;
  }

  /** Sends SIGTERM, then SIGKILL after `graceMs`, and waits for the exit. */
  async stop(graceMs = 5_000): Promise<void> {
    let exited = false;
    this.#done.then(() => exited = true, () => exited = true);
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      if (!exited) {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }, graceMs);
    try {
      await this.#done;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Options for {@linkcode waitForHttp}. */
export interface WaitForHttpOptions {
  /** Give up after this many ms; default 30,000. */
  timeoutMs?: number;
  /** Status that means ready; default any 2xx. */
  ready?: (status: number) => boolean;
}

/** Polls `url` until it answers as ready, or the process exits, or time runs out. */
export async function waitForHttp(
  url: string,
  process: ServiceProcess,
  options: WaitForHttpOptions = {},
): Promise<number> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const ready = options.ready ?? ((s: number) => s >= 200 && s < 300);
  let exited = false;
  process.status.then(() => exited = true, () => exited = true);
  let last = "no answer";
  while (performance.now() - started < timeoutMs) {
    if (exited) {
      throw new ServiceStartError(
        `Cannot start ${process.name}: it exited before "${url}" was ready\n${process.tail()}`,
      );
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.body?.cancel();
      if (ready(response.status)) return performance.now() - started;
      last = `status ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new ServiceStartError(
    `Cannot start ${process.name}: "${url}" not ready after ${timeoutMs} ms (${last})\n${process.tail()}`,
  );
}
