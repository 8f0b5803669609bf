// TLS with real clients: libnbd (nbdinfo, nbdsh, nbdcopy) and qemu-img over
// x509 (client certificates mandatory when the server sets `ca`) and PSK
// (psktool files), both configured on one daemon; plaintext refused where an
// export requires TLS (ERR_TLS_REQD on GO; FORCEDTLS when every export
// requires it); wrong PSK, unknown identity, untrusted CA and a missing
// client certificate refused, with the daemon serving on afterwards.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasLogRecord, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import {
  expectDaemonAlive, makePsk, makeX509, nbdsh, nbdshOk, randomFile, requireTools, run, runOk, sha256File, type X509Material,
} from '../harness/nbd-tools.js';
import { OPT, REP, RawClient } from './raw-client.js';

const MiB = 1024 * 1024;

let dir: string;
let x509: X509Material;
let otherCa: X509Material;
let pskFile: string;
let pskDir: string;
let a: DaemonHandle; // x509 with ca (client certs mandatory) + PSK; exports: secure=require, open=on, plain=off
let b: DaemonHandle; // x509 without ca + PSK; every export requires TLS (FORCEDTLS)

beforeAll(async () => {
  requireTools('nbdinfo', 'nbdsh', 'nbdcopy', 'qemu-img', 'openssl', 'psktool');
  dir = tempDir('blockgate-tls-');
  mkdirSync(join(dir, 'disks'));
  x509 = await makeX509(join(dir, 'pki'));
  otherCa = await makeX509(join(dir, 'pki-other'), 'impostor');
  pskFile = join(dir, 'keys.psk');
  await makePsk(pskFile, 'alice');
  await makePsk(pskFile, 'carol');
  // qemu's tls-creds-psk wants a directory holding keys.psk.
  pskDir = join(dir, 'qemu-psk');
  mkdirSync(pskDir);
  copyFileSync(pskFile, join(pskDir, 'keys.psk'));
  mkdirSync(join(dir, 'b'));
  // A short handshakeTimeout: raw-socket clients that close during negotiation leave the
  // server side half-open until then (see daemon.test.ts), and shutdown waits for them.
  a = await startDaemon({
    nbd: { handshakeTimeout: '5s' },
    tls: { cert: x509.serverCert, key: x509.serverKey, ca: x509.caCert, psk: pskFile },
    volumes: [
      { name: 'secure', mode: 'raw', size: '64MiB', disk: join(dir, 'disks', 'secure.img'), tls: 'require', description: 'TLS only' },
      { name: 'open', mode: 'raw', size: '16MiB', disk: join(dir, 'disks', 'open.img'), tls: 'on' },
      { name: 'plain', mode: 'raw', size: '16MiB', disk: join(dir, 'disks', 'plain.img'), tls: 'off' },
    ],
  }, { dir });
  b = await startDaemon({
    nbd: { handshakeTimeout: '5s' },
    tls: { cert: x509.serverCert, key: x509.serverKey, psk: pskFile },
    volumes: [
      { name: 'f1', mode: 'raw', size: '16MiB', disk: join(dir, 'disks', 'f1.img'), tls: 'require' },
      { name: 'f2', mode: 'raw', size: '16MiB', disk: join(dir, 'disks', 'f2.img'), tls: 'require' },
    ],
  }, { dir: join(dir, 'b') }); // own dir: each daemon has its own admin socket there
});

afterEach(() => {
  if (a) expectDaemonAlive(a);
  if (b) expectDaemonAlive(b);
});

