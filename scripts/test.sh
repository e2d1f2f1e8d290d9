#!/usr/bin/env bash
# `deno task test [ARGS...]`: the README's test command. It sets up what the suite needs on a fresh
# machine (scripts/setup.sh: Debian packages, Java, Maven, the Kafka jars, npm packages), then runs
# `deno test -A --no-check=remote ARGS` (default: tests/), and ends with one line when tests that
# need the real capture did not run. ARGS are passed to deno test, e.g. `deno task test
# tests/transform_test.ts` or `deno task test --filter replay`. Its exit status is deno test's.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh || exit $?

has_path=0
for arg in "$@"; do
  [ -e "$arg" ] && has_path=1
done
[ "$has_path" = 1 ] || set -- "$@" tests/

mkdir -p .cache/test
report=.cache/test/junit.xml
rm -f "$report"
deno test -A --no-check=remote --junit-path="$report" "$@"
status=$?
deno run --allow-read --allow-env tests/helpers/capture.ts "$report"
exit $status
