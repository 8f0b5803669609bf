/** Polls `cond` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 60_000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Waits until this machine's clock is past `deadline` (ms since the epoch or an ISO date): the event
 * "it has expired" for an expiry another process on this machine computed from the same clock.
 */
export async function untilPast(deadline: number | string, timeoutMs = 60_000): Promise<void> {
  const at = typeof deadline === 'number' ? deadline : Date.parse(deadline);
  if (!Number.isFinite(at)) throw new Error(`untilPast: not a time: ${String(deadline)}`);
  await until(() => Date.now() > at, timeoutMs, `the clock to pass ${new Date(at).toISOString()}`);
}

/** Lets every callback already queued (promise reactions, I/O callbacks, immediates) run: no timers involved. */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}
