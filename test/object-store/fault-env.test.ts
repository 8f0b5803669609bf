// BLOCKGATE_TEST_FAULTS: the one place a daemon takes test faults from
// (faultOptionsFromEnv in src/object-store/fault.ts). Valid rules pass
// through; bad values are ERR_CONFIG naming the problem.
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { FaultInjectingObjectStore, faultOptionsFromEnv } from '../../src/object-store/fault.js';
import { MemoryStore } from '../snapshots/memory-store.js';

const env = (v: string | undefined): Record<string, string | undefined> => ({ BLOCKGATE_TEST_FAULTS: v });

describe('BLOCKGATE_TEST_FAULTS', () => {
  it('unset or empty: no faults', () => {
    expect(faultOptionsFromEnv({})).toBeUndefined();
    expect(faultOptionsFromEnv(env('  '))).toBeUndefined();
  });

  it('rules are parsed and work in the wrapper', async () => {
    const o = faultOptionsFromEnv(env(JSON.stringify({ seed: 3, rules: [
      { ops: ['get'], keyPrefix: 'blocks/', action: 'delay', latencyMs: [1, 2] },
      { ops: ['put'], nth: 2, action: 'fail', error: 'denied' },
    ] })));
    expect(o).toEqual({ seed: 3, rules: [
      { ops: ['get'], keyPrefix: 'blocks/', action: 'delay', latencyMs: [1, 2] },
      { ops: ['put'], nth: 2, action: 'fail', error: 'denied' },
    ] });
    const store = new FaultInjectingObjectStore(new MemoryStore(), o);
    await store.put('a', Buffer.from('x'));
    await expect(store.put('b', Buffer.from('y'))).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED });
    await store.put('c', Buffer.from('z'));
  });

  it.each([
    ['{', /not JSON/],
    ['[]', /must be an object/],
    ['{"rules": {}}', /rules must be an array/],
    ['{"rulez": []}', /unknown key "rulez"/],
    ['{"rules": [{"ops": ["gett"]}]}', /rules\[0\]\.ops/],
    ['{"rules": [{"action": "explode"}]}', /rules\[0\]\.action/],
    ['{"rules": [{"latencyMs": -1}]}', /rules\[0\]\.latencyMs/],
    ['{"rules": [{"latencyMs": [5, 1]}]}', /rules\[0\]\.latencyMs/],
    ['{"rules": [{"probability": 2}]}', /rules\[0\]\.probability/],
    ['{"rules": [{"nth": 0}]}', /rules\[0\]\.nth/],
    ['{"rules": [{"error": "ERR_NOPE"}]}', /rules\[0\]\.error/],
    ['{"rules": [{"color": "red"}]}', /rules\[0\]: unknown key "color"/],
    ['{"seed": -1, "rules": []}', /seed/],
  ])('%s is refused with ERR_CONFIG', (text, why) => {
    let err: unknown;
    try { faultOptionsFromEnv(env(text)); } catch (e) { err = e; }
    expect(err).toMatchObject({ code: ErrorCodes.CONFIG });
    expect((err as Error).message).toMatch(/^BLOCKGATE_TEST_FAULTS: /);
    expect((err as Error).message).toMatch(why);
  });
});
