// Config validation: every bad input is a CONFIG error naming the key; one
// schema per shape (YAML, admin API, persisted files, control commands) and
// one duration grammar.
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { parseConfig } from '../../src/daemon/config.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRuntimeVolumes, runtimeVolumeConfig, saveRuntimeVolume } from '../../src/daemon/runtime-volumes.js';
import { cachedVolumeFromJson, cachedVolumeToJson, type CachedVolumeConfig } from '../../src/volumes/cached/config.js';
import { applyTuning, DEFAULT_TUNING, tuning } from '../../src/config/tuning.js';
import { validateCommand } from '../../src/control-plane/agent/handler.js';
import { parseControlConfig } from '../../src/control-plane/server/config.js';
import { formatDuration, parseDuration } from '../../src/util/duration.js';

const base = `
listen: [{tcp: "127.0.0.1:10809"}]
volumes:
  - {name: demo, mode: raw, size: 1GiB, disk: var/demo.img}
`;

function configError(text: string): string {
  try {
    parseConfig(text, '/etc/blockgate');
  } catch (err) {
    expect((err as { code?: string }).code).toBe(ErrorCodes.CONFIG);
    return (err as Error).message;
  }
  throw new Error('expected a CONFIG error');
}

describe('parseConfig', () => {
  it('normalises a valid config: sizes in bytes, paths against the config dir, defaults', () => {
    const c = parseConfig(base, '/etc/blockgate');
    expect(c.volumes[0]).toEqual({
      name: 'demo', mode: 'raw', size: 1024 ** 3, disk: '/etc/blockgate/var/demo.img',
      readOnly: false, description: undefined, tls: 'off',
    });
    expect(c.listen).toEqual([{ tcp: '127.0.0.1:10809' }]);
    expect(c.log).toEqual({ level: 'info', format: 'json' });
    expect(c.nbd).toEqual({ handshakeTimeoutMs: 120_000, shutdownGraceMs: 30_000 });
    expect(c.admin).toEqual({ socket: '/run/blockgate/admin.sock' });
    expect(c.metrics).toBeUndefined();
  });

  it('resolves the admin socket and takes a metrics listener', () => {
    const c = parseConfig(`${base}admin: {socket: run/admin.sock}\nmetrics: {listen: "127.0.0.1:9810"}\n`, '/srv');
    expect(c.admin).toEqual({ socket: '/srv/run/admin.sock' });
    expect(c.metrics).toEqual({ listen: '127.0.0.1:9810' });
  });

  it('accepts unix listeners with an octal mode and durations', () => {
    const c = parseConfig(`listen: [{unix: run/nbd.sock, mode: "0600"}]\nnbd: {handshakeTimeout: 5s, shutdownGrace: 500ms}\nvolumes: [{name: a, disk: /dev/sdb}]\n`, '/srv');
    expect(c.listen).toEqual([{ unix: '/srv/run/nbd.sock', mode: 0o600 }]);
    expect(c.nbd).toEqual({ handshakeTimeoutMs: 5000, shutdownGraceMs: 500 });
  });

  it.each([
    ['unknown top-level key', `${base}\nlisten_typo: 1\n`, 'listen_typo: unknown key'],
    ['unknown volume key', base.replace('disk:', 'sise: 1G, disk:'), 'volumes[0].sise: unknown key'],
    ['bad size', base.replace('1GiB', '12XB'), "volumes[0].size: '12XB' is not a size"],
    ['missing disk', base.replace(', disk: var/demo.img', ''), 'volumes[0].disk: is required'],
    ['bad mode', base.replace('mode: raw', 'mode: tape'), 'volumes[0].mode: must be one of'],
    ['duplicate names', `${base}  - {name: demo, disk: b.img, size: 1G}\n`, "volumes[1].name: duplicate volume name 'demo'"],
    ['bad export name', base.replace('name: demo', 'name: "a b"'), 'volumes[0].name:'],
    ['tls require without tls section', base.replace('disk: var', 'tls: require, disk: var'), "volumes[0].tls: 'require' needs a top-level tls section"],
    ['bad listen', base.replace('127.0.0.1:10809', 'localhost'), 'listen[0].tcp:'],
    ['listen with both', base.replace('{tcp: "127.0.0.1:10809"}', '{tcp: "127.0.0.1:1", unix: /x}'), 'listen[0]: needs exactly one of tcp or unix'],
    ['cert without key', `${base}tls: {cert: a.pem}\n`, 'tls: cert and key must be given together'],
    ['bad log level', `${base}log: {level: loud}\n`, 'log.level: must be one of'],
    ['bad duration', `${base}nbd: {handshakeTimeout: soon}\n`, "nbd.handshakeTimeout: 'soon' is not a duration"],
    ['bad metrics listen', `${base}metrics: {listen: nowhere}\n`, 'metrics.listen:'],
    ['unknown admin key', `${base}admin: {sock: /x}\n`, 'admin.sock: unknown key'],
    ['no volumes', 'listen: [{tcp: "127.0.0.1:1"}]\n', 'volumes: at least one volume is required'],
    ['invalid YAML', 'volumes: [\n', 'invalid YAML'],
    ['not a mapping', '- 1\n', '(top level): must be a mapping'],
  ])('%s', (_name, text, message) => {
    expect(configError(text)).toContain(message);
  });
});

