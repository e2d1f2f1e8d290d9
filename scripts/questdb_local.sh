#!/usr/bin/env bash
# A throwaway QuestDB (one JVM, the jar from Maven Central) without Docker, for the history store.
#
#   scripts/questdb_local.sh install          download the QuestDB jar from Maven Central (once)
#   scripts/questdb_local.sh up DIR [--owner-pid PID]
#                                             pick ports, start QuestDB in DIR, wait until it answers
#   scripts/questdb_local.sh stop DIR         stop it (SIGTERM, then SIGKILL), keep the data
#   scripts/questdb_local.sh kill DIR         SIGKILL it at once (a crash), keep the data
#   scripts/questdb_local.sh start DIR        start the stopped server again: same ports, same data
#   scripts/questdb_local.sh status DIR       exit 0 if the server process runs
#   scripts/questdb_local.sh down DIR         stop the server and remove DIR
#
# `up` writes DIR/questdb.env (KEY=value lines): QUESTDB_URL (HTTP: SQL at /exec, ILP at /write,
# the web console at /), QUESTDB_PG (the PostgreSQL wire address, user admin, password quest,
# database qdb) and QUESTDB_PID. With --owner-pid, a watchdog runs `down DIR` as soon as that
# process is gone, so a test run that dies leaves no java process behind.
#
# Environment:
#   QUESTDB_CACHE          jar cache (default: <repo>/.cache/questdb)
#   QUESTDB_HTTP_PORT, QUESTDB_PG_PORT, QUESTDB_MIN_HTTP_PORT, QUESTDB_ILP_TCP_PORT
#                          ports for `up` (default: free ports picked at random below 32768;
#                          ILP over TCP stays off: the store writes line protocol over HTTP)
#   QUESTDB_START_TIMEOUT  seconds to wait for the server to answer (default 90)
#   QUESTDB_HEAP           JVM heap options (default "-Xms64m -Xmx512m")
#
# Needs: Java 17+, curl (install only), bash.
set -euo pipefail

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SCRIPT_DIR="$(dirname "$SCRIPT_PATH")"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
VERSION=9.2.2
CACHE="${QUESTDB_CACHE:-$REPO_DIR/.cache/questdb}"
JAR="$CACHE/questdb-$VERSION.jar"
URL="https://repo1.maven.org/maven2/org/questdb/questdb/$VERSION/questdb-$VERSION.jar"
START_TIMEOUT="${QUESTDB_START_TIMEOUT:-90}"
HEAP="${QUESTDB_HEAP:--Xms64m -Xmx512m}"
# Marks our JVMs on their command line, so `stop` never signals a recycled pid.
MARKER_PROP="-Dquestdb.local.dir"

die() {
  echo "questdb_local: $*" >&2
  exit 1
}

usage() {
  sed -n '2,26p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
  exit 2
}

cmd_install() {
  [[ -f "$JAR" ]] && return 0
  command -v curl >/dev/null || die "Cannot download QuestDB: \"curl\" is not on PATH"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.install.lock"
  flock 9
  if [[ -f "$JAR" ]]; then
    exec 9>&-
    return 0
  fi
  echo "questdb_local: downloading $URL into \"$CACHE\"" >&2
  curl -sSfL -o "$JAR.part" "$URL" || die "Cannot download \"$URL\""
  local want got
  want="$(curl -sSfL "$URL.sha1" | cut -c1-40)" || die "Cannot download \"$URL.sha1\""
  got="$(sha1sum "$JAR.part" | cut -d' ' -f1)"
  [[ "$want" == "$got" ]] || die "The download of \"$URL\" has SHA-1 $got, Maven Central says $want"
  mv "$JAR.part" "$JAR"
  exec 9>&-
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PICKED=" "
pick_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768 and up), where outgoing connections take ports.
    p=$((20000 + RANDOM % 12768))
    if [[ "$PICKED" != *" $p "* ]] && ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "Cannot find a free port between 20000 and 32767"
}

# Prints the server pid if DIR's QuestDB process runs (and is ours), else nothing.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/questdb.pid" ]] || return 0
  pid="$(cat "$dir/questdb.pid")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$MARKER_PROP=$dir "; then
    echo "$pid"
  fi
}

