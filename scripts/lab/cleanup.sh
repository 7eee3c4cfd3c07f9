#!/usr/bin/env bash
# Delete every network namespace whose name starts with PREFIX (default sb-). Safe to run
# anytime, and twice: with nothing to delete it does nothing.
#   scripts/lab/cleanup.sh [PREFIX]
# Links are deleted before the namespace: a namespace pinned by a still-running process
# outlives `ip netns del`, and so would a storm circling its bridges.
set -euo pipefail

prefix="${1:-sb-}"
# The prefix alone scopes the deletion: never empty, never a pattern.
if [[ ! "$prefix" =~ ^[A-Za-z][A-Za-z0-9_-]{0,23}$ ]]; then
  echo "cleanup.sh: invalid prefix '$prefix'" >&2
  exit 2
fi

mapfile -t names < <(ip netns list | awk '{print $1}' | while read -r n; do
  [[ "$n" == "$prefix"* ]] && printf '%s\n' "$n"
done)

for n in "${names[@]}"; do
  [[ -n "$n" ]] || continue
  for dev in $(ip -n "$n" -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [[ "$dev" == lo ]] || timeout 5 ip -n "$n" link del dev "$dev" 2>/dev/null || true
  done
done
for n in "${names[@]}"; do
  [[ -n "$n" ]] || continue
  timeout 5 ip netns del "$n" 2>/dev/null || true
  echo "deleted $n"
done
