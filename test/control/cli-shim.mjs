// Runs the blockgate CLI with the control-plane commands registered, exactly as
// bin/blockgate + main() would once main.ts calls registerControlCommands
// (test/control/helpers.ts uses bin/blockgate directly as soon as it does).
import { CommanderError } from 'commander';
const { buildProgram } = await import('../../dist/cli/main.js');
const { registerControlCommands } = await import('../../dist/cli/control-commands.js');
const { BlockgateError } = await import('../../dist/errors.js');
const program = buildProgram();
registerControlCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof BlockgateError) {
    process.stderr.write(`blockgate: ${err.message} [${err.code}]\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`blockgate: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 2;
  }
}
