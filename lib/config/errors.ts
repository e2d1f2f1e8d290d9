/** The configuration error: names the flag or variable; exit code 2. */
import { EXIT } from "./defaults.ts";

/** A usage or configuration error: names the flag or variable. Exit code 2. */
export class ConfigError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.USAGE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Why a file operation failed, in a few words ("file not found", "permission denied", …). */
export function fileErrorReason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "file not found";
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "permission denied";
  }
  return error instanceof Error ? error.message : String(error);
}
