// Runs the snapshot CLI from dist/ (what bin/blockgate runs once main.ts
// registers the snapshot commands), with main()'s error contract.
// Same thread-pool size as bin/blockgate (set before any I/O starts).
process.env.UV_THREADPOOL_SIZE ??= '32';
const { Command, CommanderError } = await import('commander');
const { registerSnapshotCommands } = await import('../dist/cli/snapshot-commands.js');
const { BlockgateError } = await import('../dist/errors.js');
const program = new Command('blockgate').exitOverride();
registerSnapshotCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (err instanceof BlockgateError) { process.stderr.write(`blockgate: ${err.message} [${err.code}]\n`); process.exitCode = 1; }
  else throw err;
}
