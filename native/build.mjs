#!/usr/bin/env node
// Builds the native addon (build/Release/blockgate_native.node) with node-gyp.
//
// Which node-gyp: the one npm bundles. Inside `npm run` npm exports its path
// as npm_config_node_gyp (and puts a `node-gyp` shim on PATH); outside npm we
// look next to npm itself. No devDependency, no registry access at build time.
//
// Which headers: the running Node's, so the addon is built for the Node that
// loads it (scripts/test.sh and scripts/demo.sh run the pinned Node from
// scripts/install-node.sh, whose prefix has include/node). npm_config_nodedir
// is used when it holds this Node's headers; otherwise this Node's own prefix
// when it has them (a machine-wide npmrc may name another Node's headers, as
// this machine's `nodedir=/usr`, Node 20's); otherwise npm_config_nodedir as
// given (the addon uses only Node-API, which any newer Node loads); otherwise
// node-gyp downloads the matching headers tarball. Installed headers keep the
// build offline.
//
// Configure runs only when build/ has no Makefile, the headers or the Node
// changed since the last build (build/blockgate-headers.txt), or with
// --rebuild; otherwise `npm run build` is a quick incremental make.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

if (process.platform !== 'linux') {
  console.error('blockgate native addon: Linux only; skipping build');
  process.exit(0);
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    // .../npm/bin/npm-cli.js -> .../npm/node_modules/node-gyp/bin/node-gyp.js
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => existsSync(p));
}

/** The Node version whose headers are in dir/include/node, or undefined. */
function headersVersion(dir) {
  try {
    const h = readFileSync(join(dir, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (name) => h.match(new RegExp(`^#define\\s+NODE_${name}_VERSION\\s+(\\d+)`, 'm'))?.[1];
    return [part('MAJOR'), part('MINOR'), part('PATCH')].join('.');
  } catch {
    return undefined;
  }
}

function findNodeDir() {
  const configured = process.env.npm_config_nodedir || undefined;
  const own = resolve(dirname(process.execPath), '..');
  for (const dir of [configured, own]) {
    if (dir && headersVersion(dir) === process.versions.node) return dir;
  }
  if (configured) {
    console.error(`blockgate native addon: npm_config_nodedir=${configured} has Node ${headersVersion(configured) ?? '?'} headers, this is Node ${process.versions.node}; building with them (Node-API only)`);
    return configured;
  }
  return undefined;
}

const gyp = findNodeGyp();
if (!gyp) {
  console.error('blockgate native addon: cannot find node-gyp (npm bundles it; run via `npm run build`)');
  process.exit(1);
}
const nodedir = findNodeDir();
const common = ['--loglevel=warn', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const stampFile = join(root, 'build', 'blockgate-headers.txt');
const stamp = `node ${process.version} headers ${nodedir ?? 'downloaded'}\n`;
const stale = !existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp;
const rebuild = process.argv.includes('--rebuild') || !existsSync(join(root, 'build', 'Makefile')) || stale;

function run(args) {
  const r = spawnSync(process.execPath, [gyp, ...args, ...common], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// clean first: make would keep objects compiled against other headers.
if (rebuild) {
  run(['clean']);
  run(['configure']);
}
run(['build']);
writeFileSync(stampFile, stamp);
