import { deepStrictEqual, equal, ok, throws } from "../helpers/assert.ts";
import { buildKafkaConfig } from "../../lib/config/kafka.ts";
import { buildPolygonConfig } from "../../lib/config/polygon.ts";
import { buildStandbyConfig } from "../../lib/config/standby.ts";
import { buildTelemetryConfig } from "../../lib/config/telemetry.ts";
import { ConfigError } from "../../lib/config/errors.ts";
import { parseSettings, readEnvFile, usage } from "../../lib/config/parse.ts";
import { SETTINGS } from "../../lib/config/settings.ts";

const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("settings come from defaults, then the environment, then flags", () => {
  const env = envOf({ POLYGON_PAIRS: "ETH-USD", KAFKA_TOPIC: "from-env" });
  const a = parseSettings("producer", [], { env });
  deepStrictEqual(a.settings.pairs, ["ETH-USD"]);
  equal(a.settings.topic, "from-env");
  equal(a.settings.staleAfter, 30);
  const b = parseSettings("producer", ["--pairs", "BTC-USD, SOL-USD", "--topic=flag"], { env });
  deepStrictEqual(b.settings.pairs, ["BTC-USD", "SOL-USD"]);
  equal(b.settings.topic, "flag");
});

Deno.test("a bad flag or setting is a ConfigError that names it", () => {
  throws(() => parseSettings("producer", ["--nope"]), (e: unknown) => {
    ok(e instanceof ConfigError);
    equal(e.exitCode, 2);
    equal(e.message, 'Unknown option "--nope"; see --help');
    return true;
  });
  throws(
    () => parseSettings("producer", [], { env: envOf({ QUEUE_MAX: "lots" }) }),
    {
      name: "ConfigError",
      message: '"QUEUE_MAX" environment variable must be a whole number, got "lots"',
    },
  );
  throws(
    () => parseSettings("producer", ["--stale-after=-1"]),
    { message: '--stale-after must be a number of seconds, got "-1"' },
  );
  throws(
    () => buildPolygonConfig(parseSettings("producer", []).settings),
    {
      message:
        '"POLYGON_API_KEY" environment variable must be set; set it in .env (cp .env.example .env, which lists every setting)',
    },
  );
  throws(
    () =>
      buildPolygonConfig(
        parseSettings("producer", ["--queue-policy", "block"], {
          env: envOf({ POLYGON_API_KEY: "k" }),
        }).settings,
      ),
    { message: '--queue-policy must be one of drop-oldest, drop-newest, got "block"' },
  );
});

Deno.test("pairs are upper-cased BASE-QUOTE; a misspelt pair or a channel prefix is a ConfigError", () => {
  const build = (pairs: string, warn?: (m: string) => void) =>
    buildPolygonConfig(
      parseSettings("producer", ["--pairs", pairs], { env: envOf({ POLYGON_API_KEY: "k" }) })
        .settings,
      { warn: warn ?? (() => {}) },
    );
  deepStrictEqual(build("btc-usd, Eth-Usd,BTC-USD").pairs, ["BTC-USD", "ETH-USD"]);
  deepStrictEqual(build("BTC-USD,*").pairs, ["*"]);
  throws(() => build("BTCUSD"), {
    name: "ConfigError",
    message: '--pairs must list pairs as BASE-QUOTE, like BTC-USD, or *, got "BTCUSD"',
  });
  throws(() => build("XQ.btc-usd"), {
    name: "ConfigError",
    message: '--pairs must list pairs without the channel, got "XQ.btc-usd"; use "BTC-USD"',
  });
  throws(() => build("BTC/USD"), { name: "ConfigError" });
});

