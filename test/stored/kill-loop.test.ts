// SIGKILL loop: a writer (nbdsh, libnbd) writes numbered 4 KiB records into
// slots of a stored volume and flushes every few writes; the daemon is killed
// with SIGKILL at a random moment; on restart every write acknowledged before
// the writer's last completed flush must be there (the slot holds that
// record or a later one, never an older one, never a torn one). The uploader
// runs meanwhile (markers, uploads, releases), so crashes also hit it.
// Cycles: BLOCKGATE_KILL_CYCLES (default 20); bench/stored-kill-loop.sh runs a long one.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { nbdsh, prng, requireTools, sleep } from '../harness/nbd-tools.js';

const CYCLES = Number(process.env.BLOCKGATE_KILL_CYCLES ?? 20);
const SLOTS = 256;

const WRITER = (base: number) => `
import struct, sys
SLOTS = ${SLOTS}
def rec(c):
    return b'BGK1' + struct.pack('<Q', c) + bytes([c & 0xff]) * (4096 - 12)
for s in range(SLOTS):
    b = h.pread(4096, s * 4096)
    if b == bytes(4096):
        print('S', s, 0)
    elif b[:4] == b'BGK1':
        c = struct.unpack('<Q', b[4:12])[0]
        ok = b == rec(c)
        print('S', s, c if ok else -1)
    else:
        print('S', s, -1)
sys.stdout.flush()
print('GO'); sys.stdout.flush()
c = ${base}
while True:
    c += 1
    h.pwrite(rec(c), (c % SLOTS) * 4096)
    print('W', c)
    if c % 7 == 0:
        h.flush()
        print('F', c)
    sys.stdout.flush()
`;

describe('stored volume: SIGKILL loop', () => {
  let dir: string;
  let daemon: DaemonHandle | undefined;
  beforeAll(() => {
    requireTools('nbdsh');
    dir = tempDir('blockgate-kill-');
  });
  afterAll(async () => { await daemon?.kill(); });

  it(`every write acknowledged before the last completed flush survives ${CYCLES} SIGKILLs`, async () => {
    const config = {
      store: { url: join(dir, 'store') },
      volumes: [{ name: 'k', mode: 'stored', size: '8MiB', disk: join(dir, 'k.img'), writeLog: { dir: join(dir, 'k-log'), size: '64MiB' }, blockSize: '64KiB', uploadInterval: '200ms' }],
    };
    const rnd = prng(42);
    /** Per slot: the lowest counter allowed on restart (flushed), and the highest written. */
    const minimum = new Array<number>(SLOTS).fill(0);
    const maximum = new Array<number>(SLOTS).fill(0);
    let base = 0;
    let checkedSlots = 0;
    let totalWrites = 0;
    let totalFlushes = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      daemon = await startDaemon(config, { dir: tempDir('blockgate-kill-cfg-'), timeoutMs: 60_000 });
      const writer = nbdsh(WRITER(base), { uri: daemon.uri('k'), timeoutMs: 60_000 });
      await sleep(800 + Math.floor(rnd() * 1500));
      await daemon.kill();
      const r = await writer;
      const lines = r.stdout.split('\n');
      expect(lines.includes('GO'), `cycle ${cycle}: writer did not get to verify and write\n${r.stdout.slice(0, 2000)}\n${r.stderr}`).toBe(true);
      for (const l of lines) {
        const m = /^S (\d+) (-?\d+)$/.exec(l);
        if (!m) continue;
        const slot = Number(m[1]);
        const c = Number(m[2]);
        expect(c, `cycle ${cycle}: slot ${slot} holds a torn or foreign record`).toBeGreaterThanOrEqual(0);
        expect(c, `cycle ${cycle}: slot ${slot} lost a flushed write (holds ${c}, flushed ${minimum[slot]})`).toBeGreaterThanOrEqual(minimum[slot]!);
        expect(c, `cycle ${cycle}: slot ${slot} holds a record never written`).toBeLessThanOrEqual(maximum[slot]!);
        checkedSlots++;
        // What survived is now the floor (it has been read back after a restart: it is on the disk and in the log/store).
        minimum[slot] = c;
      }
      let flushedUpTo = base;
      let last = base;
      for (const l of lines) {
        const w = /^W (\d+)$/.exec(l);
        if (w) last = Number(w[1]);
        const f = /^F (\d+)$/.exec(l);
        if (f) flushedUpTo = Number(f[1]);
      }
      // Writes up to `last + 1` may have reached the daemon (the one in flight when it died).
      for (let c = base + 1; c <= last + 1; c++) maximum[c % SLOTS] = Math.max(maximum[c % SLOTS]!, c);
      for (let c = base + 1; c <= flushedUpTo; c++) minimum[c % SLOTS] = Math.max(minimum[c % SLOTS]!, c);
      totalWrites += last - base;
      totalFlushes += flushedUpTo > base ? 1 : 0;
      base = last + 2;
    }
    expect(totalWrites, 'the writer barely wrote: the loop tested nothing').toBeGreaterThan(CYCLES * 20);
    expect(totalFlushes).toBeGreaterThan(CYCLES / 2);
    expect(checkedSlots).toBe(CYCLES * SLOTS);
    // Final check after a clean restart.
    daemon = await startDaemon(config, { dir: tempDir('blockgate-kill-cfg-'), timeoutMs: 60_000 });
    const r = await nbdsh(WRITER(base).replace("c = " + base + "\nwhile True", "c = " + base + "\nwhile False"), { uri: daemon.uri('k'), timeoutMs: 60_000 });
    for (const l of r.stdout.split('\n')) {
      const m = /^S (\d+) (-?\d+)$/.exec(l);
      if (m) expect(Number(m[2])).toBeGreaterThanOrEqual(minimum[Number(m[1])]!);
    }
    expect(await daemon.stop()).toBe(0);
  }, 900_000);
});
