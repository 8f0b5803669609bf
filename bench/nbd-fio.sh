#!/usr/bin/env bash
# NBD throughput benchmark: blockgate (raw volume) vs nbdkit-file vs qemu-nbd,
# all serving the same prefilled file over TCP on 127.0.0.1, driven by fio's
# nbd engine (libnbd; one NBD connection per fio job).
#
# Not a test. Usage:
#   bench/nbd-fio.sh                  # all servers, 3 rounds, 8 s per run
#   ROUNDS=5 RUNTIME=15 bench/nbd-fio.sh
#   SERVERS="nbdkit qemu-nbd" bench/nbd-fio.sh   # without blockgate
#   TESTS="randread-4k-qd32" bench/nbd-fio.sh
#   SERVERS="blockgate blockgate@nowaitMax=0" bench/nbd-fio.sh  # A/B a tuning: knob (docs/tuning.md)
#
# Method: the file is prefilled (random data, 1 GiB by default) before anything
# is timed. For every round, every test, the servers run one after another in
# an order rotated each round (a noisy, shared 2-core host drifts; alternating
# spreads the drift). Each run starts a fresh server, runs fio for RUNTIME
# seconds after RAMP seconds of warm-up, and stops the server. The table gives
# the median over rounds, blockgate's ratio to each peer, and each server's
# CPU time (user+system, all threads) per I/O, which a noisy host disturbs far
# less than throughput. All servers use
# the page cache (nbdkit cache=default, qemu-nbd cache=writeback, blockgate
# buffered I/O), no FUA, no flush: this measures the servers, not the disk.
#
# Needs: fio (with the nbd engine), nbdkit, qemu-nbd, nbdinfo, jq, node;
# blockgate needs `npm run build` (dist/cli/main.js).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-8}
RAMP=${RAMP:-2}
SIZE=${SIZE:-1GiB}
SERVERS=${SERVERS:-"blockgate nbdkit qemu-nbd"}
TESTS=${TESTS:-"seqwrite-1m seqread-1m randread-4k-qd32 randwrite-4k-qd32 randread-4k-4conn"}
WORK=${WORK:-$(mktemp -d /tmp/blockgate-bench.XXXXXX)}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
KEEP=${KEEP:-0}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in fio nbdkit qemu-nbd nbdinfo jq node; do
  command -v "$tool" >/dev/null || die "$tool not found (bash scripts/install-deps.sh)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"

bytes=$(node -e "
  const m = /^(\\d+)\\s*([KMGT]i?B?)?$/i.exec(process.argv[1]);
  if (!m) process.exit(1);
  const u = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').charAt(0).toLowerCase()];
  console.log(Number(m[1]) * u);" "$SIZE") || die "bad SIZE $SIZE"

FILE=$WORK/disk.img
RESULTS=$WORK/results
mkdir -p "$RESULTS"
SERVER_PID=
cleanup() {
  stop_server
  if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -f "$FILE"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- servers

stop_server() {
  [[ -n ${SERVER_PID:-} ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# start_server NAME -> sets SERVER_PID and URI; waits until it accepts NBD.
start_server() {
  local name=$1
  PORT=$((PORT + 1))
  case $name in
    nbdkit)
      # -f: stay in the foreground so $! is the server. file plugin, default cache.
      nbdkit -f -i 127.0.0.1 -p "$PORT" file file="$FILE" >"$RESULTS/$name.log" 2>&1 &
      SERVER_PID=$!
      URI="nbd://127.0.0.1:$PORT/"
      ;;
    qemu-nbd)
      # -e 8: up to 8 clients (the 4-connection test); cache=writeback is the default.
      qemu-nbd -f raw -b 127.0.0.1 -p "$PORT" -e 8 -t --cache=writeback --aio=threads --discard=unmap \
        "$FILE" >"$RESULTS/$name.log" 2>&1 &
      SERVER_PID=$!
      URI="nbd://127.0.0.1:$PORT/"
      ;;
    blockgate | blockgate+metrics | blockgate@*=*)
      # blockgate@KEY=VALUE: a variant run with one tuning: setting (docs/tuning.md), e.g.
      # SERVERS="blockgate blockgate@nowaitMax=0 nbdkit"
      # blockgate+metrics: with the Prometheus endpoint on (per-request latency histograms).
      local tuning=""
      if [[ $name == *@* ]]; then
        local knob=${name#*@}
        tuning="tuning:
  ${knob%%=*}: ${knob#*=}"
      fi
      [[ -f $ROOT/dist/cli/main.js ]] || die "blockgate not built: run npm run build (or SERVERS='nbdkit qemu-nbd')"
      local cfg=$WORK/blockgate.yaml
      # A private admin socket: the default /run/blockgate/admin.sock may be
      # held by another blockgate on this host.
      cat >"$cfg" <<EOF
log:
  level: warn
admin:
  socket: $WORK/admin.sock
listen:
  - tcp: "127.0.0.1:$PORT"
volumes:
  - name: bench
    mode: raw
    size: $bytes
    disk: $FILE
$tuning
EOF
      [[ $name == blockgate+metrics ]] && printf 'metrics:\n  listen: "127.0.0.1:%s"\n' $((PORT + 1)) >>"$cfg"
      "$ROOT/bin/blockgate" serve --config "$cfg" >"$RESULTS/$name.log" 2>&1 &
      SERVER_PID=$!
      URI="nbd://127.0.0.1:$PORT/bench"
      ;;
    *) die "unknown server $name" ;;
  esac
  for _ in $(seq 1 150); do
    if nbdinfo --size "$URI" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$RESULTS/$name.log" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  cat "$RESULTS/$name.log" >&2
  die "$name did not start within 15 s"
}

# ---------------------------------------------------------------- fio

# fio_args TEST -> the fio options for that test
fio_args() {
  case $1 in
    seqwrite-1m)        echo "--rw=write --bs=1M --iodepth=8 --numjobs=1" ;;
    seqread-1m)         echo "--rw=read --bs=1M --iodepth=8 --numjobs=1" ;;
    randread-4k-qd32)   echo "--rw=randread --bs=4k --iodepth=32 --numjobs=1" ;;
    randwrite-4k-qd32)  echo "--rw=randwrite --bs=4k --iodepth=32 --numjobs=1" ;;
    randread-4k-4conn)  echo "--rw=randread --bs=4k --iodepth=8 --numjobs=4" ;;
    *) die "unknown test $1" ;;
  esac
}

