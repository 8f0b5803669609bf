// Stand-in for bin/blockgate while src/cli/main.ts does not register the
// snapshot commands yet: the same error contract as main() (one line, exit 1).
import { Command, CommanderError } from 'commander';
const { registerSnapshotCommands } = await import('../../dist/cli/snapshot-commands.js');
const { BlockgateError } = await import('../../dist/errors.js');
const program = new Command('blockgate').exitOverride();
registerSnapshotCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (err instanceof BlockgateError) { process.stderr.write(`blockgate: ${err.message} [${err.code}]\n`); process.exitCode = 1; }
  else { process.stderr.write(`blockgate: unexpected error: ${err?.stack ?? err}\n`); process.exitCode = 2; }
}
