#!/usr/bin/env bash
# blockgate snapshot upload/download vs `aws s3 cp` (Debian awscli) against
# the same Ceph RGW, same bucket, same run. Image: SIZE_MIB (default 1024) —
# first half random, second half zeros (a sparse file). ROUNDS (default 3)
# alternate which tool goes first; each round uses a fresh prefix so blockgate
# cannot deduplicate against an earlier round. Prints per-run times, medians,
# ratios (aws time / blockgate time: >1 means blockgate is faster), then the
# incremental cost (bench/snapshot-incremental.mjs: 1% of blocks changed).
#
# RGW: uses S3_ENDPOINT + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when set,
# else starts a private one with test/harness/ceph-rgw/start.sh (stopped on exit).
# Needs: node, /usr/bin/aws (apt-get install awscli), ceph packages for RGW.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
AWS=${AWS:-/usr/bin/aws}
WORK=$(mktemp -d /tmp/bg-snapbench.XXXXXX)
RGW_DIR=""
cleanup() {
  if [ -n "$RGW_DIR" ]; then test/harness/ceph-rgw/stop.sh "$RGW_DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

node node_modules/typescript/bin/tsc -p tsconfig.json >/dev/null 2>&1 || echo "note: tsc reported type errors (output emitted anyway)" >&2
if node bin/blockgate snapshot --help 2>/dev/null | grep -q "upload"; then BG=(node bin/blockgate); else BG=(node bench/snapshot-cli.mjs); fi

if [ -z "${S3_ENDPOINT:-}" ]; then
  RGW_DIR="$WORK/rgw"; mkdir -p "$RGW_DIR"
  CEPH_RGW_DIR="$RGW_DIR" RGW_PORT=${RGW_PORT:-7491} MON_PORT=${MON_PORT:-40391} OSD_PORT_MIN=${OSD_PORT_MIN:-40591} \
    STORE_GB=${STORE_GB:-6} WATCH_PID=$$ test/harness/ceph-rgw/start.sh >"$WORK/rgw.out" 2>"$WORK/rgw.err" \
    || { cat "$WORK/rgw.err" >&2; exit 1; }
  set -a; . "$RGW_DIR/s3.env"; set +a
fi
export AWS_ENDPOINT_URL="$S3_ENDPOINT" AWS_REGION=${AWS_REGION:-us-east-1} AWS_PAGER=""
BUCKET=bench-$(date +%s)
"$AWS" --endpoint-url "$S3_ENDPOINT" s3 mb "s3://$BUCKET" >/dev/null

IMG="$WORK/image.raw"
HALF=$((SIZE_MIB / 2))
head -c $((HALF * 1024 * 1024)) /dev/urandom > "$IMG"
truncate -s $((SIZE_MIB * 1024 * 1024)) "$IMG"
IMG_SHA=$(sha256sum "$IMG" | cut -d' ' -f1)
echo "image: $SIZE_MIB MiB ($HALF MiB random, rest zeros), rounds: $ROUNDS, RGW: $S3_ENDPOINT, blockgate: ${BG[*]}"

now() { date +%s.%N; }
declare -a AWS_UP AWS_DOWN BG_UP BG_DOWN
run_aws() { # round
  local p="s3://$BUCKET/aws-$1/image.raw" t0 t1 t2
  t0=$(now); "$AWS" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "$IMG" "$p"
  t1=$(now); "$AWS" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "$p" "$WORK/aws.out"
  t2=$(now)
  [ "$(sha256sum "$WORK/aws.out" | cut -d' ' -f1)" = "$IMG_SHA" ] || { echo "aws download differs!" >&2; exit 1; }
  rm -f "$WORK/aws.out"; "$AWS" --endpoint-url "$S3_ENDPOINT" s3 rm --only-show-errors "$p"
  AWS_UP+=("$(echo "$t1 - $t0" | bc)"); AWS_DOWN+=("$(echo "$t2 - $t1" | bc)")
}
run_bg() { # round
  local store="s3://$BUCKET/bg-$1" id t0 t1 t2
  t0=$(now); id=$("${BG[@]}" snapshot upload "$IMG" --volume "bench$1" --store "$store" --endpoint "$S3_ENDPOINT" 2>/dev/null)
  t1=$(now); "${BG[@]}" snapshot download "$id" "$WORK/bg.out" --store "$store" --endpoint "$S3_ENDPOINT" >/dev/null
  t2=$(now)
  [ "$(sha256sum "$WORK/bg.out" | cut -d' ' -f1)" = "$IMG_SHA" ] || { echo "blockgate download differs!" >&2; exit 1; }
  rm -f "$WORK/bg.out"; "$AWS" --endpoint-url "$S3_ENDPOINT" s3 rm --recursive --only-show-errors "$store/"
  BG_UP+=("$(echo "$t1 - $t0" | bc)"); BG_DOWN+=("$(echo "$t2 - $t1" | bc)")
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run_aws "$r"; run_bg "$r"; else run_bg "$r"; run_aws "$r"; fi
  printf 'round %d: aws up %6.2fs down %6.2fs | blockgate up %6.2fs down %6.2fs\n' "$r" "${AWS_UP[-1]}" "${AWS_DOWN[-1]}" "${BG_UP[-1]}" "${BG_DOWN[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mau=$(median "${AWS_UP[@]}"); mad=$(median "${AWS_DOWN[@]}"); mbu=$(median "${BG_UP[@]}"); mbd=$(median "${BG_DOWN[@]}")
echo
printf '%-22s %10s %10s %12s\n' "median of $ROUNDS" "aws s3 cp" "blockgate" "ratio (aws/bg)"
printf '%-22s %9.2fs %9.2fs %11.2fx\n' "upload $SIZE_MIB MiB" "$mau" "$mbu" "$(echo "$mau / $mbu" | bc -l)"
printf '%-22s %9.2fs %9.2fs %11.2fx\n' "download $SIZE_MIB MiB" "$mad" "$mbd" "$(echo "$mad / $mbd" | bc -l)"
printf '%-22s %8.0f MiB/s %6.0f MiB/s (logical bytes per second)\n' "upload throughput" "$(echo "$SIZE_MIB / $mau" | bc -l)" "$(echo "$SIZE_MIB / $mbu" | bc -l)"
printf '%-22s %8.0f MiB/s %6.0f MiB/s\n' "download throughput" "$(echo "$SIZE_MIB / $mad" | bc -l)" "$(echo "$SIZE_MIB / $mbd" | bc -l)"
echo
echo "incremental (1% of blocks changed):"
AWS_ENDPOINT_URL="$S3_ENDPOINT" node bench/snapshot-incremental.mjs "$IMG" "s3://$BUCKET/inc" 1
