#!/usr/bin/env bash
# Build stormbreaker_VERSION_ARCH.deb from this checkout with Debian's own dpkg-deb.
#
#   bash scripts/package-deb.sh [--out DIR]      (default DIR: out/)
#
# Layout of the package:
#   /usr/lib/stormbreaker/          program: dist/, the native addon (built here, for this
#                                   architecture), production node_modules, package.json
#   /usr/bin/stormbreaker           launcher (exec node, so the PID is the agent's: NotifyAccess=main)
#   /lib/systemd/system/stormbreaker.service
#   /etc/stormbreaker/policy.yaml   the example policy (dry run), a conffile: dpkg never overwrites
#                                   an operator's edits on upgrade, and asks
#   /usr/share/stormbreaker/        examples, alert and fleet rules, Alertmanager, Grafana dashboard
#   /var/lib/stormbreaker/          state (the journal), made by postinst, removed on purge only
# Maintainer scripts are packaging/debian/{postinst,prerm,postrm}: enabled, not started, on a first
# install.
set -euo pipefail
cd "$(dirname "$0")/.."

out=out
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "package-deb.sh: --out needs a directory" >&2; exit 2; }; out=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-deb.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

for t in dpkg-deb dpkg-shlibdeps gzip node npm; do
  command -v "$t" >/dev/null 2>&1 || { echo "package-deb.sh: $t not found (Debian: dpkg-dev, nodejs)" >&2; exit 2; }
done
if [ ! -f dist/agent/cli.js ] || [ ! -f build/Release/packet_stats.node ]; then
  echo "package-deb.sh: dist/agent/cli.js or build/Release/packet_stats.node missing: run scripts/setup.sh first" >&2
  exit 1
fi

version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
# raw-socket's addon (nan, not N-API) is tied to the Node ABI it was built for: bound the major.
node_major=$(node -p 'process.versions.node.split(".")[0]')
deb="stormbreaker_${version}_${arch}.deb"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stormbreaker-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
R="$tmp/root"
lib="$R/usr/lib/stormbreaker"
share="$R/usr/share/stormbreaker"
doc="$R/usr/share/doc/stormbreaker"
mkdir -p "$lib/dist" "$lib/build/Release" "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/stormbreaker" \
  "$share/policies" "$share/monitoring" "$doc" "$R/usr/share/man/man8" "$R/DEBIAN"

