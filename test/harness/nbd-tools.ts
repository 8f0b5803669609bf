// Helpers for driving blockgate with real NBD clients: libnbd's tools
// (nbdinfo, nbdcopy, nbdsh), qemu-img/qemu-io, and TLS material made with
// openssl/psktool. A missing tool is an error naming the Debian package that
// provides it (never a silent skip).
//
// nbdsh is `python3 -m nbd`, and the nbd module is Debian's
// (python3-libnbd): a pyenv shim may come first on PATH, so nbdsh() always
// runs /usr/bin/python3 -m nbd explicitly.
import { spawnSync } from 'node:child_process';
import { run, runOk, type RunOptions, type RunResult } from './process.js';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, createReadStream, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Tool → Debian package that ships it. */
export const TOOL_PACKAGES: Record<string, string> = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  nbdsh: 'python3-libnbd',
  '/usr/bin/python3': 'python3-libnbd',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  psktool: 'gnutls-bin',
  certtool: 'gnutls-bin',
  openssl: 'openssl',
  nbdkit: 'nbdkit',
  du: 'coreutils',
};

export const SYSTEM_PYTHON = '/usr/bin/python3';

function onPath(tool: string): boolean {
  if (tool.includes('/')) return existsSync(tool);
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, tool))) return true;
  }
  return false;
}

/**
 * Throws a clear error naming the Debian package(s) when any tool is missing.
 * For nbdsh also checks that /usr/bin/python3 can import the nbd module.
 */
export function requireTools(...tools: string[]): void {
  const missing: string[] = [];
  for (const t of tools) {
    if (!onPath(t)) { missing.push(t); continue; }
    if (t === 'nbdsh') {
      const r = spawnSync(SYSTEM_PYTHON, ['-c', 'import nbd'], { encoding: 'utf8' });
      if (r.status !== 0) missing.push(`${SYSTEM_PYTHON} with the nbd module`);
    }
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => TOOL_PACKAGES[m.split(' ')[0]!] ?? TOOL_PACKAGES.nbdsh!))];
    throw new Error(`missing required tool(s): ${missing.join(', ')}; install the Debian package(s): apt-get install ${pkgs.join(' ')} (or run scripts/install-deps.sh as root)`);
  }
}

export { run, runOk, type RunOptions, type RunResult } from './process.js';

export interface NbdshOptions extends RunOptions {
  /**
   * Connect to this URI before the script runs; otherwise `h` is unconnected.
   * Local-file URI parameters (tls-certificates, tls-psk-file) are allowed.
   */
  uri?: string;
  /** Request base:allocation before connecting (as nbdsh --base-allocation). */
  baseAllocation?: boolean;
  /** Python code run before the (dedented) script, e.g. shared helper functions. */
  prelude?: string;
}

/**
 * Runs an nbdsh script (`h` is the handle, `nbd` the module) with
 * /usr/bin/python3 explicitly. The script is dedented so tests can indent it.
 * The connection is made in Python (not `nbdsh -u`, which refuses URIs naming
 * local files such as ?tls-psk-file=).
 */
export function nbdsh(script: string, options: NbdshOptions = {}): Promise<RunResult> {
  const setup: string[] = [];
  if (options.baseAllocation) setup.push('h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)');
  if (options.uri) {
    setup.push('h.set_uri_allow_local_file(True)');
    setup.push(`h.connect_uri(${JSON.stringify(options.uri)})`);
  }
  const parts = [options.prelude ? dedent(options.prelude) : '', ...setup, dedent(script)];
  return run(SYSTEM_PYTHON, ['-m', 'nbd', '-c', parts.join('\n')], options);
}