afterAll(async () => {
  if (a) expect(await a.stop()).toBe(0);
  if (b) expect(await b.stop()).toBe(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const x509Uri = (dh: DaemonHandle, name: string, certDir = x509.clientDir): string =>
  `nbds://${dh.host}:${dh.port}/${name}?tls-certificates=${certDir}`;
const pskUri = (dh: DaemonHandle, name: string, user = 'alice', file = pskFile): string =>
  `nbds://${user}@${dh.host}:${dh.port}/${name}?tls-psk-file=${file}`;

async function plainOption(dh: DaemonHandle, option: number, data?: Buffer): Promise<number[]> {
  const c = await RawClient.connect({ port: dh.port, host: dh.host });
  try {
    await c.start();
    return (await c.ask(option, data)).map((r) => r.type);
  } finally {
    c.destroy();
  }
}

describe('TLS: x509 and PSK on one daemon (client certificates mandatory)', () => {
  it('x509 with a client certificate: TLS negotiated, data written and read back, on disk', async () => {
    expect((await run('nbdinfo', ['--is', 'tls', x509Uri(a, 'secure')])).code).toBe(0);
    const r = await nbdshOk(String.raw`
      import random, json
      assert h.get_tls_negotiated()
      data = random.Random(11).randbytes(4 * 1024 * 1024 + 3)
      h.pwrite(data, 1000)
      h.flush()
      assert h.pread(len(data), 1000) == data
      print('RESULT ' + json.dumps({'size': h.get_size()}))
    `, { uri: x509Uri(a, 'secure') });
    expect(r.stdout).toMatch(/RESULT \{"size": 67108864\}/);
    expect(hasLogRecord(a.output(), { msg: 'transmission started', export: 'secure', tls: true }), 'a TLS transmission record for export secure').toBe(true);
  });

  it('PSK (psktool file): TLS negotiated with identity alice; a second identity works too', async () => {
    const r = await nbdshOk(String.raw`
      assert h.get_tls_negotiated()
      h.pwrite(b'psk!' * 1024, 8 * 1024 * 1024)
      assert h.pread(4096, 8 * 1024 * 1024) == b'psk!' * 1024
      print('OK')
    `, { uri: pskUri(a, 'secure') });
    expect(r.stdout).toMatch(/OK/);
    expect((await run('nbdinfo', ['--is', 'tls', pskUri(a, 'secure', 'carol')])).code).toBe(0);
  });

  it('nbdcopy 64 MiB through TLS (x509) both ways: sha256 equal', async () => {
    const src = join(dir, 'tls-src.img');
    const hash = randomFile(src, 64 * MiB);
    await runOk('nbdcopy', ['--flush', src, x509Uri(a, 'secure')], { timeoutMs: 110_000 });
    expect(await sha256File(join(dir, 'disks', 'secure.img'))).toBe(hash);
    const out = join(dir, 'tls-out.img');
    await runOk('nbdcopy', [x509Uri(a, 'secure'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(hash);
    rmSync(src);
    rmSync(out);
  });

  it('plaintext: GO/INFO to a require export → NBD_REP_ERR_TLS_REQD; other exports still served; nbdinfo refused', async () => {
    expect(await plainOption(a, OPT.GO, RawClient.goData('secure'))).toEqual([REP.ERR_TLS_REQD]);
    expect(await plainOption(a, OPT.INFO, RawClient.goData('secure'))).toEqual([REP.ERR_TLS_REQD]);
    const c = await RawClient.connect({ port: a.port, host: a.host });
    try {
      await c.start();
      expect((await c.ask(OPT.GO, RawClient.goData('secure'))).map((r) => r.type)).toEqual([REP.ERR_TLS_REQD]);
      // The same connection may go on to a non-TLS export.
      const { size } = await c.go('plain');
      expect(size).toBe(16n * BigInt(MiB));
    } finally {
      c.destroy();
    }
    // EXPORT_NAME cannot carry an error: the server closes.
    const e = await RawClient.connect({ port: a.port, host: a.host });
    await e.start();
    e.sendOption(OPT.EXPORT_NAME, Buffer.from('secure'));
    expect(await e.closedWithin(5000)).toBe(true);
    const r = await run('nbdinfo', [a.uri('secure')]);
    expect(r.code).not.toBe(0);
    // libnbd 1.14 words ERR_TLS_REQD as "Operation not supported for export: secure"; the raw replies above pin the code.
    expect(r.stderr).toMatch(/secure/);
    // A tls: on export works in plaintext and over TLS; tls: off works in plaintext.
    expect((await run('nbdinfo', ['--is', 'tls', a.uri('open')])).code).toBe(2);
    expect((await run('nbdinfo', ['--is', 'tls', x509Uri(a, 'open')])).code).toBe(0);
    expect((await run('nbdinfo', ['--can', 'connect', a.uri('plain')])).code).toBe(0);
  });

  it('LIST before TLS omits TLS-only exports; after TLS lists all', async () => {
    const plain = JSON.parse((await runOk('nbdinfo', ['--list', '--json', `nbd://${a.host}:${a.port}`])).stdout) as { exports: Array<{ 'export-name': string }> };
    expect(plain.exports.map((e) => e['export-name'])).toEqual(['open', 'plain']);
    const tls = JSON.parse((await runOk('nbdinfo', ['--list', '--json', `nbds://${a.host}:${a.port}?tls-certificates=${x509.clientDir}`])).stdout) as { exports: Array<{ 'export-name': string; description?: string }> };
    expect(tls.exports.map((e) => e['export-name'])).toEqual(['secure', 'open', 'plain']);
    expect(tls.exports[0]!.description).toBe('TLS only');
  });

  it('refused: no client certificate (server has ca), untrusted server CA, wrong PSK key, unknown PSK identity', async () => {
    const noCert = await run('nbdinfo', [x509Uri(a, 'secure', x509.caOnlyDir)]);
    expect(noCert.code, 'client without certificate').not.toBe(0);
    const untrusted = await run('nbdinfo', [x509Uri(a, 'secure', otherCa.clientDir)]);
    expect(untrusted.code, 'untrusted CA').not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate|verif|TLS|handshake/i);
    const wrongKey = join(dir, 'wrong.psk');
    await makePsk(wrongKey, 'alice'); // same identity, different random key
    const wk = await run('nbdinfo', [pskUri(a, 'secure', 'alice', wrongKey)]);
    expect(wk.code, 'wrong PSK').not.toBe(0);
    const bobFile = join(dir, 'bob.psk');
    await makePsk(bobFile, 'bob');
    const bob = await run('nbdinfo', [pskUri(a, 'secure', 'bob', bobFile)]);
    expect(bob.code, 'unknown identity').not.toBe(0);
    // The server logged the failed handshakes and still serves TLS and plaintext clients.
    expect(a.output()).toMatch(/TLS handshake failed/);
    expect((await run('nbdinfo', ['--is', 'tls', x509Uri(a, 'secure')])).code).toBe(0);
    expect((await run('nbdinfo', ['--can', 'connect', a.uri('plain')])).code).toBe(0);
  });

  it('a client that sends STARTTLS and then garbage (no TLS hello) is dropped; the server keeps serving', async () => {
    const c = await RawClient.connect({ port: a.port, host: a.host });
    await c.start();
    c.sendOption(OPT.STARTTLS);
    expect((await c.optionReply()).type).toBe(REP.ACK);
    c.write(Buffer.from('this is not a TLS ClientHello'.repeat(10)));
    expect(await c.closedWithin(10_000)).toBe(true);
    // STARTTLS twice in a row, and STARTTLS with data, are errors (plaintext side).
    expect(await plainOption(a, OPT.STARTTLS, Buffer.from('x'))).toEqual([REP.ERR_INVALID]);
    expect((await run('nbdinfo', ['--is', 'tls', x509Uri(a, 'secure')])).code).toBe(0);
  });

  it('qemu-img over TLS with tls-creds-x509 (client certificate): convert in, compare, convert out', async () => {
    const src = join(dir, 'q-src.img');
    const hash = randomFile(src, 64 * MiB); // the whole export, so compare can say "identical"
    const x509Obj = `tls-creds-x509,id=tls0,endpoint=client,dir=${x509.clientDir}`;
    const target = `driver=nbd,server.type=inet,server.host=${a.host},server.port=${a.port},export=secure,tls-creds=tls0`;
    await runOk('qemu-img', ['convert', '-n', '--object', x509Obj, '-f', 'raw', src, '--target-image-opts', target], { timeoutMs: 60_000 });
    expect(await sha256File(join(dir, 'disks', 'secure.img'))).toBe(hash);
    const overX509 = `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${a.host},file.server.port=${a.port},file.export=secure,file.tls-creds=tls0`;
    const cmp = await run('qemu-img', ['compare', '--object', x509Obj, '--image-opts', `driver=raw,file.driver=file,file.filename=${src}`, overX509]);
    expect(cmp.code, cmp.stdout + cmp.stderr).toBe(0);
    expect(cmp.stdout).toMatch(/Images are identical/);
    const out = join(dir, 'q-out.img');
    await runOk('qemu-img', ['convert', '--object', x509Obj, '--image-opts', overX509, '-O', 'raw', out], { timeoutMs: 60_000 });
    expect(await sha256File(out)).toBe(hash);
    // Without tls-creds qemu is refused (the export requires TLS).
    const plain = await run('qemu-img', ['info', '-f', 'raw', a.uri('secure')]);
    expect(plain.code).not.toBe(0);
    rmSync(src);
    rmSync(out);
  });

  it('qemu-img over TLS with tls-creds-psk (keys.psk, username alice)', async () => {
    const pskObj = `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=alice`;
    const overPsk = `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${a.host},file.server.port=${a.port},file.export=secure,file.tls-creds=tls0`;
    const r = await run('qemu-img', ['info', '--output=json', '--object', pskObj, '--image-opts', overPsk]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { 'virtual-size': number })['virtual-size']).toBe(64 * MiB);
  });
});

describe('TLS: every export requires TLS (FORCEDTLS)', () => {
  it('plaintext LIST/GO/INFO/unknown options get ERR_TLS_REQD; EXPORT_NAME closes; STARTTLS is accepted', async () => {
    expect(await plainOption(b, OPT.LIST)).toEqual([REP.ERR_TLS_REQD]);
    expect(await plainOption(b, OPT.GO, RawClient.goData('f1'))).toEqual([REP.ERR_TLS_REQD]);
    expect(await plainOption(b, OPT.INFO, RawClient.goData('f2'))).toEqual([REP.ERR_TLS_REQD]);
    expect(await plainOption(b, OPT.STRUCTURED_REPLY)).toEqual([REP.ERR_TLS_REQD]);
    expect(await plainOption(b, OPT.STARTTLS)).toEqual([REP.ACK]);
    const e = await RawClient.connect({ port: b.port, host: b.host });
    await e.start();
    e.sendOption(OPT.EXPORT_NAME, Buffer.from('f1'));
    expect(await e.closedWithin(5000)).toBe(true);
    const r = await run('nbdinfo', ['--list', `nbd://${b.host}:${b.port}`]);
    expect(r.code).not.toBe(0);
  });

  it('over TLS (x509 without client cert, since no ca is set; or PSK) LIST shows every export and I/O works', async () => {
    const list = JSON.parse((await runOk('nbdinfo', ['--list', '--json', `nbds://${b.host}:${b.port}?tls-certificates=${x509.caOnlyDir}`])).stdout) as { exports: Array<{ 'export-name': string }> };
    expect(list.exports.map((e) => e['export-name'])).toEqual(['f1', 'f2']);
    await nbdshOk(String.raw`
      h.pwrite(b'forced' * 100, 0)
      assert h.pread(600, 0) == b'forced' * 100
    `, { uri: pskUri(b, 'f2') });
    await nbdshOk(String.raw`
      assert h.get_tls_negotiated()
      assert h.pread(600, 0) == bytes(600)
    `, { uri: x509Uri(b, 'f1', x509.caOnlyDir) });
    // A plaintext libnbd client that does not insist on TLS cannot get in.
    const p = await nbdsh('h.connect_uri(uri)\n', { env: {}, uri: undefined, prelude: `uri = ${JSON.stringify(b.uri('f1'))}` });
    expect(p.code).not.toBe(0);
    expect(p.stderr).toMatch(/TLS|tls/);
  });
});

describe('TLS: the daemons survive everything above', () => {
  it('both daemons still answer', async () => {
    expect((await run('nbdinfo', ['--is', 'tls', x509Uri(a, 'secure')])).code).toBe(0);
    expect((await run('nbdinfo', ['--is', 'tls', pskUri(b, 'f1')])).code).toBe(0);
    writeFileSync(join(dir, 'done'), '');
  });
});
