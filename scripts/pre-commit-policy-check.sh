#!/usr/bin/env bash
# Example git pre-commit hook: refuse a commit whose staged stormbreaker policies do not pass
# `stormbreaker policy check` (errors print as file:line:col: field: message).
#
# Install in a repository that keeps policies (from its top level):
#   ln -s ../../scripts/pre-commit-policy-check.sh .git/hooks/pre-commit
# or call it from an existing hook. Skip it once with `git commit --no-verify`.
#
# What is checked is the STAGED content (the index), not the working tree: a fix left unstaged
# must not let a broken file through. The staged files are copied to a temporary directory with
# their repository paths and checked there, so messages name the repository paths.
#
# Which files (repository paths, repeatable git config; not every YAML file is a policy):
#   git config --add stormbreaker.policyPath policies     files under these paths are checked one
#                                                         by one (default: policies)
#   git config --add stormbreaker.policyDir policy.d      a directory loaded as ONE policy (files
#                                                         merged in name order); checked as a whole
#                                                         when any *.yaml/*.yml in it is staged or
#                                                         deleted, never file by file
#
# Which checker: `stormbreaker` on PATH; else `npx --no-install stormbreaker` (the repository's
# own node_modules, never a download); else `node dist/agent/cli.js` in the repository.
set -euo pipefail

root=$(git rev-parse --show-toplevel)
cd "$root"

# Trailing slashes off, so `policies/` and `policies` mean the same.
policy_paths=()
while IFS= read -r p; do [ -n "$p" ] && policy_paths+=("${p%/}"); done < <(git config --get-all stormbreaker.policyPath || echo policies)
policy_dirs=()
while IFS= read -r p; do [ -n "$p" ] && policy_dirs+=("${p%/}"); done < <(git config --get-all stormbreaker.policyDir || true)

# The policy directory a path sits directly in, if any (directories are not read recursively).
dir_of() {
  local f=$1 d
  for d in "${policy_dirs[@]+"${policy_dirs[@]}"}"; do
    if [ "$(dirname -- "$f")" = "$d" ]; then
      printf '%s\n' "$d"
      return 0
    fi
  done
  return 1
}

under_policy_path() {
  local f=$1 p
  for p in "${policy_paths[@]+"${policy_paths[@]}"}"; do
    case $f in "$p" | "$p"/*) return 0 ;; esac
  done
  return 1
}

# Plain arrays only (no `declare -A`), and "${a[@]+...}" for empty ones under set -u, so the
# hook also runs under the bash 3.2 that macOS ships.
files=()
dirs=()
add_dir() {
  local d
  for d in "${dirs[@]+"${dirs[@]}"}"; do [ "$d" = "$1" ] && return 0; done
  dirs+=("$1")
}
while IFS= read -r -d '' f; do
  if d=$(dir_of "$f"); then
    add_dir "$d"
  elif under_policy_path "$f"; then
    files+=("$f")
  fi
done < <(git diff --cached --name-only -z --diff-filter=ACM -- '*.yaml' '*.yml')
# Deleting a file can break a directory policy too (an override gone, the last file gone).
while IFS= read -r -d '' f; do
  if d=$(dir_of "$f"); then add_dir "$d"; fi
done < <(git diff --cached --name-only -z --diff-filter=D -- '*.yaml' '*.yml')

if [ "${#files[@]}" -eq 0 ] && [ "${#dirs[@]}" -eq 0 ]; then
  exit 0
fi

if command -v stormbreaker >/dev/null 2>&1; then
  checker=(stormbreaker)
# offline: `npx --no-install` still asks the registry about a name it cannot find locally.
elif npm_config_offline=true npx --no-install stormbreaker --help >/dev/null 2>&1; then
  # --prefix: the check runs in the temporary copy, where npx would find no node_modules.
  checker=(env npm_config_offline=true npx --no-install --prefix "$root" stormbreaker)
elif [ -f "$root/dist/agent/cli.js" ]; then
  checker=(node "$root/dist/agent/cli.js")
else
  echo "pre-commit: cannot find stormbreaker (not on PATH, not in node_modules, no dist/agent/cli.js); policies NOT checked" >&2
  echo "pre-commit: install or build it, or commit with --no-verify to skip this check" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stormbreaker-pre-commit.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

targets=("${files[@]+"${files[@]}"}")
stage=("${files[@]+"${files[@]}"}")
for d in "${dirs[@]+"${dirs[@]}"}"; do
  targets+=("$d")
  # Whatever is staged for the directory now: the whole policy, not only the changed files.
  # The directory is made even if no file is left, so the check says "no policy files".
  mkdir -p -- "$tmp/$d"
  while IFS= read -r -d '' f; do
    case $f in *.yaml | *.yml) ;; *) continue ;; esac
    if [ "$(dirname -- "$f")" = "$d" ]; then stage+=("$f"); fi
  done < <(git ls-files -z -- ":(literal)$d")
done
if [ "${#stage[@]}" -gt 0 ]; then
  printf '%s\0' "${stage[@]}" | git checkout-index --prefix="$tmp/" -z --stdin
fi

echo "pre-commit: stormbreaker policy check ${targets[*]}" >&2
status=0
(cd "$tmp" && "${checker[@]}" policy check -- "${targets[@]}") || status=$?
if [ "$status" -ne 0 ]; then
  echo "pre-commit: policy check failed (exit $status); fix and re-stage, or commit with --no-verify" >&2
  exit 1
fi
exit 0
