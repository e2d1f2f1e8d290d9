/** The parser: flags, environment and `.env` (read by {@linkcode entryEnv}) become one typed object per entry script; flags win over the environment. Also `--help` text from the table. */
import { parseArgs } from "node:util";
import { ConfigError, fileErrorReason } from "./errors.ts";
import { type Script, type Setting, type Settings, type SettingsOf, TABLE } from "./settings.ts";

/**
 * Reads the `KEY=value` lines of a dotenv file, as `deno run --env-file` does: `#` comments, an
 * optional `export `, values in single quotes (literal) or double quotes (`\n` escapes), and
 * unquoted values up to a ` #` comment. A missing file is normal and gives `{}`; a line that is
 * not `KEY=value`, or a key set twice, is a {@linkcode ConfigError} naming the file and the lines.
 */
export function readEnvFile(
  path: string,
  readTextFile: (path: string) => string = Deno.readTextFileSync,
): Record<string, string> {
  let text: string;
  try {
    text = readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new ConfigError(`Cannot read the settings file "${path}": ${fileErrorReason(error)}`, {
      cause: error,
    });
  }
  const vars: Record<string, string> = {};
  const lineOf = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/.exec(line);
    const value = m ? envFileValue(m[2]!) : undefined;
    if (!m || value === undefined) {
      throw new ConfigError(
        `Cannot read the settings file "${path}": line ${i + 1} is not KEY=value`,
      );
    }
    const key = m[1]!;
    const first = lineOf.get(key);
    if (first !== undefined) {
      // Deno's --env-file keeps the first, most shells the last: a user who copied
      // .env.example and appended a setting meant the last, and got the first (often empty).
      throw new ConfigError(
        `Cannot read the settings file "${path}": "${key}" is set on line ${first} and again ` +
          `on line ${i + 1}; keep one of them`,
      );
    }
    lineOf.set(key, i + 1);
    vars[key] = value;
  }
  return vars;
}

function envFileValue(raw: string): string | undefined {
  const quote = raw[0];
  if (quote === "'" || quote === '"') {
    const end = raw.indexOf(quote, 1);
    if (end < 0 || !/^\s*(#.*)?$/.test(raw.slice(end + 1))) return undefined;
    const inner = raw.slice(1, end);
    return quote === "'" ? inner : inner.replaceAll("\\n", "\n");
  }
  return raw.replace(/\s+#.*$/, "").trim();
}

/**
 * The environment of an entry script: the process environment, then the settings file named by
 * `ENV_FILE` (the deno tasks set `ENV_FILE=.env`; a missing file is normal and says nothing).
 * Like `deno run --env-file`, a variable set in the environment wins over the file.
 */
export function entryEnv(): (name: string) => string | undefined {
  const file = Deno.env.get("ENV_FILE");
  const vars = file ? readEnvFile(file) : {};
  return (name) => Deno.env.get(name) ?? vars[name];
}

/** The result of reading flags and environment for one script. */
export interface Parsed<S extends Script> {
  settings: SettingsOf<S>;
  positionals: string[];
  help: boolean;
}

/** Options for {@linkcode parseSettings}. */
export interface ParseOptions {
  /** Environment lookup; default none. Entry scripts pass `Deno.env.get`. */
  env?: (name: string) => string | undefined;
  /** Whether positional arguments are accepted; default false. */
  allowPositionals?: boolean;
}

function settingsFor(script: Script): Setting[] {
  return TABLE.filter((s) => s.scripts.includes(script));
}

/**
 * Parses the flags and environment of one entry script into typed settings.
 * Throws {@linkcode ConfigError} naming the flag or variable at fault.
 */
export function parseSettings<S extends Script>(
  script: S,
  args: string[],
  options: ParseOptions = {},
): Parsed<S> {
  const env = options.env ?? (() => undefined);
  const own = settingsFor(script);
  const flagOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const s of own) {
    if (s.flag) flagOptions[s.flag] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  const { values, positionals } = readArgs(args, flagOptions, options.allowPositionals ?? false);
  const settings: Record<string, SettingValue | undefined> = {};
  for (const s of own) {
    const flagValue = s.flag ? values[s.flag] : undefined;
    let raw: string | undefined;
    let source: string;
    if (flagValue !== undefined) {
      raw = String(flagValue);
      source = `--${s.flag}`;
    } else if (s.env && env(s.env) !== undefined && env(s.env) !== "") {
      raw = env(s.env);
      source = `"${s.env}" environment variable`;
    } else {
      raw = s.default;
      source = s.flag ? `--${s.flag}` : `"${s.env}"`;
    }
    settings[s.key] = raw === undefined ? undefined : convert(s, raw, source);
  }
  return { settings: settings as SettingsOf<S>, positionals, help: values.help === true };
}

/**
 * Reads the command line with `node:util` `parseArgs` tokens, and answers a mistake with one line
 * of our own that names the flag (parseArgs's own messages span lines and suggest its syntax).
 * A value that looks like a negative number (`--replication-factor -1`) is taken as a value.
 */
function readArgs(
  args: string[],
  flagOptions: Record<string, { type: "string" | "boolean"; short?: string }>,
  allowPositionals: boolean,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  const { tokens } = parseArgs({
    args,
    options: flagOptions,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, string | boolean | undefined> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") {
      if (!allowPositionals) {
        throw new ConfigError(
          `Unexpected argument "${token.value}": this command takes no positional arguments; ` +
            "see --help",
        );
      }
      positionals.push(token.value);
    } else if (token.kind === "option") {
      const option = flagOptions[token.name];
      if (!option) throw new ConfigError(`Unknown option "${token.rawName}"; see --help`);
      const flag = token.name === "help" ? token.rawName : `--${token.name}`;
      if (option.type === "boolean") {
        if (token.inlineValue) {
          throw new ConfigError(`${flag} takes no value, got "${token.value}"; see --help`);
        }
        values[token.name] = true;
        continue;
      }
      const value = token.value;
      if (value === undefined) throw new ConfigError(`${flag} needs a value; see --help`);
      if (!token.inlineValue && value.startsWith("-") && !/^-\d/.test(value)) {
        throw new ConfigError(
          `${flag} needs a value, got the option "${value}"; write ${flag}=${value} if that is ` +
            "the value",
        );
      }
      values[token.name] = value;
    }
  }
  return { values, positionals };
}

/** A parsed setting value. */
type SettingValue = string | number | boolean | string[];

function convert(s: Setting, raw: string, source: string): SettingValue {
  const value = convertType(s, raw, source);
  if (s.choices && !s.choices.includes(value as string)) {
    throw new ConfigError(`${source} must be one of ${s.choices.join(", ")}, got "${raw}"`);
  }
  if (typeof value === "number") {
    if (s.min !== undefined && s.max !== undefined && (value < s.min || value > s.max)) {
      throw new ConfigError(`${source} must be between ${s.min} and ${s.max}, got "${raw}"`);
    }
    if (s.min !== undefined && value < s.min) {
      throw new ConfigError(`${source} must be at least ${s.min}, got "${raw}"`);
    }
  }
  return value;
}

function convertType(s: Setting, raw: string, source: string): SettingValue {
  const quoted = s.type === "secret" ? "(hidden)" : `"${raw}"`;
  switch (s.type) {
    case "string":
    case "secret":
      return raw;
    case "number": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n < 0) {
        throw new ConfigError(`${source} must be a number of at least 0, got ${quoted}`);
      }
      return n;
    }
    case "list": {
      const items = raw.split(",").map((x) => x.trim()).filter((x) => x !== "");
      if (items.length === 0) throw new ConfigError(`${source} must list at least one value`);
      return items;
    }
    case "boolean": {
      const v = raw.toLowerCase();
      if (["true", "1", "yes"].includes(v)) return true;
      if (["false", "0", "no"].includes(v)) return false;
      throw new ConfigError(`${source} must be true or false, got ${quoted}`);
    }
    case "int": {
      if (!/^-?\d+$/.test(raw.trim())) {
        throw new ConfigError(`${source} must be a whole number, got ${quoted}`);
      }
      return Number.parseInt(raw, 10);
    }
    case "seconds": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || n < 0) {
        throw new ConfigError(`${source} must be a number of seconds, got ${quoted}`);
      }
      return n;
    }
  }
}

