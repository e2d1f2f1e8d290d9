import { deepStrictEqual, equal, rejects } from "./helpers/assert.ts";
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
    const header = { recording: 1 as const, source: "wss://x/crypto", subscription: "XQ.*" };
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
      JSON.stringify(header) + '\n[{"ev":"XQ","pair":"A"}]\n[{"ev":"XQ", "pair":"B"}]\n[3]\n',
    );
    deepStrictEqual(await readAllFrames(path), [
      '[{"ev":"XQ","pair":"A"}]',
      '[{"ev":"XQ", "pair":"B"}]',
      "[3]",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
