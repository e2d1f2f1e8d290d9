/** The @platformatic/kafka client settings for a config, and how the client's errors read. */
import type { BaseOptions, SASLOptions } from "@platformatic/kafka";
import { exponentialBackoff } from "../../async.ts";
import type { KafkaConfig } from "../../config/kafka.ts";
import { errorChain } from "../diagnosis.ts";
import { securitySettings } from "../security.ts";

/** The client library, for logs and benchmarks. */
export const PLATFORMATIC_LIBRARY = "@platformatic/kafka 2.12.1";

const SASL_MECHANISMS = {
  "scram-sha-256": "SCRAM-SHA-256",
  "scram-sha-512": "SCRAM-SHA-512",
  plain: "PLAIN",
} as const;

/** Options for {@linkcode platformaticOptions}. */
export interface PlatformaticOptions {
  clientId: string;
  /** TCP (and TLS) connect timeout per broker, ms; default 10,000. */
  connectTimeoutMs?: number;
  /** Request timeout, ms; default 30,000. */
  requestTimeoutMs?: number;
  /** Retries of one operation; default unbounded (until the client is closed). */
  retries?: number;
}

/**
 * Pause before retry `attempt` of an operation: doubling from 100 ms to 2 s, with full jitter
 * so that clients restarted together do not retry in step.
 */
function retryDelay(_client: unknown, _operation: string, attempt: number): number {
  return Math.max(20, exponentialBackoff(attempt, { minTimeout: 100, maxTimeout: 2_000 }));
}

/** The @platformatic/kafka base options for a config (exported for tests; never log it). */
export function platformaticOptions(
  config: KafkaConfig,
  options: PlatformaticOptions,
): BaseOptions {
  const out: BaseOptions = {
    clientId: options.clientId,
    bootstrapBrokers: config.brokers,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    timeout: options.requestTimeoutMs ?? 30_000,
    retries: options.retries ?? Number.MAX_SAFE_INTEGER,
    retryDelay,
    autocreateTopics: false,
  };
  const { tls, sasl } = securitySettings(config);
  if (tls) out.tls = tls;
  if (sasl) {
    const { mechanism, username, password } = sasl;
    out.sasl = { mechanism: SASL_MECHANISMS[mechanism], username, password } as SASLOptions;
  }
  return out;
}

/** A short reason for a client error: the distinct messages of its chain, innermost last. */
export function reasonOf(error: unknown): string {
  const chain = [...new Set(errorChain(error))];
  return chain.slice(-2).join(": ") || String(error);
}
