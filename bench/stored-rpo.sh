#!/usr/bin/env bash
# RPO of a stored volume under sustained writes: fio's nbd engine writes at
# RATE (default 50m = 50 MiB/s) for RUNTIME (default 60 s) to a stored volume
# whose store is a Ceph RGW; every second `blockgate status --json` is
# sampled for the volume's upload lag (seconds = age of the oldest write not
# yet in the store). Prints max / median / p90 lag during the write phase
# and how long the uploader needs to drain after fio stops.
# Target: max lag <= 5 s at 50 MiB/s (docs/stored-volumes.md). Not a test.
#
# RGW: uses S3_ENDPOINT + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set,
# else starts a private one with test/harness/ceph-rgw/start.sh (stopped on exit).
# Usage: bench/stored-rpo.sh   (RATE=50m RUNTIME=60 SIZE=4GiB UPLOAD_INTERVAL=1s)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RATE=${RATE:-50m}
RUNTIME=${RUNTIME:-60}
SIZE=${SIZE:-4GiB}
AWS=${AWS:-/usr/bin/aws}
WORK=$(mktemp -d /tmp/bg-rpo.XXXXXX)
PORT=${PORT:-$((20000 + RANDOM % 20000))}
for t in fio jq node nbdinfo; do command -v $t >/dev/null || { echo "$t missing" >&2; exit 1; }; done
PID= RGW_DIR=
cleanup() {
  [[ -n $PID ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  [[ -n $RGW_DIR ]] && { test/harness/ceph-rgw/stop.sh "$RGW_DIR" >/dev/null 2>&1 || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z ${S3_ENDPOINT:-} ]]; then
  RGW_DIR="$WORK/rgw"; mkdir -p "$RGW_DIR"
  CEPH_RGW_DIR="$RGW_DIR" RGW_PORT=${RGW_PORT:-7492} MON_PORT=${MON_PORT:-40392} OSD_PORT_MIN=${OSD_PORT_MIN:-40592} \
    STORE_GB=${STORE_GB:-12} WATCH_PID=$$ test/harness/ceph-rgw/start.sh >"$WORK/rgw.out" 2>"$WORK/rgw.err" \
    || { cat "$WORK/rgw.err" >&2; exit 1; }
  set -a; . "$RGW_DIR/s3.env"; set +a
fi
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_PAGER=""
BUCKET=rpo-$(date +%s)
"$AWS" --endpoint-url "$S3_ENDPOINT" s3 mb "s3://$BUCKET" >/dev/null

cat > "$WORK/config.yaml" <<YAML
log: {level: warn}
admin: {socket: $WORK/admin.sock}
listen: [{tcp: 127.0.0.1:$PORT}]
store: {url: s3://$BUCKET/gw, endpoint: $S3_ENDPOINT, region: $AWS_REGION, accessKeyId: $AWS_ACCESS_KEY_ID, secretAccessKey: $AWS_SECRET_ACCESS_KEY, pathStyle: true}
volumes:
  - {name: v, mode: stored, size: $SIZE, disk: $WORK/disk.img, writeLog: {dir: $WORK/log, size: 4GiB}, uploadInterval: ${UPLOAD_INTERVAL:-1s}}
YAML
node bin/blockgate serve -c "$WORK/config.yaml" > "$WORK/daemon.log" 2>&1 &
PID=$!
for _ in $(seq 1 150); do nbdinfo --size "nbd://127.0.0.1:$PORT/v" >/dev/null 2>&1 && break; sleep 0.2; done
nbdinfo --size "nbd://127.0.0.1:$PORT/v" >/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }

sample() { # -> "lagSeconds lagBytes state"
  node bin/blockgate status --json --admin-socket "$WORK/admin.sock" 2>/dev/null \
    | jq -r '.volumes[] | select(.name=="v") | .details.upload | "\(.lagSeconds // 0) \(.lagBytes // 0) \(.state)"'
}
echo "RPO bench: fio nbd rate=$RATE for ${RUNTIME}s, volume $SIZE, RGW $S3_ENDPOINT, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
fio --name=rpo --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/v" --rw=write --bs=1M --iodepth=4 --size="$SIZE" \
    --rate="$RATE" --time_based --runtime="$RUNTIME" --output-format=json > "$WORK/fio.json" 2>"$WORK/fio.err" &
FIO=$!
: > "$WORK/lag.txt"
t0=$(date +%s.%N)
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$PID/stat"; }   # daemon user+sys CPU seconds (USER_HZ 100)
c0=$(cpu)
while kill -0 "$FIO" 2>/dev/null; do
  sleep 1 & tick=$!   # one sample per second, or per status call when that is slower
  s=$(sample || true); t=$(echo "$(date +%s.%N) - $t0" | bc)
  [[ -n $s ]] && { echo "$t $s" >> "$WORK/lag.txt"; printf '%6.1fs lag %s s, %s bytes, %s\n' "$t" $s >&2; }
  wait $tick
done
c1=$(cpu)
wait "$FIO" || { cat "$WORK/fio.err" >&2; exit 1; }
# Drain: how long until the lag is back to 0 after the writes stop.
td=$(date +%s.%N); drain=timeout
for _ in $(seq 1 300); do
  s=$(sample || true); set -- $s
  if [[ ${1:-x} == 0 && ${2:-x} == 0 ]]; then drain=$(echo "$(date +%s.%N) - $td" | bc); break; fi
  sleep 1
done
bw=$(sed -n '/^{/,$p' "$WORK/fio.json" | jq '.jobs[0].write.bw_bytes / 1048576')
n=$(wc -l < "$WORK/lag.txt")
max=$(awk '{print $2}' "$WORK/lag.txt" | sort -g | tail -1)
med=$(awk '{print $2}' "$WORK/lag.txt" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
p90=$(awk '{print $2}' "$WORK/lag.txt" | sort -g | awk '{a[NR]=$1} END {i=int(NR*0.9); if (i<1) i=1; print a[i]}')
maxb=$(awk '{print $3}' "$WORK/lag.txt" | sort -g | tail -1)
echo
printf '%-28s %s\n' "fio write bandwidth" "$(printf '%.1f MiB/s' "$bw")"
printf '%-28s %s\n' "samples" "$n"
printf '%-28s %s\n' "upload lag max" "$max s (target <= 5 s)"
printf '%-28s %s\n' "upload lag median" "$med s"
printf '%-28s %s\n' "upload lag p90" "$p90 s"
printf '%-28s %s\n' "lag bytes max" "$(echo "$maxb / 1048576" | bc) MiB"
printf '%-28s %s\n' "drain after writes stop" "$drain s"
printf '%-28s %s\n' "daemon CPU during writes" "$(echo "($c1 - $c0) / $RUNTIME" | bc -l | xargs printf '%.2f') cores"
printf '%-28s %s\n' "load average (end)" "$(cut -d' ' -f1-3 /proc/loadavg)"
grep -E '"level":"(error|fatal)"' "$WORK/daemon.log" | tail -5 >&2 || true
