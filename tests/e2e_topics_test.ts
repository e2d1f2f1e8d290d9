/**
 * End to end: the topics the producer creates or finds.
 * Against a real Apache Kafka broker (tests/helpers/kafka_broker.ts) with the scripts as
 * processes (tests/helpers/e2e.ts). With KAFKA_BROKERS set, the TLS and SCRAM tests are skipped;
 * the capture tests need the real capture (tests/helpers/capture.ts) and are ignored without it.
 */
import { deepStrictEqual, equal, ok } from "./helpers/assert.ts";
import { brokerConfig, uniqueTopic } from "./helpers/kafka_broker.ts";
import { withAdmin } from "./helpers/kafka_check.ts";
import {
  expectedValues,
  freshFrames,
  kafka,
  KAFKA_TEST,
  kafkaEnv,
  produce,
  produceThroughFake,
  readTopic,
  sorted,
} from "./helpers/e2e.ts";

Deno.test({
  name: "the producer creates its topic with the configured partitions and replication factor",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-topic");
    const frames = freshFrames(12);
    const producer = await produceThroughFake(frames, kafkaEnv(b, "plaintext", topic), [
      "--partitions",
      "4",
      "--replication-factor",
      "1",
    ]);
    equal(producer.code, 0, producer.stderr);
    ok(producer.stderr.includes(`created topic "${topic}" with 4 partitions`), producer.stderr);
    ok(producer.stderr.includes(`created topic "${topic}.gaps" with 1 partition`));
    equal(producer.summary.acked, 16);
    const meta = await withAdmin(
      config,
      (admin) => admin.fetchTopicMetadata({ topics: [topic, `${topic}.gaps`] }),
    );
    const byName = new Map(meta.topics.map((t) => [t.name, t.partitions]));
    deepStrictEqual(byName.get(topic)!.map((p) => p.partitionId).sort(), [0, 1, 2, 3]);
    deepStrictEqual(byName.get(topic)!.map((p) => p.replicas.length), [1, 1, 1, 1]);
    equal(byName.get(`${topic}.gaps`)!.length, 1);
  },
});

Deno.test({
  name: "the producer leaves an existing topic with another partition count as it is",
  ...KAFKA_TEST,
  async fn() {
    const b = await kafka();
    const config = brokerConfig(b);
    const topic = uniqueTopic("e2e-existing");
    await produce(config, topic, [], 2);
    const frames = freshFrames(12);
    const producer = await produceThroughFake(frames, kafkaEnv(b, "plaintext", topic), [
      "--partitions",
      "4",
    ]);
    equal(producer.code, 0, producer.stderr);
    ok(
      producer.stderr.includes(`topic "${topic}" exists with 2 partitions; left as it is`),
      producer.stderr,
    );
    const meta = await withAdmin(config, (admin) => admin.fetchTopicMetadata({ topics: [topic] }));
    equal(meta.topics[0]!.partitions.length, 2);
    const records = await readTopic(config, topic, 16);
    deepStrictEqual(sorted(records.map((r) => r.value!)), sorted(expectedValues(frames)));
  },
});
