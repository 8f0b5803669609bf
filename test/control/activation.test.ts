// Gateway activation end to end with real processes: a control server
// (`blockgate control serve`), a gateway agent (dist/control-plane/agent/run-agent.js) and
// the CLI (`blockgate activate`). The refusal cases drive the gateway side of
// the protocol from this process (a "hand-made gateway" with its own Ed25519
// key) so they can forge, replay and delay exactly what they need.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control-plane/client.js';
import { requestJson } from '../../src/control-plane/http.js';
import { challengeMessage } from '../../src/control-plane/protocol.js';
import type { BlockgateError } from '../../src/errors.js';
import { untilPast } from '../harness/until.js';
import {
  OTHER_TOKEN, TOKEN, assertBuilt, cli, cliJson, controlConfig, fileMode, startAgent, startControl, tempDir,
  type AgentHandle, type ControlHandle,
} from './helpers.js';

class HandMadeGateway {
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
  constructor(readonly url: string) {
    const kp = generateKeyPairSync('ed25519');
    this.privateKey = kp.privateKey;
    this.publicKeyPem = kp.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }
  hello(): Promise<{ gatewayId: string; activationKey: string; expiresAt: string }> {
    return requestJson(`${this.url}/v1/gateway/hello`, { body: { publicKey: this.publicKeyPem, metadata: { hostname: 'hand-made', version: '0.0.1', capabilities: ['snapshot'] } } });
  }
  challenge(id: string): Promise<{ challengeId: string; nonce: string; expiresAt: string }> {
    return requestJson(`${this.url}/v1/gateway/${id}/challenge`, { method: 'POST', body: {} });
  }
  signChallenge(id: string, ch: { challengeId: string; nonce: string }, key: KeyObject = this.privateKey): string {
    return sign(null, challengeMessage(id, ch.challengeId, ch.nonce), key).toString('base64');
  }
  activate(id: string, challengeId: string, signature: string): Promise<{ gatewayToken: string; credentials: { accessKeyId: string } }> {
    return requestJson(`${this.url}/v1/gateway/${id}/activate`, { body: { challengeId, signature } });
  }
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; status: unknown }> {
  try {
    await p;
  } catch (err) {
    const e = err as BlockgateError;
    return { code: e.code, message: e.message, status: e.details?.status };
  }
  throw new Error('expected a refusal, but the request succeeded');
}

/** Registers a key through the CLI; returns exit code and the one stderr line. */
async function activateCli(control: ControlHandle, key: string, name: string, token = TOKEN): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return cli(['activate', '--control', control.url, '--key', key, '--name', name, '--token', token]);
}

beforeAll(() => assertBuilt());

