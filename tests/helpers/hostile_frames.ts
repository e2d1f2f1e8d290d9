/**
 * A seeded generator of hostile WebSocket frames for the reliability suite (issue 5, scenario 6):
 * mutated quote frames (truncated, wrong types, huge numbers, deep nesting, 1 MB frames, invalid
 * UTF-8, empty) interleaved with valid ones. Each frame comes with what the transform must make
 * of it, worked out here from how the frame was built (not by calling the transform): its events,
 * its skips by reason and the exact record values of its valid quotes.
 *
 * Invalid UTF-8: a WebSocket text frame must be valid UTF-8 (RFC 6455 §8.1), so a server can put
 * invalid bytes only in a binary frame. The client decodes a binary frame as UTF-8 with U+FFFD
 * for every invalid sequence (the WHATWG decoder) and hands the text to the same transform, so
 * invalid UTF-8 frames here are `Uint8Array`s (binary frames), and their expectations follow
 * from where the U+FFFD lands: in the JSON syntax or a number, the frame is `invalid_json`; in
 * `ev`, the event is `other_event`; in `pair`, the transform takes the pair as it is (it checks
 * only its length), so the quote becomes a record whose symbol holds U+FFFD.
 *
 * Frames never hold `status` events or non-XQ channels with a pair: the fake server would filter
 * those out of a replay as Polygon would (see `selectEvents`).
 *
 * @example
 * ```ts
 * const set = hostileFrames({ seed: 5 });
 * set.frames.length; // 10,000 mutated frames plus the valid ones between them
 * set.skipped.invalid_json; // how many events the transform must count as invalid JSON
 * ```
 */
import type { SkipReason } from "../../transform.ts";
import { mulberry32 } from "../../fixtures/generate.ts";

/** A frame: text (a text frame), or bytes (a binary frame). */
export type HostileFrame = string | Uint8Array;

/** Options for {@linkcode hostileFrames}. */
export interface HostileFramesOptions {
  /** Seed of the pseudo-random generator; the same seed gives the same frames. */
  seed: number;
  /** Mutated frames to make; default 10,000. */
  mutated?: number;
  /** How many of them are 1 MB frames; default 12. */
  megabyteFrames?: number;
}

/** The frames and what must come out of them. */
export interface HostileSet {
  /** Every frame in sending order: mutated ones interleaved with valid ones. */
  frames: HostileFrame[];
  /** Mutated frames among them. */
  mutated: number;
  /** Mutated frames by kind of mutation. */
  kinds: Record<string, number>;
  /** Binary frames among them. */
  binary: number;
  /** Events in all frames (what the transform counts as events). */
  events: number;
  /** Skips by reason (reasons absent are 0). */
  skipped: Partial<Record<SkipReason, number>>;
  /** Every record value the valid quotes must become, in frame order. */
  values: string[];
}

const T1 = Date.UTC(2026, 1, 3, 4, 5, 6, 0);
const PAIRS = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD", "LTC-EUR", "USDT-USD"];
const MB = 1 << 20;

/** An event as ordered key / raw JSON value pairs, so any text can be written. */
type Fields = [string, string][];

interface Built {
  /** The frame text (or bytes). */
  frame: HostileFrame;
  events: number;
  skips: Partial<Record<SkipReason, number>>;
  values: string[];
}

function objectText(fields: Fields): string {
  return "{" + fields.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",") + "}";
}

function arrayText(events: string[]): string {
  return "[" + events.join(",") + "]";
}

