// Block status tells the truth about zeros, in every mode (test/nbd/modes.ts):
// every extent that BLOCK_STATUS (base:allocation) reports as a hole or as
// zero reads back as all zeros, and the whole volume reads back as a
// byte-exact model. Checked with nbdsh over the whole volume (and from
// random unaligned start offsets) after seeded random writes, after
// WRITE_ZEROES with and without FAST_ZERO / NO_HOLE, after TRIM, after a
// snapshot (whose downloaded content must equal the model) and the upload
// of the log, after a daemon restart (reopen from the same local state),
// and after more changes on top of the uploaded root.
//
// A cached volume is the interesting one: its extents come from the live
// root and the log (docs/cached-volumes.md) and move as uploads commit. A
// stored volume reports one data extent (no extents capability: modes.ts,
// MODE_CAPS), so for it the check is the model comparison.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectDaemonAlive, nbdshOk, requireTools } from '../harness/nbd-tools.js';
import { mulberry32 } from '../harness/prng.js';
import { MODES, MODE_CAPS, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const SIZE = 32 * MiB;
const BLOCK = 64 * KiB; // modes.ts: blockSize of the stored and cached volumes

let m: ModesDaemon;

beforeAll(async () => {
  requireTools('nbdsh');
  m = await startModesDaemon('blockgate-zero-extents-', [{ name: 'z', size: '32MiB' }]);
});

afterEach(() => expectDaemonAlive(m.d));

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

type Op =
  | { op: 'write'; off: number; len: number; seed: number }
  | { op: 'zero'; off: number; len: number; fast: boolean; noHole: boolean }
  | { op: 'trim'; off: number; len: number };

/** `n` seeded operations: writes, zeroes (every flag combination) and trims, half of them block-aligned. */
function ops(rnd: () => number, n: number, kinds: Array<Op['op']>): Op[] {
  const out: Op[] = [];
  for (let i = 0; i < n; i++) {
    const aligned = rnd() < 0.5;
    const len = aligned ? BLOCK * (1 + Math.floor(rnd() * 8)) : 1 + Math.floor(rnd() * 3 * BLOCK);
    const off = aligned ? BLOCK * Math.floor(rnd() * ((SIZE - len) / BLOCK)) : Math.floor(rnd() * (SIZE - len));
    const kind = kinds[Math.floor(rnd() * kinds.length)]!;
    if (kind === 'write') out.push({ op: 'write', off, len, seed: Math.floor(rnd() * 2 ** 31) });
    else if (kind === 'zero') out.push({ op: 'zero', off, len, fast: rnd() < 0.5, noHole: rnd() < 0.5 });
    else out.push({ op: 'trim', off, len });
  }
  return out;
}

/**
 * Python: apply(OPS) to the export and the model (the file MODEL), then
 * check(label): the zero-extent and model checks; prints RESULT with stats.
 */
const SCRIPT = String.raw`
import json, random
M = 1024 * 1024
size = h.get_size()
assert size == len(model), (size, len(model))
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
stats = {'applied': 0, 'fast_refused': 0, 'zero_extents': 0, 'zero_bytes': 0, 'data_bytes': 0, 'queries': 0}

def apply(ops):
    for o in ops:
        off, n = o['off'], o['len']
        if o['op'] == 'write':
            data = random.Random(o['seed']).randbytes(n)
            h.pwrite(data, off)
            model[off:off + n] = data
        elif o['op'] == 'zero':
            flags = (nbd.CMD_FLAG_FAST_ZERO if o['fast'] else 0) | (nbd.CMD_FLAG_NO_HOLE if o['noHole'] else 0)
            try:
                h.zero(n, off, flags)
                model[off:off + n] = bytes(n)
            except nbd.Error as e:
                # Only a device without fast zero may refuse, with ENOTSUP, and then nothing changed.
                assert o['fast'] and not FAST_OK and e.errnum == 95, (o, e.errnum, str(e))
                stats['fast_refused'] += 1
        else:
            old = bytes(model[off:off + n])
            h.trim(n, off)
            got = h.pread(n, off)
            if TRIM_ZEROES:
                assert got == bytes(n), ('trimmed range does not read as zeros', o)
            else:
                # TRIM is advisory: byte by byte, old data or zero.
                for i in range(n):
                    assert got[i] == 0 or got[i] == old[i], ('trimmed byte neither old nor zero', o, i)
            model[off:off + n] = got
        stats['applied'] += 1
    h.flush()

def block_status(off, n):
    got = []
    def cb(ctx, offset, entries, err):
        assert ctx == nbd.CONTEXT_BASE_ALLOCATION, ctx
        for i in range(0, len(entries), 2):
            got.append((entries[i], entries[i + 1]))
        return 0
    h.block_status(n, off, cb)
    stats['queries'] += 1
    assert len(got) > 0, (off, n)
    return got

def check_range(label, off, n):
    """Walks block status over [off, off+n): every hole/zero extent reads as zeros (and is zero in the model)."""
    end = off + n
    while off < end:
        for (length, flags) in block_status(off, end - off):
            length = min(length, end - off)
            assert length > 0, (label, off, flags)
            if flags & (nbd.STATE_HOLE | nbd.STATE_ZERO):
                stats['zero_extents'] += 1
                stats['zero_bytes'] += length
                for o in range(off, off + length, 4 * M):
                    k = min(4 * M, off + length - o)
                    got = h.pread(k, o)
                    if got != bytes(k):
                        bad = o + next(i for i in range(k) if got[i] != 0)
                        raise AssertionError((label, 'extent reported', flags, 'at', off, '+', length, 'reads non-zero at', bad))
                    assert model[o:o + k] == bytes(k), (label, 'model is not zero in a zero extent at', o)
            else:
                stats['data_bytes'] += length
            off += length
            if off >= end:
                break

def check(label, rng):
    check_range(label, 0, size)
    for i in range(16):
        off = rng.randrange(0, size - 1)
        check_range(label + ' (from %d)' % off, off, rng.randrange(1, size - off + 1))
    for o in range(0, size, 4 * M):
        k = min(4 * M, size - o)
        if h.pread(k, o) != model[o:o + k]:
            bad = o + next(i for i in range(k) if h.pread(1, o + i)[0] != model[o + i])
            raise AssertionError((label, 'content differs from the model at', bad))
`;

describe.each(MODES)('block status zero extents read as zeros: %s export', (mode: Mode) => {
  it('after writes, WRITE_ZEROES (fast / no-hole), TRIM, a snapshot and upload, a restart, and changes on top', async () => {
    const seed = 4242 + MODES.indexOf(mode);
    const rnd = mulberry32(seed);
    const modelFile = join(m.dir, `model-${mode}.bin`);
    writeFileSync(modelFile, Buffer.alloc(SIZE));
    const totals = { applied: 0, fast_refused: 0, zero_extents: 0, zero_bytes: 0, queries: 0 };

    /** Applies `list` (may be empty) and checks; the model lives in modelFile between scripts. */
    const phase = async (label: string, list: Op[]): Promise<void> => {
      const r = await nbdshOk(String.raw`
        model = bytearray(open(${JSON.stringify(modelFile)}, 'rb').read())
        FAST_OK = ${MODE_CAPS[mode].fastZero ? 'True' : 'False'}
        TRIM_ZEROES = ${mode === 'raw' ? 'False' : 'True'}
        exec(${JSON.stringify(SCRIPT)})
        apply(json.loads(${JSON.stringify(JSON.stringify(list))}))
        check(${JSON.stringify(`${mode} seed ${seed}: ${label}`)}, random.Random(${Math.floor(rnd() * 2 ** 31)}))
        open(${JSON.stringify(modelFile)}, 'wb').write(model)
        print('RESULT ' + json.dumps(stats))
      `, { uri: m.uri(mode, 'z'), baseAllocation: true, prelude: 'import json, random', timeoutMs: 110_000 });
      const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '))!;
      const s = JSON.parse(line.slice(7)) as typeof totals;
      for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += s[k];
    };
    const model = (): Buffer => readFileSync(modelFile);

    await phase('writes', ops(rnd, 60, ['write']));
    await phase('write zeroes', ops(rnd, 60, ['zero', 'zero', 'write']));
    await phase('trims', ops(rnd, 40, ['trim', 'write']));
    if (mode !== 'raw') {
      // A snapshot holds exactly the model; then (cached) the log drains into the live root.
      const snap = await m.snapshot(mode, 'z');
      expect((await m.snapshotContent(snap)).equals(model()), `snapshot ${snap} equals the model`).toBe(true);
      expect((await m.content(mode, 'z')).equals(model())).toBe(true);
      await phase('after snapshot and upload', []);
    }
    await m.restart();
    await phase('after a restart', []);
    await phase('changes on top', ops(rnd, 60, ['write', 'zero', 'trim']));
    if (mode !== 'raw') {
      expect((await m.content(mode, 'z')).equals(model())).toBe(true);
      await phase('changes on top, uploaded', []);
    }

    // The run did what it claims: many zero extents checked, every op applied.
    expect(totals.applied).toBe(220);
    if (MODE_CAPS[mode].extents) {
      expect(totals.zero_extents).toBeGreaterThan(100);
      expect(totals.zero_bytes).toBeGreaterThan(SIZE);
    } else {
      expect(totals.zero_extents).toBe(0);
    }
    expect(totals.fast_refused > 0).toBe(!MODE_CAPS[mode].fastZero);
  });
});
