// Control-plane commands of the `blockgate` CLI:
//   blockgate control serve --config FILE          run a control server
//   blockgate control hash-token [TOKEN|--generate] token hash for accounts[].tokenHashes
//   blockgate control gateways                      list the account's gateways
//   blockgate control command <type> ...            queue a command for a gateway
//   blockgate control commands --gateway NAME       list a gateway's commands and their states
//   blockgate activate --gateway HOST[:PORT] --name NAME   register a gateway with its activation key
// --control defaults to $BLOCKGATE_CONTROL_URL and --token to $BLOCKGATE_TOKEN
// (keeps the token out of the process list). Failures are BlockgateErrors:
// main() prints one line and exits 1.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ControlClient, fetchActivationKey } from '../control-plane/client.js';
import { loadControlConfig } from '../control-plane/server/config.js';
import { durationArg, sizeArg } from './arguments.js';
import { hashToken, randomToken, type CommandType, type CommandView, type GatewayView } from '../control-plane/protocol.js';
import { ControlServer } from '../control-plane/server/server.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import { Logger, type LogFormat, type LogLevel } from '../log.js';
import { parseSize } from '../util/size.js';

interface ConnOpts { control?: string; token?: string; ca?: string; json?: boolean }

function out(line: string): void { process.stdout.write(line + '\n'); }
function printJson(v: unknown): void { out(JSON.stringify(v, null, 2)); }

function client(o: ConnOpts): ControlClient {
  const url = o.control ?? process.env.BLOCKGATE_CONTROL_URL;
  const token = o.token ?? process.env.BLOCKGATE_TOKEN;
  if (!url) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'no control server: give --control URL or set BLOCKGATE_CONTROL_URL');
  if (!token) throw new BlockgateError(ErrorCodes.CONTROL_UNAUTHORIZED, 'no API token: give --token TOKEN or set BLOCKGATE_TOKEN');
  return new ControlClient({ url, token, ...(o.ca ? { ca: readCa(o.ca) } : {}) });
}

function readCa(file: string): Buffer {
  try { return readFileSync(file); } catch (err) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `cannot read CA file ${file}: ${errorMessage(err)}`);
  }
}

function connOptions(cmd: Command): Command {
  return cmd
    .option('--control <url>', 'control server URL (default: $BLOCKGATE_CONTROL_URL)')
    .option('--token <token>', 'account API token (default: $BLOCKGATE_TOKEN)')
    .option('--ca <file>', 'extra CA certificate (PEM) to trust for an https control URL')
    .option('--json', 'print JSON instead of text');
}

function rate(text: string, what: string): number | null {
  if (/^(unlimited|none|off|0)$/i.test(text)) return null;
  const v = parseSize(text.replace(/\/s$/i, ''));
  if (v === undefined || v <= 0) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `--${what}: '${text}' is not a rate (e.g. 10MiB, 500KiB/s, unlimited)`);
  return v;
}

function gatewayLine(g: GatewayView): string {
  return `${(g.name ?? '-').padEnd(20)} ${g.state.padEnd(11)} ${g.id}  ${g.metadata.hostname} v${g.metadata.version}${g.connectedVia ? `  via ${g.connectedVia}` : ''}`;
}

