#!/usr/bin/env bash
# A throwaway single-node Apache Kafka (KRaft, broker+controller in one JVM) without Docker.
#
#   scripts/kafka_local.sh install          copy the broker jars from Maven Central (once)
#   scripts/kafka_local.sh up DIR [--owner-pid PID]
#                                           make certs + config in DIR, format, start, wait
#   scripts/kafka_local.sh stop DIR         stop the broker (SIGTERM, then SIGKILL), keep data
#   scripts/kafka_local.sh kill DIR         SIGKILL the broker at once (a crash), keep data
#   scripts/kafka_local.sh start DIR        start the stopped broker again: same ports, same data
#   scripts/kafka_local.sh status DIR       exit 0 if the broker process runs
#   scripts/kafka_local.sh down DIR         stop the broker and remove DIR
#   scripts/kafka_local.sh down-all         `down` every broker this script started on this machine
#   scripts/kafka_local.sh describe-producers DIR TOPIC PARTITION
#                                           Kafka's own TransactionsCommand describe-producers
#                                           (the broker's idempotent-producer state, KIP-664)
#
# `up` writes DIR/broker.env (KEY=value lines, see write_env) with the listener addresses, the
# certificate paths, the SCRAM users and KAFKA_METRICS, the address of the broker's Prometheus
# /metrics: the JMX exporter Java agent with scripts/kafka/jmx_exporter.yml, whose rules give the
# broker's MBeans Aiven's metric names. With --owner-pid, a watchdog runs `down DIR` as soon as
# that process is gone, so a test run that dies leaves no java process behind.
#
# Environment:
#   KAFKA_CACHE            jar cache (default: <repo>/.cache/kafka)
#   KAFKA_PLAINTEXT_PORT, KAFKA_SSL_PORT, KAFKA_SASL_SSL_PORT, KAFKA_CONTROLLER_PORT
#                          listener ports for `up` (default: free ports picked at random)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_HEAP             JVM heap options (default "-Xms128m -Xmx512m")
#   KAFKA_METRICS_PORT     port of the broker's /metrics for `up` (default: a free port)
#   KAFKA_JMX_EXPORTER     "off": `up` starts the broker without the exporter (default on)
#   KAFKA_AUTHORIZER       "acl": `up` turns on ACLs like a managed service (StandardAuthorizer,
#                          nothing allowed without an ACL; super users: the PLAINTEXT listener,
#                          the client certificate and the SCRAM users alice and bob; carol has
#                          no ACL). Default "none": everyone may do everything.
#   KAFKA_PROXY_PORT       port advertised by the PROXIED listener (KAFKA_PROXY in broker.env),
#                          where a test's fault proxy listens and forwards to KAFKA_PROXIED
#                          (default: a free port picked at random)
#   KAFKA_EXTRA_PROPERTIES more server.properties lines for `up`, e.g. for a test about
#                          retention "log.retention.check.interval.ms=2000" (default none)
#
# Needs: Java 17+, Maven (install only), openssl, bash. Optional: kcat (extra readiness check).
set -euo pipefail

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SCRIPT_DIR="$(dirname "$SCRIPT_PATH")"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
CACHE="${KAFKA_CACHE:-$REPO_DIR/.cache/kafka}"
LIB="$CACHE/lib"
REGISTRY="$CACHE/running"
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/kafka/log4j2.properties"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
HEAP="${KAFKA_HEAP:--Xms128m -Xmx512m}"
# The Prometheus JMX exporter agent: kept out of the broker's classpath, in its own folder.
JMX_EXPORTER_VERSION=1.0.1
AGENT_JAR="$CACHE/agent/jmx_prometheus_javaagent-$JMX_EXPORTER_VERSION.jar"
EXPORTER_CONFIG="$SCRIPT_DIR/kafka/jmx_exporter.yml"
# Marks our JVMs on their command line, so `stop` never signals a recycled pid.
MARKER_PROP="-Dkafka.local.dir"

die() {
  echo "kafka_local: $*" >&2
  exit 1
}

log() {
  echo "kafka_local: $*" >&2
}

usage() {
  sed -n '2,41p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
  exit 2
}

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# --- install -------------------------------------------------------------------------------