describe('one duration grammar (util/duration.ts)', () => {
  it.each([
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['2h', 7_200_000], ['1d', 86_400_000], ['1w', 604_800_000],
    ['1.5h', 5_400_000], ['90', 90_000], [' 2 H ', 7_200_000], [90, 90_000], [0.5, 500], ['0', 0],
  ] as const)('%j is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['soon', '', '5 minutes', '-1s', '1y', '1h30m'])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('formatDuration gives the shortest exact form, and parses back', () => {
    for (const ms of [0, 1, 500, 1000, 1500, 60_000, 90_000, 3_600_000, 86_400_000, 604_800_000, 2 * 604_800_000 + 1]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatDuration(1500)).toBe('1500ms');
  });

  it('the YAML takes the CLI\'s units: snapshots.interval: 1d (refused before)', () => {
    const c = parseConfig(`${stored('snapshots: {interval: 1d, keep: 7}')}`, '/srv');
    expect(c.volumes[0]).toMatchObject({ mode: 'stored', snapshots: { intervalMs: 86_400_000, keep: 7 } });
    expect(parseConfig(`${base}nbd: {shutdownGrace: 1w, handshakeTimeout: 90}\n`, '/srv').nbd).toEqual({ handshakeTimeoutMs: 90_000, shutdownGraceMs: 604_800_000 });
  });
});

/** A config with one stored volume; `extra` goes inside its mapping. */
function stored(extra: string): string {
  return `store: {url: store}\nvolumes:\n  - {name: s, mode: stored, disk: s.img, writeLog: {dir: log, size: 64MiB}${extra ? `, ${extra}` : ''}}\n`;
}