describe('activation through the CLI and a real gateway agent', () => {
  let control: ControlHandle;
  let agent: AgentHandle | undefined;
  beforeAll(async () => { control = await startControl(controlConfig()); });
  afterAll(async () => { await agent?.stop(); await control?.stop(); });

  it('unactivated → pending → activated; key pair and credentials stored 0600; survives an agent restart', async () => {
    agent = await startAgent(tempDir('bg-gw-'), control.url);
    const issued = await agent.waitFor((r) => r.msg === 'activation key issued');
    const shown = await requestJson<{ activationKey: string; gatewayId: string; state: string }>(`http://${agent.activationAddress}/activation-key`);
    expect(shown.state).toBe('unactivated');
    expect(shown.gatewayId).toBe(issued.gatewayId);
    expect(shown.activationKey).toMatch(/^[A-Z2-9]{5}(-[A-Z2-9]{5}){4}$/);
    expect(fileMode(join(agent.stateDir, 'gateway-key.pem'))).toBe(0o600);

    const view = await cliJson<{ name: string; state: string; account: string; id: string }>(
      ['activate', '--control', control.url, '--gateway', agent.activationAddress, '--name', 'gw-one', '--token', TOKEN]);
    expect(view).toMatchObject({ name: 'gw-one', account: 'acme', state: 'pending', id: shown.gatewayId });

    await agent.waitFor((r) => r.msg === 'gateway activated' && r.name === 'gw-one');
    await agent.waitFor((r) => r.msg === 'command channel connected');
    const credPath = join(agent.stateDir, 'credentials.json');
    expect(fileMode(credPath)).toBe(0o600);
    const stored = JSON.parse(readFileSync(credPath, 'utf8')) as Record<string, any>;
    expect(stored.gatewayId).toBe(shown.gatewayId);
    expect(stored.gatewayToken).toMatch(/^bgw_/);
    expect(stored.configuration).toMatchObject({ name: 'gw-one', account: 'acme', gatewayId: shown.gatewayId });
    expect(stored.credentials.objectStore).toMatchObject({ endpoint: 'https://s3.example.test', bucket: 'acme-bucket', prefix: `gateways/${shown.gatewayId}/` });
    expect(stored.credentials.accessKeyId).toMatch(/^BGAK[0-9A-F]{24}$/);
    expect(stored.credentials.secretAccessKey.length).toBeGreaterThanOrEqual(40);

    const list = await cliJson<Array<{ name: string; state: string; connectedVia: string | null; metadata: { capabilities: string[] } }>>(
      ['control', 'gateways', '--control', control.url, '--token', TOKEN]);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ name: 'gw-one', state: 'activated', connectedVia: control.url });
    expect(list[0]!.metadata.capabilities).toContain('set-bandwidth');

    // The local endpoint no longer hands out a key; the CLI says why, in one line.
    const again = await cli(['activate', '--control', control.url, '--gateway', agent.activationAddress, '--name', 'gw-two', '--token', TOKEN]);
    expect(again.code).toBe(1);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toContain('[ERR_GATEWAY_ALREADY_ACTIVATED]');

    // A restarted agent keeps its identity and activation (no new activation key).
    await agent.stop();
    agent = await startAgent(agent.stateDir, control.url);
    await agent.waitFor((r) => r.msg === 'command channel connected');
    expect(agent.records().some((r) => r.msg === 'activation key issued')).toBe(false);
    const status = await requestJson<{ state: string; name: string }>(`http://${agent.activationAddress}/status`);
    expect(status).toMatchObject({ state: 'activated', name: 'gw-one' });
  });

  it('stores only token hashes: neither the API token nor the gateway token is in the registry files', async () => {
    const gwToken = (JSON.parse(readFileSync(join(agent!.stateDir, 'credentials.json'), 'utf8')) as { gatewayToken: string }).gatewayToken;
    const dataDir = join(control.dir, 'data');
    const blob = readdirSync(dataDir).map((f) => { try { return readFileSync(join(dataDir, f)).toString('latin1'); } catch { return ''; } }).join('');
    expect(blob.length).toBeGreaterThan(0);
    expect(blob).toContain('gw-one'); // the registry is really in these files...
    expect(blob).not.toContain(TOKEN); // ...but the secrets are not
    expect(blob).not.toContain(OTHER_TOKEN);
    expect(blob).not.toContain(gwToken);
  });
});

