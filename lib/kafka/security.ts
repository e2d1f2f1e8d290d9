/** The TLS and SASL settings both Kafka adapters hand their client, from a config. */
import type { KafkaConfig } from "../config/kafka.ts";

/** What both adapters hand their client for TLS and SASL, from a config (never log it). */
export interface SecuritySettings {
  tls?: { ca: string[]; cert?: string; key?: string; rejectUnauthorized: boolean };
  sasl?: NonNullable<KafkaConfig["sasl"]>;
}

/** The TLS and SASL settings of a config, checked: a TypeError names what a security mode lacks. */
export function securitySettings(config: KafkaConfig): SecuritySettings {
  const out: SecuritySettings = {};
  if (config.security !== "plaintext") {
    if (!config.ssl) {
      throw new TypeError(`Kafka security "${config.security}" needs the CA certificate`);
    }
    const { ca, cert, key, rejectUnauthorized } = config.ssl;
    out.tls = { ca: [ca], rejectUnauthorized };
    if (config.security === "ssl") {
      if (!cert || !key) {
        throw new TypeError(`Kafka security "ssl" needs a client certificate and key`);
      }
      out.tls.cert = cert;
      out.tls.key = key;
    }
  }
  if (config.security === "sasl_ssl") {
    if (!config.sasl) throw new TypeError(`Kafka security "sasl_ssl" needs SASL settings`);
    out.sasl = config.sasl;
  }
  return out;
}