Deno.test("the URL defaults to the massive.com host; a host not known to carry XQ gets a warning", () => {
  const warnings: string[] = [];
  const build = (args: string[]) =>
    buildPolygonConfig(
      parseSettings("producer", args, { env: envOf({ POLYGON_API_KEY: "k" }) }).settings,
      { warn: (m) => warnings.push(m) },
    );
  const config = build([]);
  equal(config.url, "wss://socket.massive.com/crypto");
  equal(config.quietAfterMs, 300_000);
  build(["--url", "wss://socket.polygon.io/crypto"]);
  build(["--url", "ws://127.0.0.1:4321/crypto"]);
  deepStrictEqual(warnings, []);
  build(["--url", "wss://delayed.polygon.io/crypto"]);
  build(["--url", "wss://socket.massive.com/stocks"]);
  equal(warnings.length, 2);
  equal(
    warnings[0],
    'WARNING: --url "wss://delayed.polygon.io/crypto" is not known to carry crypto quotes (XQ): ' +
      "they are documented on wss://socket.massive.com/crypto and wss://socket.polygon.io/crypto; " +
      "the delayed and business hosts do not carry XQ",
  );
  throws(() => build(["--quiet-after", "5", "--stale-after", "10"]), {
    name: "ConfigError",
    message: '--quiet-after must be at least --stale-after (10), got "5"',
  });
});

Deno.test("a bad value names what the user set: the environment variable or the flag", () => {
  const env = envOf({ KAFKA_BROKERS: "h:1", KAFKA_SASL_MECHANISM: "scram-sha-1" });
  const read = () => "PEM";
  throws(
    () => buildKafkaConfig(parseSettings("consumer", [], { env }).settings, { readTextFile: read }),
    {
      message:
        '"KAFKA_SASL_MECHANISM" environment variable must be one of scram-sha-256, scram-sha-512, ' +
        'plain, got "scram-sha-1"',
    },
  );
  throws(
    () =>
      buildKafkaConfig(
        parseSettings("consumer", ["--sasl-mechanism", "md5"], { env }).settings,
        { readTextFile: read },
      ),
    { message: '--sasl-mechanism must be one of scram-sha-256, scram-sha-512, plain, got "md5"' },
  );
  throws(
    () =>
      buildKafkaConfig(
        parseSettings("producer", [], {
          env: envOf({ KAFKA_BROKERS: "h:1", KAFKA_BATCH_MAX: "0" }),
        })
          .settings,
      ),
    { message: '"KAFKA_BATCH_MAX" environment variable must be at least 1, got "0"' },
  );
});

Deno.test("command-line mistakes get one line of our own that names the flag", () => {
  const cases: [string[], string][] = [
    [["--batch-max"], "--batch-max needs a value; see --help"],
    [
      ["--record", "--pairs", "ETH-USD"],
      '--record needs a value, got the option "--pairs"; write --record=--pairs if that is the value',
    ],
    [["--bogus"], 'Unknown option "--bogus"; see --help'],
    [["-x"], 'Unknown option "-x"; see --help'],
    [
      ["--insecure-skip-verify=yes"],
      '--insecure-skip-verify takes no value, got "yes"; see --help',
    ],
    [
      ["extra"],
      'Unexpected argument "extra": this command takes no positional arguments; see --help',
    ],
  ];
  for (const [args, message] of cases) {
    throws(() => parseSettings("producer", args), (error: unknown) => {
      ok(error instanceof ConfigError, args.join(" "));
      equal(error.message, message);
      ok(!error.message.includes("\n"));
      return true;
    });
  }
  // A negative number is a value: the range check, made as it is parsed, names the flag.
  const negative = parseSettings("producer", ["--replication-factor", "-1"]);
  equal(negative.settings.replicationFactor, -1);
  throws(
    () => parseSettings("producer", ["--brokers", "h:1", "--batch-max", "-3"]),
    { message: '--batch-max must be at least 1, got "-3"' },
  );
});

