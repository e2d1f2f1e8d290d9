/**
 * Headless Chromium driven over the DevTools protocol (CDP) with Deno's own WebSocket: open a
 * page, evaluate expressions in it, collect console errors, exceptions and every network
 * request, take screenshots. For the live page's browser tests and the UI cost benchmark.
 *
 * Chromium is the Debian package `chromium` (`apt-get install -y chromium`). It runs with every
 * host name except 127.0.0.1 unresolvable, so a page that reaches for a CDN fails visibly.
 *
 * @example
 * ```ts
 * const browser = await Browser.launch();
 * try {
 *   const page = await browser.open("http://127.0.0.1:9464/");
 *   await page.evaluate("document.title");
 * } finally {
 *   await browser.close();
 * }
 * ```
 */

/** Where the chromium binary is; `CHROMIUM` overrides. */
export function chromiumPath(): string | undefined {
  const candidates = [Deno.env.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"];
  for (const path of candidates) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there; try the next one.
    }
  }
  return undefined;
}

/** A problem the page reported: a console error, an uncaught exception or a log error. */
export interface PageProblem {
  kind: "console" | "exception" | "log";
  text: string;
}

interface Pending {
  resolve: (value: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  method: string;
}

type Listener = (params: Record<string, unknown>, sessionId?: string) => void;

/** Options for {@linkcode Browser.launch}. */
export interface LaunchOptions {
  /** Window size for screenshots; default 1280×1000. */
  width?: number;
  height?: number;
  /** Start-up limit, ms; default 30,000. */
  timeoutMs?: number;
}

/** A running headless Chromium. */
export class Browser {
  #child: Deno.ChildProcess;
  #socket: WebSocket;
  #profile: string;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #listeners = new Map<string, Listener[]>();

  private constructor(child: Deno.ChildProcess, socket: WebSocket, profile: string) {
    this.#child = child;
    this.#socket = socket;
    this.#profile = profile;
    socket.onmessage = (event) => this.#receive(String(event.data));
  }

