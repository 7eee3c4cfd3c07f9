#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, then every unit, property and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
# One lab at a time on this machine (see scripts/lab/with-lock.sh).
[ -n "${STORMBREAKER_LAB_LOCK_HELD:-}" ] || exec bash scripts/lab/with-lock.sh bash scripts/test.sh "$@"
bash scripts/setup.sh --with-test-tools
# setup.sh installed promtool and amtool: tests that use them fail, not skip, if they are missing.
export PROMTOOL="${PROMTOOL:-promtool}" AMTOOL="${AMTOOL:-amtool}"
status=0
npx --no-install vitest run "$@" || status=$?
# Every test tears its lab down; a namespace left behind is a bug, so it fails the run.
left=$(ip netns list | awk '{print $1}' | grep -E '^sb' || true)
if [ -n "$left" ]; then
  echo "stormbreaker: namespaces left behind by the tests: $left" >&2
  for n in $left; do ip netns delete "$n" 2>/dev/null || true; done
  status=1
fi
exit "$status"