function commandLine(c: CommandView): string {
  const detail = c.state === 'failed' ? `error: ${c.error?.message} [${c.error?.code}]`
    : c.state === 'succeeded' ? `result: ${JSON.stringify(c.result)}` : `args: ${JSON.stringify(c.args)}`;
  return `${c.id.padEnd(22)} ${c.type.padEnd(22)} ${c.state.padEnd(10)} ${c.createdAt}  ${detail}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Queues a command; with --wait, polls until it completes (exit 1 with ERR_COMMAND_FAILED when it failed). */
async function queue(cmd: Command, type: CommandType, args: Record<string, unknown>): Promise<void> {
  const o = cmd.optsWithGlobals<ConnOpts & { gateway?: string; wait?: boolean; timeout: string }>();
  if (!o.gateway) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, '--gateway NAME is required');
  const c = client(o);
  let view = await c.enqueue(o.gateway, type, args);
  if (o.wait) {
    const deadline = Date.now() + durationArg(o.timeout, '--timeout');
    while (view.state === 'queued' || view.state === 'delivered') {
      if (Date.now() >= deadline) {
        throw new BlockgateError(ErrorCodes.COMMAND_TIMEOUT, `command ${view.id} still ${view.state} after ${o.timeout} (is gateway '${o.gateway}' connected?)`);
      }
      await sleep(250);
      view = await c.command(o.gateway, view.id);
    }
  }
  if (o.json) printJson(view); else out(commandLine(view));
  if (view.state === 'failed') {
    throw new BlockgateError(ErrorCodes.COMMAND_FAILED, `command ${view.id} (${type}) failed on gateway '${o.gateway}': ${view.error?.message} [${view.error?.code}]`);
  }
}

export function registerControlCommands(program: Command): void {
  const control = program.command('control').description('control server and gateway administration (activation, commands)');

  control
    .command('serve')
    .description('run a control server (HTTP(S) JSON API with its own registry)')
    .requiredOption('-c, --config <file>', 'YAML configuration file (see docs/control-plane.md)')
    .addOption(new Option('--log-level <level>', 'override log.level').choices(['debug', 'info', 'warn', 'error']))
    .addOption(new Option('--log-format <format>', 'override log.format').choices(['json', 'text']))
    .option('--check', 'validate the configuration and exit')
    .option('--json', 'with --check: print the validated configuration summary as JSON')
    .action(async (opts: { config: string; logLevel?: LogLevel; logFormat?: LogFormat; check?: boolean; json?: boolean }) => {
      const config = loadControlConfig(opts.config);
      if (opts.check) {
        const summary = { config: opts.config, role: config.dataDir ? 'owner' : 'peer', accounts: config.accounts.map((a) => a.name), listen: `${config.listen.host}:${config.listen.port}` };
        if (opts.json) printJson(summary); else out(`${opts.config}: OK (${summary.role}, ${summary.accounts.length} account(s))`);
        return;
      }
      const logger = new Logger({ level: opts.logLevel ?? config.log.level, format: opts.logFormat ?? config.log.format });
      const server = await ControlServer.start(config, logger);
      logger.info('ready', { url: server.url, role: server.role });
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals): void => {
          if (++signals > 1) process.exit(1);
          logger.info('signal received; shutting down', { signal: sig });
          server.close().then(() => { logger.info('stopped'); resolve(); }, (err) => {
            logger.error('shutdown failed', { err: errorMessage(err) });
            process.exitCode = 1;
            resolve();
          });
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });

  control
    .command('hash-token')
    .description('print the SHA-256 hash of an API token (for accounts[].tokenHashes), or generate a new token')
    .argument('[token]', 'the token to hash (default: read from $BLOCKGATE_TOKEN)')
    .option('--generate', 'generate a new random token and print it with its hash')
    .option('--json', 'print JSON')
    .action((token: string | undefined, opts: { generate?: boolean; json?: boolean }) => {
      const t = opts.generate ? randomToken('bgt_') : token ?? process.env.BLOCKGATE_TOKEN;
      if (!t) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give a token, set BLOCKGATE_TOKEN, or use --generate');
      const hash = hashToken(t);
      if (opts.json) printJson(opts.generate ? { token: t, tokenHash: hash } : { tokenHash: hash });
      else out(opts.generate ? `token: ${t}\ntokenHash: ${hash}` : hash);
    });

  connOptions(control.command('gateways').description("list the account's gateways and their states"))
    .action(async (opts: ConnOpts) => {
      const list = await client(opts).gateways();
      if (opts.json) printJson(list);
      else if (list.length === 0) out('no gateways');
      else for (const g of list) out(gatewayLine(g));
    });

  connOptions(control.command('commands').description("list a gateway's commands (queued, delivered, succeeded, failed)"))
    .requiredOption('--gateway <name>', 'gateway name')
    .action(async (opts: ConnOpts & { gateway: string }) => {
      const list = await client(opts).commands(opts.gateway);
      if (opts.json) printJson(list);
      else if (list.length === 0) out(`no commands for gateway '${opts.gateway}'`);
      else for (const c of list) out(commandLine(c));
    });

  const command = connOptions(control.command('command').description('queue a command for a gateway (delivered over its long-poll channel)'))
    .option('--gateway <name>', 'gateway name (required)')
    .option('--wait', 'wait until the gateway reports a result (exit 1 if it failed)')
    .option('--timeout <duration>', 'with --wait: give up after this long', '60s');

  command
    .command('create-volume')
    .description('create a volume on the gateway')
    .requiredOption('--name <name>', 'volume name')
    .requiredOption('--size <size>', 'size (e.g. 10GiB)')
    .option('--mode <mode>', 'volume mode (raw, cached, stored)', 'raw')
    .option('--from-snapshot <id>', 'create from this snapshot')
    .action(async (opts: { name: string; size: string; mode: string; fromSnapshot?: string }, cmd: Command) => {
      const size = sizeArg(opts.size, '--size');
      await queue(cmd, 'create-volume', { name: opts.name, size, mode: opts.mode, ...(opts.fromSnapshot ? { fromSnapshot: opts.fromSnapshot } : {}) });
    });

  command
    .command('snapshot')
    .description('take a snapshot of one or more volumes')
    .requiredOption('--volume <name...>', 'volume name(s)')
    .action(async (opts: { volume: string[] }, cmd: Command) => {
      await queue(cmd, 'snapshot', { volumes: opts.volume });
    });

  command
    .command('set-bandwidth')
    .description('set upload/download bandwidth limits (bytes per second; "unlimited" removes a limit)')
    .option('--upload <rate>', 'upload limit, e.g. 10MiB or unlimited')
    .option('--download <rate>', 'download limit, e.g. 50MiB or unlimited')
    .action(async (opts: { upload?: string; download?: string }, cmd: Command) => {
      if (opts.upload === undefined && opts.download === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give --upload and/or --download');
      await queue(cmd, 'set-bandwidth', {
        ...(opts.upload !== undefined ? { upload: rate(opts.upload, 'upload') } : {}),
        ...(opts.download !== undefined ? { download: rate(opts.download, 'download') } : {}),
      });
    });

  command
    .command('set-snapshot-schedule')
    .description('snapshot a volume periodically (or stop with --every off)')
    .requiredOption('--volume <name>', 'volume name')
    .requiredOption('--every <duration>', 'interval (e.g. 1h, 30m; at least 1m) or off')
    .option('--retain <n>', 'number of scheduled snapshots to keep')
    .action(async (opts: { volume: string; every: string; retain?: string }, cmd: Command) => {
      const intervalSeconds = /^off$/i.test(opts.every) ? null : Math.round(durationArg(opts.every, '--every') / 1000);
      let retain: number | null = null;
      if (opts.retain !== undefined) {
        retain = Number(opts.retain);
        if (!Number.isSafeInteger(retain) || retain < 1) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `--retain: '${opts.retain}' must be a positive integer`);
      }
      await queue(cmd, 'set-snapshot-schedule', { volume: opts.volume, intervalSeconds, retain });
    });

  connOptions(program.command('activate').description("register a gateway to your account with the activation key it shows on its local endpoint"))
    .option('--gateway <host[:port]>', "the gateway's activation endpoint (port defaults to 8080)")
    .option('--key <activationKey>', 'the activation key itself (instead of --gateway)')
    .requiredOption('--name <name>', 'name for the gateway in your account')
    .action(async (opts: ConnOpts & { gateway?: string; key?: string; name: string }) => {
      if ((opts.gateway === undefined) === (opts.key === undefined)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give exactly one of --gateway HOST[:PORT] or --key ACTIVATION_KEY');
      const c = client(opts);
      const key = opts.key ?? (await fetchActivationKey(opts.gateway!)).activationKey;
      const g = await c.activate(key, opts.name);
      if (opts.json) printJson(g);
      else out(`gateway '${g.name}' (${g.id}) registered to account ${g.account}; state ${g.state} (the gateway completes activation by itself)`);
    });
}
