import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { repoRoot, start } from '../harness/process.js';
import { until } from '../harness/until.js';
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
    // Children run the built store (dist/, `npm run build`). Each opens the store, says 'ready', and
    // starts when the test writes 'go' to every child's stdin: a barrier, not a wall-clock start time.
    const fsJs = join(repoRoot, 'dist', 'object-store', 'fs.js');
    const script = `
      import { createInterface } from 'node:readline';
      const { FsObjectStore } = await import(${JSON.stringify(fsJs)});
      const [mode, root, id, n] = process.argv.slice(1);
      const s = await FsObjectStore.open(root);
      const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
      console.log('ready');
      await lines.next();
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
      }
      process.exit(0);`;
    /** Starts one child per argument list, releases them together, and resolves their outputs (after 'ready'). */
    const together = async (argLists: string[][]): Promise<string[]> => {
      expect(existsSync(fsJs), `${fsJs} is missing: run 'npm run build'`).toBe(true);
      const children = argLists.map((args) => start(process.execPath, ['--input-type=module', '-e', script, ...args], { openStdin: true }));
      await until(() => children.every((c) => c.stdout().startsWith('ready\n') || !c.running()), 30_000, 'every child ready');
      for (const c of children) c.process.stdin!.on('error', () => undefined).end('go\n'); // a child that died already: its exit code says why
      const results = await Promise.all(children.map((c) => c.exited));
      for (const r of results) if (r.code !== 0) throw new Error(`child exited ${r.code ?? r.signal}: ${r.stdout}${r.stderr}`);
      return results.map((r) => r.stdout.replace(/^ready\n/, '').trim());
    };

    test('ifNoneMatch: of 6 processes creating one key, exactly one wins', async () => {
      const root = tmp();
      await (await FsObjectStore.open(root)).close();
      const outs = await together(Array.from({ length: 6 }, (_, i) => ['create', root, String(i)]));
      expect(outs.filter((o) => o === 'won').length).toBe(1);
      expect(outs.filter((o) => o === 'ERR_PRECONDITION_FAILED').length).toBe(5);
    });

    test('ifMatch read-modify-write from 4 processes loses no increment', async () => {
      const root = tmp();
      const s = await FsObjectStore.open(root);
      await s.put('counter', Buffer.from('0'));
      expect(await together(Array.from({ length: 4 }, (_, i) => ['inc', root, String(i), '25']))).toEqual(['done', 'done', 'done', 'done']);
      expect((await s.get('counter')).body.toString()).toBe('100');
      expect(readdirSync(join(root, 'locks'))).toEqual([]);
      await s.close();
    });
  });
});