describe('activation refusals', () => {
  let control: ControlHandle;
  let quick: ControlHandle; // short key and challenge lifetimes
  beforeAll(async () => {
    control = await startControl(controlConfig());
    quick = await startControl(controlConfig({ activationKeyTtl: '3s', challengeTtl: '3s' }));
  });
  afterAll(async () => { await control?.stop(); await quick?.stop(); });

  it('bad token, missing token, and a token of another account cannot see or command the gateway', async () => {
    const gw = new HandMadeGateway(control.url);
    const { activationKey } = await gw.hello();
    const bad = await activateCli(control, activationKey, 'x', 'bgt_not-a-real-token-000000000000');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^blockgate: unknown API token.*\[ERR_CONTROL_UNAUTHORIZED\]\n$/);
    const none = await cli(['activate', '--control', control.url, '--key', activationKey, '--name', 'x']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('[ERR_CONTROL_UNAUTHORIZED]');
    // The key was not consumed by the refusals.
    expect((await activateCli(control, activationKey, 'refusals-ok')).code).toBe(0);
    // zeta (configured with a plain token) exists but does not see acme's gateway.
    const zeta = await cliJson<unknown[]>(['control', 'gateways', '--control', control.url, '--token', OTHER_TOKEN]);
    expect(zeta).toEqual([]);
    const cross = await cli(['control', 'commands', '--control', control.url, '--token', OTHER_TOKEN, '--gateway', 'refusals-ok']);
    expect(cross.code).toBe(1);
    expect(cross.stderr).toContain('[ERR_GATEWAY_NOT_FOUND]');
  });

  it('unknown activation key, reused key, taken name, gateway already registered', async () => {
    const unknown = await activateCli(control, 'AAAAA-BBBBB-CCCCC-DDDDD-EEEEE', 'u');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('[ERR_ACTIVATION_KEY_UNKNOWN]');

    const gw = new HandMadeGateway(control.url);
    const first = await gw.hello();
    const second = await gw.hello(); // same key pair: same gateway, a second key
    expect(second.gatewayId).toBe(first.gatewayId);
    expect(second.activationKey).not.toBe(first.activationKey);
    expect((await activateCli(control, first.activationKey.toLowerCase(), 'reuse')).code).toBe(0);

    const reused = await activateCli(control, first.activationKey, 'reuse-2');
    expect(reused.code).toBe(1);
    expect(reused.stderr).toContain('[ERR_ACTIVATION_KEY_USED]');
    expect(reused.stderr).toContain('single use');

    const already = await activateCli(control, second.activationKey, 'reuse-3');
    expect(already.code).toBe(1);
    expect(already.stderr).toContain('[ERR_GATEWAY_ALREADY_ACTIVATED]');
    // ...and the registered key pair cannot ask for another key.
    expect((await refusal(gw.hello())).code).toBe('ERR_GATEWAY_ALREADY_ACTIVATED');

    const other = new HandMadeGateway(control.url);
    const taken = await activateCli(control, (await other.hello()).activationKey, 'reuse');
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('[ERR_GATEWAY_NAME_TAKEN]');
  });

  it('expired activation key and expired challenge', async () => {
    const gw = new HandMadeGateway(quick.url);
    const { activationKey, expiresAt } = await gw.hello();
    await untilPast(expiresAt);
    const expired = await activateCli(quick, activationKey, 'late');
    expect(expired.code).toBe(1);
    expect(expired.stderr).toContain('[ERR_ACTIVATION_KEY_EXPIRED]');
    expect(expired.stderr).toContain('expired at');

    const gw2 = new HandMadeGateway(quick.url);
    const h = await gw2.hello();
    // Registered in-process: a CLI start on a loaded machine could outlive the 3 s key.
    expect((await new ControlClient({ url: quick.url, token: TOKEN }).activate(h.activationKey, 'slow-prover')).state).toBe('pending');
    const ch = await gw2.challenge(h.gatewayId);
    await untilPast(ch.expiresAt);
    const r = await refusal(gw2.activate(h.gatewayId, ch.challengeId, gw2.signChallenge(h.gatewayId, ch)));
    expect(r).toMatchObject({ code: 'ERR_CHALLENGE_EXPIRED', status: 410 });
    // A fresh challenge answered in time works.
    const ch2 = await gw2.challenge(h.gatewayId);
    await gw2.activate(h.gatewayId, ch2.challengeId, gw2.signChallenge(h.gatewayId, ch2));
  });

  it('bad signature, replayed signature, signature moved to another challenge; unknown and unregistered gateways', async () => {
    const gw = new HandMadeGateway(control.url);
    const h = await gw.hello();
    const id = h.gatewayId;

    // Not registered yet: no challenge.
    expect((await refusal(gw.challenge(id))).code).toBe('ERR_GATEWAY_NOT_ACTIVATED');
    expect((await activateCli(control, h.activationKey, 'signer')).code).toBe(0);

    // Signed with a key that is not the registered one.
    const impostor = generateKeyPairSync('ed25519').privateKey;
    const ch1 = await gw.challenge(id);
    const bad = await refusal(gw.activate(id, ch1.challengeId, gw.signChallenge(id, ch1, impostor)));
    expect(bad).toMatchObject({ code: 'ERR_BAD_SIGNATURE', status: 403 });
    // That challenge is spent even though the signature was wrong: one challenge, one attempt.
    expect((await refusal(gw.activate(id, ch1.challengeId, gw.signChallenge(id, ch1)))).code).toBe('ERR_CHALLENGE_INVALID');

    // A valid signature of challenge A presented for challenge B.
    const chA = await gw.challenge(id);
    const chB = await gw.challenge(id);
    const sigA = gw.signChallenge(id, chA);
    expect((await refusal(gw.activate(id, chB.challengeId, sigA))).code).toBe('ERR_BAD_SIGNATURE');

    // The right answer works once...
    const sigGood = gw.signChallenge(id, chA);
    const ok = await gw.activate(id, chA.challengeId, sigGood);
    expect(ok.gatewayToken).toMatch(/^bgw_/);
    // ...and replaying it is refused, as is any new challenge.
    const replay = await refusal(gw.activate(id, chA.challengeId, sigGood));
    expect(replay.code).toBe('ERR_CHALLENGE_INVALID');
    expect(replay.message).toContain('replayed');
    expect((await refusal(gw.challenge(id))).code).toBe('ERR_GATEWAY_ALREADY_ACTIVATED');

    // Unknown gateway everywhere it can be named.
    expect((await refusal(gw.challenge('gw-does-not-exist'))).code).toBe('ERR_GATEWAY_NOT_FOUND');
    expect((await refusal(requestJson(`${control.url}/v1/gateway/gw-does-not-exist/status`))).code).toBe('ERR_GATEWAY_NOT_FOUND');
    const cmds = await cli(['control', 'commands', '--control', control.url, '--token', TOKEN, '--gateway', 'nope']);
    expect(cmds.code).toBe(1);
    expect(cmds.stderr).toContain("no gateway named 'nope'");
    expect(cmds.stderr).toContain('[ERR_GATEWAY_NOT_FOUND]');
    const cmd = await cli(['control', 'command', '--control', control.url, '--token', TOKEN, '--gateway', 'nope', 'snapshot', '--volume', 'v']);
    expect(cmd.code).toBe(1);
    expect(cmd.stderr).toContain('[ERR_GATEWAY_NOT_FOUND]');
  });

  it('a gateway endpoint that is not there, and a gateway that has no key yet, are clear errors', async () => {
    const down = await cli(['activate', '--control', control.url, '--gateway', '127.0.0.1:1', '--name', 'n', '--token', TOKEN]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("cannot reach the gateway's activation endpoint");
    expect(down.stderr).toContain('[ERR_CONTROL_UNAVAILABLE]');
    // An agent whose control server is unreachable has no key to show.
    const lonely = await startAgent(tempDir('bg-gw-'), 'http://127.0.0.1:1');
    try {
      const r = await cli(['activate', '--control', control.url, '--gateway', lonely.activationAddress, '--name', 'n', '--token', TOKEN]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[ERR_ACTIVATION_KEY_NOT_READY]');
    } finally {
      await lonely.stop();
    }
    const both = await cli(['activate', '--control', control.url, '--name', 'n', '--token', TOKEN]);
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('exactly one of --gateway');
  });
});

describe('activation of a real agent whose key expired meanwhile', () => {
  it('the agent renews its activation key; the old one is refused as expired, the new one works', async () => {
    const control = await startControl(controlConfig({ activationKeyTtl: '3s' }));
    let agent: AgentHandle | undefined;
    try {
      agent = await startAgent(tempDir('bg-gw-'), control.url);
      const first = await requestJson<{ activationKey: string; expiresAt: string }>(`http://${agent.activationAddress}/activation-key`).catch(async () => {
        await agent!.waitFor((r) => r.msg === 'activation key issued');
        return requestJson<{ activationKey: string; expiresAt: string }>(`http://${agent!.activationAddress}/activation-key`);
      });
      await untilPast(first.expiresAt);
      const old = await activateCli(control, first.activationKey, 'renewed');
      expect(old.code).toBe(1);
      expect(old.stderr).toContain('[ERR_ACTIVATION_KEY_EXPIRED]');
      const r = await cli(['activate', '--control', control.url, '--gateway', agent.activationAddress, '--name', 'renewed', '--token', TOKEN]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      await agent.waitFor((rec) => rec.msg === 'gateway activated');
    } finally {
      await agent?.stop();
      await control.stop();
    }
  });
});

