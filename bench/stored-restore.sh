#!/usr/bin/env bash
# Stored-volume restore from a Ceph RGW. Not a test. Two parts:
#  (b) full restore: a 1 GiB (SIZE_MIB) volume of random data is written into
#      a stored volume over NBD (nbdcopy), `blockgate snapshot create`, daemon
#      stopped; then ROUNDS (default 3) alternating runs of
#        blockgate restore ID --to FILE        (default --concurrency)
#        aws s3 cp --recursive                 the same image, uploaded
#                                              beforehand as 512 KiB objects
#      (both outputs are checked against the image). Medians, ratio
#      (aws time / blockgate time; target >= 1.5x).
#  (c) lazy restore, time to first read: a LAZY_SIZE (default 10GiB) stored
#      volume with 64 MiB of random data at 4 spread offsets (rest zeros) is
#      snapshotted; a new daemon on a fresh disk with `restoreFrom: ID` is
#      started and timed from spawn to the first successful `nbdinfo` and to
#      the first 4 KiB read (nbdcopy of 4 KiB at a data offset, compared).
#      Target <= 2 s.
# RGW: uses S3_ENDPOINT + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set,
# else starts a private one with test/harness/ceph-rgw/start.sh (stopped on exit).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
LAZY_SIZE=${LAZY_SIZE:-10GiB}
PARTS=${PARTS:-"b c"}   # which parts to run
AWS=${AWS:-/usr/bin/aws}
WORK=$(mktemp -d /tmp/bg-restore.XXXXXX)
PORT=${PORT:-$((20000 + RANDOM % 20000))}
# nbdsh runs "python3" from PATH; libnbd's module is in the system python.
export PATH="/usr/bin:$PATH"
for t in jq node nbdinfo nbdcopy nbdsh bc; do command -v $t >/dev/null || { echo "$t missing" >&2; exit 1; }; done
PID= RGW_DIR=
stopd() { [[ -n $PID ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; }; return 0; }
cleanup() {
  stopd
  [[ -n $RGW_DIR ]] && { test/harness/ceph-rgw/stop.sh "$RGW_DIR" >/dev/null 2>&1 || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
if [[ -z ${S3_ENDPOINT:-} ]]; then
  RGW_DIR="$WORK/rgw"; mkdir -p "$RGW_DIR"
  CEPH_RGW_DIR="$RGW_DIR" RGW_PORT=${RGW_PORT:-7493} MON_PORT=${MON_PORT:-40393} OSD_PORT_MIN=${OSD_PORT_MIN:-40593} \
    STORE_GB=${STORE_GB:-12} WATCH_PID=$$ test/harness/ceph-rgw/start.sh >"$WORK/rgw.out" 2>"$WORK/rgw.err" \
    || { cat "$WORK/rgw.err" >&2; exit 1; }
  set -a; . "$RGW_DIR/s3.env"; set +a
fi
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_PAGER=""
S3="$AWS --endpoint-url $S3_ENDPOINT"
BUCKET=restore-$(date +%s)
$S3 s3 mb "s3://$BUCKET" >/dev/null
STORE="s3://$BUCKET/gw"
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

start() { # NAME SIZE DISK LOGDIR [extra yaml]
  PORT=$((PORT + 1))
  cat > "$WORK/$1.yaml" <<YAML
log: {level: warn}
admin: {socket: $WORK/$1.sock}
listen: [{tcp: 127.0.0.1:$PORT}]
store: {url: $STORE, endpoint: $S3_ENDPOINT, region: $AWS_REGION, accessKeyId: $AWS_ACCESS_KEY_ID, secretAccessKey: $AWS_SECRET_ACCESS_KEY, pathStyle: true}
volumes:
  - {name: $1, mode: stored, size: $2, disk: $3, writeLog: {dir: $4, size: 2GiB}${5:-}}
YAML
  T_SPAWN=$(now)
  node bin/blockgate serve -c "$WORK/$1.yaml" > "$WORK/$1.log" 2>&1 &
  PID=$!
}
wait_ready() { # NAME -> prints seconds since spawn of the first successful nbdinfo
  for _ in $(seq 1 1500); do
    if nbdinfo --size "nbd://127.0.0.1:$PORT/$1" >/dev/null 2>&1; then echo "$(now) - $T_SPAWN" | bc; return 0; fi
    sleep 0.02
  done
  cat "$WORK/$1.log" >&2; return 1
}
snap() { node bin/blockgate snapshot create "$1" --admin-socket "$WORK/$1.sock" --json --timeout 600s | jq -r '.id'; }

echo "restore bench: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), RGW $S3_ENDPOINT"
# ---- (b) full restore vs aws s3 cp --recursive ----
if [[ " $PARTS " == *" b "* ]]; then
IMG="$WORK/image.raw"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$IMG"
IMG_SHA=$(sha256sum "$IMG" | cut -d' ' -f1)
start full "${SIZE_MIB}MiB" "$WORK/full.img" "$WORK/full-log"
wait_ready full >/dev/null
t0=$(now); nbdcopy --flush "$IMG" "nbd://127.0.0.1:$PORT/full"; t1=$(now)
ID=$(snap full); t2=$(now)
printf 'prepare: nbdcopy %d MiB %.1fs, snapshot create %.1fs -> %s\n' "$SIZE_MIB" "$(echo "$t1-$t0"|bc)" "$(echo "$t2-$t1"|bc)" "$ID"
stopd; rm -rf "$WORK/full.img" "$WORK/full-log"
STORED_BYTES=$($S3 s3 ls --recursive --summarize "$STORE/" | awk '/Total Size/ {print $3}')
mkdir -p "$WORK/parts"; split -b 512K -a 5 -d "$IMG" "$WORK/parts/p"
$S3 s3 cp --recursive --only-show-errors "$WORK/parts" "s3://$BUCKET/aws/"; rm -rf "$WORK/parts"

declare -a TB TA
run_bg() {
  local t0 t1; rm -f "$WORK/out.img"
  t0=$(now); AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID node bin/blockgate restore "$ID" --to "$WORK/out.img" --store "$STORE" --endpoint "$S3_ENDPOINT" --path-style --json >/dev/null; t1=$(now)
  [[ $(sha256sum "$WORK/out.img" | cut -d' ' -f1) == "$IMG_SHA" ]] || { echo "blockgate restore differs!" >&2; exit 1; }
  rm -f "$WORK/out.img"; TB+=("$(echo "$t1 - $t0" | bc)")
}
run_aws() {
  local t0 t1; rm -rf "$WORK/awsout"
  t0=$(now); $S3 s3 cp --recursive --only-show-errors "s3://$BUCKET/aws/" "$WORK/awsout"; t1=$(now)
  [[ $(cat "$WORK"/awsout/p* | sha256sum | cut -d' ' -f1) == "$IMG_SHA" ]] || { echo "aws download differs!" >&2; exit 1; }
  rm -rf "$WORK/awsout"; TA+=("$(echo "$t1 - $t0" | bc)")
}
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then run_bg; run_aws; else run_aws; run_bg; fi
  printf 'round %d: blockgate restore %6.2fs | aws s3 cp --recursive %6.2fs\n' "$r" "${TB[-1]}" "${TA[-1]}"
done
mb=$(median "${TB[@]}"); ma=$(median "${TA[@]}")
echo
printf '%-34s %10s %10s %14s\n' "(b) full restore, median of $ROUNDS" "blockgate" "aws s3 cp" "ratio (aws/bg)"
printf '%-34s %9.2fs %9.2fs %13.2fx\n' "$SIZE_MIB MiB random (store $((STORED_BYTES >> 20)) MiB)" "$mb" "$ma" "$(echo "$ma / $mb" | bc -l)"
printf '%-34s %6.0f MiB/s %6.0f MiB/s\n' "throughput" "$(echo "$SIZE_MIB / $mb" | bc -l)" "$(echo "$SIZE_MIB / $ma" | bc -l)"

fi

# ---- (c) lazy restore: time to first read ----
if [[ " $PARTS " == *" c "* ]]; then
start lazy "$LAZY_SIZE" "$WORK/lazy.img" "$WORK/lazy-log"
wait_ready lazy >/dev/null
LBYTES=$(nbdinfo --size "nbd://127.0.0.1:$PORT/lazy")
head -c $((16 << 20)) /dev/urandom > "$WORK/chunk"
OFFS="0 $((LBYTES / 3 / 1048576 * 1048576)) $((LBYTES / 2 / 1048576 * 1048576)) $((LBYTES - (16 << 20)))"
for o in $OFFS; do
  nbdsh -u "nbd://127.0.0.1:$PORT/lazy" -c "h.pwrite(open('$WORK/chunk','rb').read(), $o); h.flush()"
done
LID=$(snap lazy)
stopd; rm -rf "$WORK/lazy.img" "$WORK/lazy-log"
O2=$(echo "$OFFS" | cut -d' ' -f3)
EXPECT=$(head -c 4096 "$WORK/chunk" | sha256sum | cut -d' ' -f1)
start lazy "$LAZY_SIZE" "$WORK/lazy2.img" "$WORK/lazy2-log" ", restoreFrom: $LID"
ready=$(wait_ready lazy)
got=$(nbdsh -u "nbd://127.0.0.1:$PORT/lazy" -c "import hashlib,sys; sys.stdout.write(hashlib.sha256(h.pread(4096, $O2)).hexdigest())")
first=$(echo "$(now) - $T_SPAWN" | bc)
[[ $got == "$EXPECT" ]] || { echo "lazy first read differs!" >&2; exit 1; }
sleep 1
prog=$(node bin/blockgate status --json --admin-socket "$WORK/lazy.sock" | jq -c '.volumes[0].details.restore')
stopd
echo
printf '%-34s %s\n' "(c) lazy restore $LAZY_SIZE" "(64 MiB random at 4 offsets, rest zeros; snapshot $LID)"
printf '%-34s %.2fs\n' "spawn -> first nbdinfo" "$ready"
printf '%-34s %.2fs (target <= 2 s)\n' "spawn -> first 4 KiB read (data)" "$first"
printf '%-34s %s\n' "restore progress 1 s later" "$prog"
printf '%-34s %s\n' "load average (end)" "$(cut -d' ' -f1-3 /proc/loadavg)"
fi