cmd_install() {
  local stamp="$LIB/.complete"
  local want
  want="$( (cat "$POM" && echo "jmx_prometheus_javaagent $JMX_EXPORTER_VERSION") | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  mkdir -p "$CACHE"
  # One install at a time (parallel test runs on a fresh machine); the second finds it done.
  exec 9>"$CACHE/.install.lock"
  flock 9
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exec 9>&-
    return 0
  fi
  command -v mvn >/dev/null || die "Cannot install the broker jars: \"mvn\" is not on PATH"
  command -v java >/dev/null || die "Cannot install the broker jars: \"java\" is not on PATH"
  log "copying the Kafka broker jars from Maven Central into \"$LIB\""
  rm -rf "$LIB"
  mkdir -p "$LIB"
  mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIB" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2 ||
    die "Cannot install the broker jars: mvn dependency:copy-dependencies failed (see above)"
  ls "$LIB"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Cannot find kafka_2.13 in \"$LIB\" after mvn"
  mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy \
    -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" \
    -DoutputDirectory="$(dirname "$AGENT_JAR")" 2>&1 |
    sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2 ||
    die "Cannot install the JMX exporter agent: mvn dependency:copy failed (see above)"
  [[ -f "$AGENT_JAR" ]] || die "Cannot find \"$AGENT_JAR\" after mvn"
  echo "$want" >"$stamp"
  exec 9>&-
}

# Kafka's command-line tools (kafka-tools; its dependencies are the broker's), in their own
# folder so that the broker's install stamp does not change.
TOOLS_JAR="$CACHE/tools/kafka-tools-4.1.2.jar"
require_tools() {
  require_installed
  [[ -f "$TOOLS_JAR" ]] && return 0
  exec 8>"$CACHE/.tools.lock"
  flock 8
  if [[ ! -f "$TOOLS_JAR" ]]; then
    log "copying org.apache.kafka:kafka-tools:4.1.2 from Maven Central into \"$CACHE/tools\""
    mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy \
      -Dartifact=org.apache.kafka:kafka-tools:4.1.2 -DoutputDirectory="$CACHE/tools" 2>&1 |
      sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2 ||
      die "Cannot install kafka-tools: mvn dependency:copy failed (see above)"
    [[ -f "$TOOLS_JAR" ]] || die "Cannot find \"$TOOLS_JAR\" after mvn"
  fi
  exec 8>&-
}

