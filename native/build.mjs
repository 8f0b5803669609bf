#!/usr/bin/env node
// Builds the native addon (build/Release/blockgate_native.node) with node-gyp.
//
// Which node-gyp: the one npm bundles. Inside `npm run` npm exports its path
// as npm_config_node_gyp (and puts a `node-gyp` shim on PATH); outside npm we
// look next to npm itself. No devDependency, no registry access at build time.
//
// Which headers: the addon uses only Node-API (node_api.h). If this Node has
// its headers installed (distro packages put them in <prefix>/include/node),
// use them (--nodedir) so the build works offline; otherwise node-gyp
// downloads the matching headers tarball as usual. An explicit
// npm_config_nodedir wins.
//
// Configure runs only when build/ has no Makefile (or with --rebuild), so
// repeated `npm run build` is a quick incremental make.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

const gyp = findNodeGyp();
if (!gyp) {
  console.error('blockgate native addon: cannot find node-gyp (npm bundles it; run via `npm run build`)');
  process.exit(1);
}
const nodedir = findNodeDir();
const common = ['--loglevel=warn', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const rebuild = process.argv.includes('--rebuild') || !existsSync(join(root, 'build', 'Makefile'));

function run(args) {
  const r = spawnSync(process.execPath, [gyp, ...args, ...common], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (rebuild) run(['configure']);
run(['build']);
