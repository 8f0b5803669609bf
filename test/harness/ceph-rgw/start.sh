#!/usr/bin/env bash
# Throw-away single-node Ceph (Pacific 16.2, Debian bookworm packages) for the
# blockgate test suite: one ceph-mon, one ceph-osd (memstore: data in RAM),
# radosgw (beast) on 127.0.0.1, all in one temp dir, no systemd. Creates one
# S3 user and writes the coordinates to $DIR/s3.env (also printed on stdout).
#
# States: nothing -> mon up -> osd up -> rgw answering -> S3 user created ->
# "ready". On any failure every daemon this run started is signalled (by the
# PID recorded in $DIR/pids only) and $DIR is kept for inspection.
#
# Needs (root): apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw curl
#
# Env knobs (all optional):
#   CEPH_RGW_DIR   working dir (default: mktemp -d $TMPDIR/blockgate-rgw.XXXXXX); must be empty
#   RGW_PORT       S3 port (default 7480)
#   MON_PORT       mon msgr2 port (default 40300)
#   OSD_PORT_MIN   first port for osd/rgw messengers (default 40400; range +100)
#   STORE_GB       memstore capacity (default 4)
#   S3_ACCESS_KEY / S3_SECRET_KEY   keys of the S3 user
#   TIMEOUT        seconds to wait for each stage (default 120)
#   RGW_DEBUG      debug_rgw level (default 0; 1 logs every request to $DIR/log/rgw.log)
#   WATCH_PID      if set, a watchdog stops the cluster when that process exits
#                  (so a killed test runner leaves no daemons behind)
#
# Pitfalls handled here (learned the hard way):
#   - daemons run with -f and are backgrounded with stdout/stderr to files:
#     otherwise a caller reading our stdout never sees EOF;
#   - stdin of every daemon is /dev/null (a caller's pipe must not be held);
#   - msgr1 is disabled and every address is 127.0.0.1;
#   - rgw_frontends has tcp_nodelay=1 (else ~44 ms per small GET: Nagle +
#     delayed ACK);
#   - pool size 1 / min_size 1 and autoscale off, or PGs never go active;
#   - ports are checked before anything starts; stop.sh signals only PIDs whose
#     command line names this cluster's ceph.conf (PID-reuse guard).
set -euo pipefail

T_START=$(date +%s.%N)
STORE_GB=${STORE_GB:-4}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-40300}
OSD_PORT_MIN=${OSD_PORT_MIN:-40400}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-BLOCKGATETESTKEY0001}
S3_SECRET_KEY=${S3_SECRET_KEY:-blockgatetestsecret00000000000000000000001}
TIMEOUT=${TIMEOUT:-120}
HERE=$(cd "$(dirname "$0")" && pwd)

for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen curl ss; do
  command -v "$b" >/dev/null || {
    echo "missing program '$b': install the Debian packages ceph-mon ceph-osd radosgw curl (scripts/install-deps.sh)" >&2
    exit 2
  }
done

port_busy() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }
for p in "$RGW_PORT" "$MON_PORT"; do
  if port_busy "$p"; then echo "port $p is already in use (set RGW_PORT/MON_PORT)" >&2; exit 3; fi
done

