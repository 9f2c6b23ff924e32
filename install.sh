#!/usr/bin/env bash
# install.sh: installs (or upgrades, or removes) the vgrid agent on this server.
# Run it as root on every server of the grid; `install.sh --help` lists the flags.
#
#   first server:   ./install.sh                  starts a new grid, prints its join token
#   other servers:  VGRID_TOKEN=TOKEN ./install.sh   joins that grid (or --token TOKEN)
#   again:          ./install.sh                  upgrades in place, keeps data and settings
#   remove:         ./install.sh --uninstall      removes everything but the data dir
#
# Layout under the prefix (default /opt/vgrid):
#   app/                 the code, its node_modules and Node.js 24 (npm package `node`)
#   bin/vgrid            the CLI (also linked as /usr/local/bin/vgrid with the default prefix)
#   bin/vgrid-service    start|stop|restart|leave|status of the background service (no systemd)
#   etc/vgrid.json       the agent's config file (vgrid agent --config), mode 0600
#   etc/install.env      what this script chose (service mode and name, data dir)
#   run/*.pid, log/vgrid.log   pid files and log of the background service
# With systemd the agent runs as the unit /etc/systemd/system/NAME.service instead.
#
# stdout carries one line, the grid's join token; progress goes to stderr, so
# TOKEN=$(./install.sh ...) works.
set -euo pipefail
umask 022

# ---- Debian packages vgrid needs on every server (the one list to extend) ----------
# ip and nft (namespaces, link rules), QEMU and qemu-img (VMs, volume import and
# export), wireguard-go and wg (the overlay; no kernel module is assumed), busybox and
# xz for the guest image builder (it boots the server's own Debian kernel, unpacked). nodejs and npm are only installed when node or npm is
# missing: npm is needed once, to fetch the dependencies, which bring Node.js 24 for
# running the agent.
PACKAGES=(iproute2 nftables qemu-system-x86 qemu-utils wireguard-go wireguard-tools busybox-static xz-utils)

DEFAULT_PREFIX=/opt/vgrid
DEFAULT_DATA_DIR=/var/lib/vgrid
PATH_LINK_DIR=/usr/local/bin
SYSTEMD_DIR=/etc/systemd/system
API_WAIT_SECONDS=${VGRID_INSTALL_WAIT:-60}

