#!/usr/bin/env bash
# The main job: a real loop storm in network namespaces, broken by the agent, with a timeline,
# next to the same storm under a 1-second storm-control baseline. Output in ./out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
prefix=sb-demo-
cleanup() { bash scripts/lab/cleanup.sh "$prefix" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
node dist/scripts/demo.js --prefix "$prefix" "$@"
