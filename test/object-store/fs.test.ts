import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { objectStoreCompliance } from './compliance.js';
import { tempDirs } from './tmp.js';

const tmp = tempDirs('blockgate-fs-store-');

objectStoreCompliance('FsObjectStore', async () => FsObjectStore.open(tmp()));

describe('FsObjectStore specifics', () => {
  test('layout: objects/ holds escaped segments; tmp/ is left empty', async () => {
    const root = tmp();
    const s = await FsObjectStore.open(root);
    await s.put('a/b%!c', Buffer.from('x'));
    await s.put('a', Buffer.from('y'));
    expect(readdirSync(join(root, 'objects')).sort()).toEqual(['a', 'a!']);
    expect(readdirSync(join(root, 'objects', 'a!'))).toEqual(['b%25%21c']);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(readdirSync(join(root, 'locks'))).toEqual([]);
    expect(s.location).toBe('file://' + root);
    await s.delete('a/b%!c');
    expect(readdirSync(join(root, 'objects'))).toEqual(['a']); // empty dir removed
    await s.close();
  });

  test('a segment too long for the filesystem is INVALID_ARGUMENT', async () => {
    const s = await FsObjectStore.open(tmp());
    await expect(s.put('x'.repeat(300), Buffer.from('x'))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await s.close();
  });

  test('a lock left by a dead process is broken', async () => {
    const root = tmp();
    const s = await FsObjectStore.open(root);
    await s.put('k', Buffer.from('v1'));
    // Find the lock name by taking the lock once, then plant a stale lock file there.
    const { createHash } = await import('node:crypto');
    const name = createHash('sha256').update('k').digest('hex').slice(0, 40);
    const { writeFileSync } = await import('node:fs');
    const { hostname } = await import('node:os');
    writeFileSync(join(root, 'locks', name + '.lock'), `999999 ${hostname()} ${Date.now()}\n`);
    await s.put('k', Buffer.from('v2'));
    expect((await s.get('k')).body.toString()).toBe('v2');
    await s.close();
  });

  describe('across processes', () => {
    // Compile the store once to plain JS so child processes can load it.
    const outDir = tmp('compiled');
    const repo = resolve(import.meta.dirname, '..', '..');
    let compiled = false;
    const compile = (): void => {
      if (compiled) return;
      compiled = true;
      execFileSync(
        process.execPath,
        [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '--outDir', outDir, '--rootDir', join(repo, 'src'), '--module', 'nodenext',
          '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--types', 'node', '--ignoreConfig', join(repo, 'src', 'object-store', 'fs.ts')],
        { cwd: repo, stdio: 'pipe' },
      );
    };
    const child = (args: string[]): Promise<string> =>
      new Promise((res, rej) => {
        const script = `
          const { FsObjectStore } = await import(${JSON.stringify(join(outDir, 'object-store', 'fs.js'))});
          const [mode, root, id, startAt, n] = process.argv.slice(1);
          const s = await FsObjectStore.open(root);
          while (Date.now() < Number(startAt)) await new Promise((r) => setTimeout(r, 1));
          if (mode === 'create') {
            try { await s.put('shared', Buffer.from('proc-' + id), { ifNoneMatch: '*' }); console.log('won'); }
            catch (e) { console.log(e.code); }
          } else {
            let done = 0;
            while (done < Number(n)) {
              const cur = await s.get('counter');
              try { await s.put('counter', Buffer.from(String(Number(cur.body.toString()) + 1)), { ifMatch: cur.etag }); done++; }
              catch (e) { if (e.code !== 'ERR_PRECONDITION_FAILED') throw e; }
            }
            console.log('done');
          }`;
        const p = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.once('error', rej);
        p.once('close', (code) => (code === 0 ? res(out.trim()) : rej(new Error(`child exited ${code}: ${out}`))));
      });

    test('ifNoneMatch: of 6 processes creating one key, exactly one wins', async () => {
      compile();
      const root = tmp();
      await (await FsObjectStore.open(root)).close();
      const startAt = Date.now() + 700;
      const outs = await Promise.all(Array.from({ length: 6 }, (_, i) => child(['create', root, String(i), String(startAt)])));
      expect(outs.filter((o) => o === 'won').length).toBe(1);
      expect(outs.filter((o) => o === 'ERR_PRECONDITION_FAILED').length).toBe(5);
    });

    test('ifMatch read-modify-write from 4 processes loses no increment', async () => {
      compile();
      const root = tmp();
      const s = await FsObjectStore.open(root);
      await s.put('counter', Buffer.from('0'));
      const startAt = Date.now() + 700;
      await Promise.all(Array.from({ length: 4 }, (_, i) => child(['inc', root, String(i), String(startAt), '25'])));
      expect((await s.get('counter')).body.toString()).toBe('100');
      expect(readdirSync(join(root, 'locks'))).toEqual([]);
      await s.close();
    });
  });
});