usage () {
  cat <<'EOF'
usage: install.sh [flags]        (run as root)

Installs the vgrid agent, or upgrades it in place when it is already installed, and
starts it: as a systemd service where systemd runs, otherwise as a supervised
background service (PREFIX/bin/vgrid-service start|stop|restart|leave|status). Prints the
grid's join token on stdout. Settings given on an earlier run are kept unless given
again (or --reset-config).

  --prefix DIR           install under DIR (default /opt/vgrid, with vgrid linked into
                         /usr/local/bin; with another prefix the CLI is DIR/bin/vgrid)
  --data-dir DIR         the agent's data dir (default /var/lib/vgrid); upgrades and
                         --uninstall keep it
  --token TOKEN          join the grid of this token (without: start a new grid);
                         `--token -` reads it from stdin, and VGRID_TOKEN in the
                         environment does the same as --token without showing it
                         to every local user in `ps` while this script runs
  --join MULTIADDR       an address of a member to dial (repeatable)
  --name NAME            this node's name (default: the host name)
  --listen MULTIADDR     peer-to-peer listen address (repeatable; default
                         /ip4/0.0.0.0/tcp/7400)
  --api HOST:PORT        the local HTTP API (default 127.0.0.1:7401)
  --no-mdns | --mdns     turn LAN discovery by mDNS off or (back) on (default on)
  --no-overlay | --overlay
                         run without or (back) with the WireGuard overlay and the
                         connection rules (default on; off only for several agents
                         sharing one network namespace, as the tests do)
  --capacity SPEC        override what the host reports: cpu=N,mem=SIZE,disk=SIZE
  --label KEY=VALUE      a label of this node (repeatable)
  --service MODE         auto (default), systemd or background
  --service-name NAME    the systemd unit (default vgrid; vgrid-NETNS when run with
                         `ip netns exec NETNS`, the unit then runs in that namespace)
  --source DIR           the vgrid checkout to install (default: this script's directory)
  --no-packages          install no Debian packages (only warn about missing commands)
  --reset-config         forget the settings of earlier runs
  --uninstall            stop the agent and remove everything but the data dir
  -h, --help             this text
EOF
}

say () { printf 'install.sh: %s\n' "$*" >&2; }
die () { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# A data dir open to other users that holds files not vgrid's (--data-dir /var/lib) is
# not made 0700: every other service under it would lose its files (the agent refuses
# the same, node/data-dir.ts).
refuse_shared_dir () {
  [ -d "$1" ] || return 0
  case "$(stat -c %a "$1")" in *00) return 0 ;; esac
  local e others=()
  for e in "$1"/* "$1"/.[!.]*; do
    [ -e "$e" ] || continue
    e=${e##*/}
    case "$e" in
      lost+found|state|dvmm|images|gvs|agent.lock*|identity.key*|cluster.key*|wireguard.key*|api.token*|api.sock*|nbd.sock*|incarnation.json*|peers.json*|roll-seen.json*|state[.-]*|dvmm[.-]*|images[.-]*|gvs[.-]*) ;;
      *) others+=("$e") ;;
    esac
  done
  [ ${#others[@]} -eq 0 ] || die "data dir $1 is open to other users and holds files that are not vgrid's (${others[*]:0:3}): vgrid keeps its data dir 0700 and does not change the mode of a directory others use; give it a directory of its own (e.g. --data-dir ${1%/}/vgrid)"
}
bad_usage () { printf 'install.sh: %s (see install.sh --help)\n' "$*" >&2; exit 2; }

# ---- flags --------------------------------------------------------------------------
PREFIX=''
DATA_DIR=''
SOURCE=''
SERVICE=''
SERVICE_NAME=''
UNINSTALL=0
NO_PACKAGES=0
RESET_CONFIG=0
SETTINGS=()   # for the config merge: key=value (set) or key+=value (list item)
TOKEN=''      # not in SETTINGS: the merge's command line is every local user's to read

# takes_value FLAG REST...: the flag's value, inline (--flag=value) or the next argument
have_inline=0
value=''
takes_value () {
  [ "$have_inline" = 1 ] && return 1
  if [ "$#" -lt 2 ] || [[ $2 == --* ]]; then bad_usage "$1 needs a value"; fi
  value=$2
}

while [ $# -gt 0 ]; do
  flag=$1
  value=''
  have_inline=0
  case $flag in
    --*=*) value=${flag#*=}; flag=${flag%%=*}; have_inline=1 ;;
  esac
  shifts=1
  case $flag in
    -h|--help) usage; exit 0 ;;
    --prefix|--data-dir|--token|--join|--name|--listen|--api|--capacity|--label|--service|--service-name|--source)
      if takes_value "$flag" "${@:2}"; then shifts=2; fi
      [ -n "$value" ] || bad_usage "$flag needs a non-empty value"
      case $flag in
        --prefix) PREFIX=$value ;;
        --data-dir) DATA_DIR=$value ;;
        --source) SOURCE=$value ;;
        --service) SERVICE=$value ;;
        --service-name) SERVICE_NAME=$value ;;
        --token)
          if [ "$value" = - ]; then
            IFS= read -r TOKEN || true
            [ -n "$TOKEN" ] || bad_usage "--token -: stdin gave no token"
          else
            TOKEN=$value
            printf 'install.sh: warning: --token shows the join token to every local user in ps while this runs; VGRID_TOKEN=TOKEN ./install.sh or --token - (stdin) keep it out\n' >&2
          fi ;;
        --join) SETTINGS+=("join+=$value") ;;
        --name) SETTINGS+=("name=$value") ;;
        --listen) SETTINGS+=("listen+=$value") ;;
        --api) SETTINGS+=("api=$value") ;;
        --capacity) SETTINGS+=("capacity=$value") ;;
        --label)
          [[ $value == ?*=* ]] || bad_usage "--label: \"$value\" is not KEY=VALUE"
          SETTINGS+=("labels+=$value") ;;
      esac
      ;;
    --no-mdns|--mdns|--no-overlay|--overlay|--uninstall|--no-packages|--reset-config)
      [ "$have_inline" = 0 ] || bad_usage "$flag takes no value"
      case $flag in
        --no-mdns) SETTINGS+=("mdns=false") ;;
        --mdns) SETTINGS+=("mdns=true") ;;
        --no-overlay) SETTINGS+=("overlay=false") ;;
        --overlay) SETTINGS+=("overlay=true") ;;
        --uninstall) UNINSTALL=1 ;;
        --no-packages) NO_PACKAGES=1 ;;
        --reset-config) RESET_CONFIG=1 ;;
      esac
      ;;
    -*) bad_usage "unknown flag $flag" ;;
    *) bad_usage "unexpected argument \"$flag\"" ;;
  esac
  shift "$shifts"
