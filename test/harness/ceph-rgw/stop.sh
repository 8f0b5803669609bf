#!/usr/bin/env bash
# Stop a cluster started by start.sh. Only the PIDs recorded in DIR/pids are
# signalled, and only if their command line names DIR/ceph.conf (guard against
# PID reuse). The data is throw-away, so every daemon gets KILL at once
# (instant); DIR is then removed if it is under /tmp, /var/tmp or $TMPDIR.
# KEEP=1: graceful TERM (rgw first, then osd, then mon; KILL after 10 s) and
# DIR is kept for inspection.
# Usage: stop.sh DIR
set -uo pipefail
DIR=${1:-${CEPH_RGW_DIR:-}}
[ -n "$DIR" ] && [ -f "$DIR/pids" ] || { echo "usage: $0 DIR (the CEPH_RGW_DIR start.sh printed)" >&2; exit 1; }
DIR=$(cd "$DIR" && pwd)

alive() { kill -0 "$1" 2>/dev/null; }
ours() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$DIR/ceph.conf"; }
pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$DIR/pids"; }
SIG=TERM; [ "${KEEP:-0}" = 1 ] || SIG=KILL
stop_group() { # names...
  local pids=() p n
  for n in "$@"; do
    p=$(pid_of "$n"); [ -n "$p" ] || continue
    if alive "$p" && ours "$p"; then kill -"$SIG" "$p"; pids+=("$p"); fi
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  for _ in $(seq 1 100); do
    local any=0
    for p in "${pids[@]}"; do alive "$p" && any=1; done
    [ "$any" = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if alive "$p" && ours "$p"; then echo "PID $p did not exit on TERM; sending KILL" >&2; kill -KILL "$p"; fi
  done
}
if [ "$SIG" = KILL ]; then
  stop_group rgw osd.0 mon.a
else
  stop_group rgw; stop_group osd.0; stop_group mon.a
fi
# the watchdog (if any) is a subshell of start.sh: stop it unless it is us
if [ -f "$DIR/watchdog.pid" ]; then
  w=$(cat "$DIR/watchdog.pid")
  if [ -n "$w" ] && [ "$w" != "$$" ] && [ "$w" != "$PPID" ] && alive "$w"; then kill -TERM "$w" 2>/dev/null || true; fi
fi

if [ "${KEEP:-0}" != 1 ]; then
  tmp=${TMPDIR:-/tmp}; tmp=${tmp%/}
  case "$DIR" in
    /tmp/?*|/var/tmp/?*|"$tmp"/?*) rm -rf "$DIR" ;;
    *) echo "not removing $DIR (outside /tmp); remove it yourself" >&2 ;;
  esac
fi
echo "stopped"
