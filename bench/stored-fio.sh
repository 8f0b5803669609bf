#!/usr/bin/env bash
# Stored-volume write throughput vs a raw volume, same daemon build, same run:
# fio's nbd engine (libnbd, one connection per job) against blockgate serving
# a raw volume and a stored volume (write log on the same file system, store
# on the local file system, uploader running). Rounds alternate the order.
# Also prints the daemon's CPU time (all threads) per MiB written, which a noisy
# host disturbs less than throughput.
# Not a test. Usage: bench/stored-fio.sh   (ROUNDS=3 RUNTIME=8 SIZE=1GiB TESTS=...)
# Target: stored >= 0.7x raw (docs/stored-volumes.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-8}
SIZE=${SIZE:-1GiB}
TESTS=${TESTS:-"seqwrite-1m randwrite-4k-qd32"}
WORK=${WORK:-$(mktemp -d /tmp/blockgate-stored-bench.XXXXXX)}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
for t in fio jq node; do command -v $t >/dev/null || { echo "$t missing" >&2; exit 1; }; done
PID=
stop() { [[ -n $PID ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; }; return 0; }
trap 'stop; rm -rf "$WORK"' EXIT

start() { # MODE
  PORT=$((PORT + 1))
  rm -rf "$WORK/$1"; mkdir -p "$WORK/$1"
  local vol
  if [[ $1 == raw ]]; then
    vol="  - {name: v, mode: raw, size: $SIZE, disk: $WORK/raw/disk.img}"
  else
    vol="  - {name: v, mode: stored, size: $SIZE, disk: $WORK/stored/disk.img, writeLog: {dir: $WORK/stored/log, size: 4GiB}, uploadInterval: ${UPLOAD_INTERVAL:-1s}}"
  fi
  cat > "$WORK/$1/config.yaml" <<YAML
log: {level: warn}
admin: {socket: $WORK/$1/admin.sock}
listen: [{tcp: 127.0.0.1:$PORT}]
store: {url: $WORK/$1/store}
volumes:
$vol
YAML
  node "$ROOT/bin/blockgate" serve -c "$WORK/$1/config.yaml" > "$WORK/$1/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do nbdinfo --size "nbd://127.0.0.1:$PORT/v" >/dev/null 2>&1 && return 0; sleep 0.2; done
  cat "$WORK/$1/daemon.log" >&2; exit 1
}

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
runfio() { # TEST -> "MiB/s CPU-ms-per-MiB" (daemon CPU, all threads, over the whole fio run incl. ramp)
  local rw bs qd t0 t1 bw
  case $1 in
    seqwrite-1m) rw=write bs=1M qd=8 ;;
    randwrite-4k-qd32) rw=randwrite bs=4k qd=32 ;;
    *) echo "unknown test $1" >&2; exit 1 ;;
  esac
  t0=$(ticks)
  bw=$(fio --name=b --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/v" --rw=$rw --bs=$bs --iodepth=$qd --size="$SIZE" \
      --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json 2>/dev/null | sed -n "/^{/,\$p" | jq '.jobs[0].write.bw_bytes / 1048576')
  t1=$(ticks)
  echo "$bw $(echo "($t1 - $t0) * 1000 / $(getconf CLK_TCK) / ($bw * ($RUNTIME + 1))" | bc -l)"
}

declare -A R C
for round in $(seq 1 "$ROUNDS"); do
  order="raw stored"; (( round % 2 == 0 )) && order="stored raw"
  for test in $TESTS; do
    for mode in $order; do
      start "$mode"; read -r v c < <(runfio "$test"); stop
      R[$test,$mode]="${R[$test,$mode]:-} $v"
      C[$test,$mode]="${C[$test,$mode]:-} $c"
      printf '%s round %d %-18s %-6s %8.1f MiB/s %6.2f CPU-ms/MiB load %s\n' "$(date +%T)" "$round" "$test" "$mode" "$v" "$c" "$(cut -d' ' -f1 /proc/loadavg)" >&2
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '%-18s %10s %10s %7s %14s %14s\n' TEST RAW STORED RATIO RAW-CPUms/MiB STORED-CPUms/MiB
for test in $TESTS; do
  r=$(echo "${R[$test,raw]}" | median); s=$(echo "${R[$test,stored]}" | median)
  rc=$(echo "${C[$test,raw]}" | median); sc=$(echo "${C[$test,stored]}" | median)
  printf '%-18s %10.1f %10.1f %6.2fx %14.2f %14.2f\n' "$test" "$r" "$s" "$(echo "$s / $r" | bc -l)" "$rc" "$sc"
done
echo "(medians of $ROUNDS rounds; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
