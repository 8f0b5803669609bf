# shellcheck shell=bash
# Shared helpers for the kernel-client VM harness (sourced, not executed).

# Where built initramfs images live (outside the repo: one image serves every
# clone on the machine; it is keyed by its inputs, see build-initramfs.sh).
BLOCKGATE_VM_CACHE=${BLOCKGATE_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/blockgate-vm}

vm_log() { printf 'vm: %s\n' "$*" >&2; }
vm_die() { printf 'vm: error: %s\n' "$*" >&2; exit 2; }

# Print the guest kernel version: $BLOCKGATE_VM_KVER if set, else the newest
# /boot/vmlinuz-<ver> whose /lib/modules/<ver> provides the nbd module.
vm_kver() {
    local k v
    if [ -n "${BLOCKGATE_VM_KVER:-}" ]; then
        [ -r "/boot/vmlinuz-$BLOCKGATE_VM_KVER" ] || vm_die "no readable /boot/vmlinuz-$BLOCKGATE_VM_KVER"
        printf '%s\n' "$BLOCKGATE_VM_KVER"; return
    fi
    for k in $(printf '%s\n' /boot/vmlinuz-* | sort -rV); do
        v=${k#/boot/vmlinuz-}
        if [ -r "$k" ] && modinfo -k "$v" -n nbd >/dev/null 2>&1; then
            printf '%s\n' "$v"; return
        fi
    done
    vm_die "no /boot/vmlinuz-* with an nbd module in /lib/modules (install linux-image-amd64: scripts/install-deps.sh)"
}
