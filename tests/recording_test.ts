import { deepStrictEqual, equal, rejects } from "./helpers/assert.ts";
import { createSpreadTransform, type SpreadRecord } from "../transform.ts";
import {
  openRecording,
  readAllFrames,
  readLines,
  RecordingError,
  RecordingWriter,
} from "../lib/recording.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => enc.encode(c)));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

Deno.test("recording lines split across chunks, with CRLF and no final newline", async () => {
  deepStrictEqual(await collect(readLines(streamOf("[1]\r\n[2", "]\n\n[3]"))), [
    "[1]",
    "[2]",
    "",
    "[3]",
  ]);
});

Deno.test("recording reader returns the header apart and skips blank lines", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    await Deno.writeTextFile(
      path,
      '{"recording":1,"subscription":"XQ.BTC-USD"}\n\n[{"ev":"XQ"}]\n  \n[{"ev":"XT"}]\n',
    );
    const rec = await openRecording(path);
    deepStrictEqual(rec.header, { recording: 1, subscription: "XQ.BTC-USD" });
    deepStrictEqual(await collect(rec.frames), ['[{"ev":"XQ"}]', '[{"ev":"XT"}]']);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("recording without a header yields its first line as a frame", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    await Deno.writeTextFile(path, "[1]\n[2]\n");
    const rec = await openRecording(path);
    equal(rec.header, undefined);
    deepStrictEqual(await collect(rec.frames), ["[1]", "[2]"]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("opening a missing recording names the file", async () => {
  await rejects(() => openRecording("fixtures/nope.jsonl"), (e: unknown) => {
    equal(e instanceof RecordingError, true);
    equal((e as Error).message, 'Cannot read recording "fixtures/nope.jsonl": file not found');
    return true;
  });
});

Deno.test("recording writer appends frames verbatim, one per line, header once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/rec.jsonl`;
  try {
    const header = { source: "wss://x/crypto", subscription: "XQ.*" };
    const w = await RecordingWriter.open(path, { header, bufferBytes: 10 });
    w.frame('[{"ev":"XQ","pair":"A"}]');
    w.frame('[{"ev":"XQ",\n"pair":"B"}]');
    await w.close();
    const w2 = await RecordingWriter.open(path, { header });
    w2.frame("[3]");
    await w2.close();
    const text = await Deno.readTextFile(path);
    equal(
      text,
      '{"recording":2,"source":"wss://x/crypto","subscription":"XQ.*"}\n' +
        '[{"ev":"XQ","pair":"A"}]\n"[{\\"ev\\":\\"XQ\\",\\n\\"pair\\":\\"B\\"}]"\n[3]\n',
    );
    deepStrictEqual(await readAllFrames(path), [
      '[{"ev":"XQ","pair":"A"}]',
      '[{"ev":"XQ",\n"pair":"B"}]',
      "[3]",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Frames a line cannot hold as they are, and ordinary ones, as a live socket may give them. */
const AWKWARD_FRAMES = [
  '[{"ev":"XQ","pair":"BTC-USD","bp":1,"ap":2,"t":1}]',
  // A raw LF inside a string: invalid JSON live, and must stay so in a replay.
  '[{"ev":"XQ","pair":"BTC\nUSD","bp":1,"ap":2,"t":2}]',
  '[{"ev":"XQ","pair":"BTC\r\nUSD","bp":1,"ap":2,"t":3}]',
  '[{"ev":"XQ","pair":"BTC\rUSD","bp":1,"ap":2,"t":4}]',
  // Insignificant line breaks: valid live, valid replayed.
  '[{"ev":"XQ",\r\n"pair":"ETH-USD","bp":1,"ap":2,"t":5}]\n',
  '"a string frame"',
  '"',
  "",
  "   ",
  "\t",
  '{"recording":1}',
  "\ud800 a lone surrogate",
  "[1]\r",
  '[{"ev":"XQ","pair":"SOL-USD","bp":1.5,"ap":1.75,"t":6}]',
];

Deno.test("finding 10: a recording replays every frame byte for byte, so a replay skips exactly what the live run skipped", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/rec.jsonl`;
  try {
    const w = await RecordingWriter.open(path, { header: { source: "wss://x/crypto" } });
    for (const f of AWKWARD_FRAMES) w.frame(f);
    await w.close();
    equal(w.frames, AWKWARD_FRAMES.length);
    deepStrictEqual(await readAllFrames(path), AWKWARD_FRAMES);
    const rec = await openRecording(path);
    deepStrictEqual(rec.header, { recording: 2, source: "wss://x/crypto" });
    deepStrictEqual(await collect(rec.frames), AWKWARD_FRAMES);
    // The transform makes the same of the replayed frames as of the live ones.
    const live = createSpreadTransform();
    const replayed = createSpreadTransform();
    const liveRecords: SpreadRecord[] = [];
    const replayedRecords: SpreadRecord[] = [];
    for (const f of AWKWARD_FRAMES) live.frame(f, liveRecords);
    for (const f of await readAllFrames(path)) replayed.frame(f, replayedRecords);
    deepStrictEqual(replayedRecords.map((r) => r.value), liveRecords.map((r) => r.value));
    deepStrictEqual(replayed.skipped, live.skipped);
    equal(live.skipped.invalid_json, 8);
    equal(liveRecords.length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("finding 10: a format 1 recording still replays line by line; appending to one is refused", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/old.jsonl`;
  try {
    await Deno.writeTextFile(path, '{"recording":1}\n"x"\n[{"ev":"XQ", "pair":"B"}]\n');
    deepStrictEqual(await readAllFrames(path), ['"x"', '[{"ev":"XQ", "pair":"B"}]']);
    deepStrictEqual(await collect((await openRecording(path)).frames), [
      '"x"',
      '[{"ev":"XQ", "pair":"B"}]',
    ]);
    await rejects(() => RecordingWriter.open(path), (e: unknown) => {
      equal((e as Error).name, "RecordingError");
      equal(
        (e as Error).message,
        `Cannot append to recording "${path}": it is not a format 2 recording (its first line ` +
          `is not {"recording":2,...}); record to a new file`,
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A file whose writes wait until released, counting how many run at once. */
class SlowFile {
  readonly written: Uint8Array[] = [];
  inFlight = 0;
  maxInFlight = 0;
  #release: (() => void)[] = [];
  #open = false;

  write(data: Uint8Array): Promise<number> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve) => {
      const done = () => {
        this.inFlight--;
        this.written.push(data.slice());
        resolve(data.length);
      };
      if (this.#open) done();
      else this.#release.push(done);
    });
  }

  /** Lets every write through, now and from now on. */
  open(): void {
    this.#open = true;
    for (const done of this.#release.splice(0)) done();
  }

  close(): void {}

  text(): string {
    return this.written.map((d) => new TextDecoder().decode(d)).join("");
  }
}

Deno.test("finding 10: on a slow disk the recording holds at most maxBufferedBytes and counts the frames it drops", async () => {
  const file = new SlowFile();
  const logs: string[] = [];
  const w = RecordingWriter.to(file, "slow.jsonl", {
    header: {},
    bufferBytes: 100,
    maxBufferedBytes: 1000,
    log: (line) => logs.push(line),
  });
  const frame = (i: number) => `[{"ev":"XQ","pair":"P","t":${String(i).padStart(6, "0")}}]`;
  equal(frame(0).length + 1, 36);
  // The header (16 bytes) and 27 frames of 36 fill 988 of the 1000 bytes; the rest is dropped.
  for (let i = 0; i < 100; i++) w.frame(frame(i));
  equal(w.frames, 27);
  equal(w.dropped, 73);
  equal(file.maxInFlight, 1);
  deepStrictEqual(logs, [
    'recording "slow.jsonl": the disk is too slow, 1000 bytes are waiting; frames are counted ' +
    "as not recorded until it catches up",
  ]);
  // Once the disk catches up, frames are recorded again.
  file.open();
  await w.flush();
  w.frame(frame(100));
  await w.close();
  equal(w.frames, 28);
  equal(file.maxInFlight, 1);
  equal(
    file.text(),
    '{"recording":2}\n' + [...Array.from({ length: 27 }, (_, i) => frame(i)), frame(100)]
      .map((f) => f + "\n").join(""),
  );
});
