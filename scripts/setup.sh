#!/usr/bin/env bash
# Shared set-up for the demo and the tests: Debian packages, npm dependencies, native addon, build.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "stormbreaker: the lab needs root (network namespaces, veth, bridges). Run with sudo." >&2
  exit 2
fi

# Debian packages the lab and the agent use (ip/bridge, nft, tcpreplay, python3 for the frame
# sender, a C toolchain for the AF_PACKET counter addon).
pkgs=(iproute2 nftables tcpreplay python3 make g++ procps)
# The tests also check install.sh with shellcheck and the unit with systemd-analyze; the ESXi
# tests run a real sshd (openssh-server) in a namespace, and the remote loop under busybox sh.
# The demo's ESXi part needs openssh-client only.
pkgs+=(openssh-client)
[ "${1:-}" = "--with-test-tools" ] && pkgs+=(shellcheck systemd openssh-server busybox)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "stormbreaker: installing Debian packages: ${missing[*]}"
  # openssh-server's package scripts would start and enable a host-wide sshd on port 22. The tests
  # only ever start their own sshd inside a lab namespace, so keep the package from starting one
  # (policy-rc.d, Debian's own mechanism) and leave the unit disabled.
  guard=""
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$guard" ] && rm -f "$guard"
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    echo "stormbreaker: installed openssh-server for the tests; its host-wide service is left disabled."
  fi
fi

if ! command -v node >/dev/null 2>&1; then
  echo "stormbreaker: Node.js >= 20 is required (Debian 12's nodejs is 18; use NodeSource or nvm)." >&2
  exit 2
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "stormbreaker: Node.js >= 20 is required, found $(node --version)." >&2
  exit 2
fi

# npm ci when node_modules is missing or older than the lock file (it also builds the addon).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
[ -f build/Release/packet_stats.node ] || npm run --silent build:native >/dev/null
# raw-socket (ICMP echo for the reachability check) builds at install; npm 11 may hold back a
# dependency's install script pending approval, so build it here if it is missing.
[ -f node_modules/raw-socket/build/Release/raw.node ] || npm rebuild raw-socket --foreground-scripts --loglevel=error >/dev/null
npx --no-install tsc -p tsconfig.json
