#!/usr/bin/env bash
# Install stormbreaker as a systemd service from this checkout (Debian/Ubuntu; RHEL-likes work
# the same way as long as Node.js >= 20 and systemd are there).
#
#   sudo ./install.sh                 install or upgrade, enable the service (not started)
#   sudo ./install.sh --dry-run       print what would change, change nothing
#   ./install.sh --root /tmp/stage    install into a staging root (no systemctl; no root needed)
#   sudo ./install.sh --uninstall     remove the program and the unit; KEEP policies and journal
#
# Layout:  PREFIX (/opt/stormbreaker)   program: dist/, the native addon, production node_modules,
#                                       bin/stormbreaker (launcher), share/ (examples, alert rules)
#          /etc/stormbreaker/           policies (a git repository: review changes, roll back)
#          /var/lib/stormbreaker/       state: the journal that keeps tripped ports down
#          /etc/systemd/system/stormbreaker.service
#          /usr/local/bin/stormbreaker  -> PREFIX/bin/stormbreaker
#
# Idempotent: the program tree is assembled aside and swapped in only if it differs from what is
# installed; a second run with the same checkout changes nothing. Existing policies are never
# overwritten.
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --prefix DIR   program directory on the target (default /opt/stormbreaker)
  --root DIR     staging root: everything goes under DIR, systemctl is never run
  --dry-run      print the actions, change nothing
  --uninstall    remove program, unit and launcher; keep /etc/stormbreaker and /var/lib/stormbreaker
  --no-build     do not build missing artifacts (dist/, the native addon); fail instead
  -h, --help     this text
EOF
}

prefix=/opt/stormbreaker
root=
dry_run=0
uninstall=0
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }; root=$2; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be an absolute path, got: $prefix" >&2; exit 2 ;;
esac
prefix=${prefix%/}
# The prefix is replaced wholesale on upgrade and removed on --uninstall: never let that be /usr.
case "$(basename "$prefix")" in
  *stormbreaker*) ;;
  *) echo "install.sh: --prefix must be a directory of its own whose name contains 'stormbreaker' (it is replaced on upgrade and removed on --uninstall), got: $prefix" >&2; exit 2 ;;
