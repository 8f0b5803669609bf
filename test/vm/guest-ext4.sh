#!/bin/sh
# Guest script (busybox sh, inside the VM of test/harness/vm): ext4 on the
# Linux kernel NBD client, in two boots. DESTROYS the export's data.
#   write [scattered]
#           attach /dev/nbd0, mkfs.ext4, mount, write files of known content
#           and a checksum manifest (MANIFEST.sha256, inside the filesystem),
#           sync, re-read uncached, umount, e2fsck -f, detach. "scattered"
#           adds data spanning many 512 KiB store blocks: random.bin grows
#           from 16 to 24 MiB, plus 40 small random files sparse/r1..r40
#   verify  re-attach, e2fsck -f, mount read-only, check the manifest, umount,
#           e2fsck -f, detach
# Prints "SHA256 <hash>  <name>" lines (the manifest) for the host to compare
# across boots and against the image file, and "STEP <name>" before each step.
set -eu
dev=$NBD_DEVICE mnt=/mnt
step() { echo "STEP [$(cut -d" " -f1 /proc/uptime)] $*"; }

attach() {
    step "attach $NBD_HOST:$NBD_PORT export '$NBD_EXPORT' -> $dev"
    nbd-client "$NBD_HOST" "$NBD_PORT" "$dev" -N "$NBD_EXPORT" -b 4096 -t 60
    echo "SIZE $(blockdev --getsize64 "$dev")"
}
detach() {
    step "detach"
    nbd-client -d "$dev"
}
fsck() {
    step "e2fsck -f -n"
    # 0: clean. Anything else (4: errors left uncorrected) fails the script.
    e2fsck -f -n "$dev"
}
manifest() {
    (cd "$mnt" && find . -type f ! -name MANIFEST.sha256 | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum)
}

case ${1:-} in
write)
    attach
    step "mkfs.ext4"
    mkfs.ext4 -q -F -L blockgate-vm -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
    mount -t ext4 "$dev" "$mnt"
    step "write files"
    printf 'hello from the kernel NBD client\n' > "$mnt/small.txt"
    # Random data (its hashes travel in the manifest), zeros (a server may
    # store them as holes) and many small files (metadata-heavy writes).
    random_mib=16
    if [ "${2:-}" = scattered ]; then random_mib=24; fi
    dd if=/dev/urandom of="$mnt/random.bin" bs=1M count=$random_mib 2>/dev/null
    dd if=/dev/zero of="$mnt/zeros.bin" bs=1M count=4 2>/dev/null
    mkdir "$mnt/tree"
    for i in $(seq 1 200); do echo "file $i $(printf '%0200d' "$i")" > "$mnt/tree/f$i"; done
    if [ "${2:-}" = scattered ]; then
        # Small random files scattered over the block groups.
        mkdir "$mnt/sparse"
        for i in $(seq 1 40); do dd if=/dev/urandom of="$mnt/sparse/r$i" bs=4k count=$((i % 7 + 1)) 2>/dev/null; done
    fi
    manifest > "$mnt/MANIFEST.sha256"
    sync
    step "re-read after dropping caches"
    echo 3 > /proc/sys/vm/drop_caches
    (cd "$mnt" && sha256sum -c -s MANIFEST.sha256) || { echo "re-read mismatch"; exit 1; }
    sed 's/^/SHA256 /' "$mnt/MANIFEST.sha256"
    echo "DF $(df -k "$mnt" | tail -n 1)"
    step "umount"
    umount "$mnt"
    fsck
    detach
    echo "WRITE OK"
    ;;
verify)
    attach
    fsck
    mount -t ext4 -o ro "$dev" "$mnt"
    step "check manifest"
    (cd "$mnt" && sha256sum -c -s MANIFEST.sha256) || { echo "VERIFY FAILED: manifest mismatch"; exit 1; }
    # The tree as it is now (catches lost or extra files, not just changed ones).
    manifest | sed 's/^/SHA256 /'
    umount "$mnt"
    fsck
    detach
    echo "VERIFY OK"
    ;;
*)
    echo "guest: unknown mode '${1:-}'"; exit 2 ;;
esac
