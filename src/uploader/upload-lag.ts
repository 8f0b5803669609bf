// UploadLag: how old the oldest write is that the object store does not hold
// yet (the volume's RPO), for status and metrics. Appends are sampled at most
// once per 100 ms, so memory is one pair per 100 ms of lag, and the reported
// age errs on the old side by at most that much.
// Invariant: samples are (seq, time) pairs in increasing seq and time order.

import type { UploaderStatus } from './uploader.js';

const SAMPLE_EVERY_MS = 100;

export class UploadLag {
  private readonly samples: Array<[seq: number, ms: number]> = [];

  /** Record `seq` was appended (or, at open, is the oldest one not uploaded). */
  appended(seq: number, now = Date.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (!last || now - last[1] >= SAMPLE_EVERY_MS) this.samples.push([seq, now]);
  }

  /** The store durably holds every record up to `releasedSeq`. */
  released(releasedSeq: number): void {
    const r = releasedSeq + 1;
    while (this.samples.length > 1 && this.samples[1]![0] <= r) this.samples.shift();
  }

  /** Age (ms) of the oldest record in (releasedSeq, newestSeq]; 0 when there is none. */
  lagMs(newestSeq: number, releasedSeq: number, now = Date.now()): number {
    if (newestSeq <= releasedSeq) return 0;
    // Record r was appended at most SAMPLE_EVERY_MS after the last sample at or before it.
    const r = releasedSeq + 1;
    let t: number | undefined;
    for (const [seq, ms] of this.samples) {
      if (seq > r) break;
      t = ms;
    }
    t ??= this.samples[0]?.[1];
    return t === undefined ? 0 : Math.max(0, now - t);
  }
}

/** What status shows about a volume's uploads, shared by the modes that upload (stored, cached). */
export interface UploadStatusFields {
  upload: UploaderStatus & { lagSeconds: number; lagBytes: number };
  logUsedPercent: number;
}

/** Adds upload lag (RPO) and log use to a volume's details. */
export function withUploadStatus<D extends { log: { usedBytes: number; capacityBytes: number } }>(
  details: D,
  volume: { uploadLagMs(): number; readonly log: { readonly newestSeq: number; readonly releasedSeq: number } },
  uploader: { status(): UploaderStatus },
): D & UploadStatusFields {
  const pending = volume.log.newestSeq > volume.log.releasedSeq;
  return {
    ...details,
    logUsedPercent: Math.round((1000 * details.log.usedBytes) / details.log.capacityBytes) / 10,
    upload: { ...uploader.status(), lagSeconds: Math.round(volume.uploadLagMs() / 100) / 10, lagBytes: pending ? details.log.usedBytes : 0 },
  };
}