DIR=${CEPH_RGW_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/blockgate-rgw.XXXXXX")}
mkdir -p "$DIR"
if [ -n "$(ls -A "$DIR")" ]; then echo "$DIR is not empty (stop.sh it and remove it first)" >&2; exit 1; fi
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR"/{run,log,mon/ceph-a,osd/ceph-0,rgw,crash}
CONF=$DIR/ceph.conf
KEYRING=$DIR/keyring
: > "$DIR/pids"
FSID=$(uuidgen)
echo "CEPH_RGW_DIR=$DIR" >&2

log() { awk -v a="$T_START" -v b="$(date +%s.%N)" -v m="$*" 'BEGIN { printf "[%6.1fs] %s\n", b - a, m }' >&2; }
fail() {
  echo "FAILED: $*" >&2; echo "--- last log lines:" >&2; tail -n 20 "$DIR"/log/*.log >&2 || true
  awk '{ print $2 }' "$DIR/pids" 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
  echo "daemons stopped; logs kept in $DIR" >&2
  exit 1
}
wait_for() { # desc, cmd...
  local desc=$1; shift; local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -gt $((TIMEOUT * 4)) ] && fail "timeout waiting for $desc"
    sleep 0.25
  done
}
bg() { # name, cmd... : daemon in foreground mode, backgrounded, PID recorded
  local name=$1; shift
  "$@" </dev/null >"$DIR/log/$name.stdout" 2>&1 &
  echo "$name $!" >> "$DIR/pids"
}

cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_port_min = $OSD_PORT_MIN
ms_bind_port_max = $((OSD_PORT_MIN + 100))
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $KEYRING
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
pid_file = $DIR/run/\$name.pid
log_file = $DIR/log/\$name.log
log_to_stderr = false
err_to_stderr = true
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
mon_data = $DIR/mon/\$cluster-\$id
mon_initial_members = a

[osd]
osd_data = $DIR/osd/\$cluster-\$id
osd_objectstore = memstore
memstore_device_bytes = $((STORE_GB * 1024 * 1024 * 1024))
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 2

[client.rgw.gw]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw_thread_pool_size = 64
debug_rgw = ${RGW_DEBUG:-0}
rgw_dns_name = localhost
log_file = $DIR/log/rgw.log
EOF

# --- keys ---------------------------------------------------------------
ceph-authtool --create-keyring "$KEYRING" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$KEYRING" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null

# --- watchdog (before any daemon, so even a failed start is cleaned up) ---
if [ -n "${WATCH_PID:-}" ]; then
  ( while kill -0 "$WATCH_PID" 2>/dev/null; do sleep 1; done
    "$HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true ) </dev/null >/dev/null 2>&1 &
  echo "$!" > "$DIR/watchdog.pid"
fi

# --- mon ----------------------------------------------------------------
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$KEYRING" </dev/null || fail "ceph-mon --mkfs"
bg mon.a ceph-mon -c "$CONF" -f -i a
CEPH=(ceph -c "$CONF" --connect-timeout 10)
wait_for "mon quorum" "${CEPH[@]}" mon stat
log "mon up"

# --- osd ----------------------------------------------------------------
OSD_UUID=$(uuidgen)
OSD_KEY=$(ceph-authtool --gen-print-key)
echo "{\"cephx_secret\": \"$OSD_KEY\"}" > "$DIR/osd-new.json"
OSD_ID=$("${CEPH[@]}" osd new "$OSD_UUID" -i "$DIR/osd-new.json" </dev/null)
[ "$OSD_ID" = 0 ] || fail "unexpected osd id '$OSD_ID'"
ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" --name osd.0 --add-key "$OSD_KEY" >/dev/null
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" --keyring "$DIR/osd/ceph-0/keyring" \
  </dev/null >"$DIR/log/osd-mkfs.log" 2>&1 || fail "ceph-osd --mkfs (see $DIR/log/osd-mkfs.log)"
bg osd.0 ceph-osd -c "$CONF" -f -i 0 --keyring "$DIR/osd/ceph-0/keyring"
osd_up() { "${CEPH[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up'; }
wait_for "osd.0 up" osd_up
log "osd up (memstore, ${STORE_GB} GiB)"

# --- rgw ----------------------------------------------------------------
"${CEPH[@]}" auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
  -o "$DIR/rgw/keyring" </dev/null
bg rgw radosgw -c "$CONF" -f -n client.rgw.gw --keyring "$DIR/rgw/keyring"
rgw_up() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$RGW_PORT/"; }
wait_for "radosgw on 127.0.0.1:$RGW_PORT" rgw_up
log "rgw up"

# --- S3 user ------------------------------------------------------------
radosgw-admin -c "$CONF" user create --uid=blockgate-test --display-name="blockgate test user" \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" </dev/null >"$DIR/user.json" 2>"$DIR/log/radosgw-admin.log" \
  || fail "radosgw-admin user create"
log "ready"

cat > "$DIR/s3.env" <<EOF
CEPH_RGW_DIR=$DIR
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
AWS_REGION=us-east-1
EOF
cat "$DIR/s3.env"
