// Workaround for a lost wakeup in WriteLog (src/write-log/write-log.ts, owned
// by another engineer; reported): pump() clears `pumpActive` in a `finally`
// that runs a few microtasks after pumpLoop() saw an empty queue. A record
// admitted in that gap sees pumpActive === true, starts no pump, and its
// append() never resolves (nor does any later one). Reproduced: reopen a log,
// append, await, append again -> hangs.
// The patch re-checks the queue when the pump ends and restarts it. Remove
// once write-log.ts clears the flag synchronously (or re-checks) itself.
import type { WriteLog } from '../../write-log/write-log.js';

interface PumpInternals {
  pumpLoop(): Promise<void>;
  pump(): Promise<void>;
  pumpActive: boolean;
  pumpDone: Promise<void>;
  queue: unknown[];
  state: string;
}

export function patchWriteLogPump(log: WriteLog): void {
  const l = log as unknown as PumpInternals;
  if (typeof l.pumpLoop !== 'function' || !Array.isArray(l.queue)) return; // internals changed: nothing to patch
  const loop = l.pumpLoop.bind(l);
  const pump = async (): Promise<void> => {
    try {
      await loop();
    } finally {
      if (l.queue.length > 0 && l.state !== 'failed') {
        l.pumpDone = pump();
      } else {
        l.pumpActive = false;
      }
    }
  };
  l.pump = pump;
}
