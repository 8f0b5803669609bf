// The control server's registry: accounts, token hashes, gateways, activation
// keys, challenges, credentials and per-gateway command queues.
//
// ControlStore is a set of *domain operations*, each atomic: LevelControlStore
// runs every operation under one in-process mutex, and exactly one process
// opens the level directory (level refuses a second open). Other control
// servers reach the same registry through RemoteControlStore (remote-store.ts),
// which calls these operations on the owning server. Invariants:
//   - an activation key is used at most once, and only before it expires;
//   - a challenge is answered at most once (replay → CHALLENGE_INVALID);
//   - gateway state only moves unactivated → pending → activated;
//   - only token hashes are stored, never tokens;
//   - commands of one gateway are kept in enqueue order (seq).
import { Level } from 'level';
import { randomBytes, randomUUID } from 'node:crypto';
import { BlockgateError, ErrorCodes } from '../../errors.js';
import {
  newActivationKey, normalizeActivationKey,
  type AccountRecord, type ActivationKeyRecord, type ChallengeRecord, type CommandRecord, type CommandResult,
  type CommandType, type GatewayCredentials, type GatewayMetadata, type GatewayRecord,
} from '../protocol.js';

export interface HelloResult {
  gatewayId: string;
  activationKey: string;
  expiresAt: number;
}

export interface ControlStore {
  /** Creates or updates a bootstrap account; its token hashes become exactly `tokenHashes`. */
  ensureAccount(name: string, tokenHashes: string[], objectStore: AccountRecord['objectStore'] | null): Promise<AccountRecord>;
  /** Account owning this token hash, or CONTROL_UNAUTHORIZED. */
  authenticate(tokenHash: string): Promise<AccountRecord>;
  getAccount(id: string): Promise<AccountRecord>;
  /** Records (or finds, by key fingerprint) an unactivated gateway and issues a fresh activation key. */
  hello(publicKey: string, fingerprint: string, metadata: GatewayMetadata, ttlMs: number, now: number): Promise<HelloResult>;
  /** Uses an activation key: the gateway becomes pending, owned by the account, called `name`. */
  register(accountId: string, activationKey: string, name: string, now: number): Promise<GatewayRecord>;
  getGateway(id: string): Promise<GatewayRecord>;
  gatewayByName(accountId: string, name: string): Promise<GatewayRecord>;
  listGateways(accountId: string): Promise<GatewayRecord[]>;
  createChallenge(gatewayId: string, ttlMs: number, now: number): Promise<ChallengeRecord>;
  /** Marks the challenge answered (whatever the signature turns out to be) and returns it. */
  consumeChallenge(gatewayId: string, challengeId: string, now: number): Promise<{ challenge: ChallengeRecord; gateway: GatewayRecord }>;
  completeActivation(gatewayId: string, tokenHash: string, credentials: GatewayCredentials, now: number): Promise<GatewayRecord>;
  /** Activated gateway with this control-channel token hash, or CONTROL_UNAUTHORIZED. */
  authenticateGateway(gatewayId: string, tokenHash: string): Promise<GatewayRecord>;
  markConnected(gatewayId: string, via: string, now: number): Promise<void>;
  enqueueCommand(gatewayId: string, type: CommandType, args: Record<string, unknown>, now: number): Promise<CommandRecord>;
  /** Commands not yet completed, oldest first, marked delivered. */
  takeCommands(gatewayId: string, now: number): Promise<CommandRecord[]>;
  /** Records a result; a second result for a completed command is ignored. */
  completeCommand(gatewayId: string, commandId: string, result: CommandResult, now: number): Promise<CommandRecord>;
  getCommand(gatewayId: string, commandId: string): Promise<CommandRecord>;
  listCommands(gatewayId: string): Promise<CommandRecord[]>;
  close(): Promise<void>;
}

/** Names of the operations a peer may call remotely (everything but close). */
export const STORE_OPERATIONS = [
  'ensureAccount', 'authenticate', 'getAccount', 'hello', 'register', 'getGateway', 'gatewayByName', 'listGateways',
  'createChallenge', 'consumeChallenge', 'completeActivation', 'authenticateGateway', 'markConnected',
  'enqueueCommand', 'takeCommands', 'completeCommand', 'getCommand', 'listCommands',
] as const satisfies ReadonlyArray<keyof ControlStore>;

const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string): never => {
  throw new BlockgateError(code, message);
};

const seqKey = (n: number): string => String(n).padStart(12, '0');

