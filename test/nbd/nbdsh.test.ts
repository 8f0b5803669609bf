// libnbd's Python API (nbdsh, run with /usr/bin/python3) against a real
// blockgate daemon serving every volume as a raw, a stored and a cached
// export (test/nbd/modes.ts), each case run per mode: pipelined out-of-order
// replies, unaligned I/O against a model, the errno the server returns for
// each kind of bad request (strict mode off so libnbd sends them), oversized
// requests, zero/trim/block status, FUA, fast zero, flush, cache, and clients
// that vanish with requests in flight; plus a read-only raw export (readOnly
// is a raw-volume setting: src/daemon/config.ts).
//
// Scripts assert in Python (a failed assert exits non-zero with the
// traceback) and print one JSON line ("RESULT {...}") for assertions here.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectDaemonAlive, nbdsh, nbdshOk, requireTools, type RunResult } from '../harness/nbd-tools.js';
import { MODES, MODE_CAPS, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;
const EPERM = 1;
const EINVAL = 22;
const ENOSPC = 28;
const EOVERFLOW = 75;
const ENOTSUP = 95;

let m: ModesDaemon;
let roContent: Buffer;

beforeAll(async () => {
  requireTools('nbdsh');
  roContent = randomBytes(4 * MiB);
  m = await startModesDaemon('blockgate-nbdsh-', [
    { name: 'disk', size: '64MiB' },
    { name: 'model', size: '16MiB' },
    { name: 'errs', size: '8MiB' },
    { name: 'alloc', size: '32MiB' },
    { name: 'drop', size: '64MiB' },
  ], {
    extra: (dir) => {
      mkdirSync(join(dir, 'disks'), { recursive: true });
      writeFileSync(join(dir, 'disks', 'ro.img'), roContent);
      return [{ name: 'ro', mode: 'raw', disk: join(dir, 'disks', 'ro.img'), readOnly: true }];
    },
  });
});

afterEach(() => expectDaemonAlive(m.d));

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

function result<T>(r: RunResult): T {
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no RESULT line\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return JSON.parse(line.slice(7)) as T;
}

/** Python helper prepended to scripts: run f, return None on success or the errno of nbd.Error. */
const TRY = String.raw`
import json, os, random, hashlib
def errno_of(f):
    try:
        f()
        return None
    except nbd.Error as e:
        return e.errnum
`;

/**
 * Python helper: extents(off, n, flags) = the [length, flags] pairs block
 * status gives for [off, off+n), asking again from where a reply stopped (a
 * server may describe less than the range: a cached volume answers at most
 * 256 blocks per request) and merging neighbours with equal flags; with
 * REQ_ONE just the first descriptor of one request.
 */
const EXTENTS = String.raw`
def extents(off, n, flags=0):
    out = []
    end = off + n
    while off < end:
        got = []
        def cb(ctx, offset, entries, err):
            assert ctx == nbd.CONTEXT_BASE_ALLOCATION, ctx
            for i in range(0, len(entries), 2):
                got.append([entries[i], entries[i + 1]])
            return 0
        h.block_status(end - off, off, cb, flags)
        assert len(got) > 0
        if flags & nbd.CMD_FLAG_REQ_ONE:
            return got[:1]
        for e in got:
            e[0] = min(e[0], end - off)
            if e[0] == 0:
                break
            if out and out[-1][1] == e[1]:
                out[-1][0] += e[0]
            else:
                out.append(e)
            off += e[0]
    return out
`;

describe.each(MODES)('nbdsh: %s export', (mode: Mode) => {
  describe('pipelining', () => {
    it('many aio_pwrite/aio_pread in flight at once: all complete, data verified, replies come back out of order', async () => {
      const r = await nbdshOk(String.raw`
        rng = random.Random(1234)
        size = h.get_size()
        # 96 writes of random sizes at random 4K-aligned, non-overlapping slots, all in flight.
        slots = rng.sample(range(0, size // (256 * 1024)), 96)
        writes = []
        for s in slots:
            n = rng.choice([512, 4096, 65536, 200000, 256 * 1024])
            data = rng.randbytes(n)
            writes.append((s * 256 * 1024, data))
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off) for (off, data) in writes]
        max_in_flight = h.aio_in_flight()
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            assert h.aio_command_completed(c), c
        # Now read everything back, all in flight together.
        bufs = [(nbd.Buffer(len(data)), off, data) for (off, data) in writes]
        order = []
        rcookies = []
        for i, (b, off, data) in enumerate(bufs):
            rcookies.append(h.aio_pread(b, off, completion=lambda err, i=i: order.append(i) or 1))
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for (b, off, data) in bufs:
            assert b.to_bytearray() == data, off
        assert sorted(order) == list(range(len(bufs))), order
        # Out-of-order: a 32 MiB read submitted before a 512-byte read; over 20 rounds the small
        # one must overtake the big one at least once (the server replies in completion order).
        overtaken = 0
        for round in range(20):
            done = []
            big = nbd.Buffer(32 * 1024 * 1024)
            small = nbd.Buffer(512)
            h.aio_pread(big, 0, completion=lambda err: done.append('big') or 1)
            h.aio_pread(small, 4096, completion=lambda err: done.append('small') or 1)
            while h.aio_in_flight() > 0:
                h.poll(-1)
            if done[0] == 'small':
                overtaken += 1
        print('RESULT ' + json.dumps({'max_in_flight': max_in_flight, 'overtaken': overtaken, 'writes': len(writes)}))
      `, { prelude: TRY, uri: m.uri(mode, 'disk') });
      const res = result<{ max_in_flight: number; overtaken: number; writes: number }>(r);
      expect(res.writes).toBe(96);
      expect(res.max_in_flight).toBeGreaterThan(8);
      expect(res.overtaken).toBeGreaterThan(0);
    });
  });

  describe('unaligned I/O', () => {
    it('odd offsets and lengths (writes, zero, trim) match a byte-exact model, also in the durable copy of the volume', async () => {
      const r = await nbdshOk(String.raw`
        rng = random.Random(99)
        size = h.get_size()
        model = bytearray(size)
        cases = [(1, 3), (4095, 2), (4097, 8191), (12345, 70001), (size - 1, 1), (size - 4097, 4097), (65535, 1), (1048573, 1048579)]
        for i in range(60):
            off = rng.randrange(0, size - 1)
            n = rng.randrange(1, min(300000, size - off) + 1)
            cases.append((off, n))
        for i, (off, n) in enumerate(cases):
            op = i % 5
            if op in (0, 1, 2):
                data = rng.randbytes(n)
                h.pwrite(data, off)
                model[off:off + n] = data
            elif op == 3:
                h.zero(n, off)
                model[off:off + n] = bytes(n)
            else:
                h.trim(n, off)
                # TRIM is advisory: the range is now unspecified; write it back to keep the model exact.
                data = rng.randbytes(n)
                h.pwrite(data, off)
                model[off:off + n] = data
            # Odd-sized read straddling the change.
            lo = max(0, off - 7)
            hi = min(size, off + n + 13)
            got = h.pread(hi - lo, lo)
            assert got == model[lo:hi], ('mismatch after op', i, off, n)
        h.flush()
        # Whole device in 1 MiB + 1 reads (odd stride).
        pos = 0
        while pos < size:
            n = min(1048577, size - pos)
            assert h.pread(n, pos) == model[pos:pos + n], ('final mismatch at', pos)
            pos += n
        print('RESULT ' + json.dumps({'sha256': hashlib.sha256(model).hexdigest()}))
      `, { prelude: TRY, uri: m.uri(mode, 'model') });
      const { sha256 } = result<{ sha256: string }>(r);
      // The disk file (raw, stored) or the store's live root (cached): modes.ts content().
      const content = await m.content(mode, 'model');
      expect(content.length).toBe(16 * MiB);
      expect(createHash('sha256').update(content).digest('hex')).toBe(sha256);
    });
  });

  describe('errors', () => {
    it('out-of-range requests: WRITE/WRITE_ZEROES/TRIM → ENOSPC, READ/CACHE/BLOCK_STATUS → EINVAL; zero-length → EINVAL; connection survives', async () => {
      const r = await nbdshOk(String.raw`
        h.set_strict_mode(0)
        size = h.get_size()
        noop = lambda *a: 0
        res = {
          'read_past_end': errno_of(lambda: h.pread(10, size - 5)),
          'read_at_end': errno_of(lambda: h.pread(1, size)),
          'read_far': errno_of(lambda: h.pread(512, 1 << 62)),
          'write_past_end': errno_of(lambda: h.pwrite(b'x' * 10, size - 5)),
          'write_far': errno_of(lambda: h.pwrite(b'x', (1 << 63) - 1)),
          'zero_past_end': errno_of(lambda: h.zero(10, size - 5)),
          'trim_past_end': errno_of(lambda: h.trim(size, 1)),
          'cache_past_end': errno_of(lambda: h.cache(4096, size)),
          'bs_past_end': errno_of(lambda: h.block_status(4096, size, noop)),
          'read_zero_len': errno_of(lambda: h.pread(0, 0)),
          'write_zero_len': errno_of(lambda: h.pwrite(b'', 0)),
          'zero_zero_len': errno_of(lambda: h.zero(0, 0)),
          'trim_zero_len': errno_of(lambda: h.trim(0, 0)),
          'cache_zero_len': errno_of(lambda: h.cache(0, 0)),
          'read_bad_flag': errno_of(lambda: h.pread(512, 0, flags=nbd.CMD_FLAG_NO_HOLE)),
          'write_bad_flag': errno_of(lambda: h.pwrite(b'z' * 512, 0, flags=nbd.CMD_FLAG_REQ_ONE)),
          'trim_bad_flag': errno_of(lambda: h.trim(512, 0, flags=nbd.CMD_FLAG_FAST_ZERO)),
          'read_last_byte': errno_of(lambda: h.pread(1, size - 1)),
          'write_last_byte': errno_of(lambda: h.pwrite(b'L', size - 1)),
        }
        # The failed requests changed nothing and the connection still works.
        assert h.pread(512, 0) == bytes(512)
        assert h.pread(1, size - 1) == b'L'
        h.pwrite(b'after', 100)
        assert h.pread(5, 100) == b'after'
        print('RESULT ' + json.dumps(res))
      `, { prelude: TRY, uri: m.uri(mode, 'errs'), baseAllocation: true });
      expect(result(r)).toEqual({
        read_past_end: EINVAL,
        read_at_end: EINVAL,
        read_far: EINVAL,
        write_past_end: ENOSPC,
        write_far: ENOSPC,
        zero_past_end: ENOSPC,
        trim_past_end: ENOSPC,
        cache_past_end: EINVAL,
        bs_past_end: EINVAL,
        read_zero_len: EINVAL,
        write_zero_len: EINVAL,
        zero_zero_len: EINVAL,
        trim_zero_len: EINVAL,
        cache_zero_len: EINVAL,
        read_bad_flag: EINVAL,
        write_bad_flag: EINVAL,
        trim_bad_flag: EINVAL,
        read_last_byte: null,
        write_last_byte: null,
      });
    });

    it('BLOCK_STATUS without a negotiated meta context → EINVAL from the server', async () => {
      const r = await nbdshOk(String.raw`
        h.set_strict_mode(0)
        e = errno_of(lambda: h.block_status(4096, 0, lambda *a: 0))
        assert h.pread(4, 0) is not None
        print('RESULT ' + json.dumps({'errno': e, 'can_meta': h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)}))
      `, { prelude: TRY, uri: m.uri(mode, 'errs') });
      const res = result<{ errno: number | null; can_meta: boolean }>(r);
      expect(res.can_meta).toBe(false);
      expect(res.errno).toBe(EINVAL);
    });

    it('oversized READ/WRITE (> 32 MiB) → EOVERFLOW, the payload is discarded and the connection lives on; exactly 32 MiB works', async () => {
      const r = await nbdshOk(String.raw`
        h.set_strict_mode(0)
        M = 1024 * 1024
        h.pwrite(b'\x11' * (2 * M), 0)
        res = {
          'read_32M_plus_1': errno_of(lambda: h.pread(32 * M + 1, 0)),
          'write_32M_plus_1': errno_of(lambda: h.pwrite(b'\x22' * (32 * M + 1), 0)),
          'write_40M': errno_of(lambda: h.pwrite(b'\x33' * (40 * M), 4096)),
          'read_48M': errno_of(lambda: h.pread(48 * M, 0)),
        }
        # Nothing of the refused writes landed.
        assert h.pread(2 * M, 0) == b'\x11' * (2 * M)
        # The connection is in sync: pipelined requests after the oversized ones work.
        c1 = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b'\x44' * 4096)), 8192)
        big = nbd.Buffer(32 * M + 4096)
        c2 = h.aio_pwrite(big, 0)   # oversized again, in flight with others
        c3 = h.aio_pread(nbd.Buffer(4096), 0)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        assert h.aio_command_completed(c1)
        try:
            h.aio_command_completed(c2)
            res['aio_write_oversized'] = None
        except nbd.Error as e:
            res['aio_write_oversized'] = e.errnum
        assert h.aio_command_completed(c3)
        assert h.pread(4096, 8192) == b'\x44' * 4096
        # The maximum block size itself is fine both ways.
        data = random.Random(7).randbytes(32 * M)
        h.pwrite(data, 16 * M)
        res['max_roundtrip'] = h.pread(32 * M, 16 * M) == data
        print('RESULT ' + json.dumps(res))
      `, { prelude: TRY, uri: m.uri(mode, 'disk'), timeoutMs: 110_000 });
      expect(result(r)).toEqual({
        read_32M_plus_1: EOVERFLOW,
        write_32M_plus_1: EOVERFLOW,
        write_40M: EOVERFLOW,
        read_48M: EOVERFLOW,
        aio_write_oversized: EOVERFLOW,
        max_roundtrip: true,
      });
    });
  });

  describe('zero, trim, block status, FUA, fast zero, flush, cache', () => {
    it('zero and trim read back as zeros; block status reports data after writes and hole,zero after trim/zero', async () => {
      const r = await nbdshOk(String.raw`
        M = 1024 * 1024
        size = h.get_size()
        assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        res = {}
        res['fresh'] = extents(0, size)
        h.pwrite(b'\xaa' * (4 * M), 4 * M)
        h.pwrite(b'\xbb' * (4 * M), 12 * M)
        h.flush()
        res['after_write'] = extents(0, size)
        res['req_one'] = extents(0, size, nbd.CMD_FLAG_REQ_ONE)
        res['at_data'] = extents(5 * M, 2 * M)
        h.trim(2 * M, 5 * M)          # [5M, 7M) → hole
        h.zero(1 * M, 13 * M)         # [13M, 14M) → zero (hole allowed)
        h.zero(1 * M, 14 * M, nbd.CMD_FLAG_NO_HOLE)   # [14M, 15M) → zero, stays allocated
        h.flush()
        assert h.pread(2 * M, 5 * M) == bytes(2 * M)
        assert h.pread(M, 13 * M) == bytes(M)
        assert h.pread(M, 14 * M) == bytes(M)
        assert h.pread(M, 4 * M) == b'\xaa' * M
        assert h.pread(M, 7 * M) == b'\xaa' * M
        assert h.pread(M, 12 * M) == b'\xbb' * M
        assert h.pread(M, 15 * M) == b'\xbb' * M
        res['after_trim'] = extents(0, 16 * M)
        print('RESULT ' + json.dumps(res))
      `, { prelude: TRY + EXTENTS, uri: m.uri(mode, 'alloc'), baseAllocation: true });
      const res = result<Record<string, Array<[number, number]>>>(r);
      const HZ = 3;
      const DATA = 0;
      if (!MODE_CAPS[mode].extents) {
        // Stored: no extents capability, so one data extent for any range (modes.ts: MODE_CAPS).
        expect(res).toEqual({ fresh: [[32 * MiB, DATA]], after_write: [[32 * MiB, DATA]], req_one: [[32 * MiB, DATA]], at_data: [[2 * MiB, DATA]], after_trim: [[16 * MiB, DATA]] });
        return;
      }
      expect(res.fresh).toEqual([[32 * MiB, HZ]]);
      expect(res.after_write).toEqual([[4 * MiB, HZ], [4 * MiB, DATA], [4 * MiB, HZ], [4 * MiB, DATA], [16 * MiB, HZ]]);
      expect(res.req_one).toEqual([[4 * MiB, HZ]]);
      expect(res.at_data).toEqual([[2 * MiB, DATA]]);
      const stateAt = (t: Array<[number, number]>, off: number): number => {
        let pos = 0;
        for (const [n, f] of t) { if (off < pos + n) return f; pos += n; }
        throw new Error(`offset ${off} not described`);
      };
      const t = res.after_trim!;
      expect(t.reduce((a, [n]) => a + n, 0)).toBe(16 * MiB);
      for (const off of [4 * MiB, 7 * MiB, 12 * MiB, 15 * MiB]) expect(stateAt(t, off), `at ${off}`).toBe(DATA);
      expect(stateAt(t, 0)).toBe(HZ);
      if (mode === 'raw') {
        expect(stateAt(t, 5 * MiB)).toBe(HZ);
        expect(stateAt(t, 7 * MiB - 1)).toBe(HZ);
        expect(stateAt(t, 13 * MiB)).toBe(HZ);
        // [14M,15M) zeroed with NO_HOLE may be reported as data (allocated) or zero, but never as a hole.
        expect(stateAt(t, 14 * MiB) & 1).toBe(0);
        return;
      }
      // Cached: a range zeroed or trimmed in the log reads as zeros but is reported as data
      // (or already as a hole, if an upload ran in between) until the upload turns those
      // blocks into absent blocks of the live root. Zero blocks are never stored
      // (docs/formats/snapshot.md), so once uploaded the NO_HOLE range [14M,15M) is a
      // hole like the others: a cached volume has no allocation to keep.
      await m.drained(mode, 'alloc');
      const after = result<{ e: Array<[number, number]> }>(await nbdshOk(String.raw`
        print('RESULT ' + json.dumps({'e': extents(0, 16 * 1024 * 1024)}))
      `, { prelude: TRY + EXTENTS, uri: m.uri(mode, 'alloc'), baseAllocation: true }));
      expect(after.e).toEqual([[4 * MiB, HZ], [MiB, DATA], [2 * MiB, HZ], [MiB, DATA], [4 * MiB, HZ], [MiB, DATA], [2 * MiB, HZ], [MiB, DATA]]);
    });

    it('FUA writes/zero/trim, fast zero, flush and cache behave as the mode advertises and the data is in its durable copy', async () => {
      const r = await nbdshOk(String.raw`
        M = 1024 * 1024
        assert h.can_fua() and h.can_fast_zero() and h.can_flush() and h.can_cache() and h.can_zero() and h.can_trim()
        data = random.Random(5).randbytes(3 * M + 17)
        h.pwrite(data, 40 * M + 3, nbd.CMD_FLAG_FUA)
        assert h.pread(len(data), 40 * M + 3) == data
        h.pwrite(b'\x77' * (2 * M), 50 * M)
        res = {
          'zero_fua': errno_of(lambda: h.zero(M, 50 * M, nbd.CMD_FLAG_FUA)),
          'fast_zero': errno_of(lambda: h.zero(M // 2, 50 * M + M, nbd.CMD_FLAG_FAST_ZERO)),
          'fast_zero_no_hole': errno_of(lambda: h.zero(4096, 50 * M + M + M // 2, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)),
          'trim_fua': errno_of(lambda: h.trim(M, 44 * M, nbd.CMD_FLAG_FUA)),
          'flush': errno_of(lambda: h.flush()),
          'cache': errno_of(lambda: h.cache(8 * M, 40 * M)),
          'cache_unaligned': errno_of(lambda: h.cache(12345, 7)),
        }
        # A refused fast zero (ENOTSUP) leaves the data as it was.
        zeroed = M + M // 2 + 4096 if res['fast_zero'] is None else M
        assert (res['fast_zero'] is None) == (res['fast_zero_no_hole'] is None), res
        assert h.pread(2 * M, 50 * M)[:zeroed] == bytes(zeroed)
        assert h.pread(2 * M, 50 * M)[zeroed:] == b'\x77' * (2 * M - zeroed)
        res['sha_data'] = hashlib.sha256(data).hexdigest()
        print('RESULT ' + json.dumps(res))
      `, { prelude: TRY, uri: m.uri(mode, 'disk') });
      const res = result<Record<string, unknown>>(r);
      // RawVolume on a regular file punches holes / FALLOC_FL_ZERO_RANGE and a cached volume
      // logs a zero record: fast zero works. A stored volume does not offer it: ENOTSUP
      // (modes.ts: MODE_CAPS; docs/nbd.md).
      const fast = MODE_CAPS[mode].fastZero ? null : ENOTSUP;
      expect(res).toMatchObject({ zero_fua: null, fast_zero: fast, fast_zero_no_hole: fast, trim_fua: null, flush: null, cache: null, cache_unaligned: null });
      // FUA data is in the disk file (raw, stored) the moment the reply arrives (same page cache;
      // durability itself is not observable here); for cached, in the store's live root once drained.
      const content = await m.content(mode, 'disk');
      expect(createHash('sha256').update(content.subarray(40 * MiB + 3, 40 * MiB + 3 + 3 * MiB + 17)).digest('hex')).toBe(res.sha_data);
      expect(content.subarray(50 * MiB, 51 * MiB).equals(Buffer.alloc(MiB))).toBe(true);
    });
  });

  describe('clients vanishing with requests in flight', () => {
    it('abrupt exit and shutdown() with requests in flight: the server keeps serving other connections, completed writes are intact', async () => {
      // A second client works throughout: write a pattern first.
      await nbdshOk(String.raw`
        h.pwrite(b'\x5c' * (1024 * 1024), 60 * 1024 * 1024)
        h.flush()
      `, { uri: m.uri(mode, 'drop') });
      // 1. The process exits (no DISC, socket closed by the kernel) with ~64 MiB of requests queued.
      const abrupt = await nbdsh(String.raw`
        import os
        bufs = [nbd.Buffer.from_bytearray(bytearray(b'\x01' * (1024 * 1024))) for i in range(48)]
        for i, b in enumerate(bufs):
            h.aio_pwrite(b, i * 1024 * 1024)
        for i in range(16):
            h.aio_pread(nbd.Buffer(1024 * 1024), i * 1024 * 1024)
        h.poll(0)
        print('in flight', h.aio_in_flight(), flush=True)
        os._exit(0)
      `, { uri: m.uri(mode, 'drop') });
      expect(abrupt.code).toBe(0);
      expect(Number(/in flight (\d+)/.exec(abrupt.stdout)?.[1])).toBeGreaterThan(0);
      // 2. shutdown() with pending requests abandoned.
      await nbdshOk(String.raw`
        for i in range(32):
            h.aio_pread(nbd.Buffer(2 * 1024 * 1024), i * 1024 * 1024)
        h.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
      `, { uri: m.uri(mode, 'drop') });
      // 3. Meanwhile / afterwards: a concurrent client on another export and one on the same export work.
      const [other, same] = await Promise.all([
        nbdshOk(String.raw`
          for i in range(20):
              h.pwrite(bytes([i]) * 65536, i * 65536)
          for i in range(20):
              assert h.pread(65536, i * 65536) == bytes([i]) * 65536
          print('RESULT {"ok": true}')
        `, { uri: m.uri(mode, 'disk') }),
        nbdshOk(String.raw`
          assert h.pread(1024 * 1024, 60 * 1024 * 1024) == b'\x5c' * (1024 * 1024)
          # Whatever of the abandoned writes landed is whole 0x01 or untouched zeros, never torn garbage.
          for i in range(48):
              blk = h.pread(1024 * 1024, i * 1024 * 1024)
              assert blk == b'\x01' * (1024 * 1024) or blk == bytes(1024 * 1024), i
          print('RESULT {"ok": true}')
        `, { uri: m.uri(mode, 'drop') }),
      ]);
      expect(result(other)).toEqual({ ok: true });
      expect(result(same)).toEqual({ ok: true });
    });

    it('many clients that connect, queue requests and drop, while one client does verified I/O: no errors for the survivor', async () => {
      const droppers = Array.from({ length: 6 }, (_, k) => nbdsh(String.raw`
        import os
        for i in range(24):
            h.aio_pread(nbd.Buffer(1024 * 1024), ((i * 7 + ${k}) % 60) * 1024 * 1024)
        h.poll(0)
        os._exit(0)
      `, { uri: m.uri(mode, 'drop') }));
      const survivor = nbdshOk(String.raw`
        import random
        rng = random.Random(3)
        for i in range(40):
            data = rng.randbytes(65536 + i)
            off = 61 * 1024 * 1024 + i * 70000
            h.pwrite(data, off)
            assert h.pread(len(data), off) == data
        print('RESULT {"ok": true}')
      `, { uri: m.uri(mode, 'drop') });
      const results = await Promise.all(droppers);
      for (const x of results) expect(x.code).toBe(0);
      expect(result(await survivor)).toEqual({ ok: true });
    });
  });
});

describe('nbdsh: a read-only raw export', () => {
  it('a read-only export: WRITE/WRITE_ZEROES/TRIM → EPERM; reads, flush and cache work', async () => {
    const r = await nbdshOk(String.raw`
      assert h.is_read_only()
      h.set_strict_mode(0)
      res = {
        'write': errno_of(lambda: h.pwrite(b'nope', 0)),
        'write_fua': errno_of(lambda: h.pwrite(b'nope', 4096, flags=nbd.CMD_FLAG_FUA)),
        'zero': errno_of(lambda: h.zero(4096, 0)),
        'trim': errno_of(lambda: h.trim(4096, 0)),
        'flush': errno_of(lambda: h.flush()),
        'cache': errno_of(lambda: h.cache(65536, 0)),
      }
      res['sha256'] = hashlib.sha256(h.pread(h.get_size(), 0)).hexdigest()
      print('RESULT ' + json.dumps(res))
    `, { prelude: TRY, uri: m.d.uri('ro') });
    expect(result(r)).toEqual({
      write: EPERM, write_fua: EPERM, zero: EPERM, trim: EPERM, flush: null, cache: null,
      sha256: createHash('sha256').update(roContent).digest('hex'),
    });
    expect(readFileSync(join(m.dir, 'disks', 'ro.img')).equals(roContent)).toBe(true);
  });
});
