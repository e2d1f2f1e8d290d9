#!/usr/bin/env bash
# A throwaway PostgreSQL cluster (Debian's binaries, initdb and pg_ctl) in its own folder and on
# its own port, for the history store. It never touches a PostgreSQL service the machine runs.
#
#   scripts/postgres_local.sh install         check that the binaries are there (setup.sh installs them)
#   scripts/postgres_local.sh up DIR [--owner-pid PID]
#                                             initdb in DIR, start on a free port, wait until it answers
#   scripts/postgres_local.sh stop DIR        stop it (fast shutdown), keep the data
#   scripts/postgres_local.sh kill DIR        SIGKILL the postmaster at once (a crash), keep the data
#   scripts/postgres_local.sh start DIR       start the stopped cluster again: same port, same data
#   scripts/postgres_local.sh status DIR      exit 0 if the server runs
#   scripts/postgres_local.sh down DIR        stop the server and remove DIR
#
# `up` writes DIR/postgres.env (KEY=value lines): POSTGRES_URL
# (postgres://postgres@127.0.0.1:PORT/postgres, trust authentication on 127.0.0.1 only) and
# POSTGRES_PORT. With --owner-pid, a watchdog runs `down DIR` as soon as that process is gone.
# Run as root, the cluster belongs to the `postgres` user (initdb refuses root).
#
# Environment:
#   PG_BIN                 folder of initdb and pg_ctl (default: the newest /usr/lib/postgresql/*/bin)
#   POSTGRES_PORT          port for `up` (default: a free port picked at random)
#   POSTGRES_START_TIMEOUT seconds to wait for the server (default 60)
set -euo pipefail

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
START_TIMEOUT="${POSTGRES_START_TIMEOUT:-60}"

die() {
  echo "postgres_local: $*" >&2
  exit 1
}

usage() {
  sed -n '2,23p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
  exit 2
}

pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    echo "$PG_BIN"
    return 0
  fi
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$found" ]] && { echo "$found"; return 0; }
  found="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"
  [[ -x "$found/initdb" ]] && { echo "$found"; return 0; }
  die "Cannot find initdb and pg_ctl: install the Debian package postgresql (scripts/setup.sh) or set PG_BIN"
}

cmd_install() {
  local bin
  bin="$(pg_bin)"
  [[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]] || die "Cannot find initdb and pg_ctl in \"$bin\""
}

# as_owner COMMAND...: runs as the postgres user when we are root, else as ourselves.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    local quoted
    printf -v quoted '%q ' "$@"
    su postgres -s /bin/bash -c "$quoted"
  else
    "$@"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768 and up), where outgoing connections take ports.
    p=$((20000 + RANDOM % 12768))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "Cannot find a free port between 20000 and 32767"
}

launch() {
  local dir="$1" bin port
  bin="$(pg_bin)"
  port="$(sed -n 's/^POSTGRES_PORT=//p' "$dir/postgres.env")"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/run/postgres.log" -w -t "$START_TIMEOUT" \
    -o "-p $port -k $dir/run -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null ||
    {
      tail -n 30 "$dir/run/postgres.log" >&2 2>/dev/null || true
      die "PostgreSQL in \"$dir\" did not start on 127.0.0.1:$port (log above)"
    }
}

start_watchdog() {
  local dir="$1" owner="$2"
  echo "$owner" >"$dir/owner.pid"
  nohup bash -c '
    while kill -0 "$1" 2>/dev/null && [[ -f "$2/postgres.env" ]]; do sleep 1; done
    [[ -f "$2/postgres.env" ]] && exec "$3" down "$2"
  ' postgres-local-watchdog "$owner" "$dir" "$SCRIPT_PATH" </dev/null >/dev/null 2>&1 &
}

cmd_up() {
  local dir owner="" bin port
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
  [[ ! -e "$dir/postgres.env" ]] || die "\"$dir\" already holds a PostgreSQL; use start or down"
  bin="$(pg_bin)"
  port="${POSTGRES_PORT:-$(pick_port)}"
  mkdir -p "$dir/data" "$dir/run"
  chmod 755 "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres "$dir/data" "$dir/run"
    su postgres -s /bin/bash -c "test -w $(printf %q "$dir/data")" ||
      die "The postgres user cannot reach \"$dir\": a folder above it is closed to others (chmod o+x it, or pick a folder under /tmp)"
  fi
  cat >"$dir/postgres.env" <<EOF
POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres
POSTGRES_PORT=$port
EOF
  [[ -z "$owner" ]] || start_watchdog "$dir" "$owner"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/run/initdb.log" 2>&1 ||
    {
      cat "$dir/run/initdb.log" >&2
      die "Cannot initdb in \"$dir/data\" (log above)"
    }
  launch "$dir"
  cat "$dir/postgres.env"
}

cmd_start() {
  local dir
  [[ $# -eq 1 ]] || usage
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "No PostgreSQL directory \"$1\""
  [[ -f "$dir/postgres.env" ]] || die "No PostgreSQL in \"$dir\"; use up first"
  launch "$dir"
}

postmaster_pid() {
  [[ -f "$1/data/postmaster.pid" ]] || return 0
  local pid
  pid="$(head -n 1 "$1/data/postmaster.pid")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}

cmd_stop() {
  local dir="$1"
  [[ -n "$(postmaster_pid "$dir")" ]] || return 0
  as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
}

cmd_kill() {
  local dir="$1" pid
  pid="$(postmaster_pid "$dir")"
  [[ -n "$pid" ]] || return 0
  # The postmaster's children go with it: SIGKILL the whole set of this cluster's processes.
  local children
  children="$(pgrep -P "$pid" 2>/dev/null || true)"
  kill -KILL "$pid" $children 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_down() {
  local dir
  [[ $# -eq 1 ]] || usage
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  [[ -f "$dir/postgres.env" ]] || die "Refusing to remove \"$dir\": it holds no PostgreSQL"
  cmd_stop "$dir" || cmd_kill "$dir"
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
    cmd_stop "$1"
    ;;
  kill)
    [[ $# -eq 1 ]] || usage
    cmd_kill "$1"
    ;;
  status)
    [[ $# -eq 1 ]] || usage
    [[ -n "$(postmaster_pid "$1")" ]]
    ;;
  down) cmd_down "$@" ;;
  -h | --help | help) usage ;;
  *) die "Unknown command \"$cmd\"; see $0 --help" ;;
  esac
}

main "$@"