Deno.test("kafka config picks plaintext, ssl or sasl_ssl and names a missing certificate", () => {
  const none = () => false;
  const plain = buildKafkaConfig(
    parseSettings("producer", ["--brokers", "localhost:9092"]).settings,
    { exists: none },
  );
  equal(plain.security, "plaintext");
  equal(plain.gapsTopic, "crypto-topic.gaps");
  const files: Record<string, string> = {
    "certs/ca.pem": "CA",
    "certs/service.cert": "CERT",
    "certs/service.key": "KEY",
  };
  const read = (p: string) => {
    if (!(p in files)) throw new Deno.errors.NotFound(p);
    return files[p]!;
  };
  const ssl = buildKafkaConfig(
    parseSettings("producer", ["--brokers", "h:1"]).settings,
    { exists: (p) => p in files, readTextFile: read },
  );
  equal(ssl.security, "ssl");
  deepStrictEqual(ssl.ssl, { ca: "CA", cert: "CERT", key: "KEY", rejectUnauthorized: true });
  throws(
    () =>
      buildKafkaConfig(
        parseSettings("producer", ["--brokers", "h:1", "--ssl-key", "certs/missing.key"]).settings,
        { exists: () => true, readTextFile: read },
      ),
    {
      message:
        'Cannot read Kafka client key "certs/missing.key" (KAFKA_SSL_KEY): file not found; put the file there or set KAFKA_SSL_KEY',
    },
  );
  const sasl = buildKafkaConfig(
    parseSettings("producer", ["--brokers", "h:1"], {
      env: envOf({
        KAFKA_SASL_MECHANISM: "scram-sha-512",
        KAFKA_SASL_USERNAME: "u",
        KAFKA_SASL_PASSWORD: "p",
      }),
    }).settings,
    { exists: () => false, readTextFile: read },
  );
  equal(sasl.security, "sasl_ssl");
  deepStrictEqual(sasl.sasl, { mechanism: "scram-sha-512", username: "u", password: "p" });
  throws(
    () => buildKafkaConfig(parseSettings("producer", []).settings),
    {
      message:
        '"KAFKA_BROKERS" environment variable (or --brokers) must be set; set it in .env (cp .env.example .env, which lists every setting)',
    },
  );
  throws(
    () => buildKafkaConfig(parseSettings("producer", ["--brokers", "kafka://h:1"]).settings),
    /must list host:port pairs, got "kafka:\/\/h:1"/,
  );
});

Deno.test("skipping TLS verification prints a loud warning", () => {
  const warnings: string[] = [];
  buildKafkaConfig(
    parseSettings("producer", ["--brokers", "h:1", "--security", "ssl", "--insecure-skip-verify"])
      .settings,
    { readTextFile: () => "PEM", warn: (m) => warnings.push(m) },
  );
  equal(warnings.length, 1);
  ok(warnings[0]!.startsWith("WARNING: --insecure-skip-verify is on"));
});

Deno.test("telemetry config requires org, bucket and token for the v2 API", () => {
  const t = buildTelemetryConfig(
    parseSettings("producer", ["--metrics-port", "9464"], {
      env: envOf({ INFLUX_URL: "http://localhost:8086/" }),
    }).settings,
  );
  equal(t.metricsPort, 9464);
  equal(t.influx?.url, "http://localhost:8086");
  equal(t.influx?.intervalMs, 10_000);
  throws(
    () =>
      buildTelemetryConfig(
        parseSettings("producer", [], {
          env: envOf({ INFLUX_URL: "http://x", INFLUX_API: "v2" }),
        }).settings,
      ),
    {
      message:
        '"INFLUX_ORG" environment variable must be set; set it in .env (cp .env.example .env, which lists every setting)',
    },
  );
});

Deno.test("every environment variable is in .env.example and help never shows secrets", async () => {
  const example = await Deno.readTextFile(new URL("../../.env.example", import.meta.url));
  for (const s of SETTINGS) {
    if (s.env) ok(example.includes(`${s.env}=`), `.env.example lacks ${s.env}`);
  }
  const help = usage("producer", "x", "y");
  ok(help.includes("POLYGON_API_KEY"));
  const withKey = parseSettings("producer", [], { env: envOf({ POLYGON_API_KEY: "sekrit-123" }) });
  equal(withKey.settings.polygonApiKey, "sekrit-123");
  ok(!help.includes("sekrit-123"));
});

Deno.test("--instance (TELEMETRY_INSTANCE) names the process in the telemetry config and rejects what line protocol cannot carry", () => {
  const build = (args: string[], env: Record<string, string> = {}) =>
    buildTelemetryConfig(parseSettings("consumer", args, { env: envOf(env) }).settings);
  equal(build([]).instance, undefined);
  equal(build([], { TELEMETRY_INSTANCE: "quotes-a" }).instance, "quotes-a");
  equal(build(["--instance", "host-2:9464"], { TELEMETRY_INSTANCE: "x" }).instance, "host-2:9464");
  throws(() => build(["--instance", "two words"]), {
    name: "ConfigError",
    message: '--instance must be 1 to 128 letters, digits or . _ : @ / -, got "two words"',
  });
});

