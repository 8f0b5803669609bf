#!/usr/bin/env bash
# Usage: run-guest.sh HOST_PORT EXPORT_NAME GUEST_SCRIPT [ARGS...]
#
# Boots the Debian kernel from /boot in qemu (KVM if usable, else TCG) with
# the initramfs from build-initramfs.sh, runs GUEST_SCRIPT (busybox sh) with
# ARGS inside it, streams the serial console to stdout and exits with the
# guest script's exit status. The NBD server must already listen on
# 127.0.0.1:HOST_PORT. In the guest script:
#   nbd-client "$NBD_HOST" "$NBD_PORT" "$NBD_DEVICE" -N "$NBD_EXPORT"
#
# The guest's only network path is one qemu user-mode forward (restrict=on:
# nothing else on the host or beyond is reachable):
#   guest 10.0.2.100:10809  ->  host 127.0.0.1:HOST_PORT
# BLOCKGATE_VM_FWD picks how qemu reaches the server:
#   chardev (default) guestfwd=...-tcp:127.0.0.1:HOST_PORT,nodelay=on. qemu
#           connects when it starts, so the server must already listen and
#           must tolerate an idle, unanswered handshake while the guest boots
#           (5-15 s under TCG); the guest gets exactly ONE NBD connection per
#           boot (re-attach in a new boot)
#   relay   guestfwd=...-cmd:socat: a fresh server connection per guest
#           connection (re-attach, nbd-client -C N), but each write request
#           spanning several packets stalls ~40 ms (Nagle on libslirp's exec
#           socket pair)
#
# Exit status: the guest script's (143 if it outlived the guest timeout and
# was killed in the guest); 124 if the VM itself ran out of time; 125 if it
# stopped without reporting a status; 2 on usage or setup errors.
# Environment: BLOCKGATE_VM_TIMEOUT (whole VM, seconds, default 180),
# BLOCKGATE_VM_MEM (MiB, 1024), BLOCKGATE_VM_SMP (2), BLOCKGATE_VM_ACCEL
# (auto|kvm|tcg), BLOCKGATE_VM_CPU (qemu -cpu; default probed for KVM, "max"
# for TCG), BLOCKGATE_VM_APPEND (extra kernel arguments), BLOCKGATE_VM_LOG
# (also save the console log there), plus those of build-initramfs.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

[ $# -ge 3 ] || { sed -n '2p' "$0" | sed 's/^# //' >&2; exit 2; }
HOST_PORT=$1 EXPORT_NAME=$2 GUEST_SCRIPT=$3
shift 3
if ! [[ $HOST_PORT =~ ^[0-9]+$ ]] || [ "$HOST_PORT" -lt 1 ] || [ "$HOST_PORT" -gt 65535 ]; then
    vm_die "bad HOST_PORT: $HOST_PORT"
fi
[ -r "$GUEST_SCRIPT" ] || vm_die "cannot read $GUEST_SCRIPT"
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing (scripts/install-deps.sh installs it)"

TIMEOUT=${BLOCKGATE_VM_TIMEOUT:-180}
[[ $TIMEOUT =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -ge 10 ] || vm_die "bad BLOCKGATE_VM_TIMEOUT: $TIMEOUT"
KVER=$(vm_kver)
KERNEL=/boot/vmlinuz-$KVER
BASE_INITRD=$("$HERE/build-initramfs.sh")

# Accelerator and CPU model: the first KVM CPU model with which qemu can
# create and reset a q35 machine, else TCG. (Under nested virtualisation
# "-cpu host" can abort on MSR 0x10a, so it is retried without
# arch-capabilities.) A /dev/kvm provided by PVM (kvm_pvm module) only runs
# PVM-enabled guest kernels; a stock kernel hangs there, so auto uses TCG.
probe() {
    (echo quit | timeout 20 qemu-system-x86_64 -machine q35 -accel "$1" -cpu "$2" \
        -nodefaults -display none -monitor stdio -S) >/dev/null 2>&1
}
kvm_cpu() {
    local c
    for c in ${BLOCKGATE_VM_CPU:-host host,-arch-capabilities qemu64}; do
        if probe kvm "$c"; then echo "$c"; return 0; fi
    done
    return 1
}
ACCEL=${BLOCKGATE_VM_ACCEL:-auto} CPU=${BLOCKGATE_VM_CPU:-}
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -d /sys/module/kvm_pvm ]; then
        vm_log "/dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel: using TCG"
    elif [ -r /dev/kvm ] && [ -w /dev/kvm ] && CPU=$(kvm_cpu); then
        ACCEL=kvm
    fi
elif [ "$ACCEL" = kvm ] && [ -z "$CPU" ]; then
    CPU=$(kvm_cpu) || CPU=host
fi
case $ACCEL in
    kvm) ;;
    tcg) CPU=${BLOCKGATE_VM_CPU:-max} ;;
    *) vm_die "bad BLOCKGATE_VM_ACCEL: $ACCEL" ;;
