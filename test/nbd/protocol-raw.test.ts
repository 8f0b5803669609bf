// Protocol-level robustness with raw sockets (node:net): the greeting, option
// replies for unknown/oversized/abort options, connections closed on bad
// magic or unknown client flags, transmission errors for unknown commands
// (per volume mode: the daemon serves every volume as a raw, a stored and a
// cached export, test/nbd/modes.ts), and a bounded seeded fuzz of garbage
// and truncated frames at every phase, after which the daemon must still
// serve a normal client on every mode.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonHandle } from '../harness/daemon.js';
import { expectDaemonAlive, prng, sleep, waitFor } from '../harness/nbd-tools.js';
import { CMD, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, OPT, REP, RawClient } from './raw-client.js';
import { MODES, exportName, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;
const EINVAL = 22;
const EOVERFLOW = 75;

let m: ModesDaemon;
let d: DaemonHandle;
const open: RawClient[] = [];
/** The first export in config order (raw-main): the default export, used by the handshake tests. */
const MAIN = exportName('raw', 'main');

beforeAll(async () => {
  m = await startModesDaemon('blockgate-raw-', [
    { name: 'main', size: '16MiB', description: 'main volume' },
    { name: 'fuzz', size: '16MiB' },
  ], { config: { nbd: { handshakeTimeout: '2s' } } });
  d = m.d;
});

afterEach(() => {
  for (const c of open.splice(0)) c.destroy();
  expectDaemonAlive(d);
});

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

/** The daemon's structured log records so far. */
function records(): Array<{ msg?: string; conn?: number; remote?: string }> {
  return d.output().split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
    try { return [JSON.parse(l) as { msg?: string; conn?: number; remote?: string }]; } catch { return []; }
  });
}

/** The server's id for client `c`'s connection, from its "connection opened" record (remote = our local address). */
function connId(c: RawClient): number | undefined {
  return records().find((r) => r.msg === 'connection opened' && r.remote === `127.0.0.1:${c.socket.localPort}`)?.conn;
}

/** The server logged a message starting with `msg` for connection `id`. */
function logged(id: number, msg: string): boolean {
  return records().some((r) => r.conn === id && r.msg?.startsWith(msg) === true);
}

async function client(): Promise<RawClient> {
  const c = await RawClient.connect({ port: d.port, host: d.host });
  open.push(c);
  return c;
}

/** A fresh client in transmission on `name` (no structured replies: simple replies only). */
async function transmitting(name = MAIN): Promise<RawClient> {
  const c = await client();
  await c.start();
  await c.go(name);
  return c;
}

/** Proves the daemon still serves: full handshake, write + read back on `mode`-main. */
async function healthy(tag: number, mode: Mode = 'raw'): Promise<void> {
  const c = await transmitting(exportName(mode, 'main'));
  const data = Buffer.alloc(4096, tag & 0xff);
  c.write(RawClient.request(CMD.WRITE, { cookie: 7n, offset: 8 * MiB, data }));
  expect(await c.simpleReply()).toEqual({ error: 0, cookie: 7n });
  c.write(RawClient.request(CMD.READ, { cookie: 8n, offset: 8 * MiB, length: 4096 }));
  expect(await c.simpleReply()).toEqual({ error: 0, cookie: 8n });
  expect((await c.read(4096)).equals(data)).toBe(true);
  c.write(RawClient.request(CMD.DISC, { cookie: 9n }));
  expect(await c.closedWithin(5000)).toBe(true);
}

