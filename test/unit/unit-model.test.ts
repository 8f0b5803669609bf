// The crash-contract model the SIGKILL loops rely on (test/harness/unit-model.ts):
// it must refuse stale, never-written and garbage contents, and allow exactly
// the versions a crash may leave.
import { describe, expect, it } from 'vitest';
import { UnitModel } from '../harness/unit-model.js';

describe('UnitModel', () => {
  it('a write acknowledged before a completed FLUSH (any connection) must survive; older contents fail', () => {
    const m = new UnitModel(2);
    m.began(0, 1, 'W', 0, 1, false);
    m.acked(1, 1);
    m.began(2, 2, 'F', 0, 0, false); // flush on another connection, begun after op 1's ack
    m.acked(3, 2);
    const stale = m.check([0, 0]);
    expect(stale.failures).toHaveLength(1);
    expect(stale.failures[0]).toMatch(/unit 0 holds zeros: a version older than a durable one/);
  });

  it('a flush that began before the write was acknowledged does not cover it', () => {
    const m = new UnitModel(1);
    m.began(0, 1, 'W', 0, 1, false);
    m.began(1, 2, 'F', 0, 0, false);
    m.acked(2, 1);
    m.acked(3, 2);
    expect(m.check([0]).failures).toEqual([]);
  });

  it('acknowledged but not durable: old or new; begun but never acknowledged: old or new', () => {
    for (const got of [0, 1, 2]) {
      const m = new UnitModel(1);
      m.began(0, 1, 'W', 0, 1, false);
      m.acked(1, 1);
      m.began(2, 2, 'W', 0, 1, false);
      expect(m.check([got]).failures).toEqual([]);
    }
  });

  it('FUA makes one write durable; zeroes and trims count as content 0; a later durable write wins', () => {
    const m = new UnitModel(3);
    m.began(0, 1, 'W', 0, 3, true);
    m.acked(1, 1);
    m.began(2, 2, 'Z', 1, 1, true);
    m.acked(3, 2);
    m.began(4, 3, 'T', 2, 1, false); // not durable
    m.acked(5, 3);
    expect(m.check([1, 0, 1]).failures).toEqual([]);
    const m2 = new UnitModel(3);
    m2.began(0, 1, 'W', 0, 3, true);
    m2.acked(1, 1);
    m2.began(2, 2, 'Z', 1, 1, true);
    m2.acked(3, 2);
    const bad = m2.check([0, 1, 7]);
    expect(bad.failures).toHaveLength(3);
    expect(bad.failures[2]).toMatch(/never written/);
  });

  it('garbage always fails; the observed contents become the next baseline', () => {
    const m = new UnitModel(2);
    expect(m.check([-1, 0]).failures[0]).toMatch(/garbage/);
    const m2 = new UnitModel(1);
    m2.began(0, 5, 'W', 0, 1, false);
    expect(m2.check([5]).failures).toEqual([]);
    // Baseline is now op 5: zeros are no longer allowed with no new write.
    expect(m2.check([0]).failures).toHaveLength(1);
    expect(m2.check([5]).failures).toHaveLength(1); // the previous check made 0 the baseline
  });

  it('concurrent durable writes on two connections: either may win, nothing older', () => {
    const m = new UnitModel(1);
    m.began(0, 1, 'W', 0, 1, false);
    m.began(1, 2, 'W', 0, 1, false);
    m.acked(2, 1);
    m.acked(3, 2);
    m.began(4, 3, 'F', 0, 0, false);
    m.acked(5, 3);
    for (const got of [1, 2]) {
      const c = new UnitModel(1);
      c.began(0, 1, 'W', 0, 1, false);
      c.began(1, 2, 'W', 0, 1, false);
      c.acked(2, 1);
      c.acked(3, 2);
      c.began(4, 3, 'F', 0, 0, false);
      c.acked(5, 3);
      expect(c.check([got]).failures).toEqual([]);
    }
    expect(m.check([0]).failures).toHaveLength(1);
  });
});
