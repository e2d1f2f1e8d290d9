/**
 * The frame router: one Polygon frame may hold events of several channels (quotes, trades,
 * bars); each channel's transform must see all of its events and nothing is lost. Pure: no I/O.
 *
 * - A frame whose events all belong to one channel goes to that channel whole, untouched (the
 *   common case, and the spread transform's fast path stays as it is).
 * - A frame that mixes channels is cut into one frame per channel, each event's text kept
 *   verbatim, in frame order.
 * - What belongs to no channel (a status, an unsubscribed `ev`, an element that is not an
 *   object, text that is not JSON) goes to the primary channel (the first), whose transform
 *   counts it as a skip: events = records + skips holds per channel and in all.
 */

/** A channel as the router sees it. */
export interface RoutedChannel {
  /** The channel's name, e.g. `XT`. */
  readonly channel: string;
  /** Whether an event's `ev` belongs to it. */
  canHandle(ev: unknown): boolean;
}

/** Receives one frame for one channel (by its index in the router's list). */
export type RouteTarget = (index: number, text: string) => void;

interface Element {
  start: number;
  end: number;
  /** The `ev` of the element, when it is an object with a string `ev`. */
  ev: string | undefined;
}

/** Routes frames to channels; see the module doc. Made by {@linkcode createFrameRouter}. */
export class FrameRouter {
  readonly #channels: readonly RoutedChannel[];

  /** Use {@linkcode createFrameRouter}. */
  constructor(channels: readonly RoutedChannel[]) {
    if (channels.length === 0) throw new TypeError("A frame router needs at least one channel");
    this.#channels = channels;
  }

  /** The index of the channel that takes an event with this `ev` (0 when none does). */
  #indexOf(ev: string | undefined): number {
    const channels = this.#channels;
    for (let i = 0; i < channels.length; i++) if (channels[i]!.canHandle(ev)) return i;
    return 0;
  }

  /** Hands the frame (or its per-channel parts) to `to`. Never throws on bad input. */
  route(text: string, to: RouteTarget): void {
    if (this.#channels.length === 1) return to(0, text);
    const elements = splitElements(text);
    if (elements === undefined) {
      // A single object, or text the splitter does not take: one event or a frame-level skip.
      return to(this.#indexOf(evOfObject(text)), text);
    }
    if (elements.length === 0) return to(0, text);
    const first = this.#indexOf(elements[0]!.ev);
    let mixed = false;
    const targets = new Array<number>(elements.length);
    for (let k = 0; k < elements.length; k++) {
      const i = this.#indexOf(elements[k]!.ev);
      targets[k] = i;
      if (i !== first) mixed = true;
    }
    if (!mixed) return to(first, text);
    // Mixed: cut only valid JSON (invalid text is one frame-level skip, as it always was).
    try {
      JSON.parse(text);
    } catch {
      return to(0, text);
    }
    const parts = new Map<number, string[]>();
    for (let k = 0; k < elements.length; k++) {
      const e = elements[k]!;
      const i = targets[k]!;
      let list = parts.get(i);
      if (list === undefined) parts.set(i, list = []);
      list.push(text.slice(e.start, e.end));
    }
    for (const [i, list] of [...parts].sort((a, b) => a[0] - b[0])) {
      to(i, "[" + list.join(",") + "]");
    }
  }
}

/**
 * A router over `channels`; the first is the primary one, which takes what no channel handles.
 * @example
 * ```ts
 * const router = createFrameRouter([{ channel: "XQ", canHandle: (ev) => ev === "XQ" },
 *   { channel: "XT", canHandle: (ev) => ev === "XT" }]);
 * router.route('[{"ev":"XQ"},{"ev":"XT"}]', (i, text) => console.log(i, text));
 * // 0 [{"ev":"XQ"}]
 * // 1 [{"ev":"XT"}]
 * ```
 */
export function createFrameRouter(channels: readonly RoutedChannel[]): FrameRouter {
  return new FrameRouter(channels);
}

const WS = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;

/**
 * The top-level elements of a JSON array text with each one's `ev`, or undefined when the text
 * is not an array (whitespace aside) or its brackets and strings do not balance.
 */
function splitElements(text: string): Element[] | undefined {
  let i = 0;
  const n = text.length;
  while (i < n && WS(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 91) return undefined;
  i++;
  const out: Element[] = [];
  for (;;) {
    while (i < n && WS(text.charCodeAt(i))) i++;
    if (i >= n) return undefined;
    if (text.charCodeAt(i) === 93 && out.length === 0) {
      return rest(text, i + 1) ? out : undefined;
    }
    const start = i;
    const end = skipValue(text, i);
    if (end < 0) return undefined;
    let stop = end;
    while (stop > start && WS(text.charCodeAt(stop - 1))) stop--;
    out.push({
      start,
      end: stop,
      ev: text.charCodeAt(start) === 123 ? evOf(text, start) : undefined,
    });
    i = end;
    while (i < n && WS(text.charCodeAt(i))) i++;
    const c = text.charCodeAt(i);
    if (c === 44) {
      i++;
      continue;
    }
    if (c === 93) return rest(text, i + 1) ? out : undefined;
    return undefined;
  }
}

/** Whether only whitespace follows `from`. */
function rest(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) if (!WS(text.charCodeAt(i))) return false;
  return true;
}

/** The index just past the JSON value starting at `i` (strings and brackets balanced), or -1. */
function skipValue(text: string, i: number): number {
  const n = text.length;
  let depth = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      i = skipString(text, i);
      if (i < 0) return -1;
      if (depth === 0) return i + 1;
    } else if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) {
      // A scalar (a number, true, null) ends where its array or object closes.
      if (depth === 0) return i;
      depth--;
      if (depth === 0) return i + 1;
    } else if (depth === 0 && (c === 44 || WS(c))) return i;
  }
  return depth === 0 ? n : -1;
}

/** The index of the closing quote of the string opening at `i`, or -1. */
function skipString(text: string, i: number): number {
  const n = text.length;
  for (i++; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 34) return i;
  }
  return -1;
}

/**
 * The `ev` of the object starting at `start`: the value of its own (not a nested) key `ev` when
 * that is a string; the last one wins, as in `JSON.parse`.
 */
function evOf(text: string, start: number): string | undefined {
  const n = text.length;
  let depth = 0;
  let ev: string | undefined;
  for (let i = start; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      const close = skipString(text, i);
      if (close < 0) return ev;
      if (depth === 1 && close - i === 3 && text.startsWith('"ev"', i)) {
        // A key only if a colon follows.
        let j = close + 1;
        while (j < n && WS(text.charCodeAt(j))) j++;
        if (text.charCodeAt(j) === 58) {
          j++;
          while (j < n && WS(text.charCodeAt(j))) j++;
          if (text.charCodeAt(j) === 34) {
            const end = skipString(text, j);
            if (end < 0) return ev;
            const raw = text.slice(j, end + 1);
            ev = raw.includes("\\") ? parseString(raw) : raw.slice(1, -1);
            i = end;
            continue;
          }
          ev = undefined;
          i = j - 1;
          continue;
        }
      }
      i = close;
    } else if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) {
      depth--;
      if (depth === 0) return ev;
    }
  }
  return ev;
}

/** The `ev` of a frame that is one object (not an array), or undefined. */
function evOfObject(text: string): string | undefined {
  let i = 0;
  while (i < text.length && WS(text.charCodeAt(i))) i++;
  return text.charCodeAt(i) === 123 ? evOf(text, i) : undefined;
}

function parseString(raw: string): string | undefined {
  try {
    const v = JSON.parse(raw);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}
