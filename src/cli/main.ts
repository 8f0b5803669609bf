// The `blockgate` command line. Each subcommand lives in its own module and
// registers itself here; expected failures print one line and exit 1.
import { Command, CommanderError, Option } from 'commander';
import { BlockgateError, errorMessage } from '../errors.js';
import { Logger, type LogFormat, type LogLevel } from '../log.js';
import { loadConfig } from '../daemon/config.js';
import { notifySystemd, startDaemon } from '../daemon/daemon.js';
import { packageVersion } from '../util/version.js';
import { registerControlCommands } from './control-commands.js';
import { registerSnapshotCommands } from './snapshot-commands.js';
import { registerStatusCommand } from './status-command.js';
import { registerVolumeSnapshotCommands } from './volume-snapshot-commands.js';
import { registerRestoreCommand } from './restore-command.js';
import { registerVolumeCommands } from './volume-commands.js';


export function buildProgram(): Command {
  const program = new Command('blockgate')
    .description('Storage gateway: virtual block devices over NBD, protected in an S3-compatible object store')
    // The Node it runs on, too: the supported one is pinned (scripts/install-node.sh).
    .version(`${packageVersion()} (node ${process.version})`, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('serve')
    .description('run the gateway daemon: serve the configured volumes over NBD')
    .requiredOption('-c, --config <file>', 'YAML configuration file (see config.example.yaml)')
    .addOption(new Option('--log-level <level>', 'override log.level').choices(['debug', 'info', 'warn', 'error']))
    .addOption(new Option('--log-format <format>', 'override log.format').choices(['json', 'text']))
    .option('--check', 'validate the configuration and exit')
    .action(async (opts: { config: string; logLevel?: LogLevel; logFormat?: LogFormat; check?: boolean }) => {
      const config = loadConfig(opts.config);
      if (opts.check) {
        process.stdout.write(`${opts.config}: OK (${config.volumes.length} volume(s), ${config.listen.length} listener(s))\n`);
        return;
      }
      const logger = new Logger({ level: opts.logLevel ?? config.log.level, format: opts.logFormat ?? config.log.format });
      // Node and library warnings (e.g. the AWS SDK's Node-version notice) become one structured record
      // each instead of free text on stderr, which would break one-record-per-line logs.
      process.removeAllListeners('warning');
      process.on('warning', (w) => logger.warn('runtime warning', { name: w.name, warning: w.message.replace(/\s+/g, ' ').trim() }));
      const daemon = await startDaemon(config, logger);
      logger.info('ready', { addresses: daemon.addresses, volumes: daemon.exports.map((e) => e.name) });
      notifySystemd('--ready', logger);
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals): void => {
          if (++signals > 1) {
            logger.warn('second signal: exiting without waiting', { signal: sig });
            process.exit(1);
          }
          logger.info('signal received; shutting down', { signal: sig });
          notifySystemd('STOPPING=1', logger);
          daemon.stop().then(resolve, (err) => {
            logger.error('shutdown failed', { err: errorMessage(err) });
            process.exitCode = 1;
            resolve();
          });
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });

  registerStatusCommand(program);
  registerSnapshotCommands(program);
  registerVolumeSnapshotCommands(program);
  registerRestoreCommand(program);
  registerControlCommands(program);
  registerVolumeCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    if (err instanceof BlockgateError) {
      process.stderr.write(`blockgate: ${err.message} [${err.code}]\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`blockgate: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 2;
  }
}
