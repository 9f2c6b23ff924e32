#!/usr/bin/env bash
# vgrid-service: runs the agent as a supervised background service on servers
# without systemd (install.sh sets it up; with systemd the unit does this job).
#
#   vgrid-service start     start the supervisor (which starts the agent) in the background
#   vgrid-service stop      stop supervisor and agent, by the PIDs in their pid files
#                           (the node stays in the grid: its VMs run on for the next run)
#   vgrid-service restart   stop, then start (the new run adopts the VMs)
#   vgrid-service leave     stop, and the node leaves the grid: its VMs stop
#   vgrid-service status    print both PIDs; exit 0 when running, 3 when stopped
#   vgrid-service run       the supervisor loop itself (what `start` launches)
#
# Everything lives under the install prefix (this file is PREFIX/app/node/service/,
# linked as PREFIX/bin/vgrid-service; VGRID_PREFIX overrides):
#   PREFIX/etc/vgrid.json       the agent's config (--config)
#   PREFIX/run/supervisor.pid   the supervisor's PID (written by the supervisor itself)
#   PREFIX/run/agent.pid        the agent's PID while it runs
#   PREFIX/log/vgrid.log        supervisor and agent output
#
# The supervisor restarts the agent when it dies (backoff 1 s doubling to 30 s, reset
# after a minute of uptime), except after exit status 2: a bad configuration that a
# restart cannot fix. SIGTERM to the supervisor stops the agent with SIGTERM (it stays
# in the grid, its VMs run on), SIGINT with SIGINT (it leaves), and then the supervisor.
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
if [ -n "${VGRID_PREFIX:-}" ]; then
  PREFIX=$VGRID_PREFIX
else
  PREFIX=$(cd "$(dirname "$self")/../../.." && pwd)
fi
CONFIG=$PREFIX/etc/vgrid.json
RUN_DIR=$PREFIX/run
LOG_DIR=$PREFIX/log
SUP_PID=$RUN_DIR/supervisor.pid
AGENT_PID=$RUN_DIR/agent.pid
LOG=$LOG_DIR/vgrid.log
VGRID=$PREFIX/bin/vgrid
STOP_TIMEOUT=${VGRID_STOP_TIMEOUT:-20}
LOG_MAX_BYTES=$((10 * 1024 * 1024))

say () { printf 'vgrid-service: %s\n' "$*"; }
die () { printf 'vgrid-service: %s\n' "$*" >&2; exit 1; }
stamp () { printf '%s supervisor: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*"; }

# The PID in a pid file, printed only if that process is alive and is one of ours
# (its command line names this prefix), so a recycled PID is never signalled.
live_pid () {
  local file=$1 pid cmd
  [ -r "$file" ] || return 1
  read -r pid <"$file" 2>/dev/null || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case $cmd in
    *"$PREFIX/"*) printf '%s\n' "$pid" ;;
    *) return 1 ;;
  esac
}

gone () {
  local pid
  for pid in "$@"; do
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && return 1
  done
  return 0
}

stop () {
  local sig=${1:-TERM} sup agent waited=0
  sup=$(live_pid "$SUP_PID" || true)
  agent=$(live_pid "$AGENT_PID" || true)
  if [ -z "$sup" ] && [ -z "$agent" ]; then
    rm -f "$SUP_PID" "$AGENT_PID"
    say "not running"
    return 0
  fi
  # The supervisor passes the signal on to the agent and waits for it; an agent left
  # without its supervisor gets it directly.
  if [ -n "$sup" ]; then kill -"$sig" "$sup" 2>/dev/null || true; fi
  if [ -n "$agent" ] && [ -z "$sup" ]; then kill -"$sig" "$agent" 2>/dev/null || true; fi
  while ! gone "$sup" "$agent"; do
    if [ "$waited" -ge $((STOP_TIMEOUT * 10)) ]; then
      say "still running after ${STOP_TIMEOUT}s: sending SIGKILL"
      for p in "$agent" "$sup"; do
        if [ -n "$p" ]; then kill -KILL "$p" 2>/dev/null || true; fi
      done
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$SUP_PID" "$AGENT_PID"
  say "stopped (supervisor ${sup:--}, agent ${agent:--})"
}