describe('one schema per volume shape, shared by the YAML, the admin API and the persisted files', () => {
  const BLOCK = 'must be a power of two between 64 KiB and 4 MiB';

  it.each(['3MiB', '8MiB', '32KiB', 1000, 'big', true])('blockSize %j: the same message from the YAML, a run-time volume and a cached volume', (bs) => {
    const shown = typeof bs === 'string' ? `'${bs}'` : String(bs);
    const expected = `blockSize: ${BLOCK} (got ${shown})`;
    expect(configError(stored(`blockSize: ${JSON.stringify(bs)}`))).toBe(`volumes[0].${expected}`);
    let runtime: unknown;
    try { runtimeVolumeConfig({ name: 'v', mode: 'stored', size: '1GiB', blockSize: bs }, '/data', 'off'); } catch (err) { runtime = err; }
    expect(runtime).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: `volume.${expected}` });
    expect(() => cachedVolumeFromJson({ name: 'c', cache: { dir: 'c', size: '1GiB' }, writeLog: { dir: 'l', size: '1GiB' }, blockSize: bs }, '/data'))
      .toThrow(`volume.${expected}`);
  });

  it('run-time raw and stored volumes: defaults, paths under dataDir, clear errors', () => {
    expect(runtimeVolumeConfig({ name: 'v', mode: 'stored', size: '1GiB', blockSize: '1MiB', snapshots: { interval: '1d' } }, '/data', 'on')).toEqual({
      name: 'v', mode: 'stored', size: 1024 ** 3, disk: '/data/volumes/v/disk.img', readOnly: false, description: undefined, tls: 'on',
      writeLog: { dir: '/data/volumes/v/log', size: 1024 ** 3 }, blockSize: 1024 * 1024, snapshots: { intervalMs: 86_400_000, keep: undefined },
      restoreFrom: undefined, uploadIntervalMs: 1000,
    });
    expect(runtimeVolumeConfig({ name: 'r', mode: 'raw', size: 4096 }, '/data', 'off')).toMatchObject({ mode: 'raw', size: 4096, disk: '/data/volumes/r/disk.img' });
    const bad = (body: Record<string, unknown>): string => {
      try { runtimeVolumeConfig(body, '/data', 'off'); } catch (err) { expect((err as { code?: string }).code).toBe(ErrorCodes.INVALID_ARGUMENT); return (err as Error).message; }
      throw new Error('expected an error');
    };
    expect(bad({ name: 'x', mode: 'raw' })).toBe('volume.size: is required');
    expect(bad({ name: 'x', mode: 'stored' })).toBe('volume.size: is required (or fromSnapshot)');
    expect(bad({ name: 'x', mode: 'tape' })).toBe('volume.mode: must be raw, stored or cached (got "tape")');
    expect(bad({ name: 'x', mode: 'raw', size: 1, fromSnapshot: 'snap-00' })).toContain('volume.fromSnapshot: a raw volume cannot be created from a snapshot');
    expect(bad({ name: 'x', mode: 'stored', size: '1G', writeLogSize: '1KiB' })).toBe("volume.writeLogSize: '1KiB' is not a size of at least 1.00 MiB");
    expect(bad({ name: 'x', mode: 'stored', size: '1G', blocksize: '1MiB' })).toMatch(/^volume\.blocksize: unknown key \(allowed: .*blockSize/);
    expect(bad({ name: 'a b', mode: 'raw', size: 1 })).toContain("volume.name: 'a b' must be 1-128 characters");
  });

  it('a cached volume from JSON equals the same volume from the YAML, and survives its persisted form', () => {
    const yaml = parseConfig(`store: {url: store}\nvolumes:\n  - {name: c, mode: cached, size: 1GiB, cache: {dir: /c, size: 1GiB}, writeLog: {dir: /l, size: 1GiB}, uploadInterval: 2s, lease: {ttl: 1d}}\n`, '/srv').volumes[0] as CachedVolumeConfig;
    const json = cachedVolumeFromJson({ name: 'c', size: '1GiB', cache: { dir: '/c', size: '1GiB' }, writeLog: { dir: '/l', size: '1GiB' }, uploadInterval: '2s', lease: { ttl: '1d' } }, '/data');
    expect(json).toEqual(yaml);
    expect(json).toMatchObject({ uploadIntervalMs: 2000, readAheadBlocks: 8, lease: { ttlMs: 86_400_000, takeover: 'expired' }, tls: 'off' });
    expect(cachedVolumeFromJson(cachedVolumeToJson(json), '/elsewhere')).toEqual(json);
    expect(() => cachedVolumeFromJson({ name: 'c', mode: 'raw', cache: { dir: 'c', size: '1GiB' }, writeLog: { dir: 'l', size: '1GiB' } }, '/d')).toThrow("volume.mode: must be one of cached (got 'raw')");
    expect(() => cachedVolumeFromJson({ name: 'c', cache: { dir: 'x', size: '1GiB' }, writeLog: { dir: 'x', size: '1GiB' } }, '/d')).toThrow('volume.cache.dir: must differ from writeLog.dir');
  });

  it.each([
    ['unknown keys are reported before what they cause', stored('snapshot: {interval: 1h}').replace('disk: s.img, ', ''), 'volumes[0].snapshot: unknown key'],
    ['stored needs a store', stored('').replace('store: {url: store}\n', ''), "volumes[0]: mode 'stored' needs a top-level store section"],
    ['snapshots.interval below 1s', stored('snapshots: {interval: 500ms}'), 'volumes[0].snapshots.interval: must be at least 1s'],
    ['snapshots.keep not positive', stored('snapshots: {interval: 1h, keep: 0}'), 'volumes[0].snapshots.keep: must be a positive integer >= 1 (got 0)'],
    ['bad restoreFrom', stored('restoreFrom: yesterday'), "volumes[0].restoreFrom: 'yesterday' is not a snapshot id"],
    ['writeLog missing', stored('').replace(', writeLog: {dir: log, size: 64MiB}', ''), 'volumes[0].writeLog: is required ({dir, size}'],
    ['writeLog too small', stored('').replace('64MiB', '1KiB'), "volumes[0].writeLog.size: '1KiB' is not a size of at least 1.00 MiB"],
    ['uploadWorkers out of range', `${stored('')}`.replace('store: {url: store}', 'store: {url: store, uploadWorkers: 0}'), 'store.uploadWorkers: must be an integer in 1..256 (got 0)'],
    ['bad store scheme', stored('').replace('url: store', 'url: "ftp://x"'), "store.url: unsupported scheme 'ftp:'"],
    ['store keys apart', stored('').replace('url: store', 'url: store, accessKeyId: k'), 'store: accessKeyId and secretAccessKey must be given together'],
    ['bad unix mode', `listen: [{unix: s.sock, mode: "0999"}]\nvolumes: [{name: a, disk: /dev/sdb}]\n`, 'listen[0].mode: must be an octal file mode'],
    ['control url missing', `${base}control: {stateDir: x}\n`, 'control.url: is required: http(s)://host:port'],
    ['readAhead out of range', `store: {url: s}\nvolumes: [{name: c, mode: cached, cache: {dir: c, size: 1GiB}, writeLog: {dir: l, size: 1GiB}, readAhead: 5000}]\n`, 'volumes[0].readAhead: must be a number of blocks in 0..1024 (got 5000)'],
    ['bad lease takeover', `store: {url: s}\nvolumes: [{name: c, mode: cached, cache: {dir: c, size: 1GiB}, writeLog: {dir: l, size: 1GiB}, lease: {takeover: always}}]\n`, "volumes[0].lease.takeover: must be one of never, expired, force (got 'always')"],
  ])('%s', (_name, text, message) => {
    expect(configError(text)).toContain(message);
  });
});

