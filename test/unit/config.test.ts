// Config validation: every bad input is a CONFIG error naming the key.
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { parseConfig } from '../../src/daemon/config.js';

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
