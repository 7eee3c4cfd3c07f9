#!/usr/bin/env bash
# The main job: a real loop storm in network namespaces, broken by the agent, with a timeline,
# next to the same storm under a 1-second storm-control baseline. Output in ./out/.
#   --esxi  instead: the agent next to a stand-in ESXi host over SSH (scripts/demo-esxi.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
# One lab at a time on this machine (see scripts/lab/with-lock.sh).
[ -n "${STORMBREAKER_LAB_LOCK_HELD:-}" ] || exec bash scripts/lab/with-lock.sh bash scripts/demo.sh "$@"
esxi=0
args=()
for a in "$@"; do
  if [ "$a" = --esxi ]; then esxi=1; else args+=("$a"); fi
done
if [ "$esxi" = 1 ]; then
  # A real sshd plays the ESXi host: openssh-server (kept from starting host-wide) and busybox.
  bash scripts/setup.sh --with-test-tools
  prefix=sb-demx-
  # demo-esxi.js --teardown-only stops the lab's sshd and removes /tmp/${prefix}esxi-*;
  # cleanup.sh deletes the namespaces even if node cannot run.
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    node dist/scripts/demo-esxi.js --prefix "$prefix" --teardown-only >/dev/null 2>&1 || true
    bash scripts/lab/cleanup.sh "$prefix" >/dev/null 2>&1 || true
  }
  trap cleanup EXIT INT TERM
  node dist/scripts/demo-esxi.js --prefix "$prefix" "${args[@]}"
  exit
fi
bash scripts/setup.sh
prefix=sb-demo-
cleanup() { bash scripts/lab/cleanup.sh "$prefix" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
node dist/scripts/demo.js --prefix "$prefix" "$@"
