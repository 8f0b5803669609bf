// The blockgate command line: `serve --check` on good and bad configs (the
// error names the offending key, exit 1) and `--help` on every command and
// subcommand.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockgateBin, tempDir } from '../harness/daemon.js';
import { run } from '../harness/nbd-tools.js';

let dir: string;

beforeAll(() => {
  dir = tempDir('blockgate-cli-');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function blockgate(args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [blockgateBin, ...args], { timeoutMs: 60_000 });
}

describe('serve --check', () => {
  function writeConfig(name: string, cfg: unknown): string {
    const p = join(dir, `${name}.yaml`);
    writeFileSync(p, typeof cfg === 'string' ? cfg : stringify(cfg));
    return p;
  }
  const vol = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'a', mode: 'raw', size: '256MiB', disk: 'check/a.img', ...extra }); // relative: resolved against the config's directory

  it('a good config: exit 0, prints OK with counts, starts nothing', async () => {
    const p = writeConfig('good', {
      log: { level: 'info' },
      listen: [{ tcp: '127.0.0.1:0' }, { unix: join(dir, 'check.sock') }],
      nbd: { handshakeTimeout: '30s', shutdownGrace: '5s' },
      volumes: [vol(), vol({ name: 'b', readOnly: false, description: 'second' })],
    });
    const r = await blockgate(['serve', '--config', p, '--check']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/OK \(2 volume\(s\), 2 listener\(s\)\)/);
    expect(existsSync(join(dir, 'check.sock'))).toBe(false);
    expect(existsSync(join(dir, 'check', 'a.img'))).toBe(false);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['unknown top-level key', { volumes: [vol()], listn: [] }, /\blistn: unknown key/],
    ['unknown volume key', { volumes: [vol({ sise: '1GiB' })] }, /volumes\[0\]\.sise: unknown key/],
    ['unknown nbd key', { nbd: { handshake: '1s' }, volumes: [vol()] }, /nbd\.handshake: unknown key/],
    ['bad size', { volumes: [vol(), vol({ name: 'b', size: '12XB' })] }, /volumes\[1\]\.size: '12XB' is not a size/],
    ['duplicate name', { volumes: [vol(), vol()] }, /volumes\[1\]\.name: duplicate volume name 'a'/],
    ['require-TLS without tls section', { volumes: [vol({ tls: 'require' })] }, /volumes\[0\]\.tls: 'require' needs a top-level tls section/],
    ['bad tls policy', { volumes: [vol({ tls: 'maybe' })] }, /volumes\[0\]\.tls: must be one of off, on, require/],
    ['bad duration', { nbd: { shutdownGrace: 'soon' }, volumes: [vol()] }, /nbd\.shutdownGrace: 'soon' is not a duration/],
    ['bad listen', { listen: [{ tcp: 'localhost' }], volumes: [vol()] }, /listen\[0\]\.tcp:/],
    ['no volumes', { volumes: [] }, /volumes: at least one volume is required/],
    ['bad export name', { volumes: [vol({ name: '-x y' })] }, /volumes\[0\]\.name:/],
    ['invalid YAML', 'volumes: [ {name: a\n', /invalid YAML/],
  ];
  for (const [what, cfg, message] of bad) {
    it(`${what}: exit 1 and the error names the key`, async () => {
      const p = writeConfig(what.replace(/\W+/g, '-'), cfg);
      const r = await blockgate(['serve', '--config', p, '--check']);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(message);
      if (!what.includes('YAML')) expect(r.stderr.trim().split('\n')).toHaveLength(1); // one line (the YAML parser's message has a code frame)
    });
  }

  it('a missing config file: exit 1 naming the file', async () => {
    const r = await blockgate(['serve', '--config', join(dir, 'nope.yaml'), '--check']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.yaml/);
  });
});

describe('--help', () => {
  it('every command and subcommand prints its usage and exits 0', async () => {
    const seen: string[] = [];
    const visit = async (path: string[], depth: number): Promise<void> => {
      const r = await blockgate([...path, '--help']);
      expect(r.code, `${path.join(' ')} --help: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: blockgate${path.length ? ' ' + path.join(' ') : ''}\\b`));
      seen.push(path.join(' ') || '(top)');
      if (depth >= 3) return;
      const section = r.stdout.split(/^Commands:\s*$/m)[1];
      if (!section) return;
      const names = [...section.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
      await Promise.all(names.map((n) => visit([...path, n], depth + 1)));
    };
    await visit([], 0);
    expect(seen).toContain('serve');
    expect(seen.length).toBeGreaterThanOrEqual(2);
    // `help serve` is the same as `serve --help`.
    const a = await blockgate(['help', 'serve']);
    const b = await blockgate(['serve', '--help']);
    expect(a.stdout).toBe(b.stdout);
    expect(b.stdout).toMatch(/--config <file>/);
    expect(b.stdout).toMatch(/--check/);
  });

  it('an unknown command or option exits non-zero with a hint', async () => {
    const r = await blockgate(['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown command/);
    const s = await blockgate(['serve', '--config', 'x', '--bogus']);
    expect(s.code).not.toBe(0);
    expect(s.stderr).toMatch(/unknown option/);
  });
});
