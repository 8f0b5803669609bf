// UnitModel: what a volume may hold after a crash, per 4 KiB unit, given the
// operations concurrent writers began and had acknowledged (crash-writer.ts).
//
// Events carry their position in one global order (the writers' log lines,
// printed under one lock: "began" before a request is sent, "acked" after
// its reply arrived). A write W happens before D when W was acknowledged
// before D began. A write is durable when it was acknowledged with FUA, or
// acknowledged before a FLUSH (on any connection: the exports advertise
// multi-conn) began that then completed.
//
// The contract checked after a restart, per unit: the unit holds the content
// of some version that was written to it (the baseline, or an operation that
// began), and no durable version happens after that one: every durable write
// is there, and anything acknowledged later may read old or new, but never
// garbage, never a version never written, never one older than the last
// durable one. Zero content (WRITE_ZEROES, TRIM) is content 0.
//
// The baseline of a cycle is what the unit held when read back after the
// previous restart: with SIGKILL (not power loss) the page cache survives,
// so what a restarted daemon served once it keeps serving.

/** Content of a unit: 0 = all zeros, n > 0 = the data of operation n. */
export type Content = number;

interface Version {
  readonly content: Content;
  /** Global order of the begin / ack events (-1: the baseline, before everything; Infinity: never acked). */
  readonly begin: number;
  ack: number;
  readonly fua: boolean;
}

export type OpKind = 'W' | 'Z' | 'T' | 'F';

export interface CheckStats {
  /** Units compared. */
  units: number;
  /** Units whose content a durable write of this cycle forced. */
  forced: number;
  /** Units holding a version acknowledged but not durable (old or new were both allowed). */
  newerThanDurable: number;
  /** Units whose content changed this cycle. */
  changed: number;
}

export class UnitModel {
  /** Per unit: the baseline followed by this cycle's versions. */
  private versions: Version[][];
  private readonly ops = new Map<number, { kind: OpKind; first: number; count: number; fua: boolean; version: Version[] }>();
  /** Begin position of the latest FLUSH that completed. */
  private lastFlushBegin = -1;
  private readonly flushBegins = new Map<number, number>();

  constructor(readonly units: number) {
    this.versions = Array.from({ length: units }, () => [{ content: 0, begin: -1, ack: -1, fua: false }]);
  }

  /** Starts over from known contents (e.g. a snapshot the volume is restored from). */
  setBaseline(contents: readonly Content[]): void {
    if (contents.length !== this.units) throw new Error(`baseline has ${contents.length} units, the model ${this.units}`);
    this.versions = contents.map((content) => [{ content, begin: -1, ack: -1, fua: false }]);
    this.ops.clear();
    this.flushBegins.clear();
    this.lastFlushBegin = -1;
  }

  /** An operation was sent (or about to be) at position `at`. */
  began(at: number, op: number, kind: OpKind, first: number, count: number, fua: boolean): void {
    if (kind === 'F') {
      this.flushBegins.set(op, at);
      return;
    }
    if (first < 0 || count < 1 || first + count > this.units) throw new Error(`op ${op}: units ${first}+${count} outside the volume`);
    const content = kind === 'W' ? op : 0;
    const made: Version[] = [];
    for (let u = first; u < first + count; u++) {
      const v: Version = { content, begin: at, ack: Infinity, fua };
      this.versions[u]!.push(v);
      made.push(v);
    }
    this.ops.set(op, { kind, first, count, fua, version: made });
  }

  /** The operation's reply arrived at position `at`. */
  acked(at: number, op: number): void {
    const fb = this.flushBegins.get(op);
    if (fb !== undefined) {
      this.lastFlushBegin = Math.max(this.lastFlushBegin, fb);
      return;
    }
    const o = this.ops.get(op);
    if (!o) throw new Error(`ack of unknown op ${op}`);
    for (const v of o.version) v.ack = at;
  }

  private durable(v: Version): boolean {
    return v.ack !== Infinity && (v.begin < 0 || v.fua || v.ack < this.lastFlushBegin);
  }

  /**
   * Checks what a restarted volume holds (content per unit), returns failures
   * (empty: all good) and stats; then makes the observed contents the next
   * cycle's baselines.
   */
  check(observed: readonly Content[]): { failures: string[]; stats: CheckStats } {
    if (observed.length !== this.units) throw new Error(`observed ${observed.length} units, the model has ${this.units}`);
    const failures: string[] = [];
    const stats: CheckStats = { units: 0, forced: 0, newerThanDurable: 0, changed: 0 };
    for (let u = 0; u < this.units; u++) {
      const got = observed[u]!;
      const vs = this.versions[u]!;
      const durables = vs.filter((v) => this.durable(v));
      // The newest durable versions: those no other durable version happens after.
      const allowed = vs.filter((v) => !durables.some((d) => v.ack < d.begin));
      stats.units++;
      if (!allowed.some((v) => v.content === got)) {
        const written = vs.some((v) => v.content === got);
        const why = got < 0 ? 'garbage (torn, misplaced or foreign data)' : written ? 'a version older than a durable one' : 'a version never written there';
        failures.push(`unit ${u} holds ${got < 0 ? 'garbage' : got === 0 ? 'zeros' : `op ${got}`}: ${why}; allowed: ${[...new Set(allowed.map((v) => v.content))].join(', ')}`);
        continue;
      }
      if (new Set(allowed.map((v) => v.content)).size === 1 && vs.length > 1 && durables.some((d) => d.begin >= 0)) stats.forced++;
      const newest = durables.reduce((m, d) => Math.max(m, d.begin), -1);
      if (allowed.some((v) => v.content === got && v.begin > newest && !this.durable(v))) stats.newerThanDurable++;
      if (got !== vs[0]!.content) stats.changed++;
    }
    this.setBaseline(observed);
    return { failures, stats };
  }
}
