#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need on a fresh
# Debian 12 machine (system packages, Node 24 via npm), then type-checks, lints and
# runs every test. Run as root: the end-to-end tests make network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real (ip for namespace hosts, nft for cutting
# hosts off and for the connection manager's rules, systemd and util-linux's
# unshare/nsenter for running install.sh under a real systemd in a namespace, and the
# services' parts below). Only missing ones are installed, so a prepared machine stays
# offline.
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v curl >/dev/null 2>&1 || need+=(curl)
{ [ -x /lib/systemd/systemd ] && command -v systemctl >/dev/null 2>&1; } || need+=(systemd)
{ command -v unshare && command -v nsenter && command -v mountpoint; } >/dev/null 2>&1 || need+=(util-linux)
# the services' real parts: QEMU (VMs), qemu-img/qemu-io and nbdinfo/nbdcopy (the
# standard NBD clients the volume store is tested with), WireGuard (wireguard-go: no
# kernel module here), busybox and a Debian kernel for the guest image builder, chattr
# (e2fsprogs) and faketime for the fault suite, fio and iperf3 for the benchmarks
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v nbdinfo >/dev/null 2>&1 || need+=(libnbd-bin)
command -v wireguard-go >/dev/null 2>&1 || need+=(wireguard-go)
command -v wg >/dev/null 2>&1 || need+=(wireguard-tools)
[ -x /bin/busybox ] || need+=(busybox-static)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test/run.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "test/run.sh: missing ${need[*]}; tests that need them will skip" >&2
  fi
fi

# with every package there, a guest image that cannot be built fails its tests instead
# of skipping them
if [ ${#need[@]} -eq 0 ] || { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }; then
  export VGRID_TEST_REQUIRE_GUEST=1
fi

# npm ci brings Node 24 (the `node` package) next to everything else.
npm ci --no-fund --no-audit --loglevel=error
# Every test file runs in a process of its own that loads (and strips the types of) the
# modules it imports, and so do the agents the end-to-end tests start: V8's compiled
# code kept on disk across them took a third off the unit tests' CPU time (46 files:
# 73 -> 46 s). Under node_modules, so that each `npm ci` starts it afresh.
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$PWD/node_modules/.cache/node-compile}"
npm test