Deno.test("a settings file reads like deno's --env-file, a key set twice is an error naming both lines, and a missing file is simply empty", () => {
  const files: Record<string, string> = {
    ".env": [
      "# a comment",
      "",
      "POLYGON_PAIRS=BTC-USD,ETH-USD   # trailing comment",
      "export KAFKA_TOPIC = quotes",
      "KAFKA_SASL_PASSWORD='p#ss word'",
      'INFLUX_TOKEN="line1\\nline2"',
      "RECORD_FILE=",
    ].join("\n"),
    "bad.env": "KAFKA_TOPIC=ok\nthis is not a setting\n",
    // .env.example copied, then a setting appended: the empty line would have won.
    "twice.env": "# key\nPOLYGON_API_KEY=\nKAFKA_TOPIC=quotes\nPOLYGON_API_KEY=abc\n",
  };
  const read = (path: string) => {
    const text = files[path];
    if (text === undefined) throw new Deno.errors.NotFound(path);
    return text;
  };
  deepStrictEqual(readEnvFile(".env", read), {
    POLYGON_PAIRS: "BTC-USD,ETH-USD",
    KAFKA_TOPIC: "quotes",
    KAFKA_SASL_PASSWORD: "p#ss word",
    INFLUX_TOKEN: "line1\nline2",
    RECORD_FILE: "",
  });
  deepStrictEqual(readEnvFile("missing.env", read), {});
  throws(() => readEnvFile("bad.env", read), {
    name: "ConfigError",
    message: 'Cannot read the settings file "bad.env": line 2 is not KEY=value',
  });
  throws(() => readEnvFile("twice.env", read), {
    name: "ConfigError",
    message: 'Cannot read the settings file "twice.env": "POLYGON_API_KEY" is set on line 2 ' +
      "and again on line 4; keep one of them",
  });
});

Deno.test("--standby-group is off when unset, checks the group name, and needs the platformatic client", () => {
  const parse = (...args: string[]) => parseSettings("producer", args).settings;
  equal(buildStandbyConfig(parse(), "quotes"), undefined);
  deepStrictEqual(
    buildStandbyConfig(parse("--standby-group", "feed", "--session-timeout", "4"), "quotes"),
    {
      group: "feed",
      leaderTopic: "quotes.leader",
      sessionTimeoutMs: 4000,
    },
  );
  throws(() => buildStandbyConfig(parse("--standby-group", "a b"), "quotes"), {
    name: "ConfigError",
    message: '--standby-group must be 1 to 200 letters, digits or . _ -, got "a b"',
  });
  throws(
    () =>
      buildStandbyConfig(parse("--standby-group", "feed", "--kafka-client", "kafkajs"), "quotes"),
    {
      name: "ConfigError",
      message: "--standby-group needs the platformatic Kafka client (the kafkajs adapter has no " +
        "leader election); unset KAFKA_CLIENT (--kafka-client) or set it to platformatic",
    },
  );
});

Deno.test("finding 6: ws:// is refused for a host other than loopback, naming --url and wss://", () => {
  const build = (url: string) =>
    buildPolygonConfig(
      parseSettings("producer", ["--url", url], { env: envOf({ POLYGON_API_KEY: "k" }) })
        .settings,
      { warn: () => {} },
    );
  throws(() => build("ws://socket.massive.com/crypto"), (e: unknown) => {
    ok(e instanceof ConfigError);
    equal(e.exitCode, 2);
    equal(
      e.message,
      '--url (POLYGON_URL) must use wss:// for host "socket.massive.com", got ' +
        '"ws://socket.massive.com/crypto": ws:// would send the API key unencrypted; use ' +
        '"wss://socket.massive.com/crypto" (ws:// is only for loopback, like the fake)',
    );
    return true;
  });
  throws(() => build("ws://127.0.0.1.example.com/crypto"), { name: "ConfigError" });
  throws(() => build("ws://10.0.0.7:8080/crypto"), { name: "ConfigError" });
  // Loopback (the fake, the tests) stays allowed.
  for (
    const url of ["ws://127.0.0.1:4321/crypto", "ws://localhost:1/crypto", "ws://[::1]:2/crypto"]
  ) {
    equal(build(url).url, url);
  }
  equal(build("wss://socket.polygon.io/crypto").url, "wss://socket.polygon.io/crypto");
});
