#!/usr/bin/env bash
# Shared set-up for the demo and the tests: Debian packages, npm dependencies, native addon, build.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "stormbreaker: the lab needs root (network namespaces, veth, bridges). Run with sudo." >&2
  exit 2
fi

# Node.js >= 20 first: from this machine's apt when it offers one (Debian 13, or a configured
# NodeSource repository); otherwise one line that says what to do, before anything else is
# installed (on a fresh Debian 12 root that line came only after ~1 min of other packages).
# Debian 12's own nodejs is 18.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
  apt-get update -qq || true
  cand=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  cand_major=$(printf '%s\n' "$cand" | sed -E 's/^[0-9]+://; s/[^0-9].*$//')
  if [ -n "$cand_major" ] && [ "$cand_major" -ge 20 ] 2>/dev/null; then
    echo "stormbreaker: installing Node.js $cand from apt (nodejs)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
    # Debian's nodejs comes without npm (NodeSource's includes it).
    command -v npm >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  else
    echo "stormbreaker: Node.js >= 20 is required and this machine's apt offers nodejs ${cand:-none} (Debian 12's is 18): install Node 20 from NodeSource (deb.nodesource.com) or nvm, then run this again." >&2
    exit 2
  fi
fi

# Debian packages the lab and the agent use (ip/bridge, nft, tcpreplay, python3 for the frame
# sender, a C toolchain for the AF_PACKET counter addon).
pkgs=(iproute2 nftables tcpreplay python3 make g++ procps)
# The tests also check install.sh with shellcheck and the unit with systemd-analyze; the ESXi
# tests run a real sshd (openssh-server) in a namespace, and the remote loop under busybox sh.
# The demo's ESXi part needs openssh-client only.
pkgs+=(openssh-client)
# The Prometheus lab test runs a real Prometheus and Alertmanager (Debian `prometheus`, which also
# brings promtool, and `prometheus-alertmanager` with amtool) inside a lab namespace; they come
# without Recommends (node-exporter, smartmontools, ipmitool... are not needed).
norec=()
if [ "${1:-}" = "--with-test-tools" ]; then
  pkgs+=(shellcheck systemd openssh-server busybox tcpdump)
  norec+=(prometheus prometheus-alertmanager)
  # The Debian package test: dpkg-deb/dpkg-shlibdeps (dpkg-dev), strip (binutils), lintian, a
  # fresh Debian root (mmdebstrap) booted with systemd as PID 1 (systemd-nspawn).
  norec+=(dpkg-dev binutils lintian mmdebstrap systemd-container)
fi
# Packages whose maintainer scripts would start a host-wide daemon (sshd on 22, Prometheus on 9090,
# Alertmanager on 9093). The tests only ever start their own copies inside lab namespaces.
daemons=" openssh-server prometheus prometheus-alertmanager "
missing=()
missing_norec=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
for p in "${norec[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_norec+=("$p")
done
if [ "$((${#missing[@]} + ${#missing_norec[@]}))" -gt 0 ]; then
  echo "stormbreaker: installing Debian packages: ${missing[*]} ${missing_norec[*]}"
  # Keep the packages from starting their daemons (policy-rc.d, Debian's own mechanism: invoke-rc.d
  # and deb-systemd-invoke ask it first) and leave their units disabled.
  starts=()
  for p in "${missing[@]}" "${missing_norec[@]}"; do [[ "$daemons" == *" $p "* ]] && starts+=("$p"); done
  guard=""
  if [ "${#starts[@]}" -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  [ "${#missing[@]}" -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ "${#missing_norec[@]}" -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_norec[@]}" >/dev/null
  [ -n "$guard" ] && rm -f "$guard"
  if [ "${#starts[@]}" -gt 0 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now ssh.service ssh.socket prometheus.service prometheus-alertmanager.service >/dev/null 2>&1 || true
    echo "stormbreaker: installed ${starts[*]} for the tests; their host-wide services are left disabled."
  fi
fi

# npm ci when node_modules is missing or older than the lock file (it also builds the addon).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# Rebuilt when the C source is newer than the addon (a pull that changed it), not only when missing.
{ [ build/Release/packet_stats.node -nt native/packet_stats.c ] && [ build/Release/packet_stats.node -nt native/tripwire_ring.h ]; } || npm run --silent build:native >/dev/null
# The lab's full-speed flood sender (C, sendmmsg: send.py sends one frame per python call, 55-220k
# frames/s here with the load; a VM floods at hundreds of k).
# Into dist/ (beside the compiled lab toolkit): node-gyp rebuild wipes build/.
mkdir -p dist/scripts/lab
[ dist/scripts/lab/flood -nt scripts/lab/flood.c ] && [ dist/scripts/lab/flood -nt scripts/lab/lab-guard.h ] || cc -O2 -Wall -Wextra -o dist/scripts/lab/flood scripts/lab/flood.c
# The lab's kernel-timed observer (AF_PACKET ring: each frame's kernel receive time, exact when the reader runs late).
[ dist/scripts/lab/observe-ts -nt scripts/lab/observe-ts.c ] && [ dist/scripts/lab/observe-ts -nt scripts/lab/lab-guard.h ] || cc -O2 -Wall -Wextra -o dist/scripts/lab/observe-ts scripts/lab/observe-ts.c
# raw-socket (ICMP echo for the reachability check) builds at install; npm 11 may hold back a
# dependency's install script pending approval, so build it here if it is missing.
[ -f node_modules/raw-socket/build/Release/raw.node ] || npm rebuild raw-socket --foreground-scripts --loglevel=error >/dev/null
npx --no-install tsc -p tsconfig.json