export class LevelControlStore implements ControlStore {
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: Level<string, unknown>) {}

  static async open(dir: string): Promise<LevelControlStore> {
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      const locked = (err as { code?: string }).code === 'LEVEL_LOCKED' || cause?.code === 'LEVEL_LOCKED';
      throw new BlockgateError(ErrorCodes.CONFIG, locked
        ? `dataDir ${dir} is in use by another control server (a registry directory has exactly one owner; point the other server at it with registry.url)`
        : `cannot open control store ${dir}: ${(err as Error).message}`, { cause: err });
    }
    return new LevelControlStore(db);
  }

  /** Runs fn alone: every operation is atomic with respect to the others. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async get<T>(key: string): Promise<T | undefined> {
    return (await this.db.get(key)) as T | undefined;
  }

  private async values<T>(prefix: string): Promise<T[]> {
    return (await this.db.values({ gt: prefix, lt: prefix + '\xff' }).all()) as T[];
  }

  private async gatewayOrFail(id: string): Promise<GatewayRecord> {
    const g = await this.get<GatewayRecord>(`gw:${id}`);
    return g ?? fail(ErrorCodes.GATEWAY_NOT_FOUND, `unknown gateway ${id}`);
  }

  ensureAccount(name: string, tokenHashes: string[], objectStore: AccountRecord['objectStore'] | null): Promise<AccountRecord> {
    return this.exclusive(async () => {
      const id = (await this.get<string>(`acctname:${name}`)) ?? `acct-${randomUUID()}`;
      const account: AccountRecord = { id, name, ...(objectStore ? { objectStore } : {}) };
      const oldTokens = (await this.get<string[]>(`accttok:${id}`)) ?? [];
      const ops: Array<{ type: 'put' | 'del'; key: string; value?: unknown }> = [];
      for (const h of oldTokens) if (!tokenHashes.includes(h)) ops.push({ type: 'del', key: `tok:${h}` });
      for (const h of tokenHashes) {
        const owner = await this.get<string>(`tok:${h}`);
        if (owner !== undefined && owner !== id) fail(ErrorCodes.CONFIG, `account ${name}: a token hash is already used by another account`);
        ops.push({ type: 'put', key: `tok:${h}`, value: id });
      }
      ops.push({ type: 'put', key: `accttok:${id}`, value: tokenHashes });
      ops.push({ type: 'put', key: `acct:${id}`, value: account });
      ops.push({ type: 'put', key: `acctname:${name}`, value: id });
      await this.db.batch(ops as never);
      return account;
    });
  }

  async authenticate(tokenHash: string): Promise<AccountRecord> {
    const id = await this.get<string>(`tok:${tokenHash}`);
    const account = id === undefined ? undefined : await this.get<AccountRecord>(`acct:${id}`);
    return account ?? fail(ErrorCodes.CONTROL_UNAUTHORIZED, 'unknown API token (no account has it)');
  }

  async getAccount(id: string): Promise<AccountRecord> {
    return (await this.get<AccountRecord>(`acct:${id}`)) ?? fail(ErrorCodes.CONTROL_UNAUTHORIZED, `unknown account ${id}`);
  }

  hello(publicKey: string, fingerprint: string, metadata: GatewayMetadata, ttlMs: number, now: number): Promise<HelloResult> {
    return this.exclusive(async () => {
      const existingId = await this.get<string>(`gwfp:${fingerprint}`);
      let gateway = existingId === undefined ? undefined : await this.get<GatewayRecord>(`gw:${existingId}`);
      if (gateway && gateway.state !== 'unactivated') {
        fail(ErrorCodes.GATEWAY_ALREADY_ACTIVATED, `gateway ${gateway.id} with this key is already ${gateway.state === 'pending' ? 'registered' : 'activated'} as '${gateway.name}'`);
      }
      gateway = gateway
        ? { ...gateway, metadata }
        : { id: `gw-${randomUUID()}`, publicKey, fingerprint, metadata, state: 'unactivated', createdAt: now };
      const key: ActivationKeyRecord = { key: newActivationKey(), gatewayId: gateway.id, createdAt: now, expiresAt: now + ttlMs };
      await this.db.batch([
        { type: 'put', key: `gw:${gateway.id}`, value: gateway },
        { type: 'put', key: `gwfp:${fingerprint}`, value: gateway.id },
        { type: 'put', key: `ak:${key.key}`, value: key },
      ]);
      return { gatewayId: gateway.id, activationKey: key.key, expiresAt: key.expiresAt };
    });
  }

  register(accountId: string, activationKey: string, name: string, now: number): Promise<GatewayRecord> {
    return this.exclusive(async () => {
      const k = normalizeActivationKey(activationKey);
      const rec = (await this.get<ActivationKeyRecord>(`ak:${k}`)) ?? fail(ErrorCodes.ACTIVATION_KEY_UNKNOWN, `activation key ${k} is not known to this control server`);
      if (rec.usedAt !== undefined) fail(ErrorCodes.ACTIVATION_KEY_USED, `activation key ${k} was already used (keys are single use; get a fresh one from the gateway)`);
      if (now >= rec.expiresAt) fail(ErrorCodes.ACTIVATION_KEY_EXPIRED, `activation key ${k} expired at ${new Date(rec.expiresAt).toISOString()} (get a fresh one from the gateway)`);
      const gateway = await this.gatewayOrFail(rec.gatewayId);
      if (gateway.state !== 'unactivated') {
        fail(ErrorCodes.GATEWAY_ALREADY_ACTIVATED, `gateway ${gateway.id} is already ${gateway.state === 'pending' ? 'registered' : 'activated'} as '${gateway.name}'`);
      }
      if ((await this.get<string>(`gwname:${accountId}:${name}`)) !== undefined) {
        fail(ErrorCodes.GATEWAY_NAME_TAKEN, `this account already has a gateway named '${name}'`);
      }
      const updated: GatewayRecord = { ...gateway, state: 'pending', accountId, name, registeredAt: now };
      await this.db.batch([
        { type: 'put', key: `ak:${k}`, value: { ...rec, usedAt: now } },
        { type: 'put', key: `gw:${gateway.id}`, value: updated },
        { type: 'put', key: `gwname:${accountId}:${name}`, value: gateway.id },
        { type: 'put', key: `acctgw:${accountId}:${gateway.id}`, value: gateway.id },
      ]);
      return updated;
    });
  }

  getGateway(id: string): Promise<GatewayRecord> {
    return this.gatewayOrFail(id);
  }

  async gatewayByName(accountId: string, name: string): Promise<GatewayRecord> {
    const id = await this.get<string>(`gwname:${accountId}:${name}`);
    return id === undefined ? fail(ErrorCodes.GATEWAY_NOT_FOUND, `no gateway named '${name}' in this account`) : this.gatewayOrFail(id);
  }

  async listGateways(accountId: string): Promise<GatewayRecord[]> {
    const ids = await this.values<string>(`acctgw:${accountId}:`);
    const out: GatewayRecord[] = [];
    for (const id of ids) out.push(await this.gatewayOrFail(id));
    return out.sort((a, b) => (a.name ?? '').localeCompare(b.name ?? ''));
  }

  createChallenge(gatewayId: string, ttlMs: number, now: number): Promise<ChallengeRecord> {
    return this.exclusive(async () => {
      const g = await this.gatewayOrFail(gatewayId);
      if (g.state === 'unactivated') fail(ErrorCodes.GATEWAY_NOT_ACTIVATED, `gateway ${gatewayId} is not registered yet (run 'blockgate activate' with its activation key)`);
      if (g.state === 'activated') fail(ErrorCodes.GATEWAY_ALREADY_ACTIVATED, `gateway ${gatewayId} is already activated as '${g.name}'`);
      const c: ChallengeRecord = { id: `ch-${randomUUID()}`, gatewayId, nonce: randomBytes(32).toString('base64url'), expiresAt: now + ttlMs };
      await this.db.put(`ch:${c.id}`, c);
      return c;
    });
  }

  consumeChallenge(gatewayId: string, challengeId: string, now: number): Promise<{ challenge: ChallengeRecord; gateway: GatewayRecord }> {
    return this.exclusive(async () => {
      const gateway = await this.gatewayOrFail(gatewayId);
      const c = await this.get<ChallengeRecord>(`ch:${challengeId}`);
      if (!c || c.gatewayId !== gatewayId) fail(ErrorCodes.CHALLENGE_INVALID, `challenge ${challengeId} was not issued to gateway ${gatewayId}`);
      if (c!.usedAt !== undefined) fail(ErrorCodes.CHALLENGE_INVALID, `challenge ${challengeId} was already answered (replayed signature refused)`);
      await this.db.put(`ch:${challengeId}`, { ...c!, usedAt: now });
      if (now >= c!.expiresAt) fail(ErrorCodes.CHALLENGE_EXPIRED, `challenge ${challengeId} expired at ${new Date(c!.expiresAt).toISOString()}`);
      return { challenge: c!, gateway };
    });
  }

  completeActivation(gatewayId: string, tokenHash: string, credentials: GatewayCredentials, now: number): Promise<GatewayRecord> {
    return this.exclusive(async () => {
      const g = await this.gatewayOrFail(gatewayId);
      if (g.state !== 'pending') {
        fail(g.state === 'activated' ? ErrorCodes.GATEWAY_ALREADY_ACTIVATED : ErrorCodes.GATEWAY_NOT_ACTIVATED, `gateway ${gatewayId} is ${g.state}, not pending`);
      }
      const updated: GatewayRecord = { ...g, state: 'activated', activatedAt: now, tokenHash, credentials };
      await this.db.put(`gw:${gatewayId}`, updated);
      return updated;
    });
  }

  async authenticateGateway(gatewayId: string, tokenHash: string): Promise<GatewayRecord> {
    const g = await this.get<GatewayRecord>(`gw:${gatewayId}`);
    if (!g || g.state !== 'activated' || g.tokenHash !== tokenHash) fail(ErrorCodes.CONTROL_UNAUTHORIZED, `gateway ${gatewayId}: unknown gateway or wrong gateway token`);
    return g!;
  }

  markConnected(gatewayId: string, via: string, now: number): Promise<void> {
    return this.exclusive(async () => {
      const g = await this.gatewayOrFail(gatewayId);
      await this.db.put(`gw:${gatewayId}`, { ...g, connectedVia: via, lastSeenAt: now });
    });
  }

  enqueueCommand(gatewayId: string, type: CommandType, args: Record<string, unknown>, now: number): Promise<CommandRecord> {
    return this.exclusive(async () => {
      const g = await this.gatewayOrFail(gatewayId);
      if (g.state !== 'activated') fail(ErrorCodes.GATEWAY_NOT_ACTIVATED, `gateway '${g.name ?? gatewayId}' is ${g.state}; commands need an activated gateway`);
      const seq = ((await this.get<number>(`cmdseq:${gatewayId}`)) ?? 0) + 1;
      const cmd: CommandRecord = { id: `cmd-${seq}-${randomBytes(4).toString('hex')}`, gatewayId, seq, type, args, state: 'queued', createdAt: now, deliveries: 0 };
      await this.db.batch([
        { type: 'put', key: `cmdseq:${gatewayId}`, value: seq },
        { type: 'put', key: `cmd:${gatewayId}:${seqKey(seq)}`, value: cmd },
        { type: 'put', key: `cmdid:${cmd.id}`, value: seq },
      ]);
      return cmd;
    });
  }

  takeCommands(gatewayId: string, now: number): Promise<CommandRecord[]> {
    return this.exclusive(async () => {
      const open = (await this.values<CommandRecord>(`cmd:${gatewayId}:`)).filter((c) => c.state === 'queued' || c.state === 'delivered');
      const delivered = open.map((c): CommandRecord => ({ ...c, state: 'delivered', deliveredAt: now, deliveries: c.deliveries + 1 }));
      if (delivered.length > 0) {
        await this.db.batch(delivered.map((c) => ({ type: 'put' as const, key: `cmd:${gatewayId}:${seqKey(c.seq)}`, value: c })));
      }
      return delivered;
    });
  }

  private async commandOrFail(gatewayId: string, commandId: string): Promise<CommandRecord> {
    const seq = await this.get<number>(`cmdid:${commandId}`);
    const c = seq === undefined ? undefined : await this.get<CommandRecord>(`cmd:${gatewayId}:${seqKey(seq)}`);
    return c ?? fail(ErrorCodes.COMMAND_NOT_FOUND, `gateway ${gatewayId} has no command ${commandId}`);
  }

  completeCommand(gatewayId: string, commandId: string, result: CommandResult, now: number): Promise<CommandRecord> {
    return this.exclusive(async () => {
      const c = await this.commandOrFail(gatewayId, commandId);
      if (c.state === 'succeeded' || c.state === 'failed') return c;
      const done: CommandRecord = {
        ...c, state: result.ok ? 'succeeded' : 'failed', completedAt: now,
        ...(result.ok ? { result: result.result ?? null } : { error: result.error ?? { code: ErrorCodes.IO, message: 'failed (no message)' } }),
      };
      await this.db.put(`cmd:${gatewayId}:${seqKey(c.seq)}`, done);
      return done;
    });
  }

  getCommand(gatewayId: string, commandId: string): Promise<CommandRecord> {
    return this.commandOrFail(gatewayId, commandId);
  }

  listCommands(gatewayId: string): Promise<CommandRecord[]> {
    return this.values<CommandRecord>(`cmd:${gatewayId}:`);
  }

  async close(): Promise<void> {
    await this.exclusive(async () => undefined);
    await this.db.close();
  }
}