esac
if [ -n "$root" ]; then
  case "$root" in /*) ;; *) root="$(pwd)/$root" ;; esac
  root=${root%/}
fi
if [ -z "$root" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: installing into / needs root (or use --root DIR / --dry-run)" >&2
  exit 2
fi

src=$(cd "$(dirname "$0")" && pwd)
R="$root"                       # prepended to every target path
P="$R$prefix"
etc_dir="$R/etc/stormbreaker"
state_dir="$R/var/lib/stormbreaker"
unit_dir="$R/etc/systemd/system"
unit="$unit_dir/stormbreaker.service"
link="$R/usr/local/bin/stormbreaker"

say() { printf 'stormbreaker: %s\n' "$*"; }
# Every change goes through run: printed always, executed unless --dry-run.
run() {
  printf '+ %s\n' "$*"
  [ "$dry_run" -eq 1 ] || "$@"
}

# systemctl only for a real install on a host whose PID 1 is systemd.
use_systemctl=0
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  use_systemctl=1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stormbreaker-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------------------- uninstall
if [ "$uninstall" -eq 1 ]; then
  if [ "$use_systemctl" -eq 1 ] && systemctl list-unit-files stormbreaker.service >/dev/null 2>&1; then
    run systemctl disable --now stormbreaker.service || true
  fi
  if [ -e "$unit" ]; then run rm -f "$unit"; fi
  if [ "$use_systemctl" -eq 1 ]; then run systemctl daemon-reload; fi
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/stormbreaker" ]; then run rm -f "$link"; fi
  if [ -d "$P" ]; then run rm -rf "$P"; fi
  say "removed the program; kept policies in $etc_dir and the journal in $state_dir (delete them by hand if you mean it)"
  exit 0
fi

# ----------------------------------------------------------------------------- preconditions
if ! command -v node >/dev/null 2>&1; then
  echo "install.sh: Node.js >= 20 is required and 'node' is not on PATH (Debian 12's nodejs is 18: use NodeSource)" >&2
  exit 2
fi
node_bin=$(command -v node)
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install.sh: Node.js >= 20 is required, found $(node --version) at $node_bin" >&2
  exit 2
fi
case "$node_bin" in
  /*) ;;
  *) echo "install.sh: cannot resolve an absolute path for node ($node_bin)" >&2; exit 2 ;;
esac

# ------------------------------------------------------------------------------------ build
cd "$src"
need_build=0
[ -f dist/agent/cli.js ] || need_build=1
[ -f build/Release/packet_stats.node ] || need_build=1
if [ "$need_build" -eq 1 ]; then
  if [ "$build" -eq 0 ]; then
    echo "install.sh: dist/agent/cli.js or build/Release/packet_stats.node missing and --no-build given (run: npm ci && npm run build:native && npm run build)" >&2
    exit 1
  fi
  [ -d node_modules ] || run npm ci --no-audit --no-fund --loglevel=error
  [ -f build/Release/packet_stats.node ] || run npm run --silent build:native
  [ -f dist/agent/cli.js ] || run npx --no-install tsc -p tsconfig.json
  if [ "$dry_run" -eq 1 ]; then
    say "dry run: the build above did not run, so the program tree cannot be compared; stopping here"
    exit 0
  fi
fi

# ------------------------------------------------- assemble the program tree aside, then swap
new="$tmp/program"
mkdir -p "$new/bin" "$new/build/Release" "$new/share/policies" "$new/share/packaging" "$new/node_modules"
cp -R dist/agent "$new/dist-agent"
mkdir -p "$new/dist" && mv "$new/dist-agent" "$new/dist/agent"
cp build/Release/packet_stats.node "$new/build/Release/"
cp package.json README.md "$new/"
cp policies/*.yaml policies/schema.json "$new/share/policies/"
[ -f policies/alerts.example.yml ] && cp policies/alerts.example.yml "$new/share/policies/"
cp packaging/stormbreaker.service "$new/share/packaging/"
# Production dependencies only (what `npm ls --omit=dev` resolves from node_modules), no download.
deps=$(npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2) || {
  echo "install.sh: npm ls --omit=dev failed: node_modules is incomplete (run npm ci)" >&2
  exit 1
}
while IFS= read -r d; do
  [ -n "$d" ] || continue
  rel=${d#"$src"/}
  mkdir -p "$new/$(dirname "$rel")"
  cp -R "$d" "$new/$rel"
done <<<"$deps"
# The launcher pins the node that passed the version check; `exec` keeps the PID, which
# NotifyAccess=main relies on.
cat >"$new/bin/stormbreaker" <<EOF
#!/bin/sh
exec $node_bin $prefix/dist/agent/cli.js "\$@"
EOF
chmod 0755 "$new/bin/stormbreaker"
# The unit with this prefix.
sed "s|/opt/stormbreaker|$prefix|g" packaging/stormbreaker.service >"$tmp/stormbreaker.service"
# Deterministic modes so a second run compares equal whatever the umask.
find "$new" -type d -exec chmod 0755 {} +
find "$new" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$new" -type f -perm -u+x -exec chmod 0755 {} +

changed=0
if [ -d "$P" ] && diff -r --no-dereference -q "$new" "$P" >/dev/null 2>&1; then
  say "program in $P is up to date"
else
  changed=1
  if [ -d "$P" ]; then
    say "updating $P ($(diff -r --no-dereference -q "$new" "$P" 2>/dev/null | wc -l) difference(s))"
    # Swap, not overwrite: a running agent keeps its old files until it restarts.
    run mkdir -p "$(dirname "$P")"
    run cp -a "$new" "$P.new"
    run rm -rf "$P.old"
    run mv "$P" "$P.old"
    run mv "$P.new" "$P"
    run rm -rf "$P.old"
  else
    run mkdir -p "$(dirname "$P")"
    run cp -a "$new" "$P"
  fi
fi

if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/stormbreaker" ]; then
  :
elif [ -e "$link" ] && [ ! -L "$link" ]; then
  say "warning: $link exists and is not our symlink; left alone"
else
  run mkdir -p "$(dirname "$link")"
  run ln -sfn "$prefix/bin/stormbreaker" "$link"
fi

# ------------------------------------------------------------------------ policies and state
if [ ! -d "$etc_dir" ]; then run mkdir -p "$etc_dir"; fi
if ! compgen -G "$etc_dir/*.yaml" >/dev/null && ! compgen -G "$etc_dir/*.yml" >/dev/null; then
  # The smallest policy: watches vnet* in dry run only, so a fresh install shuts nothing.
  say "no policy in $etc_dir: installing the example (dry run: journals would-trip, touches nothing)"
  run cp policies/minimal.yaml "$etc_dir/policy.yaml"
fi
if [ ! -e "$etc_dir/schema.json" ]; then run cp policies/schema.json "$etc_dir/schema.json"; fi
if command -v git >/dev/null 2>&1; then
  if ! git -C "$etc_dir" rev-parse --git-dir >/dev/null 2>&1 || [ "$(git -C "$etc_dir" rev-parse --show-toplevel 2>/dev/null)" != "$(cd "$etc_dir" 2>/dev/null && pwd -P)" ]; then
    # Policies are code that can shut ports: keep their history.
    run git -C "$etc_dir" init -q
    run git -C "$etc_dir" add -A
    run git -C "$etc_dir" -c user.name=stormbreaker-install -c user.email=root@localhost commit -q -m "stormbreaker: initial policy"
  fi
else
  say "git not found: $etc_dir is not put under version control"
fi
if [ ! -d "$state_dir" ]; then run mkdir -p -m 0750 "$state_dir"; fi

# ------------------------------------------------------------------------------------ unit
unit_changed=0
if [ -f "$unit" ] && cmp -s "$tmp/stormbreaker.service" "$unit"; then
  :
else
  unit_changed=1
  run mkdir -p "$unit_dir"
  run cp "$tmp/stormbreaker.service" "$unit"
  run chmod 0644 "$unit"
fi

if [ "$use_systemctl" -eq 1 ]; then
  if [ "$unit_changed" -eq 1 ]; then run systemctl daemon-reload; fi
  systemctl is-enabled --quiet stormbreaker.service 2>/dev/null || run systemctl enable stormbreaker.service
  # An upgrade takes effect in a running agent only after a restart (it replays its journal).
  if [ "$changed" -eq 1 ] || [ "$unit_changed" -eq 1 ]; then run systemctl try-restart stormbreaker.service; fi
  systemctl is-active --quiet stormbreaker.service 2>/dev/null || say "enabled; start with: systemctl start stormbreaker"
elif [ -n "$root" ]; then
  say "staging root $root: systemctl skipped (enable with: systemctl enable stormbreaker.service)"
else
  say "systemd is not running: service not enabled (run $prefix/bin/stormbreaker run --policy /etc/stormbreaker yourself)"
fi
say "done${root:+ (root $root)}$([ "$dry_run" -eq 1 ] && echo ' (dry run: nothing changed)')"
