// The runtime: the suite, the CLI it drives and every `node` a test spawns run
// on the Node that package.json's engines names (scripts/test.sh puts the
// pinned LTS from scripts/install-node.sh first on PATH), and the native addon
// was built by that Node against its headers. A run on the machine's older
// Node (e.g. vitest started by hand) fails here instead of passing silently.
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const engines = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;

/** The lowest major `engines.node` allows (it is a plain ">=N"). */
function minimumMajor(range: string): number {
  const m = /^>=\s*(\d+)$/.exec(range.trim());
  if (!m) throw new Error(`package.json engines.node: expected ">=N", got ${JSON.stringify(range)}`);
  return Number(m[1]);
}

const major = (version: string): number => Number(/^v?(\d+)\./.exec(version)?.[1]);

describe('runtime', () => {
  it('engines.node names a Node release line that is still supported (24 or later)', () => {
    expect(minimumMajor(engines)).toBeGreaterThanOrEqual(24);
  });

  it('the test runner runs on a Node that engines allows', () => {
    expect(major(process.version)).toBeGreaterThanOrEqual(minimumMajor(engines));
  });

  it('is the Node scripts/install-node.sh pins (the prefix it prints)', () => {
    const prefix = execFileSync('bash', [join(repo, 'scripts', 'install-node.sh')], { encoding: 'utf8' }).trim();
    expect(realpathSync(join(prefix, 'bin', 'node'))).toBe(realpathSync(process.execPath));
  });

  it('the systemd unit starts the daemon on that Node (ExecStart names its absolute path)', () => {
    const unit = readFileSync(join(repo, 'systemd', 'blockgate.service'), 'utf8');
    const execStart = /^ExecStart=(\S+) (\S+)/m.exec(unit);
    expect(execStart?.[2]).toBe('/usr/lib/blockgate/bin/blockgate');
    expect(execFileSync(execStart![1]!, ['--version'], { encoding: 'utf8' }).trim()).toBe(process.version);
  });

  it('bin/blockgate --version reports the Node it runs on', () => {
    const out = execFileSync(process.execPath, [join(repo, 'bin', 'blockgate'), '--version'], { encoding: 'utf8' });
    expect(out.trim()).toBe(`${JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version} (node ${process.version})`);
  });

  it('`node` on PATH, as a spawned tool would find it, is the same Node', () => {
    const out = execFileSync('node', ['-p', 'process.version'], { encoding: 'utf8' });
    expect(out.trim()).toBe(process.version);
  });

  it('the native addon was built by this Node with its own headers', () => {
    const stamp = readFileSync(join(repo, 'build', 'blockgate-headers.txt'), 'utf8');
    const m = /^node (v\S+) headers (.+)$/m.exec(stamp);
    expect(m?.[1]).toBe(process.version);
    const headers = readFileSync(join(m![2]!, 'include', 'node', 'node_version.h'), 'utf8');
    expect(Number(/^#define NODE_MAJOR_VERSION (\d+)$/m.exec(headers)?.[1])).toBe(major(process.version));
  });
});