esac

tmp=$(mktemp -d)
qpid=
cleanup() {
    if [ -n "$qpid" ]; then kill "$qpid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# Per-run cpio with the script and its environment, appended to the base
# image (the kernel unpacks concatenated cpio archives in order).
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
mkdir -p "$tmp/run/vm"
cp "$GUEST_SCRIPT" "$tmp/run/vm/guest.sh"
{
    echo "NBD_HOST=10.0.2.100 NBD_PORT=10809 NBD_DEVICE=/dev/nbd0"
    echo "NBD_EXPORT=$(q "$EXPORT_NAME")"
    echo "VM_ACCEL=$ACCEL VM_GUEST_TIMEOUT=$((TIMEOUT > 40 ? TIMEOUT - 30 : TIMEOUT - 5))"
    echo "export NBD_HOST NBD_PORT NBD_DEVICE NBD_EXPORT VM_ACCEL"
    printf 'set --'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo
} > "$tmp/run/vm/env"
(cd "$tmp/run" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) | gzip -n > "$tmp/run.cpio.gz"
cat "$BASE_INITRD" "$tmp/run.cpio.gz" > "$tmp/initrd"

# Host side of the guest forward (",," is an escaped comma in -netdev). The
# relay's stderr goes to a log, not into the NBD stream ($tmp is a mktemp
# path: no quotes, spaces or commas).
FWD_MODE=${BLOCKGATE_VM_FWD:-chardev}
case $FWD_MODE in
    chardev) FWD="tcp:127.0.0.1:$HOST_PORT,,nodelay=on" ;;
    relay)
        command -v socat >/dev/null || vm_die "socat missing (scripts/install-deps.sh installs it)"
        FWD="cmd:/bin/sh -c 'exec socat -b 262144 STDIO TCP:127.0.0.1:$HOST_PORT,,nodelay 2>>$tmp/relay.log'" ;;
    *) vm_die "bad BLOCKGATE_VM_FWD: $FWD_MODE" ;;
esac

vm_log "kernel $KVER, accel $ACCEL (cpu $CPU), forward 10.0.2.100:10809 -> 127.0.0.1:$HOST_PORT ($FWD_MODE), timeout ${TIMEOUT}s"
start=$(date +%s%N)
# qemu runs in the background so that a TERM to this script stops it too; its
# console file exists before tail looks for it.
: > "$tmp/console.raw"
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel "$ACCEL" -machine q35 -cpu "$CPU" \
    -smp "${BLOCKGATE_VM_SMP:-2}" -m "${BLOCKGATE_VM_MEM:-1024}" \
    -nodefaults -no-user-config -display none -no-reboot \
    -chardev stdio,id=con,signal=off -serial chardev:con \
    -netdev "user,id=n0,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:10809-$FWD" \
    -device virtio-net-pci,netdev=n0,romfile= \
    -kernel "$KERNEL" -initrd "$tmp/initrd" \
    -append "console=ttyS0 panic=-1 loglevel=4 ${BLOCKGATE_VM_APPEND:-}" \
    < /dev/null > "$tmp/console.raw" 2>&1 &
qpid=$!
tail -n +1 -f --pid="$qpid" "$tmp/console.raw" | sed -u 's/\r$//' &
tailpid=$!
set +e
wait "$qpid"
qrc=$?
set -e
qpid=
wait "$tailpid" 2>/dev/null || true
sed 's/\r$//' "$tmp/console.raw" > "$tmp/console.log"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
wall=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
if [ -n "${BLOCKGATE_VM_LOG:-}" ]; then cp "$tmp/console.log" "$BLOCKGATE_VM_LOG"; fi
if [ -s "$tmp/relay.log" ]; then vm_log "relay errors:"; cat "$tmp/relay.log" >&2; fi

status=$(grep -aE '^GUEST-EXIT=[0-9]+$' "$tmp/console.log" | tail -n 1 | cut -d= -f2 || true)
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    vm_log "VM timed out after ${TIMEOUT}s (qemu killed)"
    exit 124
elif [ -z "$status" ]; then
    vm_log "no GUEST-EXIT line (qemu exit $qrc after ${wall}s; see its output above)"
    exit 125
fi
vm_log "guest exit $status, qemu exit $qrc, wall ${wall}s (accel $ACCEL)"
exit "$status"