/** Builds the frames; see the module doc. */
export function hostileFrames(options: HostileFramesOptions): HostileSet {
  const random = mulberry32(options.seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const encoder = new TextEncoder();
  let next = 0; // index of the next valid quote: unique exchange time T1 + index

  /** A valid quote: its fields and the record value it must become. */
  const quote = (): { fields: Fields; value: string } => {
    const j = next++;
    const pair = PAIRS[j % PAIRS.length]!;
    const whole = 1 + int(90_000);
    const cents = 1 + int(99);
    const t = T1 + j;
    return {
      fields: [
        ["ev", '"XQ"'],
        ["pair", JSON.stringify(pair)],
        ["lp", "0"],
        ["ls", "0"],
        ["bp", `${whole}`],
        ["bs", "1.5"],
        ["ap", `${whole}.${String(cents).padStart(2, "0")}`],
        ["as", "2"],
        ["t", String(t)],
        ["x", String(1 + int(30))],
        ["r", String(t + 4)],
      ],
      value: `{"timestamp":"${new Date(t).toISOString()}","symbol":${JSON.stringify(pair)},` +
        `"spread":${String(cents / 100)}}`,
    };
  };
  const set = (fields: Fields, key: string, raw: string | undefined): Fields => {
    const out = fields.filter(([k]) => k !== key || raw !== undefined)
      .map(([k, v]): [string, string] => (k === key ? [k, raw!] : [k, v]));
    if (raw !== undefined && !out.some(([k]) => k === key)) out.push([key, raw]);
    return out;
  };
  /** A valid frame of 1 to 3 quotes. */
  const validFrame = (): Built => {
    const qs = Array.from({ length: 1 + int(3) }, quote);
    return {
      frame: arrayText(qs.map((q) => objectText(q.fields))),
      events: qs.length,
      skips: {},
      values: qs.map((q) => q.value),
    };
  };
  /** One bad event as text, with its skip reason (it uses up no quote index for records). */
  const badEvent = (): { text: string; reason: SkipReason } => {
    const q = quote();
    const f = q.fields;
    switch (int(7)) {
      case 0:
        return {
          text: objectText(set(f, "bp", pick(['"1.5"', "null", "true", "0", "-1.5", "[1]", "{}"]))),
          reason: "bad_bid",
        };
      case 1:
        return {
          text: objectText(set(f, "ap", pick(['"2"', "null", "false", "0", "-0.5", "[]"]))),
          reason: "bad_ask",
        };
      case 2:
        return {
          text: objectText(set(f, "t", pick(['"1690409119847"', "1.5", "-1", "null", "{}"]))),
          reason: "bad_time",
        };
      case 3:
        return {
          text: objectText(
            set(f, "pair", pick(["7", '""', "null", JSON.stringify("X".repeat(65))])),
          ),
          reason: "bad_pair",
        };
      case 4:
        // ev that is not a string, or missing: not a quote (string ev values would be filtered).
        return {
          text: objectText(set(f, "ev", pick(["5", "null", "true", "[]"]))),
          reason: "other_event",
        };
      case 5:
        return { text: pick(["1", '"XQ"', "null", "true", "-3.5e2"]), reason: "not_an_object" };
      default:
        return { text: pick(["[]", "[1,2]", arrayText([objectText(f)])]), reason: "nested_array" };
    }
  };
  /** One huge-number event: some are bad, some are valid quotes with exact spreads. */
  const hugeEvent = (): { text: string; reason?: SkipReason; value?: string } => {
    const q = quote();
    const f = q.fields;
    const t = Number(f.find(([k]) => k === "t")![1]);
    const pair = JSON.parse(f.find(([k]) => k === "pair")![1]) as string;
    const valueWith = (spread: string) =>
      `{"timestamp":"${new Date(t).toISOString()}","symbol":${
        JSON.stringify(pair)
      },"spread":${spread}}`;
    switch (int(6)) {
      case 0:
        return {
          text: objectText(set(f, "bp", pick(["1e400", "1" + "0".repeat(400)]))),
          reason: "bad_bid",
        };
      case 1:
        return {
          text: objectText(set(f, "ap", pick(["1e400", "-1e400", "9".repeat(320)]))),
          reason: "bad_ask",
        };
      case 2:
        return {
          text: objectText(set(f, "t", pick(["1e300", "9007199254740993", "8640000000000001"]))),
          reason: "bad_time",
        };
      case 3: {
        // 40 digits: finite, far beyond a double's precision; the spread must stay exact. (The
        // draws of 300 keep the seeded stream as it was; longer texts are number_too_long.)
        const digits = "7" +
          Array.from({ length: 299 }, () => String(int(10))).join("").slice(0, 39);
        return {
          text: objectText(set(set(f, "bp", `${digits}.5`), "ap", `${digits}.75`)),
          value: valueWith("0.25"),
        };
      }
      case 4:
        // 25 decimal places: tiny prices, exact tiny spread.
        return {
          text: objectText(
            set(set(f, "bp", "0.0000000000000000000000001"), "ap", "0.0000000000000000000000004"),
          ),
          value: valueWith("3e-25"),
        };
      default:
        return {
          text: objectText(
            set(set(f, "bp", "123456789012345678.25"), "ap", "123456789012345678.5"),
          ),
          value: valueWith("0.25"),
        };
    }
  };

  const mutations: Record<string, () => Built> = {
    truncated: () => {
      const text = validFrame().frame as string;
      return {
        frame: text.slice(0, 1 + int(text.length - 1)),
        events: 1,
        skips: { invalid_json: 1 },
        values: [],
      };
    },
    empty: () => ({
      frame: pick(["", " ", "\n", "\t \r\n"]),
      events: 1,
      skips: { invalid_json: 1 },
      values: [],
    }),
    not_json: () => ({
      frame: pick(["XQ", "[{]", "{'ev':'XQ'}", "[1,]", "NaN", "[Infinity]", "\u0000", '["\\x"]']),
      events: 1,
      skips: { invalid_json: 1 },
      values: [],
    }),
    not_a_frame: () => ({
      frame: pick(["42", '"XQ"', "null", "true", "-0"]),
      events: 1,
      skips: { not_a_frame: 1 },
      values: [],
    }),
    wrong_types: () => {
      // Bad events between valid quotes: the valid ones still become records.
      const parts: string[] = [];
      const skips: Partial<Record<SkipReason, number>> = {};
      const values: string[] = [];
      const n = 1 + int(4);
      for (let i = 0; i < n; i++) {
        if (random() < 0.4) {
          const q = quote();
          parts.push(objectText(q.fields));
          values.push(q.value);
        } else {
          const bad = badEvent();
          parts.push(bad.text);
          skips[bad.reason] = (skips[bad.reason] ?? 0) + 1;
        }
      }
      return { frame: arrayText(parts), events: n, skips, values };
    },
    huge_numbers: () => {
      const h = hugeEvent();
      return {
        frame: arrayText([h.text]),
        events: 1,
        skips: h.reason ? { [h.reason]: 1 } : {},
        values: h.value ? [h.value] : [],
      };
    },
    deep_nesting: () => {
      const depth = 100 + int(20_000);
      switch (int(3)) {
        case 0: // an array nested `depth` deep as the only event
          return {
            frame: "[".repeat(depth + 1) + "]".repeat(depth + 1),
            events: 1,
            skips: { nested_array: 1 },
            values: [],
          };
        case 1: { // a valid quote carrying a deeply nested extra field
          const q = quote();
          const deep = '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
          return {
            frame: arrayText([objectText([...q.fields, ["z", deep]])]),
            events: 1,
            skips: {},
            values: [q.value],
          };
        }
        default: // a deep object with no ev
          return {
            frame: '{"a":'.repeat(depth) + "{}" + "}".repeat(depth),
            events: 1,
            skips: { other_event: 1 },
            values: [],
          };
      }
    },
    invalid_utf8: () => {
      const q = quote();
      const text = objectText(q.fields);
      const bad = pick([[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xf0, 0x90, 0x28, 0xbc], [
        0xed,
        0xa0,
        0x80,
      ]]);
      const bytes = (s: string) => encoder.encode(s);
      const join = (...parts: Uint8Array[]) => {
        const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        return out;
      };
      const b = new Uint8Array(bad);
      switch (int(4)) {
        case 0: // in the syntax, before the frame
          return {
            frame: join(b, bytes(arrayText([text]))),
            events: 1,
            skips: { invalid_json: 1 },
            values: [],
          };
        case 1: { // inside a number
          const at = text.indexOf('"bp":') + 6;
          return {
            frame: join(bytes("[" + text.slice(0, at)), b, bytes(text.slice(at) + "]")),
            events: 1,
            skips: { invalid_json: 1 },
            values: [],
          };
        }
        case 2: { // inside the ev string: "X�Q" is not XQ
          const at = text.indexOf('"ev":"X') + 7;
          return {
            frame: join(bytes("[" + text.slice(0, at)), b, bytes(text.slice(at) + "]")),
            events: 1,
            skips: { other_event: 1 },
            values: [],
          };
        }
        default: { // inside the pair: the symbol keeps one U+FFFD per invalid sequence
          const pairAt = text.indexOf('"pair":"') + 8;
          const replaced = new TextDecoder().decode(b);
          const value = q.value.replace(
            /"symbol":"([^"]*)"/,
            (_, p: string) => `"symbol":"${replaced}${p}"`,
          );
          return {
            frame: join(bytes("[" + text.slice(0, pairAt)), b, bytes(text.slice(pairAt) + "]")),
            events: 1,
            skips: {},
            values: [value],
          };
        }
      }
    },
  };
  const megabyte: (() => Built)[] = [
    () => { // one valid quote padded to 1 MB
      const q = quote();
      const pad = "p".repeat(MB);
      return {
        frame: arrayText([objectText([...q.fields, ["pad", JSON.stringify(pad)]])]),
        events: 1,
        skips: {},
        values: [q.value],
      };
    },
    () => { // 1 MB of printable garbage (no quotes, so it cannot look like a channel)
      const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789{}[]:,. ";
      const chars = Array.from({ length: MB }, () => alphabet[int(alphabet.length)]).join("");
      return { frame: "[" + chars, events: 1, skips: { invalid_json: 1 }, values: [] };
    },
    () => { // about 1 MB of valid quotes in one frame
      const qs: { fields: Fields; value: string }[] = [];
      let size = 0;
      while (size < MB) {
        const q = quote();
        qs.push(q);
        size += objectText(q.fields).length + 1;
      }
      return {
        frame: arrayText(qs.map((q) => objectText(q.fields))),
        events: qs.length,
        skips: {},
        values: qs.map((q) => q.value),
      };
    },
  ];

  const kindsOrder = Object.keys(mutations);
  const weights: Record<string, number> = {
    truncated: 18,
    empty: 4,
    not_json: 6,
    not_a_frame: 4,
    wrong_types: 36,
    huge_numbers: 14,
    deep_nesting: 3,
    invalid_utf8: 15,
  };
  const totalWeight = kindsOrder.reduce((n, k) => n + weights[k]!, 0);
  const mutatedCount = options.mutated ?? 10_000;
  const megaCount = options.megabyteFrames ?? 12;
  const megaEvery = megaCount > 0 ? Math.floor(mutatedCount / megaCount) : Infinity;
  const result: HostileSet = {
    frames: [],
    mutated: 0,
    kinds: {},
    binary: 0,
    events: 0,
    skipped: {},
    values: [],
  };
  const add = (built: Built) => {
    result.frames.push(built.frame);
    if (typeof built.frame !== "string") result.binary++;
    result.events += built.events;
    for (const [reason, n] of Object.entries(built.skips) as [SkipReason, number][]) {
      result.skipped[reason] = (result.skipped[reason] ?? 0) + n;
    }
    result.values.push(...built.values);
  };
  for (let m = 0; m < mutatedCount; m++) {
    let kind: string;
    let built: Built;
    if (m % megaEvery === megaEvery - 1 && m / megaEvery < megaCount) {
      const which = Math.floor(m / megaEvery) % megabyte.length;
      kind = ["megabyte_quote", "megabyte_garbage", "megabyte_quotes"][which]!;
      built = megabyte[which]!();
    } else {
      let r = random() * totalWeight;
      kind = kindsOrder.find((k) => (r -= weights[k]!) < 0) ?? "wrong_types";
      built = mutations[kind]!();
    }
    result.kinds[kind] = (result.kinds[kind] ?? 0) + 1;
    result.mutated++;
    add(built);
    if (random() < 0.5) add(validFrame());
  }
  return result;
}