  /** Starts Chromium and connects to its DevTools endpoint. */
  static async launch(options: LaunchOptions = {}): Promise<Browser> {
    const binary = chromiumPath();
    if (!binary) {
      throw new Error(
        "Cannot start Chromium: no chromium binary found; install it with " +
          "`apt-get install -y chromium` or set CHROMIUM to its path",
      );
    }
    const profile = await Deno.makeTempDir({ prefix: "live-page-chromium-" });
    const child = new Deno.Command(binary, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        `--window-size=${options.width ?? 1280},${options.height ?? 1000}`,
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const endpoint = await readEndpoint(child.stderr, options.timeoutMs ?? 30_000);
    if (!endpoint) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await child.status;
      await removeProfile(profile);
      throw new Error("Cannot start Chromium: it printed no DevTools endpoint in time");
    }
    const socket = new WebSocket(endpoint);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`Cannot connect to Chromium at "${endpoint}"`));
    });
    return new Browser(child, socket, profile);
  }

  #receive(text: string): void {
    const message = JSON.parse(text);
    if (typeof message.id === "number") {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if (message.error) {
        pending.reject(new Error(`CDP ${pending.method} failed: ${message.error.message}`));
      } else {
        pending.resolve(message.result ?? {});
      }
      return;
    }
    for (const listener of this.#listeners.get(message.method) ?? []) {
      listener(message.params ?? {}, message.sessionId);
    }
  }

  /** Sends one CDP command (to a page session when `sessionId` is given). */
  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      this.#socket.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** Calls `listener` for every event `method`. */
  on(method: string, listener: Listener): void {
    const list = this.#listeners.get(method) ?? [];
    list.push(listener);
    this.#listeners.set(method, list);
  }

  /** Opens a new tab at `url`; resolves once the page's load event fired. */
  async open(url: string): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, String(targetId), String(sessionId));
    await page.navigate(url);
    return page;
  }

  /** Closes Chromium and removes its profile. */
  async close(): Promise<void> {
    await Promise.race([
      this.send("Browser.close").catch(() => {}),
      new Promise((resolve) => setTimeout(resolve, 3000)),
    ]);
    this.#socket.close();
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.#child.status;
    for (const pending of this.#pending.values()) pending.reject(new Error("Chromium closed"));
    this.#pending.clear();
    await removeProfile(this.#profile);
  }

  /** The Chromium process id (for CPU and memory readings). */
  get pid(): number {
    return this.#child.pid;
  }
}

/** One tab. */
export class Page {
  readonly targetId: string;
  readonly sessionId: string;
  /** Console errors, uncaught exceptions and log errors (CSP violations among them). */
  readonly problems: PageProblem[] = [];
  /** Every URL the page requested. */
  readonly requests: string[] = [];
  #browser: Browser;
  #loaded: (() => void) | undefined;

  constructor(browser: Browser, targetId: string, sessionId: string) {
    this.#browser = browser;
    this.targetId = targetId;
    this.sessionId = sessionId;
    const mine = (listener: (p: Record<string, unknown>) => void): Listener => (p, s) => {
      if (s === sessionId) listener(p);
    };
    browser.on(
      "Runtime.consoleAPICalled",
      mine((p) => {
        if (p.type !== "error" && p.type !== "assert") return;
        const args = (p.args as { value?: unknown; description?: string }[]) ?? [];
        this.problems.push({
          kind: "console",
          text: args.map((a) => a.description ?? String(a.value)).join(" "),
        });
      }),
    );
    browser.on(
      "Runtime.exceptionThrown",
      mine((p) => {
        const details = p.exceptionDetails as {
          text?: string;
          exception?: { description?: string };
        };
        this.problems.push({
          kind: "exception",
          text: details.exception?.description ?? details.text ?? "exception",
        });
      }),
    );
    browser.on(
      "Log.entryAdded",
      mine((p) => {
        const entry = p.entry as { level: string; text: string; url?: string };
        if (entry.level === "error") {
          this.problems.push({ kind: "log", text: `${entry.text} ${entry.url ?? ""}`.trim() });
        }
      }),
    );
    browser.on(
      "Network.requestWillBeSent",
      mine((p) => this.requests.push(String((p.request as { url: string }).url))),
    );
    browser.on("Page.loadEventFired", mine(() => this.#loaded?.()));
  }

  /** Enables the domains and loads `url`, resolving on the load event. */
  async navigate(url: string): Promise<void> {
    const s = this.sessionId;
    await Promise.all([
      this.#browser.send("Runtime.enable", {}, s),
      this.#browser.send("Log.enable", {}, s),
      this.#browser.send("Network.enable", {}, s),
      this.#browser.send("Page.enable", {}, s),
    ]);
    const loaded = new Promise<void>((resolve) => this.#loaded = resolve);
    const result = await this.#browser.send("Page.navigate", { url }, s);
    if (result.errorText) throw new Error(`Cannot load "${url}": ${result.errorText}`);
    await loaded;
  }

  /** Evaluates `expression` in the page and returns its value (awaiting a promise). */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const result = await this.#browser.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    }, this.sessionId);
    const details = result.exceptionDetails as
      | { text?: string; exception?: { description?: string } }
      | undefined;
    if (details) {
      throw new Error(
        `Cannot evaluate in the page: ${details.exception?.description ?? details.text}`,
      );
    }
    return (result.result as { value: T }).value;
  }

  /** Polls `expression` until it is truthy; fails after `timeoutMs` naming `what`. */
  async waitFor(expression: string, what: string, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await this.evaluate<boolean>(`Boolean(${expression})`)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
  }

  /** Writes a PNG screenshot of the whole page to `path`. */
  async screenshot(path: string): Promise<void> {
    const { data } = await this.#browser.send(
      "Page.captureScreenshot",
      { format: "png", captureBeyondViewport: true },
      this.sessionId,
    );
    const bytes = Uint8Array.from(atob(String(data)), (c) => c.charCodeAt(0));
    await Deno.writeFile(path, bytes);
  }

  /** Closes the tab. */
  async close(): Promise<void> {
    await this.#browser.send("Target.closeTarget", { targetId: this.targetId });
  }
}

/** Removes a profile folder; Chromium's helper processes may still write to it for a moment. */
async function removeProfile(path: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      await Deno.remove(path, { recursive: true });
      return;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Reads Chromium's stderr until it prints its DevTools WebSocket URL; keeps draining after. */
async function readEndpoint(
  stderr: ReadableStream<Uint8Array>,
  timeoutMs: number,
): Promise<string | undefined> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  const found = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      text += value;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (match) return match[1];
      if (text.length > 100_000) text = text.slice(-10_000);
    }
  })();
  const endpoint = await Promise.race([found, timeout]);
  clearTimeout(timer);
  // Keep reading so Chromium never blocks on a full pipe.
  (async () => {
    try {
      for (;;) if ((await reader.read()).done) return;
    } catch {
      // Closed.
    }
  })();
  return endpoint;
}
