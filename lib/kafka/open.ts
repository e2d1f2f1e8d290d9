/**
 * The Kafka boundary: the project's own small interfaces for a Kafka client (a sink, a source
 * and admin), the errors every adapter throws, and {@linkcode openKafka}, which loads the adapter
 * the config names. No client library type crosses this file: the adapters
 * (`platformatic/` for @platformatic/kafka, `kafkajs/` for kafkajs) are the only files that
 * import a client. The contract is `types.ts`; what the adapters share lives beside it:
 * `diagnosis.ts` (explaining failures, redacted logs), `security.ts` (TLS and SASL settings),
 * `startup.ts` (reaching the brokers, topic leaders) and `offsets.ts` (lag, pending commits).
 *
 * @example
 * ```ts
 * const kafka = await openKafka(config, { log });
 * await kafka.connect(); // throws KafkaUnreachableError (exit code 5)
 * await kafka.admin.ensureTopic(config.topic, { partitions: 6, replicationFactor: -1 });
 * const sink = kafka.sink({ compression: "none" });
 * await sink.send(config.topic, records);
 * await sink.close();
 * await kafka.close();
 * ```
 */
import type { KafkaConfig } from "../config/kafka.ts";
import type { KafkaClient, OpenKafkaOptions } from "./types.ts";

/** Loads the adapter for `config.client` (or `options.client`) and binds it to the config. */
export async function openKafka(
  config: KafkaConfig,
  options: OpenKafkaOptions = {},
): Promise<KafkaClient> {
  const name = options.client ?? config.client;
  const adapterOptions = {
    clientId: options.clientId ?? "crypto-quotes",
    log: options.log ?? ((line: string) => console.error(line)),
  };
  // Loaded on demand: a process pays for one client library only.
  if (name === "kafkajs") {
    const { KafkaJsClient } = await import("./kafkajs/client.ts");
    return new KafkaJsClient(config, adapterOptions);
  }
  const { PlatformaticClient } = await import("./platformatic/client.ts");
  return new PlatformaticClient(config, adapterOptions);
}