# ------------------------------------------------------------------------------ program
cp -R dist/agent "$lib/dist/agent"
cp build/Release/packet_stats.node "$lib/build/Release/"
cp package.json "$lib/"
# Production dependencies only, as npm resolves them (no download).
deps=$(npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2) || {
  echo "package-deb.sh: npm ls --omit=dev failed: node_modules is incomplete (run npm ci)" >&2
  exit 1
}
src=$(pwd)
while IFS= read -r d; do
  [ -n "$d" ] || continue
  rel=${d#"$src"/}
  mkdir -p "$lib/$(dirname "$rel")"
  cp -R "$d" "$lib/$rel"
done <<<"$deps"
# Build leftovers of native dependencies are not part of the program (object files, makefiles).
find "$lib/node_modules" -type d \( -name obj.target -o -name .deps -o -name test -o -name example \) -prune -exec rm -rf {} +
find "$lib/node_modules" \( -name '*.mk' -o -name Makefile -o -name config.gypi -o -name '*.o' -o -name '.*' \) -type f -delete
# Nor the modules' own development and web files (a docs page loading scripts from CDNs, release
# scripts, git hooks, nan's code converters: nan is headers for raw-socket's build only).
find "$lib/node_modules" -depth \( -name .husky -o -name .github -o -name docs -o -name benchmarks \) -type d -exec rm -rf {} +
rm -rf "$lib/node_modules/nan/tools"
find "$lib/node_modules" \( -name index.html -o -name inc-version.sh \) -type f -delete
# Debian ships shared objects stripped (policy 10.1); symbols are not needed at run time.
find "$lib" -type f -name '*.node' -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +

cat >"$R/usr/bin/stormbreaker" <<'EOF'
#!/bin/sh
exec /usr/bin/node /usr/lib/stormbreaker/dist/agent/cli.js "$@"
EOF
sed -e 's|/opt/stormbreaker/bin/stormbreaker|/usr/bin/stormbreaker|g' \
    -e 's|^Documentation=.*|Documentation=man:stormbreaker(8) file:///usr/share/doc/stormbreaker/README.md.gz|' \
    -e 's|^# Installed by install.sh.*|# Installed by the Debian package (scripts/package-deb.sh).|' \
    packaging/stormbreaker.service >"$R/lib/systemd/system/stormbreaker.service"
grep -q '/opt/stormbreaker' "$R/lib/systemd/system/stormbreaker.service" && { echo "package-deb.sh: unit still names /opt/stormbreaker" >&2; exit 1; }

# ------------------------------------------------------------------- configuration, examples
cp policies/minimal.yaml "$R/etc/stormbreaker/policy.yaml"
cp policies/schema.json "$R/etc/stormbreaker/schema.json"
cp policies/*.yaml policies/schema.json policies/alerts.example.yml "$share/policies/"
cp monitoring/* "$share/monitoring/"

# ------------------------------------------------------------------------ documentation
gzip -9n -c README.md >"$doc/README.md.gz"
gzip -9n -c packaging/stormbreaker.8 >"$R/usr/share/man/man8/stormbreaker.8.gz"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: stormbreaker

Files: *
Copyright: 2026 stormbreaker authors
License: MIT

Files: usr/lib/stormbreaker/node_modules/*
Copyright: the authors of each module (see its package.json)
License: MIT or ISC or BSD-3-Clause, as stated in each module's package.json and LICENSE file

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this software
 and associated documentation files (the "Software"), to deal in the Software without
 restriction, including without limitation the rights to use, copy, modify, merge, publish,
 distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
 BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
 NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
 DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
EOF
# A native package's changelog (Debian policy 12.7), from the version and the last commit date.
when=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'stormbreaker (%s) unstable; urgency=medium\n\n  * Package built from the stormbreaker source tree (scripts/package-deb.sh).\n\n -- stormbreaker maintainers <maintainers@stormbreaker.invalid>  %s\n' \
  "$version" "$when" | gzip -9n >"$doc/changelog.gz"

# ------------------------------------------------------------------------------ modes
find "$R" -type d -exec chmod 0755 {} +
find "$R" -type f -exec chmod 0644 {} +
chmod 0755 "$R/usr/bin/stormbreaker"
# Files that start with #! are commands: executable, as their shebang says.
find "$lib" -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.cjs' -o -name '*.sh' \) -exec sh -c 'for f; do [ "$(head -c 2 "$f")" = "#!" ] && chmod 0755 "$f"; done; true' sh {} +

# ------------------------------------------------------------------------ control files
# Shared-library dependencies of the native addons, as Debian computes them.
shl_dir="$tmp/shl"
mkdir -p "$shl_dir/debian"
printf 'Source: stormbreaker\n\nPackage: stormbreaker\nArchitecture: any\n' >"$shl_dir/debian/control"
mapfile -t natives < <(find "$lib" -type f -name '*.node')
shlibs=$(cd "$shl_dir" && dpkg-shlibdeps -O "${natives[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package-deb.sh: dpkg-shlibdeps found no library dependencies for ${natives[*]}" >&2; exit 1; }
installed_kb=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat >"$R/DEBIAN/control" <<EOF
Package: stormbreaker
Version: $version
Architecture: $arch
Maintainer: stormbreaker maintainers <maintainers@stormbreaker.invalid>
Installed-Size: $installed_kb
Depends: nodejs (>= 20), nodejs (<< $((node_major + 1))), iproute2, procps, $shlibs
Recommends: nftables
Suggests: prometheus, prometheus-alertmanager
Section: net
Priority: optional
Description: host-side circuit breaker for Ethernet broadcast storms
 A daemon for hypervisor hosts (KVM, Proxmox, Linux bridges; ESXi over SSH)
 that samples per-port counters every millisecond while flood traffic lasts,
 recognises the signature of a switching loop, shuts exactly one loop member
 within milliseconds, journals why, and keeps that port down across restarts
 until an operator restores it.
 .
 The service is enabled but not started on installation: read and adapt the
 example policy in /etc/stormbreaker (it starts in dry run) first.
EOF
printf '/etc/stormbreaker/policy.yaml\n/etc/stormbreaker/schema.json\n' >"$R/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$R/DEBIAN/"
(cd "$R" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/control" "$R/DEBIAN/conffiles" "$R/DEBIAN/md5sums"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$R" "$out/$deb" >/dev/null
echo "$out/$deb"
