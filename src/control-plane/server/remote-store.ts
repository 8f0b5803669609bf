// A ControlStore that lives in another control server process (the registry
// owner, the one that opened the level directory). Each operation is one
// POST {registryUrl}/internal/v1/store/{operation} with the peer secret; the
// owner runs it under its store mutex, so atomicity is the owner's. Errors
// come back with their codes (requestJson). Stateless: nothing is cached here.
import { BlockgateError, ErrorCodes } from '../../errors.js';
import { joinUrl, requestJson } from '../http.js';
import { STORE_OPERATIONS, type ControlStore } from './store.js';

export interface RemoteStoreOptions {
  registryUrl: string;
  peerSecret: string;
  ca?: string | Buffer;
  timeoutMs?: number;
}

export function remoteControlStore(options: RemoteStoreOptions): ControlStore {
  const call = async (op: string, args: unknown[]): Promise<unknown> => {
    const r = await requestJson<{ value: unknown }>(joinUrl(options.registryUrl, `/internal/v1/store/${op}`), {
      body: { args },
      headers: { authorization: `Peer ${options.peerSecret}` },
      timeoutMs: options.timeoutMs ?? 10_000,
      ...(options.ca ? { ca: options.ca } : {}),
    });
    return r.value;
  };
  const store: Record<string, unknown> = { close: async () => undefined };
  for (const op of STORE_OPERATIONS) store[op] = (...args: unknown[]) => call(op, args);
  return store as unknown as ControlStore;
}

/** Server side: runs a peer's store call on the local (owning) store. */
export async function dispatchStoreCall(store: ControlStore, op: string, args: unknown): Promise<unknown> {
  if (!(STORE_OPERATIONS as readonly string[]).includes(op)) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `unknown store operation '${op}'`);
  }
  if (!Array.isArray(args)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'args must be an array');
  const fn = (store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[op]!;
  return (await fn.apply(store, args)) ?? null;
}
