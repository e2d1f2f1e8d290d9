/**
 * The dead-letter file: records the broker refuses for good (issue 24, finding 1), one JSON
 * line each, appended, with the reason, so that an operator can see what was kept out of the
 * topic and send it again once fixed. The file is created at the first dead letter only.
 *
 * Line: `{"at","topic","reason","detail","key","timestamp","headers","value"}`; `at` is the
 * local time it was kept aside (ISO 8601), `timestamp` the record's own (epoch ms), `value`
 * the record value text, verbatim.
 */
import type { DeadLetter } from "./kafka/refusals.ts";

/** Appends dead letters to a JSON Lines file, in order; see the module doc. */
export class DeadLetterFile {
  readonly path: string;
  #file: Deno.FsFile | undefined;
  #chain: Promise<void> = Promise.resolve();
  #now: () => number;
  #encoder = new TextEncoder();
  /** Dead letters written so far. */
  written = 0;

  /** `now`: the clock of the `at` field, epoch ms; default `Date.now`. */
  constructor(path: string, now: () => number = Date.now) {
    this.path = path;
    this.#now = now;
  }

  /** Appends one dead letter; resolves once it is written. */
  write(letter: DeadLetter): Promise<void> {
    const { record } = letter;
    const line = JSON.stringify({
      at: new Date(this.#now()).toISOString(),
      topic: letter.topic,
      reason: letter.reason,
      detail: letter.detail,
      key: record.key,
      timestamp: record.timestamp,
      headers: record.headers ?? {},
      value: record.value,
    }) + "\n";
    const next = this.#chain.then(async () => {
      this.#file ??= await Deno.open(this.path, { append: true, create: true });
      const data = this.#encoder.encode(line);
      let off = 0;
      while (off < data.length) off += await this.#file.write(data.subarray(off));
      this.written++;
    });
    // A failed write fails its caller; the next one tries again.
    this.#chain = next.catch(() => {});
    return next;
  }

  /** Waits for the writes and closes the file. */
  async close(): Promise<void> {
    await this.#chain;
    this.#file?.close();
    this.#file = undefined;
  }
}
