/**
 * Recordings: one WebSocket text frame per line, with a header line first, so a replay gets
 * exactly the text that was received. Reading streams the file, so a recording of any size
 * replays in constant memory.
 *
 * Format 2 (`{"recording":2,...}`, what {@linkcode RecordingWriter} writes): a frame is written
 * verbatim, except one that a line cannot hold as it is (holding CR or LF, starting with `"`,
 * blank, or not well-formed UTF-16): that one is written as a JSON string (`JSON.stringify`),
 * which starts with `"` and is decoded back to the exact text. Format 1 (`{"recording":1,...}`
 * or no header, as older producers wrote): every line verbatim. Blank lines are ignored in both.
 */
import { fileErrorReason } from "./config/errors.ts";

/** The optional first line of a recording. */
export interface RecordingHeader {
  /** The format: 2 (escaped frames) as written now; 1 (every line verbatim) as read still. */
  recording: 1 | 2;
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

/** The format {@linkcode RecordingWriter} writes. */
export const RECORDING_FORMAT = 2;

/** Whether a frame must be written as a JSON string in format 2 (see the module doc). */
function needsEscape(frame: string): boolean {
  return frame.charCodeAt(0) === 34 || /[\r\n]/.test(frame) || frame.trim() === "" ||
    !frame.isWellFormed();
}

/** The line of a frame in format 2. */
export function encodeFrame(frame: string): string {
  return needsEscape(frame) ? JSON.stringify(frame) : frame;
}

/**
 * The frame of a line in `format`: a format 2 line starting with `"` is decoded; one that does
 * not decode (a line cut short by a crash) is returned as it is.
 */
export function decodeFrame(line: string, format: number): string {
  if (format < 2 || line.charCodeAt(0) !== 34) return line;
  try {
    const frame: unknown = JSON.parse(line);
    return typeof frame === "string" ? frame : line;
  } catch {
    return line;
  }
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
  const format = header?.recording === 2 ? 2 : 1;
  async function* frames(): AsyncGenerator<string> {
    if (first !== undefined) yield first;
    for await (const line of lines) {
      if (line.length === 0 || (line.trim() === "")) continue;
      yield decodeFrame(line, format);
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
  let format = 1;
  let first = true;
  for (const line of text.split("\n")) {
    const l = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (l.trim() === "") continue;
    if (first) {
      first = false;
      if (isHeaderLine(l)) {
        format = (JSON.parse(l) as RecordingHeader).recording === 2 ? 2 : 1;
        continue;
      }
    }
    out.push(decodeFrame(l, format));
  }
  return out;
}

/** Where a {@linkcode RecordingWriter} writes: a `Deno.FsFile`, or a stand-in in tests. */
export interface RecordingFile {
  /** Writes some of `data`; resolves with the number of bytes written. */
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** Options for {@linkcode RecordingWriter}. */
export interface RecordingWriterOptions {
  /**
   * Header fields written when the file is new or empty; `recording` is always
   * {@linkcode RECORDING_FORMAT}. Default `{"recording":2}`.
   */
  header?: Omit<RecordingHeader, "recording"> & { recording?: number };
  /** Bytes buffered before a write is started; default 64 KiB. */
  bufferBytes?: number;
  /**
   * Bytes (UTF-16 units, about bytes for Polygon's ASCII) held in memory at most, buffered or
   * being written: past it a frame is not recorded, only counted in
   * {@linkcode RecordingWriter.dropped}, so a slow disk never holds up the read path nor grows
   * memory without bound. Default 16 MiB.
   */
  maxBufferedBytes?: number;
  /** Reports a write failure (the recording stops; the pipeline does not); default console.error. */
  onError?: (error: RecordingError) => void;
  /** Writes a warning (the first frame dropped); default console.error. */
  log?: (line: string) => void;
}

/**
 * Appends frames to a recording (format 2, see the module doc) without ever blocking the
 * caller: frames are buffered and written by one background write loop, at most
 * `maxBufferedBytes` in memory; frames beyond that are counted as dropped, not recorded.
 */
export class RecordingWriter {
  #file: RecordingFile;
  #path: string;
  #encoder = new TextEncoder();
  #buffer: string[] = [];
  #bufferedChars = 0;
  #bufferBytes: number;
  #maxBufferedBytes: number;
  /** Encoded chunks waiting for the write loop, and their size. */
  #chunks: Uint8Array[] = [];
  #queuedBytes = 0;
  /** The write loop while it runs. */
  #writing: Promise<void> | undefined;
  #failed = false;
  #onError: (error: RecordingError) => void;
  #log: (line: string) => void;
  /** Frames accepted for writing. */
  frames = 0;
  /** Frames not recorded because `maxBufferedBytes` were waiting for the disk. */
  dropped = 0;

  private constructor(file: RecordingFile, path: string, options: RecordingWriterOptions) {
    this.#file = file;
    this.#path = path;
    this.#bufferBytes = options.bufferBytes ?? 65536;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 16 * 1024 * 1024;
    this.#onError = options.onError ?? ((e) => console.error(e.message));
    this.#log = options.log ?? ((line) => console.error(line));
  }

  /**
   * Opens (creating or appending to) a recording file and writes the header if it is new. A
   * non-empty file must be a format 2 recording: appending to an older one would mix formats.
   */
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
    const size = (await file.stat()).size;
    if (size > 0 && !(await isFormat2(path))) {
      file.close();
      throw new RecordingError(
        `Cannot append to recording "${path}": it is not a format ${RECORDING_FORMAT} ` +
          `recording (its first line is not {"recording":${RECORDING_FORMAT},...}); record to a ` +
          `new file`,
      );
    }
    return RecordingWriter.to(file, path, {
      ...options,
      header: size === 0 ? options.header ?? {} : undefined,
    });
  }

  /**
   * A writer on an open file (tests hand in a slow one), named `path` in messages; writes the
   * header first when `options.header` is given.
   */
  static to(
    file: RecordingFile,
    path: string,
    options: RecordingWriterOptions = {},
  ): RecordingWriter {
    const writer = new RecordingWriter(file, path, options);
    if (options.header) {
      // `recording` first: that is how a header line is told from a frame.
      const { recording: _, ...fields } = options.header;
      writer.#push(JSON.stringify({ recording: RECORDING_FORMAT, ...fields }));
    }
    return writer;
  }

  /** Appends one frame, byte for byte (escaped when a line cannot hold it). Never blocks. */
  frame(text: string): void {
    if (this.#failed) return;
    const line = encodeFrame(text);
    if (this.#bufferedChars + this.#queuedBytes + line.length + 1 > this.#maxBufferedBytes) {
      if (this.dropped++ === 0) {
        this.#log(
          `recording "${this.#path}": the disk is too slow, ${this.#maxBufferedBytes} bytes are ` +
            `waiting; frames are counted as not recorded until it catches up`,
        );
      }
      return;
    }
    this.frames++;
    this.#push(line);
  }

  #push(line: string): void {
    this.#buffer.push(line);
    this.#bufferedChars += line.length + 1;
    if (this.#bufferedChars >= this.#bufferBytes) this.#flushInBackground();
  }

  #flushInBackground(): void {
    if (this.#buffer.length === 0) return;
    const data = this.#encoder.encode(this.#buffer.join("\n") + "\n");
    this.#buffer = [];
    this.#bufferedChars = 0;
    if (this.#failed) return;
    this.#chunks.push(data);
    this.#queuedBytes += data.length;
    this.#writing ??= this.#drain();
  }

  /** The one write loop: writes queued chunks in order until none is left. */
  async #drain(): Promise<void> {
    try {
      for (let data = this.#chunks.shift(); data !== undefined; data = this.#chunks.shift()) {
        let off = 0;
        while (off < data.length) off += await this.#file.write(data.subarray(off));
        this.#queuedBytes -= data.length;
      }
    } catch (error) {
      this.#failed = true;
      this.#chunks = [];
      this.#queuedBytes = 0;
      const reason = error instanceof Error ? error.message : String(error);
      this.#onError(
        new RecordingError(`Cannot write recording "${this.#path}": ${reason}`, { cause: error }),
      );
    } finally {
      this.#writing = undefined;
    }
  }

  /** Writes everything buffered and waits for it. */
  async flush(): Promise<void> {
    this.#flushInBackground();
    while (this.#writing !== undefined) await this.#writing;
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

/** Whether the recording at `path` starts with a format 2 header (read from its first 64 KiB). */
async function isFormat2(path: string): Promise<boolean> {
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(path, { read: true });
    const buffer = new Uint8Array(65536);
    let filled = 0;
    while (filled < buffer.length) {
      const n = await file.read(buffer.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    const text = new TextDecoder().decode(buffer.subarray(0, filled));
    const first = text.split("\n").find((l) => l.trim() !== "") ?? "";
    const line = first.endsWith("\r") ? first.slice(0, -1) : first;
    return isHeaderLine(line) &&
      (JSON.parse(line) as RecordingHeader).recording === RECORDING_FORMAT;
  } catch {
    return false;
  } finally {
    file?.close();
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