done

# the join token from the environment when no --token gave one; no child inherits it
if [ -z "$TOKEN" ] && [ -n "${VGRID_TOKEN:-}" ]; then TOKEN=$VGRID_TOKEN; fi
unset VGRID_TOKEN

# Paths: absolute, no trailing slash, never the root directory.
norm_path () {
  local what=$1 p=$2
  case $p in /*) ;; *) bad_usage "$what must be an absolute path, got \"$p\"" ;; esac
  while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
  [ "$p" != / ] || bad_usage "$what cannot be /"
  [[ $p != *[[:space:]]* ]] || bad_usage "$what may not contain white space"
  printf '%s\n' "$p"
}

PREFIX=$(norm_path --prefix "${PREFIX:-$DEFAULT_PREFIX}")
if [ -n "$DATA_DIR" ]; then
  DATA_DIR=$(norm_path --data-dir "$DATA_DIR")
  SETTINGS+=("dataDir=$DATA_DIR")
fi
case ${SERVICE:-auto} in auto|systemd|background) ;; *) bad_usage "--service must be auto, systemd or background, got \"$SERVICE\"" ;; esac
if [ -n "$SERVICE_NAME" ] && ! [[ $SERVICE_NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.@-]*$ ]]; then
  bad_usage "--service-name: \"$SERVICE_NAME\" is not a unit name"
fi
if [ -z "$SOURCE" ]; then
  SOURCE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
else
  SOURCE=$(norm_path --source "$SOURCE")
fi
if [ "$UNINSTALL" = 1 ] && [ "${#SETTINGS[@]}" -gt 0 ]; then
  bad_usage "--uninstall takes only --prefix (and --service-name)"
fi

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages, a service and files under $PREFIX)"

APP=$PREFIX/app
STAGE=$PREFIX/app.new
OLD=$PREFIX/app.old
CONFIG=$PREFIX/etc/vgrid.json
INSTALL_ENV=$PREFIX/etc/install.env
LOCK=$PREFIX/.install.lock

# ---- what an earlier run recorded ------------------------------------------------------
prev () {
  # prev KEY: the value of KEY in install.env (KEY=VALUE lines; never sourced)
  [ -r "$INSTALL_ENV" ] || return 0
  sed -n "s/^$1=//p" "$INSTALL_ENV" | tail -n 1
}
PREV_SERVICE=$(prev SERVICE)
PREV_SERVICE_NAME=$(prev SERVICE_NAME)

is_vgrid_prefix () {
  [ -e "$INSTALL_ENV" ] || [ -e "$APP/package.json" ] || [ -e "$STAGE" ] || [ -e "$LOCK" ]
}

netns_name () {
  command -v ip >/dev/null 2>&1 || return 0
  ip netns identify 2>/dev/null || true
}

# Stops and removes the unit NAME, if it is this prefix's.
# With "leave" (an uninstall) the agent is stopped with SIGINT: the node leaves the grid
# and its VMs stop; without (an upgrade) with the unit's SIGTERM: its VMs run on for the
# new run to adopt.
stop_systemd_unit () {
  local name=$1 leave=${2:-}
  [ -n "$name" ] || return 0
  grep -qsF "ExecStart=$PREFIX/bin/vgrid agent " "$SYSTEMD_DIR/$name.service" || return 0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if [ "$leave" = leave ]; then
      mkdir -p "/run/systemd/system/$name.service.d"
      printf '[Service]\nKillSignal=SIGINT\n' >"/run/systemd/system/$name.service.d/leave.conf"
      systemctl daemon-reload || true
    fi
    systemctl disable --now "$name.service" >/dev/null 2>&1 || true
    if [ "$leave" = leave ]; then rm -f "/run/systemd/system/$name.service.d/leave.conf"; rmdir "/run/systemd/system/$name.service.d" 2>/dev/null || true; fi
  fi
  if [ -f "$SYSTEMD_DIR/$name.service" ]; then
    rm -f "$SYSTEMD_DIR/$name.service"
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
  fi
}

# Stops the background service with the given copy of vgrid-service.sh (the new one
# knows the pid files of the old: they have not moved).
stop_background () {
  local script=$1 how=stop
  [ -f "$script" ] || return 0
  # an uninstall leaves the grid, where the script knows how (an older one only stops)
  if [ "${2:-}" = leave ] && grep -q '^  leave) ' "$script"; then how=leave; fi
  if [ -e "$PREFIX/run/supervisor.pid" ] || [ -e "$PREFIX/run/agent.pid" ]; then
    VGRID_PREFIX=$PREFIX bash "$script" "$how" >&2
  fi
}

# A system program by name, found as the agent finds it (node/netns/netns.ts which):
# PATH without node_modules (under npm, its .bin holds an unrelated `nft`), then the
# sbin and bin dirs.
system_cmd () {
  local d IFS=:
  for d in $PATH /usr/sbin /sbin /usr/bin /bin; do
    case $d in '' | *node_modules*) continue ;; esac
    if [ -x "$d/$1" ] && [ -f "$d/$1" ]; then printf '%s\n' "$d/$1"; return 0; fi
  done
  return 1
}

# The connection manager's kernel state outlives its agent on purpose (VMs that outlive
# it stay confined, and their traffic does not leave in clear): its nftables tables
# (inet vgrid_lcm_<10 hex>) and the VM range routed unreachable. Once uninstalled both
# go. The range is always 100.N.128.0/17 with N in 64-127 (node/lcm/overlay.ts) and
# the route has the lowest priority there is (metric 4294967295): matching that form is
# exact without the agent, which is stopped by now. Never fails the uninstall.
remove_lcm_kernel_state () {
  local t r out nft ip
  nft=$(system_cmd nft) || nft=''
  ip=$(system_cmd ip) || ip=''
  if [ -n "$nft" ]; then
    if out=$("$nft" list tables 2>&1); then
      for t in $(printf '%s\n' "$out" | awk '$1 == "table" && $2 == "inet" && $3 ~ /^vgrid_lcm_/ { print $3 }'); do
        if "$nft" delete table inet "$t" 2>/dev/null; then say "removed the connection manager's nftables table inet $t"
        else say "warning: could not delete the nftables table inet $t"; fi
      done
    else
      say "warning: could not list the nftables tables (the connection manager's may be left): $out"
    fi
  fi
  if [ -n "$ip" ]; then
    if out=$("$ip" -4 route show type unreachable 2>&1); then
      for r in $(printf '%s\n' "$out" | awk '$1 == "unreachable" { for (i = 3; i < NF; i++) if ($i == "metric" && $(i + 1) == "4294967295") print $2 }' |
        grep -E '^100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.128\.0/17$'); do
        if "$ip" route del unreachable "$r" metric 4294967295 2>/dev/null; then say "removed the route unreachable $r (the VM range)"
        else say "warning: could not delete the route unreachable $r"; fi
      done
    else
      say "warning: could not list the routes (the VM range may stay unreachable): $out"
    fi
  fi
  return 0
}

# ---- uninstall ----------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if ! [ -d "$PREFIX" ] || ! is_vgrid_prefix; then
    say "nothing installed under $PREFIX"
    exit 0
  fi
  exec 9>"$LOCK"
  flock -n 9 || die "another install.sh is working on $PREFIX"
  data_dir=$(prev DATA_DIR)
  stop_systemd_unit "${SERVICE_NAME:-$PREV_SERVICE_NAME}" leave
  script=$APP/node/service/vgrid-service.sh
  [ -f "$script" ] || script=$SOURCE/node/service/vgrid-service.sh
  stop_background "$script" leave
  remove_lcm_kernel_state
  for l in "$PATH_LINK_DIR/vgrid" "$PATH_LINK_DIR/vgrid-service"; do
    if [ -L "$l" ] && [[ $(readlink "$l") == "$PREFIX/"* ]]; then rm -f "$l"; fi
  done
  rm -rf "$APP" "$STAGE" "$OLD"
  rm -f "$PREFIX/bin/vgrid" "$PREFIX/bin/vgrid-service" "$CONFIG" "$CONFIG.new" "$INSTALL_ENV" \
    "$PREFIX"/run/*.pid "$PREFIX"/run/*.pid.tmp "$PREFIX"/log/vgrid.log "$PREFIX"/log/vgrid.log.1
  for d in bin etc run log; do rmdir "$PREFIX/$d" 2>/dev/null || true; done
  rm -f "$LOCK"
  rmdir "$PREFIX" 2>/dev/null || say "kept $PREFIX: it holds files that are not vgrid's"
  say "vgrid removed from $PREFIX${data_dir:+; the data dir $data_dir is kept (remove it yourself to forget this node and its grid)}"
  exit 0
fi

# ---- install or upgrade -------------------------------------------------------------
if ! grep -qs '"name": *"vgrid"' "$SOURCE/package.json"; then
  die "--source $SOURCE is not a vgrid checkout (no package.json of vgrid)"
fi
for f in package-lock.json bin/vgrid node/cli/main.ts node/service/vgrid-service.sh; do
  [ -e "$SOURCE/$f" ] || die "--source $SOURCE lacks $f"
done
if [ -d "$PREFIX" ] && [ -n "$(ls -A "$PREFIX")" ] && ! is_vgrid_prefix; then
  die "$PREFIX exists and is not a vgrid install; choose a new or empty --prefix"
fi

# Debian packages: only the missing ones, so that a prepared server stays offline.
install_packages () {
  local missing=() p
  if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PACKAGES[@]}"; do
      [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = 'install ok installed' ] || missing+=("$p")
    done
  else
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
  fi
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$NO_PACKAGES" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "warning: missing packages ${missing[*]} (install them yourself)"
    return 0
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
install_packages
# who may change the grid through the API's unix socket besides root (node/api/access.ts)
if command -v getent >/dev/null 2>&1 && ! getent group vgrid >/dev/null 2>&1 && command -v groupadd >/dev/null 2>&1; then
  groupadd --system vgrid && say "created the vgrid group: its members may change the grid through /run/vgrid/api.sock"
fi
command -v npm >/dev/null 2>&1 || die "npm is needed to install vgrid's dependencies (apt-get install npm)"

# How the agent will run: systemd where it runs, else the background supervisor.
NETNS=$(netns_name)
# (--service, else what the last run chose if still possible, else auto)
if [ -z "$SERVICE" ] && [ "$PREV_SERVICE" = background ]; then SERVICE=background; fi
if [ -z "$SERVICE" ] && [ "$PREV_SERVICE" = systemd ] && [ -d /run/systemd/system ]; then SERVICE=systemd; fi
case ${SERVICE:-auto} in
  systemd)
    [ -d /run/systemd/system ] || die "--service systemd: systemd is not running here (use --service background)"
    MODE=systemd ;;
  background) MODE=background ;;
  *) if [ -d /run/systemd/system ]; then MODE=systemd; else MODE=background; fi ;;
esac
if [ -z "$SERVICE_NAME" ]; then
  if [ -n "$PREV_SERVICE_NAME" ]; then SERVICE_NAME=$PREV_SERVICE_NAME
  elif [ -n "$NETNS" ]; then SERVICE_NAME=vgrid-$NETNS
  else SERVICE_NAME=vgrid
  fi
fi

UNIT=$SYSTEMD_DIR/$SERVICE_NAME.service
if [ "$MODE" = systemd ] && [ -f "$UNIT" ] && ! grep -qF "ExecStart=$PREFIX/bin/vgrid agent " "$UNIT"; then
  die "$UNIT belongs to another vgrid install; choose another --service-name"
fi

mkdir -p "$PREFIX"
exec 9>"$LOCK"
flock -n 9 || die "another install.sh is working on $PREFIX"

cleanup_stage () { rm -rf "$STAGE" "$CONFIG.new"; }
trap cleanup_stage EXIT

# 1. The new code in a staging dir with its dependencies, while the old agent still runs.
rm -rf "$STAGE" "$OLD"
mkdir -p "$STAGE"
for f in bin protocol crdt node scripts package.json package-lock.json install.sh README.md LICENSE; do
  if [ -e "$SOURCE/$f" ]; then cp -R "$SOURCE/$f" "$STAGE/"; fi
done
say "installing dependencies and Node.js 24 (npm ci --omit=dev)"
(cd "$STAGE" && npm_config_prefer_offline=true npm ci --omit=dev --prefer-offline \
  --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $STAGE"
NODE=$STAGE/node_modules/node/bin/node
[ -x "$NODE" ] || die "npm ci did not bring Node.js 24 ($NODE is missing)"

# 2. The config: the earlier one (unless --reset-config) with this run's flags applied,
#    checked by the new code's own config loader before anything is stopped.
mkdir -p "$PREFIX/etc"
old_config=''
if [ "$RESET_CONFIG" = 0 ] && [ -f "$CONFIG" ]; then old_config=$CONFIG; fi
# What it prints: the data dir, the API address to call, the node's name.
read -r -d '' MERGE_JS <<'EOF' || true
const fs = require('node:fs')
const { join } = require('node:path')
const { pathToFileURL } = require('node:url')
const [oldPath, outPath, stage, defaultDataDir, ...settings] = process.argv.slice(1)
const fail = (msg) => { process.stderr.write(msg + '\n'); process.exit(2) }
const load = async (f) => await import(pathToFileURL(join(stage, f)).href)
async function main () {
  let cfg = {}
  if (oldPath !== '') {
    try { cfg = JSON.parse(fs.readFileSync(oldPath, 'utf8')) } catch (e) { fail(`${oldPath}: ${e.message} (use --reset-config)`) }
  }
  const replaced = new Set()
  for (const s of settings) {
    const [, key, add, value] = /^([A-Za-z]+)(\+?)=([\s\S]*)$/.exec(s)
    if (add === '') { cfg[key] = key === 'mdns' || key === 'overlay' ? value === 'true' : value; continue }
    if (!replaced.has(key)) { replaced.add(key); cfg[key] = key === 'labels' ? {} : [] }
    if (key === 'labels') { const i = value.indexOf('='); cfg.labels[value.slice(0, i)] = value.slice(i + 1) } else cfg[key].push(value)
  }
  // the join token comes in the environment, not the command line (ps)
  const token = process.env.VGRID_INSTALL_TOKEN ?? ''
  delete process.env.VGRID_INSTALL_TOKEN
  if (token !== '') cfg.token = token
  cfg.dataDir ??= defaultDataDir
  fs.writeFileSync(outPath, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 })
  const { resolveConfig } = await load('node/config.ts')
  const c = await resolveConfig({ config: outPath })
  if (c.token != null) {
    const ck = await load('protocol/cluster-key.ts')
    let tok
    try { tok = ck.decodeToken(c.token) } catch (e) { fail(`the join token (--token or VGRID_TOKEN): ${e.message}`) }
    let stored
    try { stored = fs.readFileSync(join(c.dataDir, 'cluster.key'), 'utf8') } catch {}
    if (stored != null && ck.keyHex(ck.parseClusterKey(stored)) !== ck.keyHex(tok.key)) {
      fail(`the join token (--token or VGRID_TOKEN) is for another grid than the one the data dir ${c.dataDir} belongs to (use another --data-dir)`)
    }
  }
  const host = { '0.0.0.0': '127.0.0.1', '::': '::1' }[c.api.host] ?? c.api.host
  process.stdout.write(`${c.dataDir}\n${host.includes(':') ? `[${host}]` : host}:${c.api.port}\n${c.name}\n`)
}
main().catch((e) => fail(e.message))
EOF
merge_err=$(mktemp)
if ! merged=$(VGRID_INSTALL_TOKEN=$TOKEN "$NODE" --disable-warning=ExperimentalWarning -e "$MERGE_JS" -- \
  "$old_config" "$CONFIG.new" "$STAGE" "$DEFAULT_DATA_DIR" "${SETTINGS[@]}" 2>"$merge_err"); then
  printf 'install.sh: bad setting: %s\n' "$(tail -n 1 "$merge_err")" >&2
  rm -f "$merge_err"
  exit 2
fi
rm -f "$merge_err"
{ read -r DATA_DIR; read -r API_CONNECT; read -r NODE_NAME; } <<<"$merged"
if [ -z "$DATA_DIR" ] || [ -z "$API_CONNECT" ]; then die "could not read the merged config: $merged"; fi
refuse_shared_dir "$DATA_DIR"

# 3. Stop the old agent (whichever way it ran), swap the code, start the new one.
UPGRADE=0
if [ -d "$APP" ]; then
  UPGRADE=1
  say "upgrading the vgrid under $PREFIX"
fi
stop_systemd_unit "${PREV_SERVICE_NAME:-}"
[ "$SERVICE_NAME" = "${PREV_SERVICE_NAME:-}" ] || stop_systemd_unit "$SERVICE_NAME"
stop_background "$STAGE/node/service/vgrid-service.sh"

if [ -d "$APP" ]; then mv "$APP" "$OLD"; fi
mv "$STAGE" "$APP"
mv -f "$CONFIG.new" "$CONFIG"
trap - EXIT
mkdir -p "$PREFIX/bin" "$DATA_DIR"
chmod 700 "$DATA_DIR"
ln -sfn ../app/bin/vgrid "$PREFIX/bin/vgrid"
ln -sfn ../app/node/service/vgrid-service.sh "$PREFIX/bin/vgrid-service"
chmod 755 "$APP/bin/vgrid" "$APP/node/service/vgrid-service.sh"
if [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then
  mkdir -p "$PATH_LINK_DIR"
  ln -sfn "$PREFIX/bin/vgrid" "$PATH_LINK_DIR/vgrid"
  ln -sfn "$PREFIX/bin/vgrid-service" "$PATH_LINK_DIR/vgrid-service"
fi
{
  echo "# written by install.sh; read by its next run"
  echo "SERVICE=$MODE"
  if [ "$MODE" = systemd ]; then echo "SERVICE_NAME=$SERVICE_NAME"; else echo "SERVICE_NAME="; fi
  echo "DATA_DIR=$DATA_DIR"
  echo "SOURCE=$SOURCE"
  echo "INSTALLED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$INSTALL_ENV"

# Loopback is down in a fresh network namespace, and the API listens there.
if command -v ip >/dev/null 2>&1 && ip -o link show lo 2>/dev/null | grep -q '<LOOPBACK>'; then
  say "bringing up the loopback interface"
  ip link set lo up || true
fi

if [ "$MODE" = systemd ]; then
  netns_line=''
  if [ -n "$NETNS" ] && [ -e "/run/netns/$NETNS" ]; then netns_line="NetworkNamespacePath=/run/netns/$NETNS"; fi
  cat >"$UNIT" <<EOF
# written by vgrid's install.sh (prefix $PREFIX)
[Unit]
Description=vgrid agent ($PREFIX)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=$PREFIX/bin/vgrid agent --config $CONFIG
Restart=always
RestartSec=2
# status 2 is a bad configuration: restarting cannot fix it
RestartPreventExitStatus=2
KillSignal=SIGTERM
# the signal goes to the agent alone: its VMs and its fencing watchdog's supervisor run
# on through a restart (the restart grace), and the agent ends them itself when it leaves
KillMode=process
TimeoutStopSec=20
LimitNOFILE=65536
$netns_line

[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload || die "systemctl daemon-reload failed"
  systemctl enable --quiet "$SERVICE_NAME.service" || die "systemctl enable $SERVICE_NAME failed"
  systemctl restart "$SERVICE_NAME.service" 9>&- || {
    journalctl -u "$SERVICE_NAME" -n 20 --no-pager >&2 || true
    die "systemctl restart $SERVICE_NAME failed"
  }
  agent_alive () { ! systemctl is-failed --quiet "$SERVICE_NAME.service"; }
  where="systemd unit $SERVICE_NAME (journalctl -u $SERVICE_NAME)"
  show_log () { journalctl -u "$SERVICE_NAME" -n 20 --no-pager >&2 || true; }
else
  # 9>&-: the supervisor must not inherit (and so hold) the install lock
  "$PREFIX/bin/vgrid-service" start >&2 9>&-
  agent_alive () { "$PREFIX/bin/vgrid-service" status >/dev/null; }
  where="background service ($PREFIX/bin/vgrid-service start|stop|restart|leave|status, log $PREFIX/log/vgrid.log)"
  show_log () { tail -n 20 "$PREFIX/log/vgrid.log" >&2 || true; }
fi

# the old code goes only now: removing its node_modules takes seconds of downtime
rm -rf "$OLD"

# 4. Wait for the API, then print the grid's join token (the API gives it to callers on
#    loopback only: with --api on another address, the token has to be asked there).
case $API_CONNECT in
  127.*|localhost:*|'[::1]':*) api_local=1 ;;
  *) api_local=0 ;;
esac
token=''
deadline=$((SECONDS + API_WAIT_SECONDS))
while :; do
  if [ "$api_local" = 1 ]; then
    if token=$("$PREFIX/bin/vgrid" token --api "$API_CONNECT" 2>/dev/null) && [ -n "$token" ]; then break; fi
  elif "$PREFIX/bin/vgrid" status --json --api "$API_CONNECT" >/dev/null 2>&1; then
    break
  fi
  if ! agent_alive; then
    show_log
    die "the agent did not start (see above; $where)"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    show_log
    die "the agent's API at $API_CONNECT did not answer within ${API_WAIT_SECONDS}s ($where)"
  fi
  sleep 0.5
done

say "vgrid $(if [ "$UPGRADE" = 1 ]; then echo upgraded; else echo installed; fi) under $PREFIX: node $NODE_NAME, data dir $DATA_DIR"
say "the agent runs as a $where"
if [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then
  say "the CLI: vgrid status   (vgrid is in $PATH_LINK_DIR)"
else
  say "the CLI: $PREFIX/bin/vgrid status --api $API_CONNECT   (to have it on PATH: export PATH=\"$PREFIX/bin:\$PATH\")"
fi
if [ -z "$token" ]; then
  say "the API at $API_CONNECT is not on loopback, so it does not give out the join token; ask an agent whose API is on loopback (vgrid token)"
  exit 0
fi
say "join other servers to this grid with: VGRID_TOKEN=<the token below> ./install.sh"
printf '%s\n' "$token"