start () {
  local sup agent i
  [ -r "$CONFIG" ] || die "no config at $CONFIG (is vgrid installed under $PREFIX?)"
  [ -x "$VGRID" ] || die "no $VGRID (is vgrid installed under $PREFIX?)"
  if sup=$(live_pid "$SUP_PID"); then
    say "already running (supervisor $sup)"
    return 0
  fi
  # an agent whose supervisor died would hold the ports: stop it first
  if agent=$(live_pid "$AGENT_PID"); then
    say "stopping agent $agent left without its supervisor"
    stop >/dev/null
  fi
  rm -f "$SUP_PID" "$AGENT_PID"
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if [ -f "$LOG" ] && [ "$(stat -c %s "$LOG")" -gt "$LOG_MAX_BYTES" ]; then
    mv -f "$LOG" "$LOG.1"
  fi
  # Its own session, no terminal, SIGHUP ignored: it outlives the shell that started
  # it. It keeps no descriptor of that shell's either (a pipe held open would make
  # whoever reads the installer's output wait forever).
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid nohup "$self" run </dev/null >>"$LOG" 2>&1
  ) &
  for ((i = 0; i < 100; i++)); do
    if sup=$(live_pid "$SUP_PID"); then
      say "started (supervisor $sup, log $LOG)"
      return 0
    fi
    sleep 0.05
  done
  die "the supervisor did not start; see $LOG"
}

status () {
  local sup agent
  sup=$(live_pid "$SUP_PID" || true)
  agent=$(live_pid "$AGENT_PID" || true)
  if [ -n "$sup" ]; then
    say "running: supervisor ${sup}, agent ${agent:-(restarting)}; log $LOG"
    return 0
  fi
  if [ -n "$agent" ]; then
    say "agent $agent runs without its supervisor (vgrid-service restart fixes that)"
    return 0
  fi
  say "stopped"
  return 3
}

# The supervisor loop. Its PID is the one `start` waits for in supervisor.pid.
run () {
  set +e
  mkdir -p "$RUN_DIR"
  echo $$ >"$SUP_PID.tmp" && mv -f "$SUP_PID.tmp" "$SUP_PID"
  local stopping=0 sig=TERM cur='' code started backoff=1
  trap 'stopping=1; sig=TERM; [ -n "$cur" ] && kill -TERM "$cur" 2>/dev/null' TERM
  trap 'stopping=1; sig=INT; [ -n "$cur" ] && kill -INT "$cur" 2>/dev/null' INT
  trap '' HUP
  stamp "started (pid $$)"
  while [ "$stopping" = 0 ]; do
    started=$(date +%s)
    "$VGRID" agent --config "$CONFIG" </dev/null &
    cur=$!
    # a stop that came before $cur was set must still reach the agent
    if [ "$stopping" = 1 ]; then kill -"$sig" "$cur" 2>/dev/null; fi
    echo "$cur" >"$AGENT_PID.tmp" && mv -f "$AGENT_PID.tmp" "$AGENT_PID"
    stamp "agent started (pid $cur)"
    # wait returns early when a trapped signal arrives: wait again until it is gone
    while :; do
      wait "$cur"
      code=$?
      [ -d "/proc/$cur" ] || break
    done
    rm -f "$AGENT_PID"
    [ "$stopping" = 1 ] && { stamp "agent stopped (status $code)"; break; }
    if [ "$code" = 2 ]; then
      stamp "agent exited with status 2 (bad configuration, see above): not restarting"
      break
    fi
    if [ $(($(date +%s) - started)) -ge 60 ]; then backoff=1; fi
    stamp "agent exited with status $code: restarting in ${backoff}s"
    sleep "$backoff" &
    cur=$!
    wait "$cur"
    kill "$cur" 2>/dev/null
    backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
  done
  cur=''
  rm -f "$SUP_PID" "$AGENT_PID"
  stamp "exiting"
  exit 0
}

case "${1:-}" in
  start) start ;;
  stop) stop TERM ;;
  leave) stop INT ;;
  restart) stop TERM; start ;;
  status) status ;;
  run) run ;;
  *)
    echo "usage: vgrid-service start|stop|restart|leave|status" >&2
    exit 2
    ;;
esac
