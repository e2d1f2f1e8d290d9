/**
 * Independent checks of what is on the broker, for tests: a kafkajs admin client built directly
 * from the library (not through our adapters), so a test of the default @platformatic/kafka
 * adapter is judged by another client. Tests use it for what the product's boundary does not
 * offer (topic configs, group descriptions, raw metadata).
 */
import { type Admin, Kafka, logLevel } from "kafkajs";
import type { KafkaConfig } from "../../lib/config/kafka.ts";
import { kafkaJsConfig } from "../../lib/kafka/kafkajs/client.ts";

/** Runs `use` with a connected kafkajs admin for the config, disconnecting after. */
export async function withAdmin<T>(
  config: KafkaConfig,
  use: (admin: Admin) => Promise<T>,
): Promise<T> {
  const admin = new Kafka({ ...kafkaJsConfig(config), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}