describe('tuning: section', () => {
  it('defaults when absent or empty', () => {
    expect(parseConfig(base, '/srv').tuning).toEqual(DEFAULT_TUNING);
    expect(parseConfig(`${base}tuning:\n`, '/srv').tuning).toEqual(DEFAULT_TUNING);
    expect(DEFAULT_TUNING).toEqual({ nowaitMax: 64 * 1024, s3DirectRequests: true });
  });

  it('takes sizes and booleans', () => {
    expect(parseConfig(`${base}tuning: {nowaitMax: 256KiB, s3DirectRequests: false}\n`, '/srv').tuning).toEqual({ nowaitMax: 256 * 1024, s3DirectRequests: false });
    expect(parseConfig(`${base}tuning: {nowaitMax: 0}\n`, '/srv').tuning).toEqual({ nowaitMax: 0, s3DirectRequests: true });
  });

  it.each([
    ['nowaitMax: 2MiB', 'tuning.nowaitMax: must be at most 1 MiB'],
    ['nowaitMax: lots', "tuning.nowaitMax: 'lots' is not a size"],
    ['s3DirectRequests: "no"', 'tuning.s3DirectRequests: must be true or false'],
    ['rawNowaitMax: 0', 'tuning.rawNowaitMax: unknown key (allowed: nowaitMax, s3DirectRequests)'],
  ])('%s is refused', (entry, message) => {
    expect(configError(`${base}tuning: {${entry}}\n`)).toContain(message);
  });

  it('applyTuning makes a config\'s values the ones the data paths read', () => {
    try {
      applyTuning({ nowaitMax: 0, s3DirectRequests: false });
      expect(tuning()).toEqual({ nowaitMax: 0, s3DirectRequests: false });
    } finally {
      applyTuning(DEFAULT_TUNING);
    }
    expect(tuning()).toEqual(DEFAULT_TUNING);
  });
});

describe('control commands share the field schemas', () => {
  const bad = (type: string, args: unknown): string => {
    try { validateCommand(type, args); } catch (err) { expect((err as { code?: string }).code).toBe(ErrorCodes.INVALID_ARGUMENT); return (err as Error).message; }
    throw new Error('expected an error');
  };

  it('normalises good arguments', () => {
    expect(validateCommand('create-volume', { name: 'v', size: 1024 })).toEqual({ type: 'create-volume', args: { name: 'v', size: 1024, mode: 'raw' } });
    expect(validateCommand('set-bandwidth', { upload: 5 })).toEqual({ type: 'set-bandwidth', args: { upload: 5, download: null } });
    expect(validateCommand('set-snapshot-schedule', { volume: 'v', intervalSeconds: null })).toEqual({ type: 'set-snapshot-schedule', args: { volume: 'v', intervalSeconds: null, retain: null } });
  });

  it.each([
    ['create-volume', { name: 'v' }, 'create-volume: args.size: is required'],
    ['create-volume', { name: 'v', size: 1, mode: 'tape' }, "create-volume: args.mode: must be one of raw, stored, cached (got 'tape')"],
    ['create-volume', { name: 'v', size: 1, fromSnapshot: 'latest' }, "create-volume: args.fromSnapshot: 'latest' is not a snapshot id"],
    ['create-volume', { name: 'v', size: 1, colour: 'red' }, 'create-volume: args.colour: unknown key'],
    ['snapshot', { volumes: [] }, 'snapshot: args.volumes: must be a non-empty list of volume names'],
    ['snapshot', { volumes: ['ok', 'not ok'] }, "snapshot: args.volumes[1]: 'not ok' must be 1-128 characters"],
    ['set-bandwidth', {}, 'set-bandwidth: args: give upload and/or download'],
    ['set-snapshot-schedule', { volume: 'v', intervalSeconds: 5 }, 'set-snapshot-schedule: args.intervalSeconds: must be a number of seconds >= 60 (got 5)'],
    ['snapshot', 'x', 'snapshot: args: must be a mapping'],
    ['reboot', {}, 'reboot: unknown command type'],
  ])('%s %j', (type, args, message) => {
    expect(bad(type, args)).toContain(message);
  });
});