describe('handshake', () => {
  it('greets with NBDMAGIC/IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES', async () => {
    const c = await client();
    expect(await c.greeting()).toBe(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  });

  it('LIST returns every export with its name, then ACK', async () => {
    const c = await client();
    await c.start();
    const replies = await c.ask(OPT.LIST);
    expect(replies.map((r) => r.type)).toEqual([...Array(6).fill(REP.SERVER), REP.ACK]);
    const names = replies.slice(0, 6).map((r) => r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)));
    expect(names).toEqual(['main', 'fuzz'].flatMap((b) => MODES.map((mode) => exportName(mode, b))));
    expect(replies.every((r) => r.option === OPT.LIST)).toBe(true);
  });

  it('an unknown option gets NBD_REP_ERR_UNSUP and negotiation continues', async () => {
    const c = await client();
    await c.start();
    for (const opt of [0, 4, 11, 12, 0x1234, 0x7fffffff, 0xffffffff]) {
      const r = await c.ask(opt, Buffer.from('payload'));
      expect(r, `option ${opt}`).toHaveLength(1);
      expect(r[0]!.type).toBe(REP.ERR_UNSUP);
      expect(r[0]!.option).toBe(opt >>> 0);
    }
    const { size } = await c.go(MAIN);
    expect(size).toBe(16n * BigInt(MiB));
  });

  it('an option payload over 64 KiB gets NBD_REP_ERR_TOO_BIG (payload skipped) and negotiation continues', async () => {
    const c = await client();
    await c.start();
    for (const len of [64 * 1024 + 1, 3 * MiB + 5]) {
      const payload = Buffer.alloc(len, 0x41);
      c.write(RawClient.option(OPT.GO, Buffer.alloc(0), IHAVEOPT, len));
      // Dribble the payload in pieces.
      for (let at = 0; at < len; at += 256 * 1024) c.write(payload.subarray(at, Math.min(len, at + 256 * 1024)));
      const r = await c.optionReplies();
      expect(r.map((x) => x.type)).toEqual([REP.ERR_TOO_BIG]);
      expect(r[0]!.option).toBe(OPT.GO);
    }
    // Exactly 64 KiB is parsed (and is a malformed LIST: LIST takes no data).
    const r = await c.ask(OPT.LIST, Buffer.alloc(64 * 1024));
    expect(r.map((x) => x.type)).toEqual([REP.ERR_INVALID]);
    const list = await c.ask(OPT.LIST);
    expect(list[list.length - 1]!.type).toBe(REP.ACK);
    await c.go(MAIN);
  });

  it('malformed INFO/GO and meta-context requests get ERR_INVALID; unknown export gets ERR_UNKNOWN', async () => {
    const c = await client();
    await c.start();
    expect((await c.ask(OPT.GO, Buffer.from([0, 0]))).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    const lying = RawClient.goData(MAIN);
    lying.writeUInt32BE(1000, 0);
    expect((await c.ask(OPT.INFO, lying)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    expect((await c.ask(OPT.GO, RawClient.goData('nope'))).map((r) => r.type)).toEqual([REP.ERR_UNKNOWN]);
    // Meta contexts need structured replies first.
    expect((await c.ask(OPT.SET_META_CONTEXT, RawClient.metaData(MAIN, ['base:allocation']))).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    expect((await c.ask(OPT.STRUCTURED_REPLY)).map((r) => r.type)).toEqual([REP.ACK]);
    expect((await c.ask(OPT.STRUCTURED_REPLY)).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    const bad = RawClient.metaData(MAIN, ['base:allocation']);
    expect((await c.ask(OPT.SET_META_CONTEXT, bad.subarray(0, bad.length - 3))).map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    const set = await c.ask(OPT.SET_META_CONTEXT, RawClient.metaData(MAIN, ['base:allocation', 'qemu:dirty-bitmap:x']));
    expect(set.map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
    expect(set[0]!.data.toString('utf8', 4)).toBe('base:allocation');
    // INFO answers with the export, description on request, and block sizes.
    const info = await c.ask(OPT.INFO, RawClient.goData(MAIN, [2, 3]));
    expect(info[info.length - 1]!.type).toBe(REP.ACK);
    const byInfo = new Map(info.filter((r) => r.type === REP.INFO).map((r) => [r.data.readUInt16BE(0), r.data]));
    expect(byInfo.get(0)!.readBigUInt64BE(2)).toBe(16n * BigInt(MiB));
    expect(byInfo.get(2)!.toString('utf8', 2)).toBe('main volume');
    const bs = byInfo.get(3)!;
    expect([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)]).toEqual([1, 4096, 32 * MiB]);
  });

  it('NBD_OPT_ABORT is acknowledged and the server closes the connection', async () => {
    const c = await client();
    await c.start();
    c.sendOption(OPT.ABORT);
    const r = await c.optionReply();
    expect(r).toMatchObject({ option: OPT.ABORT, type: REP.ACK });
    expect(await c.closedWithin(5000)).toBe(true);
    await healthy(1);
  });

  it('bad option magic closes that connection only; an established client keeps working', async () => {
    const other = await transmitting(MAIN);
    const c = await client();
    await c.start();
    c.write(RawClient.option(OPT.LIST, Buffer.alloc(0), 0x1122334455667788n));
    expect(await c.closedWithin(5000)).toBe(true);
    other.write(RawClient.request(CMD.READ, { cookie: 42n, offset: 0, length: 512 }));
    expect(await other.simpleReply()).toEqual({ error: 0, cookie: 42n });
    await other.read(512);
    await healthy(2);
  });

  it('unknown client flags close the connection', async () => {
    for (const flags of [1 << 2, 0x80000000, 0xffffffff]) {
      const c = await client();
      await c.greeting();
      c.clientFlags(flags);
      expect(await c.closedWithin(5000), `flags 0x${flags.toString(16)}`).toBe(true);
    }
    await healthy(3);
  });

  it('EXPORT_NAME: unknown name closes; known name gets size+flags (124 zero bytes only without NO_ZEROES)', async () => {
    const bad = await client();
    await bad.start();
    bad.sendOption(OPT.EXPORT_NAME, Buffer.from('nope'));
    expect(await bad.closedWithin(5000)).toBe(true);

    const c = await client();
    await c.start(FLAG_FIXED_NEWSTYLE);
    c.sendOption(OPT.EXPORT_NAME, Buffer.from(MAIN));
    const r = await c.read(8 + 2 + 124);
    expect(r.readBigUInt64BE(0)).toBe(16n * BigInt(MiB));
    expect(r.subarray(10).equals(Buffer.alloc(124))).toBe(true);
    c.write(RawClient.request(CMD.FLUSH, { cookie: 5n }));
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 5n });

    const z = await client();
    await z.start();
    z.sendOption(OPT.EXPORT_NAME, Buffer.from(''));  // default export = first volume
    const rz = await z.read(10);
    expect(rz.readBigUInt64BE(0)).toBe(16n * BigInt(MiB));
    z.write(RawClient.request(CMD.FLUSH, { cookie: 6n }));
    expect(await z.simpleReply()).toEqual({ error: 0, cookie: 6n });
    expect(z.pending).toBe(0);
  });

  it('an idle handshake: a client that goes away is forgotten; one that idles past handshakeTimeout (2s) is dropped', async () => {
    const quiet = await client();
    await quiet.greeting();
    const quietId = connId(quiet)!;
    expect(quietId).toBeGreaterThan(0);
    quiet.destroy();
    expect(await waitFor(() => logged(quietId, 'closed during handshake'), 10_000), 'the server forgot the client that went away').toBe(true);
    const idle = await client();
    await idle.start();
    const idleId = connId(idle)!;
    expect(await idle.closedWithin(30_000)).toBe(true);
    // Closed by the handshake timeout (not by anything else), and only that one.
    expect(logged(idleId, 'handshake timed out')).toBe(true);
    expect(logged(quietId, 'handshake timed out')).toBe(false);
    await healthy(4);
  });
});

describe.each(MODES)('transmission: %s export', (mode: Mode) => {
  const main = exportName(mode, 'main');

  it('bad request magic closes the connection; others keep working', async () => {
    const other = await transmitting(main);
    const c = await transmitting(main);
    c.write(RawClient.request(CMD.READ, { magic: 0xdeadbeef, length: 512 }));
    expect(await c.closedWithin(5000)).toBe(true);
    other.write(RawClient.request(CMD.FLUSH, { cookie: 3n }));
    expect(await other.simpleReply()).toEqual({ error: 0, cookie: 3n });
  });

  it('unknown commands, invalid flags, zero lengths and BLOCK_STATUS without a context → EINVAL, connection lives on', async () => {
    const c = await transmitting(main);
    const cases: Array<[string, Buffer]> = [
      ['unknown cmd 8', RawClient.request(8, { cookie: 1n, length: 512 })],
      ['unknown cmd 0xffff', RawClient.request(0xffff, { cookie: 2n, length: 512 })],
      ['read with NO_HOLE', RawClient.request(CMD.READ, { cookie: 3n, flags: 1 << 1, length: 512 })],
      ['flush with REQ_ONE', RawClient.request(CMD.FLUSH, { cookie: 4n, flags: 1 << 3 })],
      ['read with DF, no structured replies', RawClient.request(CMD.READ, { cookie: 5n, flags: 1 << 2, length: 512 })],
      ['zero-length read', RawClient.request(CMD.READ, { cookie: 6n, length: 0 })],
      ['zero-length write', RawClient.request(CMD.WRITE, { cookie: 7n, length: 0 })],
      ['block status', RawClient.request(CMD.BLOCK_STATUS, { cookie: 8n, length: 4096 })],
      ['read past end', RawClient.request(CMD.READ, { cookie: 9n, offset: 16 * MiB, length: 1 })],
      ['read at offset 2^63', RawClient.request(CMD.READ, { cookie: 10n, offset: 1n << 63n, length: 1 })],
    ];
    for (const [, req] of cases) c.write(req);
    const replies = new Map<bigint, number>();
    for (let i = 0; i < cases.length; i++) {
      const r = await c.simpleReply();
      replies.set(r.cookie, r.error);
    }
    for (let i = 0; i < cases.length; i++) expect(replies.get(BigInt(i + 1)), cases[i]![0]).toBe(EINVAL);
    expect(c.pending).toBe(0);
    c.write(RawClient.request(CMD.READ, { cookie: 99n, offset: 0, length: 16 }));
    expect(await c.simpleReply()).toEqual({ error: 0, cookie: 99n });
    expect((await c.read(16)).length).toBe(16);
  });

  it('an oversized WRITE (32 MiB + 1) is answered EOVERFLOW after its payload is consumed; the next request is in sync', async () => {
    const c = await transmitting(main);
    const len = 32 * MiB + 1;
    c.write(RawClient.request(CMD.WRITE, { cookie: 11n, offset: 0, length: len }));
    const chunk = Buffer.alloc(MiB, 0xee);
    for (let sent = 0; sent < len; sent += MiB) c.write(sent + MiB <= len ? chunk : chunk.subarray(0, len - sent));
    c.write(RawClient.request(CMD.READ, { cookie: 12n, offset: 0, length: 8 }));
    const a = await c.simpleReply(30_000);
    expect(a).toEqual({ error: EOVERFLOW, cookie: 11n });
    expect(await c.simpleReply(30_000)).toEqual({ error: 0, cookie: 12n });
    expect((await c.read(8)).equals(Buffer.alloc(8, 0xee))).toBe(false);
    c.write(RawClient.request(CMD.READ, { cookie: 13n, offset: 0, length: 32 * MiB + 1 }));
    expect(await c.simpleReply()).toEqual({ error: EOVERFLOW, cookie: 13n });
  });

  it('DISC after pipelined writes: every write is answered, then the server closes', async () => {
    const c = await transmitting(main);
    for (let i = 0; i < 32; i++) c.write(RawClient.request(CMD.WRITE, { cookie: BigInt(100 + i), offset: MiB + i * 4096, data: Buffer.alloc(4096, i) }));
    c.write(RawClient.request(CMD.DISC, { cookie: 1000n }));
    const cookies: bigint[] = [];
    for (let i = 0; i < 32; i++) {
      const r = await c.simpleReply();
      expect(r.error).toBe(0);
      cookies.push(r.cookie);
    }
    expect(cookies.sort((x, y) => Number(x - y))).toEqual(Array.from({ length: 32 }, (_, i) => BigInt(100 + i)));
    expect(await c.closedWithin(5000)).toBe(true);
    expect(c.pending).toBe(0);
    const check = await transmitting(main);
    check.write(RawClient.request(CMD.READ, { cookie: 1n, offset: MiB + 31 * 4096, length: 4096 }));
    expect(await check.simpleReply()).toEqual({ error: 0, cookie: 1n });
    expect((await check.read(4096)).equals(Buffer.alloc(4096, 31))).toBe(true);
  });
});

describe('fuzz', () => {
  it('seeded garbage and truncated frames at every phase never take the daemon down', async () => {
    const rand = prng(0xb10c6a7e);
    const int = (n: number): number => Math.floor(rand() * n);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
    const fuzzExport = (): string => exportName(MODES[int(MODES.length)]!, 'fuzz');
    const validOption = (): Buffer => {
      const kinds = [
        () => RawClient.option(OPT.LIST),
        () => RawClient.option(OPT.GO, RawClient.goData(rand() < 0.5 ? fuzzExport() : 'x'.repeat(int(300)), [int(5)])),
        () => RawClient.option(OPT.INFO, RawClient.goData(fuzzExport(), [0, 1, 2, 3])),
        () => RawClient.option(OPT.STRUCTURED_REPLY),
        () => RawClient.option(OPT.SET_META_CONTEXT, RawClient.metaData(fuzzExport(), ['base:allocation'])),
        () => RawClient.option(OPT.LIST_META_CONTEXT, RawClient.metaData(fuzzExport(), [])),
        () => RawClient.option(OPT.STARTTLS),
        () => RawClient.option(int(20), bytes(int(64))),
        () => RawClient.option(int(20), Buffer.alloc(0), IHAVEOPT, int(0x7fffffff)),
      ];
      return kinds[int(kinds.length)]!();
    };
    const validRequest = (): Buffer => {
      const type = rand() < 0.8 ? int(8) : int(0x10000);
      const offset = rand() < 0.7 ? BigInt(int(16 * MiB)) : BigInt.asUintN(64, BigInt(int(2 ** 31)) << BigInt(int(34)));
      const length = rand() < 0.8 ? int(256 * 1024) : int(2 ** 32);
      const flags = rand() < 0.7 ? 0 : int(0x10000);
      const data = type === CMD.WRITE && length < 256 * 1024 && rand() < 0.8 ? bytes(Math.min(length, 4096)) : undefined;
      const h = RawClient.request(type, { flags, cookie: BigInt(int(2 ** 31)), offset, length });
      return data ? Buffer.concat([h, data]) : h;
    };
    const truncate = (b: Buffer): Buffer => b.subarray(0, int(b.length));
    const ITERATIONS = 400;
    let done = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const c = await RawClient.connect({ port: d.port, host: d.host });
      try {
        const phase = int(4);
        if (phase === 0) {
          // Before/instead of client flags: garbage or a truncated flags word.
          c.write(rand() < 0.5 ? bytes(int(40)) : truncate(Buffer.from([0, 0, 0, 3])));
        } else {
          await c.greeting();
          c.clientFlags(rand() < 0.9 ? FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES : int(2 ** 32));
          if (phase === 1) {
            // Options: a few valid ones, then garbage or a truncated one.
            for (let k = int(4); k > 0; k--) c.write(validOption());
            c.write(rand() < 0.5 ? bytes(int(200)) : truncate(validOption()));
          } else {
            // Transmission: GO then requests, garbage, truncated requests.
            c.write(RawClient.option(OPT.GO, RawClient.goData(fuzzExport())));
            for (let k = 1 + int(6); k > 0; k--) c.write(validRequest());
            const tail = int(3);
            if (tail === 0) c.write(bytes(int(100)));
            else if (tail === 1) c.write(truncate(validRequest()));
            else c.write(Buffer.concat([Buffer.from([0x25, 0x60, 0x95, 0x13]), bytes(int(24))]));
          }
        }
        // Sometimes linger so the server reacts while we are connected; sometimes half-close.
        // (Seeded jitter that varies the interleaving, not a wait for an event.)
        const end = int(3);
        if (end === 0) await sleep(int(20));
        else if (end === 1) c.socket.end();
        await sleep(int(3));
      } finally {
        c.destroy();
      }
      done++;
      if (i % 25 === 24) await healthy(i);
    }
    expect(done).toBe(ITERATIONS);
    expectDaemonAlive(d);
    for (const mode of MODES) await healthy(200, mode);
    // No unexpected failure reached the log (protocol errors are warnings; a crash or bug is 'error').
    const errors = d.output().split('\n').filter((l) => l.includes('"level":"error"'));
    expect(errors).toEqual([]);
    // The fuzz reached both phases' protocol-error paths.
    expect(d.output()).toMatch(/handshake protocol error; closing/);
    expect(d.output()).toMatch(/"msg":"protocol error; closing connection"/);
    expect(d.output()).toMatch(/"msg":"request failed"/);
  });
});
