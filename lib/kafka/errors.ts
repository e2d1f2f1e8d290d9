/** The errors every Kafka adapter throws, shared by the boundary and the entry scripts. */
import { EXIT } from "../config/defaults.ts";

/** Kafka could not be reached at start-up within the time allowed. Exit code 5. */
export class KafkaUnreachableError extends Error {
  /** The exit code an entry script should use. */
  readonly exitCode: number = EXIT.KAFKA_UNREACHABLE;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaUnreachableError";
  }
}

/**
 * Kafka answered but refused us: TLS verification failed on either side, or SASL
 * authentication failed. Retrying cannot help, so it is thrown at once. Exit code 5.
 */
export class KafkaAuthError extends KafkaUnreachableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KafkaAuthError";
  }
}

/** A send into a sink that was closed, or closed while the send was being retried. */
export class SinkClosedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SinkClosedError";
  }
}
