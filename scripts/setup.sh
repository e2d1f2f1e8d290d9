#!/usr/bin/env bash
# Installs what the tests and the benchmarks need on a fresh machine, and does nothing when it is
# all there (a second run takes well under a second). `deno task test` and `deno task bench` run
# it first; `.ci/run` runs `deno task test`.
#
#   scripts/setup.sh            Debian packages, Java and Maven, the Kafka jars, the npm packages
#   scripts/setup.sh --check    only say what is missing (exit 1 if anything is)
#
# What it installs:
#   - influxd, prometheus, kcat, openssl, chromium: Debian packages influxdb, prometheus, kcat,
#     openssl, chromium (the live page's browser tests);
#   - java (17 or newer) and mvn: Debian packages default-jre-headless (openjdk-17-jre-headless
#     where the default Java is older) and maven;
#   - the Kafka broker jars: scripts/kafka_local.sh install (Maven Central, into .cache/kafka);
#   - the history store's databases: PostgreSQL's initdb and pg_ctl (Debian package postgresql,
#     whose own service is stopped again: tests run private clusters, scripts/postgres_local.sh)
#     and the QuestDB jar (scripts/questdb_local.sh install: Maven Central, into .cache/questdb);
#   - Deno's npm packages: deno install (from deno.lock).
# Packages are installed only as root, with apt-get. Otherwise it prints the exact command to run
# and exits 1. The packages start services of their own (influxdb, prometheus); the tests start
# their own servers on free ports, so those services are stopped again with `service NAME stop`,
# and only the ones this run installed. Nothing is stopped by process name.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "setup: unknown option \"$1\"; see scripts/setup.sh --help" >&2
    exit 2
    ;;
esac

say() { echo "setup: $*" >&2; }

java_major() {
  # `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` (or "1.8.0_392").
  local v
  v=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/p' | head -1)
  set -- $v
  if [ "${1:-0}" = "1" ]; then echo "${2:-0}"; else echo "${1:-0}"; fi
}

# Debian packages for the commands that are missing.
packages=()
services=()
need() { # need COMMAND PACKAGE [SERVICE]
  if ! command -v "$1" >/dev/null 2>&1; then
    packages+=("$2")
    [ -n "${3:-}" ] && services+=("$3")
  fi
  return 0
}
need influxd influxdb influxdb
need prometheus prometheus prometheus
need kcat kcat
need openssl openssl
# The live page is tested in a real browser (tests/telemetry/live_page_test.ts); CHROMIUM names another.
[ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
  packages+=(chromium)
JAVA_PACKAGE=default-jre-headless # Java 17 on Debian 12; resolved again after apt-get update
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  packages+=("$JAVA_PACKAGE")
fi
need mvn maven
# The store's PostgreSQL tests run initdb/pg_ctl from /usr/lib/postgresql/*/bin (not on PATH).
if ! scripts/postgres_local.sh install >/dev/null 2>&1; then
  packages+=(postgresql)
  services+=(postgresql)
fi

if [ ${#packages[@]} -gt 0 ]; then
  command="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
  if [ "$CHECK_ONLY" = 1 ]; then
    say "missing: ${packages[*]}; install them with: sudo sh -c '$command'"
    exit 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      say "the tests need the Debian packages ${packages[*]}; install them with:"
      echo "  sudo sh -c '$command'" >&2
    else
      say "the tests need influxd, prometheus, kcat, openssl, chromium, Java 17+ and Maven;" \
        "this machine has no apt-get, so install the packages ${packages[*]} with its own manager"
    fi
    exit 1
  fi
  say "installing the Debian packages ${packages[*]} (log: .cache/setup-apt.log)"
  mkdir -p .cache
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get update -q >.cache/setup-apt.log 2>&1; then
    tail -20 .cache/setup-apt.log >&2
    say "apt-get update failed (see .cache/setup-apt.log)"
    exit 1
  fi
  # Distributions whose default Java is older than 17 (Ubuntu 22.04: 11) get openjdk-17.
  default_java=$(apt-cache policy default-jre-headless 2>/dev/null |
    sed -nE 's/.*Candidate: ([0-9]+:)?1\.([0-9]+).*/\2/p')
  if [ "${default_java:-0}" -lt 17 ]; then
    packages=("${packages[@]/#$JAVA_PACKAGE/openjdk-17-jre-headless}")
  fi
  if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >>.cache/setup-apt.log 2>&1; then
    tail -20 .cache/setup-apt.log >&2
    say "apt-get failed (see .cache/setup-apt.log)"
    exit 1
  fi
  # The packages just started their own services; the tests run their own servers.
  for service in "${services[@]}"; do
    if command -v service >/dev/null 2>&1; then
      service "$service" stop >/dev/null 2>&1 || true
    elif command -v systemctl >/dev/null 2>&1; then
      systemctl stop "$service" >/dev/null 2>&1 || true
    fi
  done
fi

# The Kafka jars (about 80 MB from Maven Central the first time; a no-op once there).
if [ "$CHECK_ONLY" = 1 ]; then
  stamp="${KAFKA_CACHE:-.cache/kafka}/lib/.complete"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum scripts/kafka/pom.xml | cut -d' ' -f1)" ]; then
    say "missing: the Kafka broker jars; install them with: scripts/kafka_local.sh install"
    exit 1
  fi
else
  scripts/kafka_local.sh install || exit 1
fi

# The QuestDB jar (29 MB from Maven Central the first time; a no-op once there).
if [ "$CHECK_ONLY" = 1 ]; then
  if [ ! -f "${QUESTDB_CACHE:-.cache/questdb}/questdb-9.2.2.jar" ]; then
    say "missing: the QuestDB jar; install it with: scripts/questdb_local.sh install"
    exit 1
  fi
else
  scripts/questdb_local.sh install || exit 1
fi

# Deno's npm packages, from deno.lock (a no-op once cached).
if [ "$CHECK_ONLY" = 0 ]; then
  mkdir -p .cache
  deno install --frozen >/dev/null 2>.cache/setup-deno.log || {
    cat .cache/setup-deno.log >&2
    say "deno install --frozen failed"
    exit 1
  }
fi
exit 0
