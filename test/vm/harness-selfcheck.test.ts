// Self-check of the kernel-client VM harness against a reference server
// (nbdkit's file plugin), independent of blockgate: one boot attaches the
// export, writes a known pattern with O_DIRECT, reads it back, detaches and
// exits with a chosen status. Proves the data path (host sees the guest's
// bytes in the file), exit-status propagation and the timing report.
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../harness/daemon.js';
import { startNbdkit, type NbdkitHandle } from '../harness/vm/nbdkit.js';
import { buildInitramfs, describeRun, runGuest, taggedLines, vmSkipReason } from '../harness/vm/index.js';

const skip = vmSkipReason(['nbdkit']);

const guest = `set -eu
nbd-client "$NBD_HOST" "$NBD_PORT" "$NBD_DEVICE" -N "$NBD_EXPORT" -b 4096 -t 60
echo "SIZE $(blockdev --getsize64 "$NBD_DEVICE")"
# 1 MiB at offset 4 MiB: "blockgate-vm-selfcheck" repeated, then read back uncached.
yes blockgate-vm-selfcheck | head -c 1048576 > /tmp/pattern
dd if=/tmp/pattern of="$NBD_DEVICE" bs=1M seek=4 count=1 oflag=direct 2>/dev/null
dd if="$NBD_DEVICE" of=/tmp/back bs=1M skip=4 count=1 iflag=direct 2>/dev/null
echo "WROTE $(sha256sum < /tmp/pattern | cut -d' ' -f1)"
echo "READ $(sha256sum < /tmp/back | cut -d' ' -f1)"
nbd-client -d "$NBD_DEVICE"
echo "ARGS $#:$1:$2"
exit 7
`;

describe.skipIf(skip !== undefined)('VM harness self-check (nbdkit file)', () => {
  let dir: string;
  let nbdkit: NbdkitHandle;

  beforeAll(async () => {
    buildInitramfs(); // outside the boot's timeout: the first build takes a few seconds
    dir = tempDir('blockgate-vmcheck-');
    writeFileSync(join(dir, 'disk.img'), '');
    truncateSync(join(dir, 'disk.img'), 64 << 20);
    nbdkit = await startNbdkit('check', ['file', join(dir, 'disk.img')]);
  });
  afterAll(async () => { await nbdkit?.stop(); });

  it('boots, attaches through the kernel client, moves data and reports the exit status', async () => {
    const r = await runGuest({ port: nbdkit.port, exportName: 'check', scriptText: guest, args: ["it's", 'two words'], timeoutMs: 180_000 });
    console.log(`vm self-check: exit ${r.exitCode}, boot ${r.bootSeconds ?? '?'} s (guest clock), wall ${r.wallMs} ms, accel ${r.accel}`);
    expect(r.exitCode, describeRun(r)).toBe(7);
    expect(taggedLines(r.console, 'SIZE ')).toEqual([String(64 << 20)]);
    const wrote = taggedLines(r.console, 'WROTE ');
    expect(wrote).toHaveLength(1);
    expect(taggedLines(r.console, 'READ ')).toEqual(wrote);
    expect(taggedLines(r.console, 'ARGS ')).toEqual(["2:it's:two words"]);
    expect(r.accel).toMatch(/^(kvm|tcg)$/);
    // The host sees exactly the guest's bytes.
    const onDisk = readFileSync(join(dir, 'disk.img')).subarray(4 << 20, 5 << 20);
    expect(createHash('sha256').update(onDisk).digest('hex')).toBe(wrote[0]);
  }, 180_000 + 60_000);
});
