#!/usr/bin/env bash
# Runs a command holding the machine-wide lab lock. Two labs at once (tests, demo, benchmarks)
# collide on namespace prefixes and skew each other's timing, so every lab entry point takes it.
# Re-entrant through the environment: a locked script that calls another does not wait on itself.
set -euo pipefail
if [ -n "${STORMBREAKER_LAB_LOCK_HELD:-}" ]; then exec "$@"; fi
export STORMBREAKER_LAB_LOCK_HELD=1
lock=/run/lock/stormbreaker-lab.lock
[ -d /run/lock ] && [ -w /run/lock ] || lock=/tmp/stormbreaker-lab.lock
exec flock "$lock" "$@"
