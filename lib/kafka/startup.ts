/**
 * The waits of a Kafka adapter's start-up: reaching the brokers until the time allowed runs out,
 * and a new topic's partition leaders. Both are abortable and retry with {@linkcode retry}.
 */
import { retry } from "../async.ts";
import type { KafkaConfig } from "../config/kafka.ts";
import { type ConnectOptions } from "./types.ts";
import { KafkaAuthError, KafkaUnreachableError } from "./errors.ts";
import { brokersText, redact } from "./diagnosis.ts";

/** Options for {@linkcode waitForLeaders}. */
export interface WaitForLeadersOptions {
  /** How long to keep asking, ms. Default 10000. */
  timeoutMs?: number;
  /** Aborting it stops the wait: the promise rejects with its reason. */
  signal?: AbortSignal;
}

/**
 * The start-up loop both adapters share: calls `attempt` (with the time left and the caller's
 * signal) until it succeeds or the time runs out, with a doubling pause (250 ms to 2 s, cut
 * short when the time runs out) between attempts. `explain` turns an attempt's failure into text
 * and says whether it is fatal (TLS or SASL refused us): then {@linkcode KafkaAuthError} at once,
 * else {@linkcode KafkaUnreachableError} when the time is up. An aborted `options.signal` rejects
 * with its reason.
 */
export async function connectLoop(
  config: KafkaConfig,
  attempt: (remainingMs: number, signal: AbortSignal | undefined) => Promise<void>,
  explain: (error: unknown) => { fatal: boolean; text: string },
  options: ConnectOptions = {},
): Promise<void> {
  const where = brokersText(config);
  const started = Date.now();
  const end = started + (options.timeoutMs ?? config.connectTimeoutMs);
  let last = "no attempt was made";
  let lastError: unknown;
  let attempts = 0;
  // The end of the time allowed cuts the pause in progress short, as the caller's signal does.
  const timeUp = new AbortController();
  const timer = setTimeout(() => timeUp.abort(), Math.max(0, end - started));
  const signal = options.signal ? AbortSignal.any([options.signal, timeUp.signal]) : timeUp.signal;
  try {
    await retry(async () => {
      attempts++;
      try {
        await attempt(Math.max(1, end - Date.now()), options.signal);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        lastError = error;
        const { fatal, text } = explain(error);
        last = text;
        if (fatal) {
          throw new KafkaAuthError(`Cannot connect to ${where}: ${redact(text, config)}`, {
            cause: error,
          });
        }
        throw error;
      }
    }, {
      maxAttempts: Infinity,
      minTimeout: 250,
      maxTimeout: 2_000,
      jitter: 0,
      signal,
      shouldRetry: (error) => !(error instanceof KafkaAuthError) && end - Date.now() > 0,
      onRetry: () =>
        options.onRetry?.(`Cannot reach ${where} yet (${redact(last, config)}); retrying`),
    });
    return;
  } catch (error) {
    if (error instanceof KafkaAuthError) throw error;
    options.signal?.throwIfAborted();
  } finally {
    clearTimeout(timer);
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  throw new KafkaUnreachableError(
    `Cannot reach ${where} within ${seconds} s after ${attempts} attempt(s): ` +
      `${redact(last, config)}; check KAFKA_BROKERS, the network and that the broker is up`,
    { cause: lastError },
  );
}

/**
 * Asks `describe` every 200 ms until the topic has leaders for every partition, for at most
 * `timeoutMs`, so the first send after creating a topic does not fail. Resolves with the
 * partition count; rejects with the last failure when the time is up.
 */
export function waitForLeaders(
  name: string,
  describe: () => Promise<{ partitions: number; leaders: boolean } | undefined>,
  options: WaitForLeadersOptions = {},
): Promise<number> {
  const end = Date.now() + (options.timeoutMs ?? 10_000);
  return retry(async () => {
    const topic = await describe();
    if (topic && topic.leaders) return topic.partitions;
    throw new Error(`Cannot find topic "${name}" with leaders in the broker's metadata`);
  }, {
    maxAttempts: Infinity,
    minTimeout: 200,
    maxTimeout: 200,
    jitter: 0,
    signal: options.signal,
    shouldRetry: () => Date.now() <= end,
  });
}
