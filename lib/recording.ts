/**
 * Recordings: JSON Lines, one WebSocket text frame per line, verbatim, with an optional header
 * line first (`{"recording":1,...}`); blank lines are ignored. Reading streams the file, so a
 * recording of any size replays in constant memory.
 */
import { fileErrorReason } from "./config/errors.ts";

/** The optional first line of a recording. */
export interface RecordingHeader {
  recording: 1;
  /** Source URL, without secrets. */
  source?: string;
  /** Subscription params, e.g. `XQ.BTC-USD,XQ.ETH-USD`. */
  subscription?: string;
  /** ISO 8601 start time. */
  started?: string;
  [key: string]: unknown;
}

/** A recording could not be opened, read or written. */
export class RecordingError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RecordingError";
  }
}

/** Splits a byte stream into lines of text (LF or CRLF), streaming. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const text = rest + chunk;
    let start = 0;
    let nl = text.indexOf("\n", start);
    while (nl !== -1) {
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      yield text.slice(start, end);
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    rest = text.slice(start);
  }
  if (rest !== "") yield rest.endsWith("\r") ? rest.slice(0, -1) : rest;
}

/** Whether a line is a recording header rather than a frame. */
export function isHeaderLine(line: string): boolean {
  if (!line.startsWith('{"recording"')) return false;
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null && value.recording !== undefined;
  } catch {
    return false;
  }
}

/** An opened recording: its header, if any, and its frames as a stream. */
export interface Recording {
  header: RecordingHeader | undefined;
  frames: AsyncGenerator<string>;
}

/**
 * Reads a recording from a byte stream: the header (if the first line is one), then the frames,
 * skipping blank lines.
 */
export async function readRecording(stream: ReadableStream<Uint8Array>): Promise<Recording> {
  const lines = readLines(stream);
  let first: string | undefined;
  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    if (next.value.trim() !== "") {
      first = next.value;
      break;
    }
  }
  let header: RecordingHeader | undefined;
  if (first !== undefined && isHeaderLine(first)) {
    header = JSON.parse(first) as RecordingHeader;
    first = undefined;
  }
  async function* frames(): AsyncGenerator<string> {
    if (first !== undefined) yield first;
    for await (const line of lines) {
      if (line.length === 0 || (line.trim() === "")) continue;
      yield line;
    }
  }
  return { header, frames: frames() };
}

/** Opens a recording file (`-` is stdin) and reads it as a stream. */
export async function openRecording(path: string): Promise<Recording> {
  if (path === "-") return readRecording(Deno.stdin.readable);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    const reason = fileErrorReason(error);
    throw new RecordingError(`Cannot read recording "${path}": ${reason}`, { cause: error });
  }
  const info = await file.stat();
  if (info.isDirectory) {
    file.close();
    throw new RecordingError(`Cannot read recording "${path}": it is a directory`);
  }
  return readRecording(file.readable);
}

/** Reads every frame of a recording file into memory (tests and benchmarks only). */
export async function readAllFrames(path: string | URL): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const l = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (l.trim() === "" || (out.length === 0 && isHeaderLine(l))) continue;
    out.push(l);
  }
  return out;
}

/** Options for {@linkcode RecordingWriter}. */
export interface RecordingWriterOptions {
  /** Header written when the file is new or empty; default none. */
  header?: RecordingHeader;
  /** Bytes buffered before a write is started; default 64 KiB. */
  bufferBytes?: number;
  /** Reports a write failure (the recording stops; the pipeline does not); default console.error. */
  onError?: (error: RecordingError) => void;
}

/**
 * Appends frames to a recording without ever blocking the caller: frames are buffered and
 * written by one background write at a time. Line breaks inside a frame (insignificant JSON
 * whitespace) are written as spaces so every frame stays on one line.
 */
export class RecordingWriter {
  #file: Deno.FsFile;
  #path: string;
  #encoder = new TextEncoder();
  #buffer: string[] = [];
  #bufferedChars = 0;
  #bufferBytes: number;
  #writing: Promise<void> = Promise.resolve();
  #failed = false;
  #onError: (error: RecordingError) => void;
  /** Frames accepted for writing. */
  frames = 0;

  private constructor(file: Deno.FsFile, path: string, options: RecordingWriterOptions) {
    this.#file = file;
    this.#path = path;
    this.#bufferBytes = options.bufferBytes ?? 65536;
    this.#onError = options.onError ?? ((e) => console.error(e.message));
  }

  /** Opens (creating or appending to) a recording file and writes the header if it is new. */
  static async open(path: string, options: RecordingWriterOptions = {}): Promise<RecordingWriter> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { append: true, create: true });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RecordingError(`Cannot open recording "${path}" for writing: ${reason}`, {
        cause: error,
      });
    }
    const writer = new RecordingWriter(file, path, options);
    const size = (await file.stat()).size;
    if (size === 0 && options.header) writer.#push(JSON.stringify(options.header));
    return writer;
  }

  /** Appends one frame, verbatim. Never blocks. */
  frame(text: string): void {
    this.frames++;
    this.#push(/[\r\n]/.test(text) ? text.replace(/[\r\n]/g, " ") : text);
  }

  #push(line: string): void {
    if (this.#failed) return;
    this.#buffer.push(line);
    this.#bufferedChars += line.length + 1;
    if (this.#bufferedChars >= this.#bufferBytes) this.#flushInBackground();
  }

  #flushInBackground(): void {
    if (this.#buffer.length === 0) return;
    const data = this.#encoder.encode(this.#buffer.join("\n") + "\n");
    this.#buffer = [];
    this.#bufferedChars = 0;
    this.#writing = this.#writing.then(async () => {
      if (this.#failed) return;
      try {
        let off = 0;
        while (off < data.length) off += await this.#file.write(data.subarray(off));
      } catch (error) {
        this.#failed = true;
        const reason = error instanceof Error ? error.message : String(error);
        this.#onError(
          new RecordingError(`Cannot write recording "${this.#path}": ${reason}`, {
            cause: error,
          }),
        );
      }
    });
  }

  /** Writes everything buffered and waits for it. */
  async flush(): Promise<void> {
    this.#flushInBackground();
    await this.#writing;
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    await this.flush();
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The oldest exchange time (`"t":` of any event) in a recording file, ms, read in one pass; or
 * undefined for stdin (`-`, which cannot be read twice) or a recording without one. The topic
 * check reads retention and timestamp limits against it.
 */
export async function oldestFrameTime(path: string): Promise<number | undefined> {
  if (path === "-") return undefined;
  const recording = await openRecording(path);
  let oldest: number | undefined;
  const re = /"t":(\d{10,16})/g;
  for await (const frame of recording.frames) {
    for (const m of frame.matchAll(re)) {
      const t = Number(m[1]);
      if (oldest === undefined || t < oldest) oldest = t;
    }
  }
  return oldest;
}
