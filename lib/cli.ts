/**
 * Helpers shared by the entry scripts: running `main` with exit codes taken from typed errors,
 * a buffered line writer for stdout that stops quietly on a closed pipe, and signal handling.
 */
import { EXIT } from "./config/defaults.ts";

/** An error that carries the exit code an entry script should use. */
export interface ExitCodeError extends Error {
  exitCode: number;
}

/** The exit code for an error: its `exitCode`, or 1. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof Error && typeof (error as Partial<ExitCodeError>).exitCode === "number") {
    return (error as ExitCodeError).exitCode;
  }
  return EXIT.FAILURE;
}

/**
 * Runs an entry script's main function: its resolved number is the exit code; a thrown error is
 * printed as one line (`name: message`) on stderr and its `exitCode` (default 1) is used.
 */
export async function runMain(main: () => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await main();
  } catch (error) {
    const name = error instanceof Error ? error.name : "Error";
    const message = error instanceof Error ? error.message : String(error);
    console.error(`${name}: ${message}`);
    code = exitCodeOf(error);
  }
  Deno.exit(code);
}

/**
 * Bytes a pipe can hold that its reader has not read: Linux's largest pipe (`pipe-max-size`,
 * 1 MiB; 64 KiB by default). Output written this far back is surely out of the pipe.
 */
export const PIPE_CAPACITY = 1_048_576;

/**
 * A buffered writer of text lines to a stream, for high-volume stdout output. It counts the
 * lines it wrote, so that a caller whose reader went away (a closed pipe) can tell which lines
 * the reader surely took: {@linkcode LineWriter.delivered}.
 */
export class LineWriter {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #encoder = new TextEncoder();
  #parts: string[] = [];
  #chars = 0;
  #closed = false;
  #lines = 0;
  #bytesWritten = 0;
  /** Chunks written: the line count after each and the byte count after each, oldest first. */
  #chunks: { lines: number; bytes: number }[] = [];
  #capacity: number;
  /** Set when the reader went away (a closed pipe, e.g. `| head`). */
  broken = false;

  /** `capacity`: bytes the stream may hold unread; default {@linkcode PIPE_CAPACITY}. */
  constructor(
    stream: WritableStream<Uint8Array> = Deno.stdout.writable,
    capacity: number = PIPE_CAPACITY,
  ) {
    this.#writer = stream.getWriter();
    this.#capacity = capacity;
  }

  /** Lines accepted so far (written or buffered); the next line's number. */
  get lines(): number {
    return this.#lines;
  }

  /**
   * How many lines, from the first, the reader surely took: those in writes that completed and
   * were followed by at least the stream's capacity of further written bytes. Once the stream
   * broke, no line after these can be known to have reached the reader.
   */
  delivered(): number {
    const safe = this.#bytesWritten - this.#capacity;
    let lines = 0;
    for (const c of this.#chunks) {
      if (c.bytes > safe) break;
      lines = c.lines;
    }
    return lines;
  }

  /** Queues one line; writes when 64 KiB are buffered. */
  async line(text: string): Promise<void> {
    if (this.broken) return;
    this.#parts.push(text);
    this.#lines++;
    this.#chars += text.length + 1;
    if (this.#chars >= 65536) await this.flush();
  }

  /** Writes whatever is buffered. */
  async flush(): Promise<void> {
    if (this.#parts.length === 0 || this.broken) return;
    const data = this.#encoder.encode(this.#parts.join("\n") + "\n");
    this.#parts = [];
    this.#chars = 0;
    try {
      await this.#writer.write(data);
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe || String(error).includes("Broken pipe")) {
        this.broken = true;
        return;
      }
      throw error;
    }
    this.#bytesWritten += data.length;
    this.#chunks.push({ lines: this.#lines, bytes: this.#bytesWritten });
    // Keep one chunk at or before the safe mark, and the ones after it.
    const safe = this.#bytesWritten - this.#capacity;
    while (this.#chunks.length > 1 && this.#chunks[1]!.bytes <= safe) this.#chunks.shift();
  }

  /** Flushes and releases the stream. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    try {
      this.#writer.releaseLock();
    } catch {
      // ignore
    }
  }
}

/** An AbortController that aborts on SIGINT or SIGTERM; `dispose` removes the listeners. */
export function abortOnSignals(): {
  signal: AbortSignal;
  dispose: () => void;
  which: () => string | undefined;
} {
  const controller = new AbortController();
  let which: string | undefined;
  const handlers: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM"] as const).map((s) => [
    s,
    () => {
      which = s;
      controller.abort(new Error(`received ${s}`));
    },
  ]);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    },
    which: () => which,
  };
}

/** Formats skip counts as `reason=n` pairs, non-zero only. */
export function formatCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`);
  return parts.length === 0 ? "none" : parts.join(" ");
}