/** Column where the help text of an option starts in `--help`. */
const HELP_COLUMN = 34;
/** Width `--help` wraps its text at. */
const HELP_WIDTH = 100;

/** Wraps words into lines of at most `width` characters (a longer word gets a line of its own). */
function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/**
 * One option of `--help`: the names, then the text from {@linkcode HELP_COLUMN}, wrapped. A name
 * too long for its column gets a line of its own, so a name never runs into its text.
 */
function helpEntry(name: string, text: string): string[] {
  const indent = " ".repeat(HELP_COLUMN);
  const wrapped = wrapWords(text, HELP_WIDTH - HELP_COLUMN).map((l) => indent + l);
  const head = `  ${name}`;
  if (head.length + 2 > HELP_COLUMN) return [head, ...wrapped];
  return [head.padEnd(HELP_COLUMN) + (wrapped[0] ?? "").trimStart(), ...wrapped.slice(1)];
}

/** Usage text for one script, built from {@linkcode SETTINGS}. Never shows secret values. */
export function usage(script: Script, synopsis: string, description: string): string {
  const own = settingsFor(script);
  const withEnv = own.some((s) => s.env !== undefined);
  const lines = [
    `Usage: ${synopsis}`,
    "",
    description,
    "",
    withEnv ? "Options (flag / environment variable):" : "Options:",
  ];
  lines.push(...helpEntry("-h, --help", "show this help"));
  for (const s of own) {
    const name = [s.flag ? `--${s.flag}` : "", s.env ?? ""].filter((x) => x).join(" / ");
    const def = s.default !== undefined && s.type !== "secret" ? ` (default ${s.default})` : "";
    lines.push(...helpEntry(name, s.help + def));
  }
  if (withEnv) {
    lines.push("", "Settings load from .env, then the environment, then flags; flags win.");
  }
  return lines.join("\n");
}

/** A key of {@linkcode Settings}. */
type Key = keyof Settings;

/** Reads a required string setting or throws a {@linkcode ConfigError} naming it. */
export function requireString(settings: Settings, key: Key): string {
  const value = settings[key];
  if (typeof value === "string" && value !== "") return value;
  const s = TABLE.find((x) => x.key === key);
  const name = s?.env ? `"${s.env}" environment variable` : `--${s?.flag ?? key}`;
  const alt = s?.env && s.flag ? ` (or --${s.flag})` : "";
  const hint = s?.env ? "; set it in .env (cp .env.example .env, which lists every setting)" : "";
  throw new ConfigError(`${name}${alt} must be set${hint}`);
}