# CPU time (all threads, user+system) the server has used, in clock ticks.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
# ... and by its main thread only (for blockgate: the event loop, its bottleneck).
main_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/task/$SERVER_PID/stat"; }

run_fio() { # TEST SERVER ROUND
  local test=$1 server=$2 round=$3 out t0 t1 m0 m1
  out="$RESULTS/$test.$server.$round.json"
  t0=$(server_ticks); m0=$(main_ticks)
  # shellcheck disable=SC2046
  timeout $((RUNTIME + RAMP + 60)) fio --name="$test" --ioengine=nbd --uri="$URI" \
    $(fio_args "$test") --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
    --group_reporting --randrepeat=0 --norandommap --output-format=json --output="$out" >/dev/null \
    || die "fio failed: $test on $server (see $out, $RESULTS/$server.log)"
  t1=$(server_ticks); m1=$(main_ticks)
  # Server CPU per I/O: robust on a shared, noisy host where throughput is
  # not (the ramp is counted on both sides, assuming the same rate).
  jq -r --arg t "$test" --arg s "$server" --arg r "$round" \
     --argjson cpu "$(( t1 - t0 ))" --argjson main "$(( m1 - m0 ))" --argjson hz "$(getconf CLK_TCK)" --argjson secs "$((RUNTIME + RAMP))" \
    '.jobs[0] as $j | ($j.read.bw_bytes + $j.write.bw_bytes) as $bw | ($j.read.iops + $j.write.iops) as $iops
     | [$t, $s, $r, ($bw / 1048576), $iops, (if $iops > 0 then ($cpu / $hz) * 1e6 / ($iops * $secs) else 0 end),
        (if $iops > 0 then ($main / $hz) * 1e6 / ($iops * $secs) else 0 end)] | @tsv' \
    "$out" >>"$RESULTS/summary.tsv"
  tail -n1 "$RESULTS/summary.tsv" |
    awk -F'\t' '{printf "  %-18s %-10s round %s  %9.1f MiB/s  %9.0f IOPS  %7.1f CPU-us/IO (main thread %.1f)\n", $1, $2, $3, $4, $5, $6, $7}' >&2
}

# ---------------------------------------------------------------- main

log "work dir $WORK, file $FILE ($bytes bytes), servers: $SERVERS, $ROUNDS rounds x ${RUNTIME}s (+${RAMP}s ramp)"
log "prefilling $FILE"
rm -f "$FILE"
fio --name=prefill --filename="$FILE" --rw=write --bs=1M --size="$bytes" --ioengine=psync \
  --refill_buffers --end_fsync=1 --output=/dev/null >/dev/null
: >"$RESULTS/summary.tsv"

read -r -a servers <<<"$SERVERS"
read -r -a tests <<<"$TESTS"
n=${#servers[@]}
for round in $(seq 1 "$ROUNDS"); do
  for test in "${tests[@]}"; do
    for i in $(seq 0 $((n - 1))); do
      server=${servers[$(((i + round - 1) % n))]}
      start_server "$server"
      run_fio "$test" "$server" "$round"
      stop_server
    done
  done
done

# Median table + ratios (node: no extra dependencies).
node - "$RESULTS/summary.tsv" "$SERVERS" "$TESTS" <<'EOF'
const fs = require('fs');
const [file, serversArg, testsArg] = process.argv.slice(2);
const servers = serversArg.split(/\s+/).filter(Boolean);
const tests = testsArg.split(/\s+/).filter(Boolean);
const rows = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split('\t'));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const get = (t, s, col) => { const xs = rows.filter((r) => r[0] === t && r[1] === s).map((r) => Number(r[col])); return xs.length ? median(xs) : NaN; };
const fmt = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const peers = servers.filter((s) => !s.startsWith('blockgate'));
let head = '| test |';
let sep = '|---|';
for (const s of servers) { head += ` ${s} MiB/s | ${s} IOPS |`; sep += '---:|---:|'; }
if (servers.includes('blockgate')) for (const p of peers) { head += ` blockgate/${p} |`; sep += '---:|'; }
for (const s of servers) { head += ` ${s} CPU µs/IO (main thread) |`; sep += '---:|'; }
console.log(head); console.log(sep);
for (const t of tests) {
  let line = `| ${t} |`;
  for (const s of servers) line += ` ${fmt(get(t, s, 3), 1)} | ${fmt(get(t, s, 4), 0)} |`;
  if (servers.includes('blockgate')) for (const p of peers) line += ` ${fmt(get(t, 'blockgate', 4) / get(t, p, 4), 2)}x |`;
  for (const s of servers) line += ` ${fmt(get(t, s, 5), 1)} (${fmt(get(t, s, 6), 1)}) |`;
  console.log(line);
}
console.log(`\n(medians of ${new Set(rows.map((r) => r[2])).size} rounds; raw results in ${require('path').dirname(file)})`);
EOF
