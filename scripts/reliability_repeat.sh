#!/usr/bin/env bash
# Runs the exactly-once scenarios N times in a row (default 10) and prints one line per run and
# a summary: the 15 s broker stop (tests/reliability_outage_test.ts); a replay of the real
# capture (its 2023 timestamps) through a broker SIGKILL, a clean stop, a fresh broker, a 30 s
# network black hole and connections dropped every 3 s for 30 s (tests/reliability_crash_test.ts);
# live quotes at 2,000/s through a broker SIGKILL and a 30 s black hole (tests/reliability_live_test.ts).
# Each run's [reliability] lines give the counts; any duplicate or missing record fails that run.
#
#   scripts/reliability_repeat.sh [N]            the default Kafka client
#   KAFKA_CLIENT=kafkajs scripts/reliability_repeat.sh [N]
#   RELIABILITY_FILTER='/black hole/' scripts/reliability_repeat.sh [N]   some scenarios only
#   RELIABILITY_SUITE=store scripts/reliability_repeat.sh [N]
#                                                the history store instead (tests/reliability_store_test.ts:
#                                                SIGKILLs, a database restart, two stores; both databases;
#                                                STORE_SCENARIOS=kill and STORE_ADAPTERS=questdb narrow it)
#
# Needs what `deno task test` needs (Java, the Kafka jars, kcat optional). Takes about 8 min a run.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
case "$runs" in '' | *[!0-9]*) echo "Usage: scripts/reliability_repeat.sh [N]: N must be a number, got \"$runs\"" >&2; exit 2 ;; esac
filter=${RELIABILITY_FILTER:-'/outage of 15 s and more|SIGKILLed 3 s into|stopped cleanly 3 s into|fresh broker answers|black hole between|dropped every 3 s|live quotes at 2,000/'}
files=(tests/reliability_outage_test.ts tests/reliability_crash_test.ts tests/reliability_live_test.ts)
if [ "${RELIABILITY_SUITE:-kafka}" = store ]; then
  filter=${RELIABILITY_FILTER:-'/exactly once through kills/'}
  files=(tests/reliability_store_test.ts)
fi
passed=0
failed=0
mkdir -p .cache
for i in $(seq 1 "$runs"); do
  log=.cache/reliability-repeat-$i.log
  if deno test -A --no-check=remote --filter "$filter" "${files[@]}" >"$log" 2>&1; then
    passed=$((passed + 1))
    status=ok
  else
    failed=$((failed + 1))
    status=FAILED
  fi
  echo "run $i ($status, client ${KAFKA_CLIENT:-default}):"
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^\[reliability\]|^error:' | sed 's/^/  /'
done
echo "$passed of $runs runs passed, $failed failed"
[ "$failed" -eq 0 ]