cmd_describe_producers() {
  [[ $# -eq 3 ]] || usage
  local dir="$1"
  [[ -f "$dir/broker.env" ]] || die "No broker in \"$dir\"; use up first"
  require_tools
  local bootstrap
  bootstrap="$(sed -n 's/^KAFKA_PLAINTEXT=//p' "$dir/broker.env")"
  java -Xmx128m -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIB/*:$TOOLS_JAR" org.apache.kafka.tools.TransactionsCommand \
    --bootstrap-server "$bootstrap" describe-producers --topic "$2" --partition "$3"
}

require_installed() {
  [[ -f "$LIB/.complete" ]] || cmd_install
}

# --- ports ---------------------------------------------------------------------------------

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PICKED=" "
pick_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768 and up), where outgoing connections take ports:
    # a port picked there could be taken by a client's connection before the broker binds it.
    p=$((20000 + RANDOM % 12768))
    if [[ "$PICKED" != *" $p "* ]] && ! port_in_use "$p"; then
      PICKED="$PICKED$p "
      echo "$p"
      return 0
    fi
  done
  die "Cannot find a free port between 20000 and 32767"
}

# --- certificates --------------------------------------------------------------------------

# make_ca DIR CN: DIR/ca.key, DIR/ca.pem
make_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$2" \
    -keyout "$1/ca.key" -out "$1/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

# sign_cert CA_DIR KEY CERT CN EXTFILE: a leaf key (PKCS#8, unencrypted) and certificate
sign_cert() {
  local ca="$1" key="$2" cert="$3" cn="$4" ext="$5"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$key" -out "$cert.csr" 2>/dev/null
  openssl x509 -req -in "$cert.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$cert" 2>/dev/null
  rm -f "$cert.csr"
}

make_certs() {
  local certs="$1/certs"
  mkdir -p "$certs/untrusted"
  make_ca "$certs" "kafka-local test CA"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    >"$certs/server.ext"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" >"$certs/client.ext"
  # Broker: PEM keystore = certificate chain, then the PKCS#8 key (no password).
  sign_cert "$certs" "$certs/broker.key" "$certs/broker.cert" localhost "$certs/server.ext"
  cat "$certs/broker.cert" "$certs/ca.pem" "$certs/broker.key" >"$certs/broker.pem"
  # Client: the three files Aiven hands out.
  sign_cert "$certs" "$certs/service.key" "$certs/service.cert" kafka-local-client "$certs/client.ext"
  # A second CA the broker does not trust, with a client certificate of its own.
  make_ca "$certs/untrusted" "kafka-local untrusted CA"
  sign_cert "$certs/untrusted" "$certs/untrusted/service.key" "$certs/untrusted/service.cert" \
    kafka-local-intruder "$certs/client.ext"
  grep -q "BEGIN PRIVATE KEY" "$certs/broker.key" ||
    die "openssl did not write a PKCS#8 key; Kafka's PEM keystore needs \"BEGIN PRIVATE KEY\""
  chmod 600 "$certs"/*.key "$certs"/untrusted/*.key "$certs/broker.pem"
}

# --- config --------------------------------------------------------------------------------

write_properties() {
  local dir="$1"
  cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka_local.sh: a throwaway single-node KRaft broker for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
# PROXIED: plaintext, advertised at the port of a fault proxy that forwards to it (tests).
listeners=PLAINTEXT://127.0.0.1:$PLAINTEXT_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,PROXIED://127.0.0.1:$PROXIED_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PLAINTEXT_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,PROXIED://127.0.0.1:$PROXY_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

# TLS with PEM files: no keytool, no store passwords.
ssl.keystore.type=PEM
ssl.keystore.location=$dir/certs/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/certs/ca.pem
# Client-certificate authentication on SSL, like Aiven; SASL_SSL needs only the CA.
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none

# SCRAM users are created at format time (StorageTool -S).
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

# One node: replication factor 1 everywhere, no waiting for a group to fill.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Like a managed service where auto-creation cannot be relied on: clients create topics.
auto.create.topics.enable=false
# Retention and producer-id expiry are Kafka's defaults (7 days, 24 h), as on users' brokers.
${KAFKA_EXTRA_PROPERTIES:-}
EOF
  if [[ "$AUTHORIZER" == "acl" ]]; then
    cat >>"$dir/server.properties" <<EOF

# KAFKA_AUTHORIZER=acl: like a managed service, a user may do only what an ACL allows.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:CN=kafka-local-client;User:$SCRAM256_USER;User:$SCRAM512_USER
EOF
  fi
}

write_env() {
  local dir="$1" certs="$1/certs"
  cat >"$dir/broker.env" <<EOF
KAFKA_DIR=$dir
KAFKA_PLAINTEXT=127.0.0.1:$PLAINTEXT_PORT
KAFKA_SSL=127.0.0.1:$SSL_PORT
KAFKA_SASL_SSL=127.0.0.1:$SASL_SSL_PORT
KAFKA_CONTROLLER=127.0.0.1:$CONTROLLER_PORT
KAFKA_PROXIED=127.0.0.1:$PROXIED_PORT
KAFKA_PROXY=127.0.0.1:$PROXY_PORT
KAFKA_CERTS_DIR=$certs
KAFKA_SSL_CA=$certs/ca.pem
KAFKA_SSL_CERT=$certs/service.cert
KAFKA_SSL_KEY=$certs/service.key
KAFKA_UNTRUSTED_CA=$certs/untrusted/ca.pem
KAFKA_UNTRUSTED_CERT=$certs/untrusted/service.cert
KAFKA_UNTRUSTED_KEY=$certs/untrusted/service.key
KAFKA_SCRAM_SHA_256_USERNAME=$SCRAM256_USER
KAFKA_SCRAM_SHA_256_PASSWORD=$SCRAM256_PASSWORD
KAFKA_SCRAM_SHA_512_USERNAME=$SCRAM512_USER
KAFKA_SCRAM_SHA_512_PASSWORD=$SCRAM512_PASSWORD
KAFKA_SCRAM_LIMITED_USERNAME=$SCRAM_LIMITED_USER
KAFKA_SCRAM_LIMITED_PASSWORD=$SCRAM_LIMITED_PASSWORD
KAFKA_AUTHORIZER=$AUTHORIZER
KAFKA_LOG=$dir/logs/broker.log
KAFKA_METRICS=${METRICS_PORT:+127.0.0.1:$METRICS_PORT}
EOF
}

# --- process -------------------------------------------------------------------------------

classpath() {
  echo "$LIB/*"
}

# Prints the broker pid if DIR's broker process runs (and is ours), else nothing.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 0
  pid="$(cat "$dir/kafka.pid")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$MARKER_PROP=$dir "; then
    echo "$pid"
  fi
}

started_count() {
  grep -c "Kafka Server started" "$1/logs/broker.log" 2>/dev/null || true
}

launch() {
  local dir="$1" before
  [[ -z "$(running_pid "$dir")" ]] || die "The broker in \"$dir\" already runs"
  mkdir -p "$dir/logs"
  before="$(started_count "$dir")"
  local metrics agent=()
  metrics="$(sed -n 's/^KAFKA_METRICS=//p' "$dir/broker.env")"
  if [[ -n "$metrics" ]]; then
    [[ -f "$AGENT_JAR" ]] || die "Cannot find \"$AGENT_JAR\"; run $0 install"
    agent=("-javaagent:$AGENT_JAR=$metrics:$EXPORTER_CONFIG")
  fi
  # shellcheck disable=SC2086 # HEAP holds several JVM options
  nohup java $HEAP "${agent[@]}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "$MARKER_PROP=$dir" -Dkafka.logs.dir="$dir/logs" \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
    -cp "$(classpath)" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  wait_ready "$dir" "$before"
}

wait_ready() {
  local dir="$1" before="$2" pid deadline
  pid="$(cat "$dir/kafka.pid")"
  deadline=$((SECONDS + START_TIMEOUT))
  # shellcheck disable=SC1091
  source "$dir/broker.env"
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/logs/stdout.log" "$dir/logs/broker.log" >&2 2>/dev/null || true
      die "The broker in \"$dir\" exited during start-up (logs above)"
    fi
    if (($(started_count "$dir") > before)) && port_in_use "${KAFKA_PLAINTEXT##*:}"; then
      if ! command -v kcat >/dev/null ||
        kcat -L -b "$KAFKA_PLAINTEXT" -m 2 2>/dev/null | grep -q "1 brokers"; then
        return 0
      fi
    fi
    sleep 0.2
  done
  tail -n 30 "$dir/logs/broker.log" >&2 2>/dev/null || true
  die "The broker in \"$dir\" did not answer within ${START_TIMEOUT}s"
}

start_watchdog() {
  local dir="$1" owner="$2"
  echo "$owner" >"$dir/owner.pid"
  nohup bash -c '
    while kill -0 "$1" 2>/dev/null && [[ -f "$2/broker.env" ]]; do sleep 1; done
    [[ -f "$2/broker.env" ]] && exec "$3" down "$2"
  ' kafka-local-watchdog "$owner" "$dir" "$SCRIPT_PATH" </dev/null >/dev/null 2>&1 &
}

# --- commands ------------------------------------------------------------------------------

cmd_up() {
  local dir owner=""
  [[ $# -ge 1 ]] || usage
  dir="$(abs_dir "$1")"
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
    --owner-pid)
      owner="${2:?--owner-pid needs a pid}"
      shift 2
      ;;
    *) die "Unknown option \"$1\" for up" ;;
    esac
  done
  [[ ! -e "$dir/server.properties" ]] || die "\"$dir\" already holds a broker; use start or down"
  command -v openssl >/dev/null || die "Cannot make certificates: \"openssl\" is not on PATH"
  require_installed
  PLAINTEXT_PORT="${KAFKA_PLAINTEXT_PORT:-$(pick_port)}"
  PICKED="$PICKED$PLAINTEXT_PORT "
  SSL_PORT="${KAFKA_SSL_PORT:-$(pick_port)}"
  PICKED="$PICKED$SSL_PORT "
  SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$(pick_port)}"
  PICKED="$PICKED$SASL_SSL_PORT "
  CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$(pick_port)}"
  PICKED="$PICKED$CONTROLLER_PORT "
  PROXIED_PORT="$(pick_port)"
  PICKED="$PICKED$PROXIED_PORT "
  PROXY_PORT="${KAFKA_PROXY_PORT:-$(pick_port)}"
  PICKED="$PICKED$PROXY_PORT "
  METRICS_PORT=""
  if [[ "${KAFKA_JMX_EXPORTER:-on}" != "off" ]]; then
    METRICS_PORT="${KAFKA_METRICS_PORT:-$(pick_port)}"
  fi
  SCRAM256_USER=alice
  SCRAM256_PASSWORD="$(openssl rand -hex 12)"
  SCRAM512_USER=bob
  SCRAM512_PASSWORD="$(openssl rand -hex 12)"
  # A SCRAM-SHA-512 user that is no super user: with KAFKA_AUTHORIZER=acl it has no rights.
  SCRAM_LIMITED_USER=carol
  SCRAM_LIMITED_PASSWORD="$(openssl rand -hex 12)"
  AUTHORIZER="${KAFKA_AUTHORIZER:-none}"
  [[ "$AUTHORIZER" == "none" || "$AUTHORIZER" == "acl" ]] ||
    die "KAFKA_AUTHORIZER must be none or acl, got \"$AUTHORIZER\""
  make_certs "$dir"
  write_properties "$dir"
  write_env "$dir"
  mkdir -p "$REGISTRY"
  echo "$dir" >"$REGISTRY/$(echo "$dir" | sha256sum | cut -c1-16)"
  [[ -z "$owner" ]] || start_watchdog "$dir" "$owner"
  local cluster_id
  # A base64url UUID; like Kafka's Uuid.randomUuid, never one starting with "-", which the
  # argument parser would take for an option (1 start in 64 failed that way).
  cluster_id="-"
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id="$(openssl rand -base64 16 | tr '+/' '-_' | tr -d '=\n')"
  done
  mkdir -p "$dir/logs"
  java -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$dir/logs" \
    -cp "$(classpath)" kafka.tools.StorageTool format --standalone --ignore-formatted \
    -t "$cluster_id" -c "$dir/server.properties" \
    -S "SCRAM-SHA-256=[name=$SCRAM256_USER,password=$SCRAM256_PASSWORD]" \
    -S "SCRAM-SHA-512=[name=$SCRAM512_USER,password=$SCRAM512_PASSWORD]" \
    -S "SCRAM-SHA-512=[name=$SCRAM_LIMITED_USER,password=$SCRAM_LIMITED_PASSWORD]" \
    >"$dir/logs/format.log" 2>&1 ||
    {
      cat "$dir/logs/format.log" >&2
      die "Cannot format the storage in \"$dir/data\" (log above)"
    }
  launch "$dir"
  cat "$dir/broker.env"
}

cmd_start() {
  local dir
  [[ $# -eq 1 ]] || usage
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "No broker directory \"$1\""
  [[ -f "$dir/server.properties" ]] || die "No broker in \"$dir\"; use up first"
  require_installed
  launch "$dir"
}

# stop_pid DIR SIGNAL: signal the broker and wait for it to exit (SIGKILL after 20 s).
stop_pid() {
  local dir="$1" signal="$2" pid
  pid="$(running_pid "$dir")"
  [[ -n "$pid" ]] || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "the broker (pid $pid) did not stop within 20 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  stop_pid "$1" TERM
}

cmd_kill() {
  [[ $# -eq 1 ]] || usage
  stop_pid "$1" KILL
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  [[ -n "$(running_pid "$1")" ]]
}

cmd_down() {
  local dir
  [[ $# -eq 1 ]] || usage
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  stop_pid "$dir" TERM
  [[ -f "$dir/server.properties" || -f "$dir/broker.env" ]] ||
    die "Refusing to remove \"$dir\": it holds no broker"
  rm -f "$REGISTRY/$(echo "$dir" | sha256sum | cut -c1-16)"
  rm -rf "$dir"
}

cmd_down_all() {
  local entry dir
  [[ -d "$REGISTRY" ]] || return 0
  for entry in "$REGISTRY"/*; do
    [[ -f "$entry" ]] || continue
    dir="$(cat "$entry")"
    if [[ -d "$dir" ]]; then
      log "down \"$dir\""
      cmd_down "$dir" || true
    fi
    rm -f "$entry"
  done
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd="$1"
  shift
  case "$cmd" in
  install) cmd_install ;;
  up) cmd_up "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill) cmd_kill "$@" ;;
  status) cmd_status "$@" ;;
  down) cmd_down "$@" ;;
  down-all) cmd_down_all ;;
  describe-producers) cmd_describe_producers "$@" ;;
  -h | --help | help) usage ;;
  *) die "Unknown command \"$cmd\"; see --help" ;;
  esac
}

main "$@"
