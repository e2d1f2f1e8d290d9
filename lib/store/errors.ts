/** The history store's typed errors: unreachable at start-up (exit code 7), a table of another shape, data the database refused. */
import { EXIT } from "../config/defaults.ts";

/** The database did not answer within the time allowed at start-up. Exit code 7. */
export class StoreUnreachableError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.STORE_UNREACHABLE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnreachableError";
  }
}

/** An existing table has another shape than the store writes; the message names the column. Exit code 2. */
export class StoreSchemaError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.USAGE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreSchemaError";
  }
}

/** The database refused the data of a write (not its connection): retrying it as it is cannot help. */
export class StoreRejectedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreRejectedError";
  }
}
