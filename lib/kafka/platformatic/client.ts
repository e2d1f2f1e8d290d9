/**
 * The @platformatic/kafka adapter behind the Kafka boundary (`../types.ts`, picked by
 * `../open.ts`): plaintext, TLS client certificates or SASL/SCRAM over TLS; start-up
 * reachability with the same diagnoses as the other adapter. Its parts: the client settings
 * (`options.ts`), topics and lag (`admin.ts`), an idempotent producer that retries inside the
 * client with the same batch and sequence numbers (`sink.ts`, fenced at the wire by
 * `wire_fence.ts` in a standby term), an at-least-once consumer in a group (`source.ts`) and the
 * standby election (`election.ts`).
 */
import { Admin, AuthenticationError } from "@platformatic/kafka";
import { deadline } from "../../async.ts";
import type { KafkaConfig } from "../../config/kafka.ts";
import type {
  AdapterOptions,
  ConnectOptions,
  ElectionOptions,
  KafkaAdmin,
  KafkaClient,
  KafkaSink,
  KafkaSinkOptions,
  KafkaSourceOptions,
  LeaderElection,
} from "../types.ts";
import { errorChain, explainFailure, probeTls } from "../diagnosis.ts";
import {
  ensureTopic,
  groupAccess,
  partitionLag,
  topicAccess,
  topicConfigs,
  validateCreateTopic,
} from "./admin.ts";
import { PLATFORMATIC_LIBRARY, platformaticOptions } from "./options.ts";
import { PlatformaticSink } from "./sink.ts";
import { topicLimits } from "./limits.ts";
import type { TopicLimits } from "../refusals.ts";
import { PlatformaticSource } from "./source.ts";
import { newestTimestamp, PlatformaticElection } from "./election.ts";
import { connectLoop } from "../startup.ts";
import type { RecordSource } from "../../sink.ts";

export { PLATFORMATIC_LIBRARY, platformaticOptions } from "./options.ts";

/** The SASL failure in an error chain, in the broker's words, if there is one. */
function saslFailure(error: unknown): string | undefined {
  let found: string | undefined;
  let isSasl = false;
  const visit = (e: unknown, depth: number): void => {
    if (!e || typeof e !== "object" || depth > 8) return;
    const x = e as {
      code?: string;
      message?: string;
      errors?: unknown[];
      cause?: unknown;
      apiId?: string;
      serverErrorMessage?: string | null;
    };
    if (x.code === AuthenticationError.code) isSasl = true;
    if (x.apiId === "SASL_AUTHENTICATION_FAILED") {
      isSasl = true;
      found = x.serverErrorMessage || x.message;
    }
    for (const inner of x.errors ?? []) visit(inner, depth + 1);
    visit(x.cause, depth + 1);
  };
  visit(error, 0);
  return isSasl ? found ?? "authentication failed" : undefined;
}

/** @platformatic/kafka behind the {@linkcode KafkaClient} boundary. */
export class PlatformaticClient implements KafkaClient {
  readonly name = "platformatic" as const;
  readonly library = PLATFORMATIC_LIBRARY;
  #config: KafkaConfig;
  #options: AdapterOptions;
  #admin: Admin | undefined;
  readonly admin: KafkaAdmin;
  /** Each topic's limits, read once for all this client's sinks (a term's own, too). */
  #limits = new Map<string, Promise<TopicLimits>>();

  constructor(config: KafkaConfig, options: AdapterOptions) {
    this.#config = config;
    this.#options = options;
    // Admin calls are bounded: a caller (start-up, the lag timer) decides what a failure means.
    const admin = () => this.#adminClient();
    this.admin = {
      listTopics: () => admin().listTopics(),
      ensureTopic: (name, o) => ensureTopic(admin(), name, o),
      lag: (groupId, topic) => partitionLag(admin(), groupId, topic),
      describeTopic: async (name) => {
        const meta = await admin().metadata({ topics: [name] });
        const topic = meta.topics.get(name);
        return {
          partitions: topic?.partitionsCount ?? 0,
          replicas: (topic?.partitions ?? []).map((p) => p.replicas.length),
        };
      },
      newestTimestamp: (topic) => newestTimestamp(admin(), topic),
      topicConfigs: (name, names) => topicConfigs(admin(), name, names),
      topicAccess: (topics) => topicAccess(admin(), topics),
      groupAccess: (groupId) => groupAccess(admin(), groupId),
      validateCreateTopic: (name, o) => validateCreateTopic(admin(), name, o),
      topicLimits: (topic) => {
        let limits = this.#limits.get(topic);
        if (limits === undefined) {
          limits = topicLimits(admin(), topic);
          this.#limits.set(topic, limits);
          // A failure is not kept: the next sink asks again.
          limits.catch(() => this.#limits.delete(topic));
        }
        return limits;
      },
    };
  }

  /** The admin client, made on first use; calls are bounded (5 retries). */
  #adminClient(): Admin {
    return this.#admin ??= new Admin(
      platformaticOptions(this.#config, { clientId: this.#options.clientId, retries: 5 }),
    );
  }

  connect(options: ConnectOptions = {}): Promise<void> {
    const config = this.#config;
    return connectLoop(
      config,
      async (remaining, signal) => {
        const admin = new Admin(platformaticOptions(config, {
          clientId: this.#options.clientId,
          retries: 0,
          connectTimeoutMs: Math.min(remaining, 10_000),
          requestTimeoutMs: Math.min(remaining, 30_000),
        }));
        try {
          await deadline(admin.metadata({ topics: [] }), remaining, {
            what: "Connecting",
            signal,
          });
        } catch (error) {
          // The client reports a TLS alert after the handshake (a rejected client certificate)
          // as a closed connection: ask the broker once more, ourselves, to learn the alert.
          if (config.security !== "plaintext" && /closed/i.test(errorChain(error).join(" "))) {
            const alert = await probeTls(config, Math.min(remaining, 3_000));
            if (alert) {
              throw new Error(`TLS connection closed by the broker: ${alert}`, {
                cause: error,
              });
            }
          }
          throw error;
        } finally {
          deadline(admin.close(), 2_000, { what: "Disconnecting" }).catch(() => {});
        }
      },
      (error) => explainFailure(error, config, saslFailure(error)),
      options,
    );
  }

  sink(options: KafkaSinkOptions = {}): KafkaSink {
    return new PlatformaticSink(
      this.#config,
      this.#options,
      options,
      (topic) => this.admin.topicLimits(topic),
    );
  }

  source(options: KafkaSourceOptions): RecordSource {
    return new PlatformaticSource(this.#config, this.#options, options, this.admin);
  }

  elect(options: ElectionOptions): LeaderElection {
    const base = platformaticOptions(this.#config, { clientId: this.#options.clientId });
    return new PlatformaticElection(base, options, this.#options.log);
  }

  async close(): Promise<void> {
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.close().catch(() => {});
  }
}
