/**
 * Promise.all that settles only when every promise has, then rejects with the
 * first failure: for work that writes into a caller's buffer, where returning
 * early on one failure would leave the others still writing into a buffer the
 * caller already reuses (a fetch fills it, the NBD layer recycles it).
 */
export async function allDone<T>(ps: Array<Promise<T>>): Promise<T[]> {
  const settled = await Promise.allSettled(ps);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}