describe('control server config', () => {
  it('takes the common duration grammar (activationKeyTtl: 1d)', () => {
    const c = parseControlConfig('dataDir: d\nactivationKeyTtl: 1d\nlongPollHold: 45\naccounts: [{name: a, tokens: [abcdefghijklmnop]}]\n', '/etc/bg');
    expect(c).toMatchObject({ dataDir: '/etc/bg/d', activationKeyTtlMs: 86_400_000, longPollHoldMs: 45_000, challengeTtlMs: 120_000 });
    expect(c.accounts[0]!.tokenHashes).toHaveLength(1);
  });

  it.each([
    ['activationKeyTtl: soon\ndataDir: d\n', "activationKeyTtl: 'soon' is not a duration"],
    ['challengeTtl: 0\ndataDir: d\n', 'challengeTtl: must be positive'],
    ['dataDir: d\nregistry: {url: "http://x"}\n', 'dataDir: give exactly one of dataDir'],
    ['registry: {url: "http://x"}\n', 'peerSecret: is required with registry.url'],
    ['dataDir: d\naccounts: [{name: a}]\n', 'accounts[0]: needs at least one of tokenHashes or tokens'],
    ['dataDir: d\naccounts: [{name: a, tokenHashes: [abc]}]\n', 'accounts[0].tokenHashes[0]: must be a SHA-256 hex digest'],
    ['dataDir: d\nlisten: nowhere\n', 'listen:'],
    ['dataDir: d\nlistn: x\n', 'listn: unknown key'],
  ])('%j', (text, message) => {
    try {
      parseControlConfig(text, '/etc/bg');
    } catch (err) {
      expect((err as { code?: string }).code).toBe(ErrorCodes.CONFIG);
      expect((err as Error).message).toContain(message);
      return;
    }
    throw new Error('expected a CONFIG error');
  });
});

describe('persisted run-time volumes are reloaded through the YAML schema', () => {
  it('round-trips what saveRuntimeVolume wrote, and refuses a file the YAML would refuse, naming file and key', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bg-rtv-'));
    try {
      const cfgs = [
        runtimeVolumeConfig({ name: 'r', mode: 'raw', size: '1MiB', description: 'raw one' }, dataDir, 'off'),
        runtimeVolumeConfig({ name: 's', mode: 'stored', size: '1GiB', blockSize: '1MiB', snapshots: { interval: '1d', keep: 3 }, uploadInterval: '1500ms' }, dataDir, 'on'),
        runtimeVolumeConfig({ name: 't', mode: 'stored', fromSnapshot: 'vsnap-00ff' }, dataDir, 'off'),
      ];
      for (const c of cfgs) saveRuntimeVolume(dataDir, c);
      expect(loadRuntimeVolumes(dataDir)).toEqual(cfgs);

      const file = join(dataDir, 'runtime-volumes', 's.json');
      writeFileSync(file, JSON.stringify({ ...cfgs[1], blockSize: 3 * 1024 * 1024 }));
      expect(() => loadRuntimeVolumes(dataDir)).toThrow(`run-time volume file ${file} is invalid: blockSize: must be a power of two between 64 KiB and 4 MiB (got 3145728)`);
      writeFileSync(file, '{"name": "s", "mode": "tape"}');
      expect(() => loadRuntimeVolumes(dataDir)).toThrow('mode: must be raw or stored');
      writeFileSync(file, 'not json');
      expect(() => loadRuntimeVolumes(dataDir)).toThrow(`run-time volume file ${file} is invalid:`);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