launch() {
  local dir="$1"
  [[ -z "$(running_pid "$dir")" ]] || die "QuestDB in \"$dir\" already runs"
  [[ -f "$JAR" ]] || cmd_install
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  mkdir -p "$dir/db" "$dir/logs"
  # shellcheck disable=SC2086 # HEAP holds several JVM options
  QDB_HTTP_BIND_TO="127.0.0.1:$HTTP_PORT" QDB_HTTP_MIN_NET_BIND_TO="127.0.0.1:$MIN_HTTP_PORT" \
    QDB_PG_NET_BIND_TO="127.0.0.1:$PG_PORT" QDB_LINE_TCP_NET_BIND_TO="127.0.0.1:$ILP_TCP_PORT" \
    QDB_TELEMETRY_ENABLED=false QDB_LINE_UDP_ENABLED=false QDB_LINE_TCP_ENABLED=false \
    nohup java $HEAP "$MARKER_PROP=$dir" -XX:+ExitOnOutOfMemoryError -jar "$JAR" -d "$dir/db" -n \
    </dev/null >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$dir/questdb.pid"
  local pid=$! deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/logs/stdout.log" >&2 2>/dev/null || true
      die "QuestDB in \"$dir\" exited during start-up (log above)"
    fi
    if curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/exec?query=select%201"; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$dir/logs/stdout.log" >&2 2>/dev/null || true
  die "QuestDB in \"$dir\" did not answer on 127.0.0.1:$HTTP_PORT within ${START_TIMEOUT}s"
}

write_env() {
  local dir="$1"
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  cat >"$dir/questdb.env" <<EOF
QUESTDB_URL=http://127.0.0.1:$HTTP_PORT
QUESTDB_PG=127.0.0.1:$PG_PORT
QUESTDB_PID=$(cat "$dir/questdb.pid")
EOF
}

start_watchdog() {
  local dir="$1" owner="$2"
  echo "$owner" >"$dir/owner.pid"
  nohup bash -c '
    while kill -0 "$1" 2>/dev/null && [[ -f "$2/ports.env" ]]; do sleep 1; done
    [[ -f "$2/ports.env" ]] && exec "$3" down "$2"
  ' questdb-local-watchdog "$owner" "$dir" "$SCRIPT_PATH" </dev/null >/dev/null 2>&1 &
}

cmd_up() {
  local dir owner=""
  [[ $# -ge 1 ]] || usage
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
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
  [[ ! -e "$dir/ports.env" ]] || die "\"$dir\" already holds a QuestDB; use start or down"
  cmd_install
  local http pg min tcp
  http="${QUESTDB_HTTP_PORT:-$(pick_port)}"
  PICKED="$PICKED$http "
  pg="${QUESTDB_PG_PORT:-$(pick_port)}"
  PICKED="$PICKED$pg "
  min="${QUESTDB_MIN_HTTP_PORT:-$(pick_port)}"
  PICKED="$PICKED$min "
  tcp="${QUESTDB_ILP_TCP_PORT:-$(pick_port)}"
  printf 'HTTP_PORT=%s\nPG_PORT=%s\nMIN_HTTP_PORT=%s\nILP_TCP_PORT=%s\n' "$http" "$pg" "$min" "$tcp" \
    >"$dir/ports.env"
  [[ -z "$owner" ]] || start_watchdog "$dir" "$owner"
  launch "$dir"
  write_env "$dir"
  cat "$dir/questdb.env"
}

cmd_start() {
  local dir
  [[ $# -eq 1 ]] || usage
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "No QuestDB directory \"$1\""
  [[ -f "$dir/ports.env" ]] || die "No QuestDB in \"$dir\"; use up first"
  launch "$dir"
  write_env "$dir"
}

# stop_pid DIR SIGNAL: signal the server and wait for it to exit (SIGKILL after 20 s).
stop_pid() {
  local dir="$1" signal="$2" pid
  pid="$(running_pid "$dir")"
  [[ -n "$pid" ]] || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "questdb_local: QuestDB (pid $pid) did not stop within 20 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_down() {
  local dir
  [[ $# -eq 1 ]] || usage
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  stop_pid "$dir" TERM
  [[ -f "$dir/ports.env" ]] || die "Refusing to remove \"$dir\": it holds no QuestDB"
  rm -rf "$dir"
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd="$1"
  shift
  case "$cmd" in
  install) cmd_install ;;
  up) cmd_up "$@" ;;
  start) cmd_start "$@" ;;
  stop)
    [[ $# -eq 1 ]] || usage
    stop_pid "$1" TERM
    ;;
  kill)
    [[ $# -eq 1 ]] || usage
    stop_pid "$1" KILL
    ;;
  status)
    [[ $# -eq 1 ]] || usage
    [[ -n "$(running_pid "$1")" ]]
    ;;
  down) cmd_down "$@" ;;
  -h | --help | help) usage ;;
  *) die "Unknown command \"$cmd\"; see $0 --help" ;;
  esac
}

main "$@"
