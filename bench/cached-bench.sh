#!/usr/bin/env bash
# Cached-volume benchmark (not a test). Three measurements, each alternating
# blockgate and its peer over ROUNDS rounds (a shared 2-core host drifts),
# medians reported:
#   A. cache-hit reads: a cached volume whose blocks are all in the chunk
#      cache vs a raw volume of the same data, same daemon, fio nbd engine
#      (seqread-1m, randread-4k-qd32). Target >= 0.9x.
#   B. cold sequential read: the cache wiped, daemon restarted, one
#      sequential reader (nbdcopy --connections=1) vs parallel GETs of the
#      same block objects with the AWS SDK (bench/cached-get-peer.mjs,
#      CONCURRENCY=16), on Ceph RGW. Target >= 0.8x.
#   C. sequential writes (fio seqwrite-1m, RUNTIME s) into a cached volume
#      whose write log (LOG_MIB) is smaller than what is written, so the
#      uploader must keep up: fio's rate, and upload throughput/lag.
# Usage: bench/cached-bench.sh   (ROUNDS=3 SIZE_MIB=256 RUNTIME=10 LOG_MIB=64 PARTS=ABC;
#   PARTS=A runs only A, without the RGW; B and C always run together;
#   TUNING='{nowaitMax: 0}' adds a tuning: section, docs/tuning.md)
# A also reports the daemon's CPU time per I/O (utime+stime of the whole
# process from /proc/PID/stat over ramp + runtime, divided by fio's I/Os):
# the number that shows per-request overhead independent of how busy the
# shared host is.
# RGW: S3_ENDPOINT + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set, else a
# private one from test/harness/ceph-rgw/start.sh (stopped on exit).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-10}
LOG_MIB=${LOG_MIB:-64}
WORK=$(mktemp -d /tmp/blockgate-cached-bench.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
PID=
RGW_DIR=
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
  stop_daemon
  if [ -n "$RGW_DIR" ]; then test/harness/ceph-rgw/stop.sh "$RGW_DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
for t in fio nbdcopy nbdinfo jq node curl bc; do command -v $t >/dev/null || { log "$t missing"; exit 1; }; done
[ -f dist/cli/main.js ] || { log "run npm run build"; exit 1; }

stop_daemon() {
  [ -n "$PID" ] || return 0
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}
# start_daemon CONFIG_BODY (YAML after the common header)
start_daemon() {
  PORT=$((PORT + 1))
  { printf 'log:\n  level: warn\nadmin:\n  socket: %s/admin.sock\nlisten:\n  - tcp: "127.0.0.1:%s"\ndataDir: %s/data\n' "$WORK" "$PORT" "$WORK"
    [ -n "${TUNING:-}" ] && printf 'tuning: %s\n' "$TUNING"; cat; } >"$WORK/cfg.yaml"
  bin/blockgate serve --config "$WORK/cfg.yaml" >>"$WORK/daemon.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do
    nbdinfo --size "nbd://127.0.0.1:$PORT/cached" >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.1
  done
  tail -20 "$WORK/daemon.log" >&2; exit 1
}
vstatus() { curl -s --unix-socket "$WORK/admin.sock" http://admin/v1/status | jq '.volumes[] | select(.name == "cached")'; }
wait_drained() {
  for _ in $(seq 1 3000); do
    [ "$(vstatus | jq '.details.log.records')" = 0 ] && return 0
    sleep 0.2
  done
  log "not drained"; exit 1
}
# The cached volume under test (YAML list item), the same in every part.
cached_volume_yaml() {
  cat <<EOF
  - name: cached
    mode: cached
    size: ${SIZE_MIB}MiB
    cache: {dir: $WORK/cache, size: $((SIZE_MIB * 5 / 4))MiB}
    writeLog: {dir: $WORK/log, size: $((SIZE_MIB * 2))MiB}
EOF
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
daemon_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
fio_bw() { # URI ARGS... -> bytes/s; also appends the daemon's CPU µs per I/O to $WORK/cpu.last
  local uri=$1; shift
  local t0 t1
  t0=$(daemon_ticks)
  fio --name=b --ioengine=nbd --uri="$uri" --size="${SIZE_MIB}M" --time_based --runtime="$RUNTIME" --ramp_time=2 \
    --output-format=json --output="$WORK/fio.json" "$@" >/dev/null 2>&1
  t1=$(daemon_ticks)
  # CPU time of the whole daemon process (all threads) over ramp + runtime, per I/O at fio's rate.
  jq --argjson cpu "$((t1 - t0))" --argjson hz "$(getconf CLK_TCK)" --argjson secs "$((RUNTIME + 2))" \
    '([.jobs[] | (.read.iops + .write.iops)] | add) as $iops | if $iops > 0 then ($cpu / $hz) * 1e6 / ($iops * $secs) else 0 end' \
    "$WORK/fio.json" >"$WORK/cpu.last"
  jq '[.jobs[] | (.read.bw_bytes + .write.bw_bytes)] | add' "$WORK/fio.json"
}

IMG=$WORK/img
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$IMG"
echo "cached-volume benchmark: $SIZE_MIB MiB random data, $ROUNDS rounds, ${RUNTIME}s fio runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

PARTS=${PARTS:-ABC}
# ------------------------------------------------------------ A: cache hits vs raw
if [[ $PARTS == *A* ]]; then
cp "$IMG" "$WORK/raw.img"
start_daemon <<EOF
store:
  url: $WORK/store
volumes:
  - name: raw
    mode: raw
    disk: $WORK/raw.img
$(cached_volume_yaml)
EOF
nbdcopy --flush "$IMG" "nbd://127.0.0.1:$PORT/cached"
wait_drained
nbdcopy "nbd://127.0.0.1:$PORT/cached" null:
for test in "seqread-1m:--rw=read --bs=1M --iodepth=8" "randread-4k-qd32:--rw=randread --bs=4k --iodepth=32"; do
  name=${test%%:*}; args=${test#*:}
  : >"$WORK/a.raw"; : >"$WORK/a.cached"; : >"$WORK/c.raw"; : >"$WORK/c.cached"
  for r in $(seq 1 "$ROUNDS"); do
    for v in $( ((r % 2)) && echo "raw cached" || echo "cached raw"); do
      # shellcheck disable=SC2086
      fio_bw "nbd://127.0.0.1:$PORT/$v" $args >>"$WORK/a.$v"
      cat "$WORK/cpu.last" >>"$WORK/c.$v"
    done
  done
  raw=$(median <"$WORK/a.raw"); cached=$(median <"$WORK/a.cached")
  printf 'A %-18s raw %8.1f MiB/s  cached(hit) %8.1f MiB/s  ratio %.2f   daemon CPU/IO raw %.1f us  cached %.1f us\n' "$name" \
    "$(echo "$raw/1048576" | bc -l)" "$(echo "$cached/1048576" | bc -l)" "$(echo "$cached/$raw" | bc -l)" \
    "$(median <"$WORK/c.raw")" "$(median <"$WORK/c.cached")"
  echo "  runs (MiB/s) raw: $(awk '{printf "%.1f ", $1/1048576}' "$WORK/a.raw") cached: $(awk '{printf "%.1f ", $1/1048576}' "$WORK/a.cached")"
done
echo "A cache after: $(vstatus | jq -c '.details.cache | {hitRatio, bytesCached, misses}')"
stop_daemon
rm -rf "$WORK/store" "$WORK/cache" "$WORK/log" "$WORK/data" "$WORK/raw.img"
fi

# B and C share the RGW (and C overwrites B's volume): PARTS=A stops here.
[[ $PARTS == *[BC]* ]] || exit 0
# ------------------------------------------------------------ B: cold sequential read vs parallel GETs (RGW)
if [ -z "${S3_ENDPOINT:-}" ]; then
  RGW_DIR=$(mktemp -d /tmp/blockgate-rgw.XXXXXX)
  log "starting a private Ceph RGW"
  CEPH_RGW_DIR=$RGW_DIR STORE_GB=${STORE_GB:-4} WATCH_PID=$$ test/harness/ceph-rgw/start.sh >"$WORK/rgw.out" 2>&1 || { cat "$WORK/rgw.out" >&2; exit 1; }
  set -a; . "$RGW_DIR/s3.env"; set +a
fi
export AWS_REGION=${AWS_REGION:-us-east-1}
BUCKET=cached-bench-$RANDOM$RANDOM
node -e "
const { S3Client, CreateBucketCommand } = require('@aws-sdk/client-s3');
const c = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION });
c.send(new CreateBucketCommand({ Bucket: '$BUCKET' })).then(() => c.destroy());"
S3CFG="store:
  url: s3://$BUCKET/gw
  endpoint: $S3_ENDPOINT
  pathStyle: true"
cold_cfg() {
  cat <<EOF
$S3CFG
volumes:
$(cached_volume_yaml)
EOF
}
start_daemon < <(cold_cfg)
nbdcopy --flush "$IMG" "nbd://127.0.0.1:$PORT/cached"
wait_drained
stop_daemon
: >"$WORK/b.bg"; : >"$WORK/b.peer"
for r in $(seq 1 "$ROUNDS"); do
  for who in $( ((r % 2)) && echo "bg peer" || echo "peer bg"); do
    if [ "$who" = bg ]; then
      rm -rf "$WORK/cache"
      start_daemon < <(cold_cfg)
      t0=$(date +%s.%N)
      nbdcopy --connections=1 --requests=16 "nbd://127.0.0.1:$PORT/cached" null:
      t1=$(date +%s.%N)
      stop_daemon
      echo "$SIZE_MIB / ($t1 - $t0)" | bc -l >>"$WORK/b.bg"
    else
      out=$(node bench/cached-get-peer.mjs "s3://$BUCKET/gw" cached)
      echo "$out" | jq '.bytes / 1048576 / .seconds' >>"$WORK/b.peer"
    fi
  done
done
bg=$(median <"$WORK/b.bg"); peer=$(median <"$WORK/b.peer")
printf 'B cold-seqread      blockgate %8.1f MiB/s  aws-sdk parallel GETs %8.1f MiB/s  ratio %.2f\n' "$bg" "$peer" "$(echo "$bg/$peer" | bc -l)"

# ------------------------------------------------------------ C: writes while uploading (RGW)
rm -rf "$WORK/cache" "$WORK/log"
{ echo "$S3CFG"; cat <<EOF
volumes:
  - name: cached
    mode: cached
    size: ${SIZE_MIB}MiB
    cache: {dir: $WORK/cache, size: $((SIZE_MIB / 2))MiB}
    writeLog: {dir: $WORK/log, size: ${LOG_MIB}MiB}
EOF
} | sed 's/name: cached/name: cached/' >"$WORK/c.yaml"
start_daemon <"$WORK/c.yaml" || true
# (a fresh volume name per run would be cleaner; the store keeps the volume from B: overwriting it is the point)
w=$(fio_bw "nbd://127.0.0.1:$PORT/cached" --rw=write --bs=1M --iodepth=8)
st=$(vstatus | jq -c '.details | {logUsedPercent, waitingWriters: .log.waitingWriters, upload: {state: .upload.state, throughputBytesPerSec: .upload.throughputBytesPerSec, lagSeconds: .upload.lagSeconds}}')
printf 'C seqwrite-1m (log %s MiB < data written)  %8.1f MiB/s   status at end: %s\n' "$LOG_MIB" "$(echo "$w/1048576" | bc -l)" "$st"
stop_daemon