/** nbdsh() that throws with the script's output unless it exits 0. */
export async function nbdshOk(script: string, options: NbdshOptions = {}): Promise<RunResult> {
  const r = await nbdsh(script, options);
  if (r.code !== 0) throw new Error(`nbdsh script failed (exit ${r.code ?? r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export function dedent(text: string): string {
  const lines = text.replace(/^\n/, '').split('\n');
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length);
  const cut = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(cut)).join('\n');
}

// ---------------------------------------------------------------- data files

/** Writes `size` bytes of random data (1 MiB chunks); resolves its sha256 (hex). */
export function randomFile(path: string, size: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    const chunk = 1024 * 1024;
    for (let done = 0; done < size; done += chunk) {
      const buf = randomBytes(Math.min(chunk, size - done));
      hash.update(buf);
      writeSync(fd, buf);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** sha256 (hex) of a file, or of its first `length` bytes. */
export function sha256File(path: string, length?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(path, length !== undefined ? { start: 0, end: length - 1 } : {});
    stream.on('data', (c) => hash.update(c));
    stream.on('error', reject);
    stream.on('end', () => resolve(hash.digest('hex')));
  });
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

export { mulberry32 as prng } from './prng.js';

// ---------------------------------------------------------------- TLS material

export interface X509Material {
  /** Directory for libnbd's tls-certificates= / qemu's tls-creds-x509 dir=: ca-cert.pem, client-cert.pem, client-key.pem. */
  readonly clientDir: string;
  /** Directory with only ca-cert.pem (a client without a certificate). */
  readonly caOnlyDir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

/**
 * Makes a CA, a server certificate for 127.0.0.1/localhost and a client
 * certificate, all signed by that CA, with openssl.
 */
export async function makeX509(dir: string, cn = 'blockgate-test'): Promise<X509Material> {
  requireTools('openssl');
  mkdirSync(dir, { recursive: true });
  const p = (f: string): string => join(dir, f);
  const days = '30';
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', days, '-subj', `/CN=${cn} CA`,
    '-keyout', p('ca-key.pem'), '-out', p('ca-cert.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = async (name: string, ext: string): Promise<void> => {
    await runOk('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`,
      '-keyout', p(`${name}-key.pem`), '-out', p(`${name}.csr`)]);
    writeFileSync(p(`${name}.ext`), ext);
    await runOk('openssl', ['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'),
      '-CAcreateserial', '-days', days, '-out', p(`${name}-cert.pem`), '-extfile', p(`${name}.ext`)]);
  };
  await leaf('server', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await leaf('client', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  const clientDir = p('client');
  const caOnlyDir = p('ca-only');
  mkdirSync(clientDir, { recursive: true });
  mkdirSync(caOnlyDir, { recursive: true });
  copyFileSync(p('ca-cert.pem'), join(clientDir, 'ca-cert.pem'));
  copyFileSync(p('client-cert.pem'), join(clientDir, 'client-cert.pem'));
  copyFileSync(p('client-key.pem'), join(clientDir, 'client-key.pem'));
  copyFileSync(p('ca-cert.pem'), join(caOnlyDir, 'ca-cert.pem'));
  return { clientDir, caOnlyDir, caCert: p('ca-cert.pem'), serverCert: p('server-cert.pem'), serverKey: p('server-key.pem') };
}

/** Creates (or adds to) a psktool key file with a random key for `user`. */
export async function makePsk(file: string, user: string): Promise<void> {
  requireTools('psktool');
  await runOk('psktool', ['-u', user, '-p', file]);
}

// ---------------------------------------------------------------- misc

/** Allocated bytes of a file (st_blocks * 512). */
export async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every `intervalMs` until it holds or `timeoutMs` elapses; returns the last result. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Throws, with the end of the daemon's log, when the daemon process is no longer running. */
export function expectDaemonAlive(d: { process: { exitCode: number | null; signalCode: NodeJS.Signals | null }; output(): string }): void {
  const { exitCode, signalCode } = d.process;
  if (exitCode !== null || signalCode !== null) {
    const tail = d.output().split('\n').slice(-40).join('\n');
    throw new Error(`the blockgate daemon died (exit ${exitCode ?? signalCode}); last log lines:\n${tail}`);
  }
}
