#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh
# Debian 12 machine (system packages, Node 24 via npm), then type-checks, lints and
# runs every test. Run as root: the end-to-end tests make network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real (ip for namespace hosts, nft for cutting
# hosts off, systemd and util-linux's unshare/nsenter for running install.sh under a
# real systemd in a namespace). Only missing ones are installed, so a prepared machine
# stays offline.
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v curl >/dev/null 2>&1 || need+=(curl)
{ [ -x /lib/systemd/systemd ] && command -v systemctl >/dev/null 2>&1; } || need+=(systemd)
{ command -v unshare && command -v nsenter && command -v mountpoint; } >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test/run.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "test/run.sh: missing ${need[*]}; tests that need them will skip" >&2
  fi
fi

# npm ci brings Node 24 (the `node` package) next to everything else.
npm ci --no-fund --no-audit --loglevel=error
npm test
